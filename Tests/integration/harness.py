"""Runs the real hellod and hello binaries for the integration tests.

The binaries come from HELLOD_BIN_DIR (test.sh sets it), else from `make build`'s
.build-static/release. Every server listens on an ephemeral port (port 0) and says which in its
start line, so the tests pass while another hellod serves port 9999.

Counters come from hellod's metrics file (--metrics-file, Prometheus's text format), which
every Hellod writes into a temporary directory of its own and writes a last time at stop:
the tests never parse the wording of a log line for a number.
"""
import json
import os
import shutil
import tempfile
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def version():
    """hellod's version, from the one place it is written (Sources/HelloCLI/Version.swift)."""
    with open(os.path.join(ROOT, "Sources", "HelloCLI", "Version.swift")) as f:
        return re.search(r'^package let hellodVersion = "(.*)"$', f.read(), re.M).group(1)


VERSION = version()


def bin_dir():
    found = os.environ.get("HELLOD_BIN_DIR")
    if not found:
        found = os.path.join(ROOT, ".build-static", "release")  # what `make build` makes
    return found


BIN = bin_dir()
HELLOD = os.path.join(BIN, "hellod")
HELLO = os.path.join(BIN, "hello")

START_LINE = re.compile(r"serving (?P<addresses>.+?) \((?P<origin>[^)]*)\):")


class LineReader:
    """Reads a text stream line by line in a thread of its own, so that every wait for a
    line has a deadline (a bare readline() on a hung process waits forever)."""

    def __init__(self, stream):
        self._lines = queue.Queue()
        self._ended = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        try:
            for line in stream:
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._lines.put(None)

    def next(self, timeout):
        """The next line; None at the end of the stream. Fails after `timeout` seconds."""
        if self._ended:
            return None
        try:
            line = self._lines.get(timeout=max(timeout, 0.001))
        except queue.Empty:
            raise AssertionError("no line within %.1f s" % timeout) from None
        self._ended = line is None
        return line

    def rest(self, timeout):
        """Every line up to the end of the stream, or up to `timeout` seconds: what came."""
        deadline = time.monotonic() + timeout
        lines = []
        while not self._ended and time.monotonic() < deadline:
            try:
                line = self.next(deadline - time.monotonic())
            except AssertionError:
                break
            if line is not None:
                lines.append(line)
        return "".join(lines)

    @property
    def finished(self):
        """Whether the reading thread has ended (the stream may then be closed)."""
        return not self._thread.is_alive()


class Hellod:
    """A hellod process: started with `args`, ready once its start line is read."""

    def __init__(self, *args, env=None, command=None, before_start=None, start_timeout=10):
        """`before_start(self)`, if given, runs once the process exists and before its
        start line is awaited (e.g. to send the datagram that activates it);
        `start_timeout` is how long the start line may take (longer for a command that
        builds first)."""
        if "--metrics-file" in args:
            self.metrics_path = args[args.index("--metrics-file") + 1]
        else:
            self.metrics_dir = tempfile.mkdtemp(prefix="hellod-metrics-")
            self.metrics_path = os.path.join(self.metrics_dir, "hellod.prom")
            args = (*args, "--metrics-file", self.metrics_path)
        self.args = [*(command or [HELLOD]), *args]
        self.early_lines = ""
        self.later_lines = []  # stderr after the start line, as far as read
        self.proc = subprocess.Popen(self.args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=env, text=True)
        self.stderr = LineReader(self.proc.stderr)
        try:
            if before_start:
                before_start(self)
            self.start_line = self._read_start_line(start_timeout)
        except BaseException:
            self.__exit__()
            raise
        match = START_LINE.search(self.start_line)
        self.addresses = match.group("addresses").split()
        self.origin = match.group("origin")
        self.port = int(self.addresses[0].rsplit(":", 1)[1])

    def _read_start_line(self, timeout=10):
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            try:
                line = self.stderr.next(deadline - time.monotonic())
            except AssertionError:
                break
            if line is None:
                break
            lines.append(line)
            if START_LINE.search(line):
                self.early_lines = "".join(lines)
                return line
        raise AssertionError("hellod did not start within %s s: %r" % (timeout, "".join(lines)))

    def wait_for_line(self, pattern, timeout):
        """Reads stderr until a line matches `pattern` (a regular expression); returns it.
        Fails after `timeout` seconds or at the end of the stream."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.stderr.next(deadline - time.monotonic())
            except AssertionError:
                line = None
            if line is None:
                raise AssertionError("no line matching %r within %s s: %r" % (pattern, timeout, self.later_lines))
            self.later_lines.append(line)
            if re.search(pattern, line):
                return line

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Sends `sig`; returns (exit code, stderr after the start line). Fails on a hang."""
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("hellod did not exit within %s s of %s" % (timeout, sig))
        self.later_lines.append(self.stderr.rest(timeout=5))
        return self.proc.returncode, StopOutput("".join(self.later_lines), self.metrics())

    def metrics(self):
        """The metrics file as hellod last wrote it (parse_metrics); {} if there is none."""
        try:
            with open(self.metrics_path) as f:
                return parse_metrics(f.read())
        except FileNotFoundError:
            return {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        finally:
            self.stderr.rest(timeout=1)
            if self.stderr.finished:
                self.proc.stderr.close()
            if getattr(self, "metrics_dir", None):
                shutil.rmtree(self.metrics_dir, ignore_errors=True)


def build_references(directory):
    """The C yardsticks, bench/reference/*.c, built into `directory` by bench/references.py
    (as `make references` and the benches build them), a warning failing the build:
    {name: path of the binary}."""
    if os.path.join(ROOT, "bench") not in sys.path:
        sys.path.append(os.path.join(ROOT, "bench"))
    import references
    return references.build(directory, strict=True)


def hello_process(*args):
    """Starts the hello client in the background, its stdout piped (text)."""
    return subprocess.Popen([HELLO, *args], stdout=subprocess.PIPE, text=True)


def hello(*args, input=None, timeout=30, prefix=()):
    """Runs the hello client (after `prefix`, e.g. a namespace's); returns the
    CompletedProcess (text)."""
    return subprocess.run([*prefix, HELLO, *args], input=input, capture_output=True, text=True, timeout=timeout)


def exchange(family, address, payload, timeout=2.0, net=None):
    """Sends one datagram with Python's socket module (from `net`'s network, a
    netns.Loopback, if given); returns (reply, source address)."""
    with (net.socket(family) if net else socket.socket(family, socket.SOCK_DGRAM)) as s:
        s.settimeout(timeout)
        s.sendto(payload, address)
        return s.recvfrom(70000)


class StopOutput(str):
    """What Hellod.stop() returns beside the exit code: hellod's stderr after its start
    line, carrying the metrics file's last write (`metrics`), which counters() reads."""

    def __new__(cls, text, metrics):
        self = super().__new__(cls, text)
        self.metrics = metrics
        return self


METRIC_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus's text format: {(name, ((label, value), ...)): number}, labels sorted."""
    found = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = METRIC_LINE.match(line)
        if not match:
            raise AssertionError("not a metric line: %r" % line)
        labels = tuple(sorted((m.group("key"), m.group("value")) for m in LABEL.finditer(match.group("labels") or "")))
        found[(match.group("name"), labels)] = float(match.group("value"))
    return found


def metric(metrics, name, **labels):
    """The sum of `name`'s series whose labels include `labels`, as an int."""
    return int(sum(v for (n, ls), v in metrics.items() if n == name and set(labels.items()) <= set(ls)))


def counters(stopped, service=None):
    """The counters of a stopped hellod (Hellod.stop()'s text, or a metrics dict), of every
    service or of one: read, replied, dropped, queue, per_socket, and each drop reason that
    is not 0."""
    metrics = stopped if isinstance(stopped, dict) else getattr(stopped, "metrics", None)
    if not metrics:
        raise AssertionError("no metrics file behind %r: pass Hellod.stop()'s text" % stopped[:200])
    only = {"service": service} if service else {}
    found = {
        "read": metric(metrics, "hellod_datagrams_read_total", **only),
        "replied": metric(metrics, "hellod_datagrams_replied_total", **only),
        "dropped": metric(metrics, "hellod_datagrams_dropped_total", **only),
        "queue": metric(metrics, "hellod_kernel_queue_drops_total", **only),
    }
    sockets = sorted((int(dict(ls)["socket"]), v) for (n, ls), v in metrics.items()
                     if n == "hellod_socket_datagrams_read_total" and (not service or dict(ls)["service"] == service))
    found["per_socket"] = [int(v) for _, v in sockets]
    for (name, labels), value in metrics.items():
        reason = dict(labels).get("reason")
        if name == "hellod_datagrams_dropped_total" and value > 0 and (not service or dict(labels)["service"] == service):
            found[reason] = found.get(reason, 0) + int(value)
    return found


# Binds a datagram socket as fd 3 and becomes the command, socket activation's way
# (LISTEN_PID is this process's, which exec keeps): PROTOCOL ADDRESS PORT OPTIONS COMMAND...
# (OPTIONS: JSON, [[level, name, value], ...], integer socket options set before the bind).
ACTIVATE = r"""
import json, os, socket, sys
protocol, address, port, options = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, protocol)
for level, name, value in options:
    s.setsockopt(level, name, value)
s.bind((address, port))
if s.fileno() == 3:
    os.set_inheritable(3, True)
else:
    os.dup2(s.fileno(), 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[5], sys.argv[5:])
"""


def activated(address, port, command, protocol=0, options=()):
    """`command` (a list) run as systemd would run it for a socket of `protocol` (0: UDP)
    bound to `address`:`port`, handed over as fd 3; `options`: (level, name, value) socket
    options an earlier user left on that socket. Arguments added after it reach `command`."""
    return ["python3", "-c", ACTIVATE, str(protocol), address, str(port), json.dumps(list(options)), *command]


UDPTOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "udptool.py")


def spoof(src, sport, dst, dport, payload="x", count=1, rate=None, prefix=()):
    """Sends UDP datagrams with a forged source (raw socket; root)."""
    command = [*prefix, "python3", UDPTOOL, "spoof", src, str(sport), dst, str(dport), payload, "--count", str(count)]
    if rate:
        command += ["--rate", str(rate)]
    subprocess.run(command, check=True, timeout=120)


def wait_until_drained(pid, port, timeout=15):
    """Waits until the receive queue of the UDP socket on `port` (as process `pid` sees its
    network) is empty: every datagram sent was then read or dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = 0
        for table in ("udp", "udp6"):
            with open("/proc/%d/net/%s" % (pid, table)) as sockets:
                for line in sockets.readlines()[1:]:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        queued += int(fields[4].split(":")[1], 16)
        if queued == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the receive queue of port %d did not drain in %s s" % (port, timeout))


def rss_anon_kb(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon for %d" % pid)


def threads(pid):
    """{thread id: name} of process `pid` (the names hellod gives its threads)."""
    found = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as comm:
            found[int(tid)] = comm.read().strip()
    return found


def posix_timers(pid):
    """Process `pid`'s POSIX timers (/proc/PID/timers): [{"signal": number, "notify": how
    (e.g. "signal/tid.1234"), "clock": clock id}]."""
    timers, timer = [], None
    with open("/proc/%d/timers" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "ID":
                timer = {}
                timers.append(timer)
            elif key == "signal":
                timer["signal"] = int(value.split("/")[0])
            elif key == "notify":
                timer["notify"] = value
            elif key == "ClockID":
                timer["clock"] = int(value)
    return timers


# kcmp(2)'s number (glibc has no wrapper) on the machines hellod is built for.
KCMP = {"x86_64": 312, "aarch64": 272}
KCMP_FILES = 2


def share_file_table(a, b):
    """Whether threads (or processes) `a` and `b` use one file descriptor table, by kcmp(2)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(KCMP[os.uname().machine], a, b, KCMP_FILES, 0, 0)
    if result < 0:
        raise OSError(ctypes.get_errno(), "kcmp(%d, %d): %s" % (a, b, os.strerror(ctypes.get_errno())))
    return result == 0


class TestCase(unittest.TestCase):
    maxDiff = None

    def assertBalanced(self, found):
        """Every datagram read was replied or dropped under a named reason."""
        reasons = sum(v for k, v in found.items() if k not in ("read", "replied", "dropped", "queue", "per_socket"))
        self.assertEqual(found["dropped"], reasons, found)
        self.assertEqual(found["read"], found["replied"] + found["dropped"], found)

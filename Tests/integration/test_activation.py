"""hellod under systemd's own tools: socket activation (systemd-socket-activate) and the
sd_notify protocol, read from a NOTIFY_SOCKET of the test's own."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import HELLOD, Hellod, LineReader, TestCase, exchange, hello
from netns import Loopback


def activated(net, *listen, args=(), env=None, first=b"first"):
    """hellod started by systemd-socket-activate on datagram sockets bound to `listen` in
    `net` (a netns.Loopback), addresses with a port in place of {}: it takes no port 0, and
    in a network of the test's own every port is free. As systemd does,
    systemd-socket-activate starts hellod at the first datagram: this one, which must be
    answered once hellod is up (`first`: its bytes)."""
    command = [*net.prefix(), "systemd-socket-activate", "--datagram"]
    addresses = []
    for i, address in enumerate(listen):
        addresses.append(address.format(9999 - i))
        command += ["-l", addresses[-1]]
    host, port = addresses[0].rsplit(":", 1)
    host = host.strip("[]").replace("::", "::1") if host.startswith("[") else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def first_datagram(d):
        listening = 0
        deadline = time.monotonic() + 10
        while listening < len(addresses):  # "Listening on 127.0.0.1:9999 as 3."
            line = d.stderr.next(deadline - time.monotonic())
            if not line:
                raise AssertionError("systemd-socket-activate exited")
            listening += line.startswith("Listening on")
        d.first_reply = exchange(family, (host, int(port)), first, timeout=10, net=net)[0]

    return Hellod(*args, env=env, command=[*command, HELLOD], before_start=first_datagram)


class SocketActivation(TestCase):
    def setUp(self):
        self.assertTrue(shutil.which("systemd-socket-activate"), "systemd-socket-activate is missing")
        self.net = Loopback()
        self.addCleanup(self.net.close)

    def test_one_inherited_socket(self):
        with activated(self.net, "127.0.0.1:{}") as d:
            self.assertEqual(d.first_reply, b"Hello, first!")
            self.assertEqual(d.origin, "socket activation")
            result = hello("--port", str(d.port), "Michael", "Tracy", "Sarah", prefix=self.net.prefix())
            self.assertEqual((result.returncode, result.stdout), (0, "Hello, Michael!\nHello, Tracy!\nHello, Sarah!\n"))
            code, rest = d.stop()
        self.assertEqual(code, 0)
        self.assertIn("read 4, replied 4", rest)

    def test_two_inherited_sockets_ipv4_and_ipv6_are_both_served(self):
        with activated(self.net, "127.0.0.1:{}", "[::1]:{}") as d:
            self.assertEqual(len(d.addresses), 2)
            v4 = int(d.addresses[0].rsplit(":", 1)[1])
            v6 = int(d.addresses[1].rsplit(":", 1)[1])
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", v4), b"four", net=self.net)[0], b"Hello, four!")
            self.assertEqual(exchange(socket.AF_INET6, ("::1", v6), b"six", net=self.net)[0], b"Hello, six!")
            self.assertIn("sockets 2", d.start_line)

    def test_a_dual_stack_inherited_socket_answers_ipv4_peers(self):
        # As ListenDatagram=9999 gives it: [::]:PORT, IPv4 peers as ::ffff:a.b.c.d.
        with activated(self.net, "[::]:{}") as d:
            reply, source = exchange(socket.AF_INET, ("127.0.0.2", d.port), b"mapped", net=self.net)
            self.assertEqual((reply, source), (b"Hello, mapped!", ("127.0.0.2", d.port)))
            self.assertEqual(exchange(socket.AF_INET6, ("::1", d.port), b"six", net=self.net)[0], b"Hello, six!")

    def test_listen_is_ignored_and_says_so(self):
        with activated(self.net, "127.0.0.1:{}", args=("--listen", "127.0.0.1:1")) as d:
            self.assertIn("--listen ignored", d.early_lines)
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", d.port), b"x", net=self.net)[0], b"Hello, x!")

    def test_an_inherited_socket_that_is_not_udp_is_refused_with_exit_1(self):
        # A stream socket where a datagram socket belongs: a clear error, exit 1.
        proc = subprocess.Popen([*self.net.prefix(), "systemd-socket-activate", "-l", "127.0.0.1:9999", HELLOD],
                                stderr=subprocess.PIPE, text=True)
        lines = LineReader(proc.stderr)
        try:
            self.assertTrue(lines.next(timeout=10).startswith("Listening on"))
            with self.net.socket(socket.AF_INET, socket.SOCK_STREAM) as client:  # starts hellod
                client.settimeout(5)
                client.connect(("127.0.0.1", 9999))
            proc.wait(timeout=10)
            stderr = lines.rest(timeout=5)
        finally:
            proc.kill()
            proc.wait(timeout=10)
            proc.stderr.close()
        self.assertEqual(proc.returncode, 1)
        self.assertIn("not a datagram socket", stderr)
        self.assertEqual(len([l for l in stderr.splitlines() if l.startswith("hellod:")]), 1, stderr)


def wait_until_stopped(pid, timeout=2):
    """Waits until every thread of `pid` is stopped (state T), as SIGSTOP leaves them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        if all(state == "T" for state in states):
            return
        time.sleep(0.01)
    raise AssertionError("hellod's threads not all stopped within %d s" % timeout)


class Notify(TestCase):
    """READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 on a NOTIFY_SOCKET the test owns."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def tearDown(self):
        self.sock.close()
        self.dir.cleanup()

    def collect(self, seconds, until=None, quiet=None):
        """Reads notifications for up to `seconds` (or until one contains `until`, or none
        has come for `quiet` seconds: what was queued, whenever this process reads it)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(min(max(deadline - time.monotonic(), 0.001), quiet or seconds))
            try:
                message = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            self.messages.append((time.monotonic(), message))
            if until and until in message:
                return message
        return None

    def env(self, **extra):
        return dict(os.environ, NOTIFY_SOCKET=self.path, **extra)

    def test_ready_status_and_stopping(self):
        with Hellod("--listen", "127.0.0.1:0", env=self.env()) as d:
            ready = self.collect(5, until="READY=1")
            self.assertIsNotNone(ready, self.messages)
            self.assertRegex(ready, r"STATUS=replied 0 \(0/s\), dropped 0 \(none\), kernel queue drops 0, sockets 1")
            hello("--port", str(d.port), "Michael", "Tracy", "Sarah")
            status = self.collect(8, until="STATUS=replied 3 ")
            self.assertIsNotNone(status, "no STATUS update within 8 s: %r" % self.messages)
            d.proc.send_signal(signal.SIGTERM)
            stopping = self.collect(5, until="STOPPING=1")
            self.assertIsNotNone(stopping, self.messages)
            code, _ = d.stop()
        self.assertEqual(code, 0)
        self.assertNotIn("WATCHDOG=1", "".join(m for _, m in self.messages))  # not asked for

    def test_watchdog_pings_while_idle(self):
        with Hellod("--listen", "127.0.0.1:0", env=self.env(WATCHDOG_USEC="400000")) as d:
            self.assertIsNotNone(self.collect(5, until="READY=1"))
            self.assertIn("watchdog 400 ms", d.start_line)
            started = time.monotonic()
            self.collect(2)
            pings = [t for t, m in self.messages if "WATCHDOG=1" in m and t >= started]
            # Idle, one ping every ~100 ms (a quarter of the interval): about 20 in 2 s.
            self.assertGreaterEqual(len(pings), 8, self.messages)
            gaps = [b - a for a, b in zip(pings, pings[1:])]
            self.assertLess(max(gaps), 0.4, "a gap as long as the watchdog interval")

    def test_no_pings_from_a_stopped_process(self):
        with Hellod("--listen", "127.0.0.1:0", env=self.env(WATCHDOG_USEC="400000")) as d:
            self.assertIsNotNone(self.collect(5, until="READY=1"))
            d.proc.send_signal(signal.SIGSTOP)
            wait_until_stopped(d.proc.pid)
            self.collect(3, quiet=0.2)  # pings sent before the stop, however late this process reads them
            self.messages.clear()
            self.collect(1)
            self.assertEqual([m for _, m in self.messages if "WATCHDOG=1" in m], [])
            d.proc.send_signal(signal.SIGCONT)
            self.collect(1)
            self.assertIn("WATCHDOG=1", "".join(m for _, m in self.messages))

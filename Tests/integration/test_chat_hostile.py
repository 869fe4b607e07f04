"""`hello chat` against a hostile relay: a Python socket that speaks the chat protocol
(docs/PROTOCOL.md) well enough to be joined, then floods the client with events in order,
events past a gap it never fills, and absurd room sequences. Whatever a relay sends, the
client's memory stays under the bound README states, Ctrl-C (SIGINT in a pipe) ends it at
once during the flood, and no figure it shows is one no relay could mean."""
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import HELLO, TestCase
import chatwire as wire
from test_chat_client import ChatProcess, event
from test_chat_terminal import Tmux

# README's bound on the client's memory, whatever a relay sends (peak resident, VmHWM).
RSS_BOUND_KIB = 32 * 1024
# The most events a relay's backlog holds (hellod's --chat-backlog at most): a count of
# missed events beyond it is no count at all.
LARGEST_BACKLOG = 65536
# Ctrl-C during a flood ends the client within 200 ms on a quiet machine; the bound is
# generous for a busy one, and still far from a client too busy to read its keys.
CTRL_C_BOUND_S = 1.0
FLOOD_S = 3.0
INSTANCE = 5
EVE = wire.ident(b"eve's secret 16b")  # the id of the relay's invented member
TEXT = b"flood " * 180  # 1,080 bytes: one event fills most of a 1,232-byte datagram
MISSED = re.compile(r"missed (\d+) event")


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


def ended(pid):
    """Whether process `pid` has exited (gone, or a zombie not yet reaped).

    Its parent may reap it between the open and the read: the read then fails with ESRCH."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class HostileRelay:
    """A UDP socket that lets one client join (CHALLENGE, WELCOME) and then sends it what a
    test says, ignoring whatever the client asks (RESEND, WHO, KEEPALIVE)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.client = None
        self.flooding = None
        self.tag = None
        self.stopping = threading.Event()
        self.sent = 0

    def admit(self):
        """Answers the client's JOIN with a CHALLENGE, and its JOIN with the cookie with a WELCOME."""
        while True:
            datagram, client = self.sock.recvfrom(2048)
            if wire.type_of(datagram) != wire.JOIN:
                continue
            join = wire.decode_request(datagram)
            self.tag = join.tag
            if join.cookie == wire.NO_COOKIE:
                self.sock.sendto(wire.challenge(self.tag, wire.cookie(1, 7)), client)
            else:
                self.sock.sendto(wire.welcome(self.tag, 99, INSTANCE, 1, 1), client)
                self.client = client
                return

    def send(self, *encoded_events):
        try:
            self.sock.sendto(wire.events(self.tag, INSTANCE, encoded_events), self.client)
            self.sent += 1
        except OSError:
            pass  # a full buffer: a flood may lose datagrams

    def message(self, sequence, text=TEXT):
        self.send(event(sequence, 1, EVE, b"eve", text, client_sequence=sequence))

    def flood(self):
        """Until stop(): in turn, for half a second each, events in room order (48 short ones
        to a datagram: many lines for the client's work; then one long one to a datagram: many
        bytes); events after a sequence never sent (a gap that never closes); events at random
        sequences."""
        def run():
            shuffled = random.Random(22)
            sequence = 1
            while not self.stopping.is_set():
                for phase in ("in order", "long", "past a gap", "absurd"):
                    until = time.monotonic() + 0.5
                    if phase == "past a gap":
                        sequence += 1  # never sent
                    while time.monotonic() < until and not self.stopping.is_set():
                        if phase == "long":
                            self.message(sequence)
                            sequence += 1
                            continue
                        if phase == "absurd":
                            sequences = [shuffled.getrandbits(32) for _ in range(48)]
                        else:
                            sequences = range(sequence, sequence + 48)
                            sequence += 48
                        self.send(*(event(s, 1, EVE, b"eve", b"hi", client_sequence=s) for s in sequences))

        self.flooding = threading.Thread(target=run, daemon=True)
        self.flooding.start()

    def stop(self):
        self.stopping.set()
        if self.flooding:
            self.flooding.join(timeout=5)

    def close(self):
        self.stop()
        self.sock.close()


class OutputScanner:
    """Reads a stream in a thread of its own and keeps only what the checks need: the figures
    of "missed N event(s)" lines, the "skipped" lines, the number of lines. Paused, it reads
    nothing (the pipe fills, as when a consumer falls behind)."""

    def __init__(self, stream):
        self.stream = stream
        self.reading = threading.Event()
        self.missed, self.skipped, self.lines = [], [], 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        partial = b""
        while True:
            self.reading.wait()
            chunk = os.read(self.stream.fileno(), 65536)
            if not chunk:
                return
            *complete, partial = (partial + chunk).split(b"\n")
            for line in complete:
                self.lines += 1
                self.missed += [int(n) for n in MISSED.findall(line.decode("utf-8", "replace"))]
                if line.startswith(b"* skipped "):
                    self.skipped.append(line.decode("utf-8", "replace"))

    def join(self, timeout):
        self.reading.set()
        self.thread.join(timeout=timeout)


class HostileRelayTest(TestCase):
    def relay(self):
        relay = HostileRelay()
        self.addCleanup(relay.close)
        return relay

    def report(self, what, peak, latency):
        sys.stderr.write("\n  %s: peak RSS %d KiB, Ctrl-C to exit %.0f ms " % (what, peak, latency * 1000))

    def assertBounded(self, peak, latency):
        """Both checked, each failure reported."""
        with self.subTest("memory"):
            self.assertLess(peak, RSS_BOUND_KIB, "peak resident memory, KiB")
        with self.subTest("Ctrl-C"):
            self.assertLess(latency, CTRL_C_BOUND_S, "seconds from Ctrl-C to the exit, during the flood")

    def test_in_a_pipe_a_flood_is_bounded_and_sigint_ends_it_at_once(self):
        relay = self.relay()
        stderr = tempfile.TemporaryFile()
        self.addCleanup(stderr.close)
        # SIGINT as a user's Ctrl-C finds it: a runner started in the background by a shell
        # without job control ignores SIGINT, and a child inherits that (it then never ends).
        proc = subprocess.Popen([HELLO, "chat", "--port", str(relay.port), "--room", "lobby", "--nick", "ada",
                                 "--keepalive", "0.3", "--timeout", "0.2"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        output = OutputScanner(proc.stdout)  # not reading yet: the pipe fills
        relay.admit()
        relay.flood()
        time.sleep(FLOOD_S / 2)
        output.reading.set()  # the consumer catches up; the flood goes on
        time.sleep(FLOOD_S / 2)
        peak = peak_rss_kib(proc.pid)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
            latency = time.monotonic() - interrupted
        except subprocess.TimeoutExpired:
            latency = float("inf")
        relay.stop()
        output.join(timeout=10)
        proc.stdin.close()
        proc.stdout.close()
        self.report("pipe, %d datagrams sent, %d lines shown" % (relay.sent, output.lines), peak, latency)
        self.assertBounded(peak, latency)
        self.assertEqual([n for n in output.missed if n > LARGEST_BACKLOG], [], "absurd counts of missed events")
        # The pipe stalled while the relay sent: what could not wait was dropped, and said.
        self.assertTrue(output.skipped, "no line saying what was skipped while the output stalled")
        self.assertRegex(output.skipped[0], r"^\* skipped \d+ event\(s\) \(the relay sent faster than they were shown\)$")

    def test_a_relay_that_never_acknowledges_does_not_make_it_read_all_its_input(self):
        # `hello chat` reads a line of input as one message; a relay that acknowledges
        # none would have it read a whole pipe into memory, however large. It reads no
        # further than a bounded queue of lines: the writer blocks, memory stays bounded.
        relay = self.relay()
        proc = subprocess.Popen([HELLO, "chat", "--port", str(relay.port), "--room", "lobby", "--nick", "ada",
                                 "--timeout", "0.2"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        relay.admit()
        line = b"m" * 999 + b"\n"  # the longest message, so that the lines are what weighs
        written = 0
        stop = time.monotonic() + 3
        os.set_blocking(proc.stdin.fileno(), False)
        while time.monotonic() < stop and written < 200 * 1024 * 1024:
            try:
                written += os.write(proc.stdin.fileno(), line * 64)
            except BlockingIOError:
                time.sleep(0.01)  # the client reads no more: the pipe is full
        peak = peak_rss_kib(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        proc.stdin.close()
        sys.stderr.write("\n  unacknowledged input: %d KiB written in 3 s, peak RSS %d KiB " % (written // 1024, peak))
        self.assertLess(peak, RSS_BOUND_KIB, "peak resident memory, KiB")
        self.assertLess(written, 16 * 1024 * 1024, "bytes the client read from its input, none acknowledged")

    def test_on_a_terminal_a_flood_is_bounded_and_ctrl_c_ends_it_at_once(self):
        relay = self.relay()
        status = tempfile.NamedTemporaryFile(delete=False)
        self.addCleanup(os.unlink, status.name)
        command = "%s chat --port %d --room lobby --nick ada --keepalive 0.3 --timeout 0.2; echo $? > %s; exec sleep 60" \
                  % (shlex.quote(HELLO), relay.port, status.name)
        tmux = Tmux(command)
        self.addCleanup(tmux.kill)
        relay.admit()
        tmux.wait_for_text("[lobby] ada>")
        shell = tmux.display("#{pane_pid}")
        pids = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True, timeout=10).stdout.split()
        self.assertEqual(len(pids), 1, pids)
        pid = int(pids[0])
        self.addCleanup(kill, pid)  # a client that ignores the keys must not outlive the test
        relay.flood()
        time.sleep(FLOOD_S)
        peak = peak_rss_kib(pid)
        interrupted = time.monotonic()
        tmux.keys("C-c")
        deadline = interrupted + 10
        while not ended(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        latency = time.monotonic() - interrupted if ended(pid) else float("inf")
        relay.stop()
        self.report("terminal, %d datagrams sent" % relay.sent, peak, latency)
        self.assertBounded(peak, latency)
        history = tmux.screen("-S", "-")
        self.assertEqual([n for n in map(int, MISSED.findall(history)) if n > LARGEST_BACKLOG], [], history[-2000:])

    def test_room_sequences_are_checked_before_a_figure_is_shown(self):
        """A sequence behind the one expected is an old duplicate; one far ahead, beyond what
        any relay's backlog holds, is a jump (a resynchronisation), not "missed 2999999998
        event(s)"; a gap beyond what the client holds and repairs is counted at once."""
        relay = self.relay()
        p = ChatProcess(relay.port, "ada", retries=1)
        self.addCleanup(p.kill)
        relay.admit()
        relay.message(1, b"first")
        relay.message(0xFFFFFFE4, b"behind")  # 29 before 1, as u32 arithmetic goes
        relay.message(3_000_000_000, b"far")
        relay.message(3_000_000_001, b"after")
        relay.message(3_000_001_001, b"later")  # 999 missing: more than the client repairs
        try:
            p.wait_for("eve: later", timeout=5)
        except AssertionError:
            pass  # the lines are compared below
        code, lines, stderr = p.finish()
        self.assertEqual(lines, ["eve: first", "* missed an unknown number of events (the relay's sequence jumped)",
                                 "eve: far", "eve: after", "* missed 999 event(s)", "eve: later"])


if __name__ == "__main__":
    unittest.main()

"""The C yardsticks of bench/reference/, which bench/compare.py and bench/chat.py measure
hellod against: each builds without a warning, and each answers byte for byte on real
sockets. A yardstick that answered wrongly, or sent two replies as one datagram, would
make the benchmarks' ratios meaningless. Nothing here is timed; every wait is bounded."""
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from contextlib import contextmanager

import udptool
from harness import TestCase, build_references

# The echo and hello servers, and what each takes after PORT BATCH MODE.
SERVERS = {"mmsg-server": [], "gso-server": [], "gro-server": [], "spin-server": ["50"]}
WAIT = 5  # seconds, for any one datagram


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(WAIT)
    return s


@contextmanager
def running(binary, *args):
    """The yardstick on a free port of 127.0.0.1, once it has answered a probe (from a
    socket of its own, closed before the test's sockets speak); killed at the end."""
    port = free_port()
    proc = subprocess.Popen([binary, str(port), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with udp_socket() as probe:
            probe.settimeout(0.2)
            deadline = time.monotonic() + WAIT
            while True:
                if proc.poll() is not None:
                    raise AssertionError("%s exited: %s" % (binary, proc.stderr.read().decode(errors="replace")))
                if time.monotonic() > deadline:
                    raise AssertionError("%s did not answer within %d s" % (binary, WAIT))
                probe.sendto(b"probe", ("127.0.0.1", port))
                try:
                    probe.recv(4096)
                    break
                except socket.timeout:
                    pass
        yield proc, ("127.0.0.1", port)
    finally:
        proc.kill()
        proc.wait(timeout=WAIT)
        proc.stderr.close()


@contextmanager
def stopped(proc):
    """The process stopped (SIGSTOP), so that what is sent meanwhile waits in its socket's
    queue and is read by one recvmmsg when it continues (SIGCONT)."""
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


class ReferencesTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.built = build_references(cls.tmp.name)  # -Werror: a warning fails every test here

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def receive(self, sock, count):
        """`count` datagrams, each within WAIT seconds; then none more for 0.3 s."""
        got = []
        for _ in range(count):
            try:
                got.append(sock.recv(70000))
            except socket.timeout:
                self.fail("%d datagrams of %d came: %r" % (len(got), count, got))
        sock.settimeout(0.3)
        try:
            extra = sock.recv(70000)
            self.fail("a datagram more than the %d expected: %r after %r" % (count, extra, got))
        except socket.timeout:
            pass
        finally:
            sock.settimeout(WAIT)
        return got

    def test_every_yardstick_is_built(self):
        self.assertEqual(sorted(self.built), ["gro-server", "gso-server", "mmsg-server", "relay", "spin-server"])

    def test_hello_replies_byte_for_byte(self):
        names = [b"Michael", b"", b"\x00\xff\n\t x", b"n" * 2040]
        for name, extra in SERVERS.items():
            with self.subTest(server=name), running(self.built[name], "64", "hello", *extra) as (_, address), \
                    udp_socket() as client:
                for request in names:
                    client.sendto(request, address)
                    self.assertEqual(self.receive(client, 1), [b"Hello, " + request + b"!"])

    def test_echo_replies_byte_for_byte(self):
        payloads = [b"x", b"", bytes(range(256)), b"e" * 2048]
        for name, extra in SERVERS.items():
            with self.subTest(server=name), running(self.built[name], "64", "echo", *extra) as (_, address), \
                    udp_socket() as client:
                for request in payloads:
                    client.sendto(request, address)
                    self.assertEqual(self.receive(client, 1), [request])

    def test_a_burst_is_answered_datagram_by_datagram(self):
        """Read in one batch: runs of one length from one socket (gso-server's segmented
        sends), a shorter one ending a run, an empty one right after a run (an empty
        segment would vanish), a longer one, and another socket's requests cutting a run
        in two. Each reply is a datagram of its own, in order, to its sender."""
        a_first = [b"a%04d" % i for i in range(12)] + [b"abc", b"a0012", b"", b"a-longer-one"]
        b_all = [b"b%04d" % i for i in range(4)]
        a_last = [b"z%04d" % i for i in range(5)] + [b"zz"]
        for mode, reply in (("hello", lambda r: b"Hello, " + r + b"!"), ("echo", lambda r: r)):
            for name, extra in SERVERS.items():
                with self.subTest(server=name, mode=mode), \
                        running(self.built[name], "64", mode, *extra) as (proc, address), \
                        udp_socket() as a, udp_socket() as b:
                    with stopped(proc):
                        for request in a_first[:6]:
                            a.sendto(request, address)
                        for request in b_all:
                            b.sendto(request, address)
                        for request in a_first[6:] + a_last:
                            a.sendto(request, address)
                    self.assertEqual(self.receive(a, len(a_first) + len(a_last)), [reply(r) for r in a_first + a_last])
                    self.assertEqual(self.receive(b, len(b_all)), [reply(r) for r in b_all])

    def test_trains_are_answered_datagram_by_datagram(self):
        """UDP_SEGMENT sends: on loopback each reaches gro-server as one coalesced receive
        (and the others as separate datagrams). A train of 70 requests of 10 bytes and a
        shorter last one, then one of 3 after a plain datagram; each reply its own datagram,
        in order (gro-server's segmented sends carry at most 64)."""
        first = [b"t%09d" % i for i in range(70)] + [b"end"]
        second = [b"u%09d" % i for i in range(3)]
        for mode, reply in (("hello", lambda r: b"Hello, " + r + b"!"), ("echo", lambda r: r)):
            for name, extra in SERVERS.items():
                with self.subTest(server=name, mode=mode), \
                        running(self.built[name], "64", mode, *extra) as (proc, address), udp_socket() as a:
                    with stopped(proc):
                        a.setsockopt(socket.IPPROTO_UDP, udptool.UDP_SEGMENT, 10)
                        a.sendto(b"".join(first[:40]), address)  # the kernel's limit: 64 a send
                        a.sendto(b"".join(first[40:]), address)
                        a.setsockopt(socket.IPPROTO_UDP, udptool.UDP_SEGMENT, 0)
                        a.sendto(b"plain", address)
                        a.setsockopt(socket.IPPROTO_UDP, udptool.UDP_SEGMENT, 10)
                        a.sendto(b"".join(second), address)
                    expected = [reply(r) for r in first + [b"plain"] + second]
                    self.assertEqual(self.receive(a, len(expected)), expected)

    def test_the_relay_sends_every_datagram_to_every_member_the_sender_included(self):
        with running(self.built["relay"], "64") as (proc, address), udp_socket() as a, udp_socket() as b, \
                udp_socket() as c:
            # A source is a member from its first datagram on, and gets its own copy.
            a.sendto(b"a joins", address)
            self.assertEqual(self.receive(a, 1), [b"a joins"])
            b.sendto(b"b joins", address)
            self.assertEqual(self.receive(a, 1), [b"b joins"])
            self.assertEqual(self.receive(b, 1), [b"b joins"])
            c.sendto(b"", address)
            for member in (a, b, c):
                self.assertEqual(self.receive(member, 1), [b""])
            # A burst, read in one batch: every member gets every datagram, in order.
            sent = []
            with stopped(proc):
                for i in range(10):
                    for sender, tag in ((a, b"a"), (b, b"b"), (c, b"c")):
                        datagram = tag + b"%02d" % i + bytes(range(i * 20))
                        sender.sendto(datagram, address)
                        sent.append(datagram)
            for member in (a, b, c):
                self.assertEqual(self.receive(member, len(sent)), sent)

    def test_the_relay_whole_sends_with_dont_fragment_and_ip_id_0_and_otherwise_not(self):
        for extra, whole in (((), False), (("whole",), True)):
            with self.subTest(whole=whole), udptool.capture("lo") as capture, \
                    running(self.built["relay"], "64", *extra) as (proc, address), udp_socket() as a:
                for i in range(8):
                    a.sendto(b"%d" % i, address)
                    self.assertEqual(self.receive(a, 1), [b"%d" % i])
                sent = [(p["df"], p["id"]) for p in udptool.captured(capture) if p["sport"] == address[1]]
                self.assertGreaterEqual(len(sent), 8, sent)
                if whole:
                    self.assertEqual(set(sent), {(True, 0)})
                else:
                    self.assertTrue(any(ident != 0 for _, ident in sent), sent)

    def test_bad_arguments_exit_2_with_a_usage_line(self):
        cases = [("mmsg-server", []), ("mmsg-server", ["9", "65", "hello"]), ("gso-server", ["9", "64", "hi"]),
                 ("gro-server", ["9", "64", "echo", "1.2.3.4", "x"]), ("gro-server", ["9", "65", "echo"]),
                 ("spin-server", ["9", "64", "echo"]), ("spin-server", ["9", "0", "echo", "50"]),
                 ("relay", ["0", "64"]), ("relay", ["9"]), ("relay", ["9", "64", "hole"])]
        for name, args in cases:
            result = subprocess.run([self.built[name], *args], capture_output=True, text=True, timeout=WAIT)
            self.assertEqual(result.returncode, 2, (name, args, result.stderr))
            self.assertTrue(result.stderr.startswith("usage: %s PORT" % name), (name, args, result.stderr))


if __name__ == "__main__":
    unittest.main()

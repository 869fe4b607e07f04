"""`hello bench chat`: every delivery counted against a real hellod, against the C relay
(bench/reference/relay.c) with --wire raw, and against a relay that loses, duplicates and
reorders on purpose, whose faults the report must name exactly."""
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Hellod, TestCase, bin_dir, build_references, hello

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench(port, *args):
    result = hello("bench", "chat", "--port", str(port), "--json", *args, timeout=30)
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else result.stderr


class FaultyRelay(threading.Thread):
    """relay.c's no-protocol, in Python, with faults of its own: of the messages (all
    but the registrations), #n with n % 10 == 3 is not sent to the first member, n % 10 == 5
    is sent twice to the second, and n % 20 == 7 is held back and sent to everyone after
    n + 4 (from the same sender, in a room of 4 sending in turn). It counts what it did."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.members, self.lost, self.duplicated, self.reordered = [], 0, 0, 0
        self.held = {}  # released after message number: datagram
        self.stopping = False

    def run(self):
        n = 0
        while not self.stopping:
            try:
                datagram, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            if peer not in self.members:
                self.members.append(peer)
            if datagram.startswith(b"r"):
                continue  # a registration: not part of the load
            n += 1
            if n % 20 == 7:
                self.held[n + 4] = datagram
                continue
            for i, member in enumerate(self.members):
                if n % 10 == 3 and i == 0:
                    self.lost += 1
                    continue
                self.sock.sendto(datagram, member)
                if n % 10 == 5 and i == 1:
                    self.sock.sendto(datagram, member)
                    self.duplicated += 1
            if n in self.held:
                late = self.held.pop(n)
                for member in self.members:
                    self.sock.sendto(late, member)
                self.reordered += len(self.members)

    def stop(self):
        self.stopping = True
        self.join(timeout=5)
        self.lost += len(self.held) * len(self.members)  # never released
        self.sock.close()


class ChatBenchTest(TestCase):
    def test_every_member_gets_every_message_of_its_room_from_hellod(self):
        limits = ["--chat-memberships-per-prefix", "16", "--chat-message-rate", "1000", "--chat-message-burst", "1000"]
        with Hellod("--listen", "chat@127.0.0.1:0", *limits) as server:
            code, report = bench(server.port, "--members", "6", "--rooms", "2", "--rate", "300", "--duration", "1",
                                 "--size", "100", "--server-pid", str(server.proc.pid))
            self.assertEqual(code, 0, report)
            self.assertGreaterEqual(report["sent"], 290, report)
            # Two rooms of three: each message reaches its sender and the two others.
            self.assertEqual(report["expected"], report["sent"] * 3, report)
            self.assertEqual(report["deliveries"], report["sent"] * 3, report)
            for fault in ("lost", "duplicated", "reordered", "wrong"):
                self.assertEqual(report[fault], 0, (fault, report))
            self.assertGreater(report["server"]["peak_rss_kb"], 0, report)  # CPU: ticks of 10 ms, maybe 0 here
            self.assertGreater(report["latency_us"]["p50"], 0, report)

    def test_a_relay_at_its_default_limits_throttles_and_the_bench_says_so(self):
        # 5 messages/s per member by default: 100/s from 2 members is far over it.
        with Hellod("--listen", "chat@127.0.0.1:0") as server:
            code, report = bench(server.port, "--members", "2", "--rate", "100", "--duration", "1", "--timeout", "0.3")
            self.assertEqual(code, 1, report)
            self.assertGreater(report["lost"], 0, report)
            self.assertEqual(report["deliveries"] + report["lost"], report["expected"], report)

    def test_raw_mode_against_the_c_relay(self):
        with tempfile.TemporaryDirectory() as tmp:
            binary = build_references(tmp)["relay"]
            port = free_port()
            relay = subprocess.Popen([binary, str(port), "64"])
            try:
                time.sleep(0.2)
                code, report = bench(port, "--wire", "raw", "--members", "5", "--rate", "300", "--duration", "1")
            finally:
                relay.kill()
                relay.wait()
        self.assertEqual(code, 0, report)
        self.assertEqual(report["protocol"], "raw")
        self.assertEqual(report["deliveries"], report["sent"] * 5, report)
        self.assertEqual(report["lost"] + report["duplicated"] + report["reordered"], 0, report)

    def test_lost_duplicated_and_reordered_deliveries_are_each_counted(self):
        relay = FaultyRelay()
        relay.start()
        try:
            code, report = bench(relay.port, "--wire", "raw", "--members", "4", "--rate", "200", "--duration", "1")
        finally:
            relay.stop()
        self.assertEqual(code, 1, report)
        self.assertGreater(relay.lost * relay.duplicated * relay.reordered, 0)
        self.assertEqual((report["lost"], report["duplicated"], report["reordered"]),
                         (relay.lost, relay.duplicated, relay.reordered), report)

    def test_anonymous_rss_stays_flat_over_messages_and_joins(self):
        """bench/chat_soak.py, scaled down to 150,000 messages and 20,000 joins and leaves
        (PERFORMANCE.md has the full run's figures): after a warm-up of a tenth of each,
        anonymous RSS grows by at most 64 KiB (tables are allocated at start; a leak of a
        few bytes per message or join would show as megabytes). Losses are the other
        tests' business: on a machine busy with other work, a relay descheduled for long
        enough may overflow a queue."""
        result = subprocess.run([os.path.join(ROOT, "bench", "chat_soak.py"), "--messages", "150000", "--rate", "25000",
                                 "--joins", "20000", "--bin-dir", bin_dir()], capture_output=True, text=True, timeout=90)
        self.assertIn(result.returncode, (0, 1), result.stdout + result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual(report["joins_and_leaves"], 20000, report)
        self.assertGreater(report["messages"], 140000, report)
        self.assertLessEqual(report["growth_over_messages_kb"], 64, report)
        self.assertLessEqual(report["growth_over_joins_kb"], 64, report)

    def test_bad_arguments_exit_64_in_one_line(self):
        for args in (["--members", "0"], ["--wire", "raw", "--rooms", "2", "--members", "4"], ["--size", "10-20"],
                     ["--size", "2000"], ["--rooms", "9", "--members", "8"],
                     # the request bench's own options
                     ["--requests", "5"], ["--flows", "8"], ["--window", "4"], ["--mode", "echo"]):
            result = hello("bench", "chat", "--port", "9", *args, timeout=10)
            self.assertEqual(result.returncode, 64, (args, result.stderr))
            self.assertEqual(result.stderr.count("\n"), 1, (args, result.stderr))
            self.assertEqual(result.stdout, "")


if __name__ == "__main__":
    unittest.main()

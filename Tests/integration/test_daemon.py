"""hellod from the outside: arguments, addresses, modes, signals, bytes on the wire."""
import json
import re
import signal
import socket
import subprocess
import time

from harness import (HELLOD, VERSION, Hellod, TestCase, counters, exchange, hello, hello_process,
                     posix_timers, share_file_table, threads)


class Arguments(TestCase):
    def run_hellod(self, *args):
        return subprocess.run([HELLOD, *args], capture_output=True, text=True, timeout=10)

    def test_help_and_version(self):
        result = self.run_hellod("--help")
        self.assertEqual(result.returncode, 0)
        for option in ("--listen", "--mode", "--batch", "--max-datagram", "--workers", "--log-level"):
            self.assertIn(option, result.stdout)
        version = self.run_hellod("--version")
        self.assertEqual((version.returncode, version.stdout.strip()), (0, VERSION))

    def test_a_bad_argument_is_one_line_naming_it_and_exit_64(self):
        cases = {
            ("--batch", "0"): "--batch",
            ("--batch", "x"): "--batch",
            ("--listen", "nowhere"): "--listen",
            ("--listen", "127.0.0.1:70000"): "--listen",
            ("--mode", "shout"): "--mode",
            ("--max-datagram", "65528"): "--max-datagram",
            ("--workers", "0"): "--workers",
            ("--chat-fanout-us", "1000001"): "--chat-fanout-us",
            ("--chat-unproven-answer-rate", "0"): "--chat-unproven-answer-rate",
            ("--chat-unproven-answer-burst", "0"): "--chat-unproven-answer-burst",
            ("--chat-repair-bytes-rate", "0"): "--chat-repair-bytes-rate",
            # Under one largest datagram: a long event could never come again.
            ("--chat-repair-bytes-burst", "1231"): "--chat-repair-bytes-burst",
            # Each in range, together 400 GiB of tables: more than any machine here has.
            ("--listen", "chat@127.0.0.1:0", "--chat-rooms", "65536", "--chat-members", "4096"): "--chat-rooms x --chat-members",
            ("--frobnicate",): "--frobnicate",
        }
        for args, named in cases.items():
            with self.subTest(args=args):
                result = self.run_hellod(*args)
                self.assertEqual(result.returncode, 64)
                self.assertEqual(result.stdout, "")
                lines = result.stderr.splitlines()
                self.assertEqual(len(lines), 1, result.stderr)
                self.assertTrue(lines[0].startswith("hellod: "), lines[0])
                self.assertIn(named, lines[0])

    def test_a_port_in_use_is_one_line_naming_the_address_and_exit_1(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            address = "127.0.0.1:%d" % taken.getsockname()[1]
            result = self.run_hellod("--listen", address)
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(address, lines[0])
        self.assertIn("Address already in use", lines[0])


class Serving(TestCase):
    def test_the_start_line_names_services_batch_and_every_address(self):
        with Hellod("--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--mode", "echo", "--batch", "16") as d:
            self.assertEqual(len(d.addresses), 2)
            self.assertTrue(d.addresses[0].startswith("echo@127.0.0.1:"))
            self.assertTrue(d.addresses[1].startswith("echo@[::1]:"))
            self.assertIn("services echo on 2", d.start_line)
            self.assertIn("batch 16", d.start_line)
            self.assertEqual(d.origin, "bound")

    def test_ipv4_and_ipv6_with_batch_1_and_64(self):
        for batch in ("1", "64"):
            for listen, family, host in (("127.0.0.1:0", socket.AF_INET, "127.0.0.1"),
                                         ("[::1]:0", socket.AF_INET6, "::1")):
                with self.subTest(batch=batch, listen=listen), Hellod("--listen", listen, "--batch", batch) as d:
                    result = hello("--host", host, "--port", str(d.port), "Michael", "Tracy", "Sarah")
                    self.assertEqual(result.stdout, "Hello, Michael!\nHello, Tracy!\nHello, Sarah!\n")
                    self.assertEqual(result.returncode, 0)
                    reply, source = exchange(family, (host, d.port), b"raw")
                    self.assertEqual(reply, b"Hello, raw!")
                    self.assertEqual(source[:2], (host, d.port))

    def test_the_default_dual_stack_socket_answers_ipv4_and_ipv6(self):
        with Hellod("--listen", "0") as d:  # [::]:PORT, as with no --listen at all
            self.assertTrue(d.addresses[0].startswith("hello@[::]:"))
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", d.port), b"four")[0], b"Hello, four!")
            self.assertEqual(exchange(socket.AF_INET6, ("::1", d.port), b"six")[0], b"Hello, six!")

    def test_replies_leave_from_the_address_asked(self):
        for listen in ("0.0.0.0:0", "[::]:0"):
            with self.subTest(listen=listen), Hellod("--listen", listen) as d:
                for asked in ("127.0.0.2", "127.0.0.3", "127.0.0.1"):
                    reply, source = exchange(socket.AF_INET, (asked, d.port), b"where")
                    self.assertEqual((reply, source), (b"Hello, where!", (asked, d.port)))
                # The hello client connects its socket: it hears only the address it asked.
                result = hello("--host", "127.0.0.2", "--port", str(d.port), "--timeout", "1", "Sarah")
                self.assertEqual((result.returncode, result.stdout), (0, "Hello, Sarah!\n"))

    def test_two_workers_share_one_port(self):
        with Hellod("--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--workers", "2") as d:
            self.assertEqual(len(d.addresses), 4)
            self.assertIn("sockets 4", d.start_line)
            v4 = int(d.addresses[0].rsplit(":", 1)[1])
            v6 = int(d.addresses[2].rsplit(":", 1)[1])
            self.assertEqual(d.addresses, ["hello@127.0.0.1:%d" % v4] * 2 + ["hello@[::1]:%d" % v6] * 2)  # a port, two sockets
            # 16 flows to each family at once.
            benches = [hello_process("bench", "--host", host, "--port", str(port), "--flows", "16", "--window", "8",
                                     "--requests", "500", "--duration", "30", "--json")
                       for host, port in (("127.0.0.1", v4), ("::1", v6))]
            reports = [json.loads(b.communicate(timeout=60)[0]) for b in benches]
            for report in reports:
                self.assertEqual((report["answered"], report["lost"], report["wrong"]), (8000, 0, 0))
            found = counters(d.stop()[1])
        self.assertEqual(len(found["per_socket"]), 4)
        self.assertEqual((sum(found["per_socket"][:2]), sum(found["per_socket"][2:])), (8000, 8000))
        self.assertTrue(all(n > 0 for n in found["per_socket"]), found["per_socket"])  # each socket served flows
        self.assertBalanced(found)

    def test_each_worker_thread_has_a_file_table_of_its_own(self):
        # Its system calls then take no reference to its socket (PERFORMANCE.md, "Fifth
        # pass"); and it still serves.
        with Hellod("--listen", "127.0.0.1:0", "--listen", "echo@127.0.0.1:0") as d:
            names = threads(d.proc.pid)
            workers = sorted(tid for tid, name in names.items() if name.startswith("hellod-w"))
            self.assertEqual(len(workers), 2, names)
            for worker in workers:
                self.assertFalse(share_file_table(d.proc.pid, worker), names[worker])
            self.assertFalse(share_file_table(*workers))
            self.assertTrue(share_file_table(d.proc.pid, d.proc.pid))  # kcmp itself answers
            ports = [int(a.rsplit(":", 1)[1]) for a in d.addresses]
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", ports[0]), b"Sarah")[0], b"Hello, Sarah!")
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", ports[1]), b"Sarah")[0], b"Sarah")

    def test_each_worker_has_a_timer_of_its_own_for_its_wake_interval(self):
        # A worker sleeps in its receive without a timeout; a POSIX timer signals that
        # thread alone (SIGRTMIN, on the monotonic clock) every wake interval (the services'
        # 100 ms tick, a quarter of a watchdog's interval if shorter).
        with Hellod("--listen", "127.0.0.1:0", "--listen", "chat@127.0.0.1:0") as d:
            workers = sorted(tid for tid, name in threads(d.proc.pid).items() if name.startswith("hellod-w"))
            self.assertEqual(len(workers), 2)
            timers = sorted(posix_timers(d.proc.pid), key=lambda t: int(t["notify"].rsplit(".", 1)[1]))
            self.assertEqual(timers, [{"signal": signal.SIGRTMIN, "notify": "signal/tid.%d" % tid,
                                       "clock": time.CLOCK_MONOTONIC} for tid in workers])

    def test_echo_mode(self):
        with Hellod("--listen", "127.0.0.1:0", "--mode", "echo") as d:
            for payload in (b"Michael", b"", b"\x00\xff\xfe", bytes(range(256)) * 100):
                self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", d.port), payload)[0], payload)

    def test_bytes_are_bytes(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            for payload in (b"", b"A", b"\xff\xfe\x00\xc3(", "Zo\u00eb \u4f60\u597d".encode()):
                reply, _ = exchange(socket.AF_INET, ("127.0.0.1", d.port), payload)
                self.assertEqual(reply, b"Hello, " + payload + b"!")

    def test_the_largest_payloads_udp_allows(self):
        with Hellod("--listen", "[::]:0", "--mode", "echo") as d:
            v4 = bytes(i % 251 for i in range(65507))
            self.assertEqual(exchange(socket.AF_INET, ("127.0.0.1", d.port), v4)[0], v4)
            v6 = bytes(i % 241 for i in range(65527))
            self.assertEqual(exchange(socket.AF_INET6, ("::1", d.port), v6)[0], v6)

    def test_larger_than_max_datagram_is_dropped_and_counted(self):
        with Hellod("--listen", "127.0.0.1:0", "--max-datagram", "100") as d:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                s.sendto(b"x" * 101, ("127.0.0.1", d.port))
                self.assertRaises(socket.timeout, s.recv, 70000)
                s.sendto(b"y" * 100, ("127.0.0.1", d.port))
                self.assertEqual(s.recv(70000), b"Hello, " + b"y" * 100 + b"!")
            code, rest = d.stop()
        self.assertEqual(code, 0)
        self.assertIn("read 2, replied 1, dropped 1 (truncated 1)", rest)

    def test_a_hello_reply_too_large_for_udp_is_not_sent_and_counted(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                s.sendto(b"z" * 65500, ("127.0.0.1", d.port))  # + 8 > 65507
                self.assertRaises(socket.timeout, s.recv, 70000)
                s.sendto(b"z" * 65499, ("127.0.0.1", d.port))  # + 8 = 65507: fits
                self.assertEqual(len(s.recv(70000)), 65507)
            code, rest = d.stop()
        self.assertIn("dropped 1 (reply-too-large 1)", rest)


class Pacing(TestCase):
    def test_a_few_peers_in_step_are_never_kept_waiting_by_coalesce_us(self):
        """--coalesce-us pauses after a partly full batch so that the next one fills; after a
        batch of a few requests (here four probes in step, read together since hellod sleeps
        at once with --spin-us 0) it must not: the pause would be their whole round trip."""
        with Hellod("--listen", "127.0.0.1:0", "--coalesce-us", "10000", "--spin-us", "0",
                    "--rate-limit", "0") as d:
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
            try:
                rounds = []
                for n in range(40):
                    start = time.monotonic()
                    for c in clients:
                        c.sendto(b"probe%d" % n, ("127.0.0.1", d.port))
                    for c in clients:
                        c.settimeout(2)
                        self.assertEqual(c.recv(100), b"Hello, probe%d!" % n)
                    rounds.append(time.monotonic() - start)
            finally:
                for c in clients:
                    c.close()
            code, rest = d.stop()
        self.assertEqual(code, 0)
        self.assertIn("read 160, replied 160, dropped 0", rest)
        # A round kept waiting takes the 10 ms pause; one that is not, well under a millisecond
        # (a loaded machine may stretch a few rounds, not the median).
        rounds.sort()
        self.assertLess(rounds[len(rounds) // 2], 0.005, "rounds (s): %s" % ["%.4f" % r for r in rounds])


class Signals(TestCase):
    def test_sigterm_and_sigint_exit_0_with_a_stop_line(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(sig=sig), Hellod("--listen", "127.0.0.1:0") as d:
                hello("--port", str(d.port), "Michael", "Tracy", "Sarah")
                code, rest = d.stop(sig, timeout=3)
                self.assertEqual(code, 0)
                self.assertIn("stopped on %s" % sig.name, rest)
                self.assertIn("read 3, replied 3, dropped 0", rest)

    def test_sigterm_under_load_answers_every_datagram_read(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            load = hello_process("bench", "--port", str(d.port), "--duration", "3", "--json")
            time.sleep(1)
            code, rest = d.stop(timeout=3)
            load.communicate(timeout=10)
        self.assertEqual(code, 0)
        match = re.search(r"read (\d+), replied (\d+), dropped (\d+)", rest)
        self.assertIsNotNone(match, rest)
        read, replied, dropped = map(int, match.groups())
        self.assertGreater(read, 0)
        self.assertEqual(read, replied + dropped)
        self.assertEqual(dropped, 0)


"""The hello client: greetings in order, stdin, losses, and the bench."""
import json
import time

from harness import Hellod, TestCase, hello
from netns import Loopback


class Client(TestCase):
    def test_michael_tracy_sarah(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            result = hello("--port", str(d.port), "Michael", "Tracy", "Sarah")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout, "Hello, Michael!\nHello, Tracy!\nHello, Sarah!\n")
        self.assertEqual(result.stderr, "")

    def test_names_from_standard_input(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            result = hello("--port", str(d.port), input="Ann\nBob\n\nZo\u00eb\n")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout, "Hello, Ann!\nHello, Bob!\nHello, !\nHello, Zo\u00eb!\n")

    def test_echo_server(self):
        with Hellod("--listen", "[::1]:0", "--mode", "echo") as d:
            result = hello("--host", "::1", "--port", str(d.port), "Michael")
        self.assertEqual((result.returncode, result.stdout), (0, "Michael\n"))

    def test_no_server_exits_1_after_its_retries_naming_what_was_lost(self):
        with Loopback() as net:  # a network of the test's own, where no one listens
            started = time.monotonic()
            result = hello("--port", "9999", "--timeout", "0.2", "--retries", "2", "Michael", "Tracy",
                           prefix=net.prefix())
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        self.assertIn('no reply to "Michael"', result.stderr)
        self.assertIn("after 3 attempt(s)", result.stderr)
        self.assertIn("2 of 2 got no reply: Michael, Tracy", result.stderr)

    def test_a_name_that_does_not_resolve_is_one_line_and_exit_68(self):
        # EX_NOHOST, not 64: the arguments are well formed, the name is unknown. ".invalid"
        # never resolves (RFC 2606); each subcommand connects the same way.
        for args in (["Michael"], ["bench", "--duration", "1"], ["chat", "--room", "r", "--nick", "ada"]):
            with self.subTest(args=args[0]):
                result = hello(*args[:1], "--host", "no-such-host.invalid", *args[1:], input="")
                self.assertEqual((result.returncode, result.stdout), (68, ""))
                self.assertRegex(result.stderr, r"\Ahello: cannot resolve no-such-host\.invalid: [^\n]+\n\Z")

    def test_a_silent_server_times_out_within_the_bound(self):
        import socket
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))
            started = time.monotonic()
            result = hello("--port", str(silent.getsockname()[1]), "--timeout", "0.3", "--retries", "1", "Sarah")
            elapsed = time.monotonic() - started
            silent.settimeout(0.1)
            seen = [silent.recv(100), silent.recv(100)]
        self.assertEqual(result.returncode, 1)
        self.assertEqual(seen, [b"Sarah", b"Sarah"])  # the first attempt and one retry
        self.assertIn("timed out", result.stderr)
        self.assertLess(elapsed, 5)

    def test_bad_arguments_exit_64(self):
        result = hello("--timeout", "-1", "x")
        self.assertEqual(result.returncode, 64)
        self.assertEqual(len(result.stderr.splitlines()), 1)


class Bench(TestCase):
    def bench(self, port, *args, prefix=()):
        result = hello("bench", "--port", str(port), "--json", *args, timeout=60, prefix=prefix)
        return result.returncode, json.loads(result.stdout)

    def test_requests_is_the_default_and_takes_only_its_own_options(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            for command in (["bench"], ["bench", "requests"]):
                result = hello(*command, "--port", str(d.port), "--json", "--requests", "50", "--flows", "1", timeout=60)
                self.assertEqual(result.returncode, 0, (command, result.stderr))
                self.assertEqual(json.loads(result.stdout)["answered"], 50, command)
        for chat_only in (["--members", "4"], ["--wire", "raw"], ["--server-pid", "1"]):
            result = hello("bench", "requests", "--port", "9", *chat_only, timeout=10)
            self.assertEqual(result.returncode, 64, (chat_only, result.stderr))
            self.assertEqual(result.stderr.count("\n"), 1, (chat_only, result.stderr))

    def test_8_flows_x_32_in_flight_x_2000_requests(self):
        for batch in ("1", "64"):
            with self.subTest(batch=batch), Hellod("--listen", "127.0.0.1:0", "--batch", batch) as d:
                code, report = self.bench(d.port, "--flows", "8", "--window", "32", "--requests", "2000",
                                          "--duration", "30")
                self.assertEqual(code, 0)
                self.assertEqual((report["sent"], report["answered"], report["lost"], report["wrong"]),
                                 (16000, 16000, 0, 0))
                self.assertGreater(report["rtt_us"]["p50"], 0)

    def test_echo_mode_and_mixed_sizes_are_checked_byte_for_byte(self):
        with Hellod("--listen", "[::1]:0", "--mode", "echo") as d:
            code, report = self.bench(d.port, "--host", "::1", "--mode", "echo", "--size", "16-3000",
                                      "--requests", "500", "--flows", "4")
        self.assertEqual(code, 0)
        self.assertEqual((report["answered"], report["wrong"]), (2000, 0))

    def test_a_reply_in_the_wrong_mode_is_wrong(self):
        with Hellod("--listen", "127.0.0.1:0", "--mode", "echo") as d:
            code, report = self.bench(d.port, "--requests", "100", "--flows", "1", "--timeout", "0.3")
        self.assertEqual(code, 1)
        self.assertEqual(report["answered"], 0)
        self.assertEqual(report["wrong"], 100)

    def test_open_loop_against_no_server_counts_every_request_lost(self):
        with Loopback() as net:  # a network of the test's own, where no one listens
            code, report = self.bench(9999, "--rate", "2000", "--duration", "0.5", "--timeout", "0.2",
                                      prefix=net.prefix())
        self.assertEqual(code, 1)
        self.assertEqual(report["answered"], 0)
        self.assertEqual(report["lost"], report["sent"])

    def test_open_loop_rate(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            code, report = self.bench(d.port, "--rate", "5000", "--duration", "1")
        self.assertEqual(code, 0)
        self.assertEqual(report["lost"], 0)
        self.assertEqual(report["answered"], report["sent"])
        self.assertGreater(report["sent"], 2500)  # a bound on the schedule, not on speed
        self.assertLessEqual(report["sent"], 5100)

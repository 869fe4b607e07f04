"""hello check: a health probe per service, one line, exit 0 (OK) or 2 (CRITICAL)."""
import socket
import threading
import time

import chatwire
from harness import Hellod, TestCase, hello


class Responder:
    """A UDP socket on 127.0.0.1 that answers each datagram with `answer(datagram)`:
    bytes, a list of datagrams, or None (no answer); from a thread, until closed."""

    def __init__(self, answer):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.done = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.done:
            try:
                datagram, source = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            replies = self.answer(datagram)
            for reply in [replies] if isinstance(replies, bytes) else replies or []:
                self.sock.sendto(reply, source)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.done = True
        self.thread.join()
        self.sock.close()


def free_port():
    """A UDP port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Check(TestCase):
    def assertOneLine(self, result, code, prefix):
        self.assertEqual(result.returncode, code, result)
        self.assertRegex(result.stdout, r"\A[^\n]+\n\Z")
        self.assertTrue(result.stdout.startswith(prefix), result.stdout)

    def test_each_service_is_ok(self):
        with Hellod("--listen", "hello@127.0.0.1:0", "--listen", "echo@127.0.0.1:0",
                    "--listen", "chat@127.0.0.1:0") as d:
            ports = [int(a.rsplit(":", 1)[1]) for a in d.addresses]
            for service, port in zip(("hello", "echo", "chat"), ports):
                with self.subTest(service=service):
                    result = hello("check", "--service", service, "--port", str(port))
                    self.assertOneLine(result, 0, service.upper() + " OK - ")
                    self.assertRegex(result.stdout, r" in [0-9.]+ ms\n\Z")
                    self.assertEqual(result.stderr, "")

    def test_the_hello_answer_is_the_greeting_of_the_probe(self):
        with Hellod("--listen", "hello@127.0.0.1:0") as d:
            result = hello("check", "--service", "hello", "--port", str(d.port))
        self.assertRegex(result.stdout, r'\AHELLO OK - "Hello, check-[0-9a-f]+!" in [0-9.]+ ms\n\Z')

    def test_nothing_listening_is_critical(self):
        port = free_port()
        for service in ("hello", "echo", "chat"):
            with self.subTest(service=service):
                result = hello("check", "--service", service, "--port", str(port), "--timeout", "2")
                self.assertOneLine(result, 2, service.upper() + " CRITICAL - ")
                self.assertIn("connection refused", result.stdout)

    def test_a_hello_probe_answered_by_an_echo_service_is_critical(self):
        with Hellod("--listen", "echo@127.0.0.1:0") as d:
            result = hello("check", "--service", "hello", "--port", str(d.port))
        self.assertOneLine(result, 2, 'HELLO CRITICAL - wrong answer: "check-')

    def test_an_echo_probe_answered_by_a_hello_service_is_critical(self):
        with Hellod("--listen", "hello@127.0.0.1:0") as d:
            result = hello("check", "--service", "echo", "--port", str(d.port))
        self.assertOneLine(result, 2, 'ECHO CRITICAL - wrong answer: "Hello, check-')

    def test_a_hello_probe_answered_by_a_near_greeting_is_critical(self):
        answer = lambda d: b"Hello, " + d + b"!!"  # noqa: E731
        with Responder(answer) as r:
            result = hello("check", "--service", "hello", "--port", str(r.port))
        self.assertOneLine(result, 2, 'HELLO CRITICAL - wrong answer: "Hello, check-')

    def test_a_chat_probe_answered_with_another_tag_is_critical(self):
        # A CHALLENGE for someone else is not the answer: ignored until the timeout.
        def answer(datagram):
            tag = chatwire.decode_request(datagram).tag
            return chatwire.challenge(tag ^ 1, chatwire.cookie(1, 2))
        with Responder(answer) as r:
            started = time.monotonic()
            result = hello("check", "--service", "chat", "--port", str(r.port), "--timeout", "0.3")
        self.assertLess(time.monotonic() - started, 5)
        self.assertOneLine(result, 2, "CHAT CRITICAL - no answer within 0.3 s")
        self.assertIn("CHALLENGE with another tag", result.stdout)

    def test_a_chat_probe_answered_with_its_tag_but_not_a_challenge_is_critical(self):
        def answer(datagram):
            return chatwire.header(chatwire.REFUSED, chatwire.decode_request(datagram).tag) + bytes([1])
        with Responder(answer) as r:
            result = hello("check", "--service", "chat", "--port", str(r.port))
        self.assertOneLine(result, 2, "CHAT CRITICAL - wrong answer: REFUSED")

    def test_a_chat_probe_answered_by_an_echo_service_is_critical(self):
        with Hellod("--listen", "echo@127.0.0.1:0") as d:
            result = hello("check", "--service", "chat", "--port", str(d.port))
        self.assertOneLine(result, 2, "CHAT CRITICAL - wrong answer: its own JOIN back")

    def test_a_chat_probe_answered_right_by_a_fake_relay_is_ok(self):
        def answer(datagram):
            return chatwire.challenge(chatwire.decode_request(datagram).tag, chatwire.cookie(1, 2))
        with Responder(answer) as r:
            result = hello("check", "--service", "chat", "--port", str(r.port))
        self.assertOneLine(result, 0, "CHAT OK - CHALLENGE in ")

    def test_a_stale_datagram_is_ignored(self):
        # First a datagram that answers no probe of this one, then the answer: OK.
        with Responder(lambda d: [b"Hello, someone else!", b"Hello, " + d + b"!"]) as r:
            result = hello("check", "--service", "hello", "--port", str(r.port))
        self.assertOneLine(result, 0, 'HELLO OK - "Hello, check-')

    def test_a_silent_server_is_critical_after_the_timeout(self):
        with Responder(lambda d: None) as r:
            for service in ("hello", "echo", "chat"):
                with self.subTest(service=service):
                    started = time.monotonic()
                    result = hello("check", "--service", service, "--port", str(r.port), "--timeout", "0.3")
                    elapsed = time.monotonic() - started
                    self.assertOneLine(result, 2, service.upper() + " CRITICAL - no answer within 0.3 s\n")
                    self.assertGreaterEqual(elapsed, 0.3)
                    self.assertLess(elapsed, 5)

    def test_bad_arguments_are_one_line_and_exit_64(self):
        for args in (["--service", "ftp"], [], ["--service", "hello", "--timeout", "0"],
                     ["--service", "hello", "--port", "70000"]):
            with self.subTest(args=args):
                result = hello("check", *args)
                self.assertEqual((result.returncode, result.stdout), (64, ""))
                self.assertRegex(result.stderr, r"\Ahello: [^\n]+\n\Z")

    def test_a_host_that_does_not_resolve_is_exit_68(self):
        result = hello("check", "--service", "hello", "--host", "no-such-host.invalid")
        self.assertEqual((result.returncode, result.stdout), (68, ""))
        self.assertRegex(result.stderr, r"\Ahello: cannot resolve no-such-host\.invalid: [^\n]+\n\Z")

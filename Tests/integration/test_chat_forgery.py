"""Forged traffic cannot lock an address out of the chat relay (docs/PROTOCOL.md, "Limits"):
the answers to sources the relay has not proven (CHALLENGE, NOT A MEMBER) have a budget
per address and port, within one cap for the whole relay. A forger on other ports of the
victim's address (on loopback, 127.0.0.1: sockets of its own, chat_forger.py) spends none
of the victim's; one endpoint that floods gets burst + rate x t answers; none gets more
bytes than it sent."""
import os
import socket
import subprocess
import sys
import time
import unittest

import chatwire as wire
import test_chat_client as client_tests  # its ChatProcess (a module, so its tests do not run twice)
from chat_forger import requests as unproven_requests
from harness import Hellod, TestCase, counters

FORGER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat_forger.py")
# Forged datagrams a second: over the 10,000 the relay must stand (a forger that made
# fewer fails the test: it would prove nothing), under its default cap of 20,000 answers a
# second.
FORGED_RATE = 12_000
LEAST_RATE = 10_000
# The relay's default answers to one unproven endpoint: 20 at once, then 20 a second.
BURST, RATE = 20, 20


class Forger:
    """chat_forger.py against `port` until `stop()` (or `seconds`, a bound)."""

    def __init__(self, port, rate=FORGED_RATE, seconds=120):
        self.proc = subprocess.Popen([sys.executable, FORGER, str(port), str(rate), str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline() != "ready\n":  # bounded: it exits on its own in `seconds`
            raise AssertionError("the forger did not start")

    def stop(self):
        """(datagrams sent, seconds, bytes the relay sent back, sources sent more bytes than
        each sent)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        sent, seconds, received, over = out.split()
        return int(sent), float(seconds), int(received), int(over)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


def receive_all(sock, quiet=1.0):
    """Every datagram `sock` receives until `quiet` seconds pass without one, and when the
    last came (monotonic)."""
    got, last = [], time.monotonic()
    sock.settimeout(quiet)
    try:
        while True:
            got.append(sock.recv(2048))
            last = time.monotonic()
    except socket.timeout:
        pass
    return got, last


class ForgeryTest(TestCase):
    def relay(self, *options):
        server = Hellod("--listen", "chat@127.0.0.1:0", *options)
        self.addCleanup(server.__exit__)
        return server

    def forger(self, port):
        forger = Forger(port)
        self.addCleanup(forger.kill)
        time.sleep(1.0)  # some 12,000 forged before the victim starts: any shared budget spent
        return forger

    def socket(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # nothing the relay sends lost here
        s.bind(("127.0.0.1", 0))
        self.addCleanup(s.close)
        return s

    def test_hello_chat_joins_says_and_rejoins_after_a_restart_under_forgery_from_its_address(self):
        server = self.relay()
        port = server.port
        forger = self.forger(port)
        # `hello chat`'s default retries: 6 JOINs, then it gives up (exit 1).
        ada = client_tests.ChatProcess(port, "ada", retries=5)
        self.addCleanup(ada.kill)
        ada.wait_for("* ada joined", timeout=20)
        ada.say("under fire")
        ada.wait_for("ada: under fire", timeout=20)  # its own copy: acknowledged
        code, _ = server.stop()
        self.assertEqual(code, 0)
        server.__exit__()
        # The same port: a restart. ada's keepalives now name a token the relay does not
        # know: it must hear NOT A MEMBER, through the forgery, to join again.
        server = Hellod("--listen", "chat@127.0.0.1:%d" % port)
        self.addCleanup(server.__exit__)
        time.sleep(1.0)  # the forgery first: ada hears of the restart by its keepalives
        ada.say("after the restart")
        ada.wait_for("ada: after the restart", timeout=30)
        sent, seconds, received, over = forger.stop()
        code, lines, stderr = ada.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        self.assertEqual(client_tests.messages(lines), ["ada: under fire", "ada: after the restart"], lines)
        code, text = server.stop()
        found = counters(text)
        self.assertBalanced(found)
        # It was told, and it joined again; and the forgery reached the relay (a busy
        # machine may slow the forger: the rate it made is in the message).
        rate = "forged %d in %.1f s, %d bytes back" % (sent, seconds, received)
        self.assertGreaterEqual(sent, LEAST_RATE * seconds, rate)
        self.assertGreaterEqual(found["chat-not-member"], 1, rate)
        self.assertGreater(found["read"], 100, rate)  # the client alone sends a handful
        self.assertGreater(found["chat-old-version"], 0, rate)  # the v1 datagrams came, and were answered
        self.assertGreater(received, 0, rate)
        self.assertEqual(over, 0, rate)  # no source got more bytes than it sent

    def test_hello_and_echos_rate_limit_per_address_does_not_reach_the_chat(self):
        # hello's and echo's limit per source address (--rate-limit), applied on loopback
        # here as it is on a network: on a chat socket, a forger on other ports of the
        # victim's address would spend it and drop the victim's own datagrams. The relay
        # has budgets of its own, per endpoint before proof and per member after.
        server = self.relay("--rate-limit", "50", "--rate-burst", "20", "--rate-limit-loopback")
        forger = self.forger(server.port)
        ada = client_tests.ChatProcess(server.port, "ada", retries=5)
        self.addCleanup(ada.kill)
        ada.wait_for("* ada joined", timeout=20)
        ada.say("through")
        ada.wait_for("ada: through", timeout=20)
        forger.stop()
        code, lines, stderr = ada.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        found = counters(server.stop()[1])
        self.assertBalanced(found)
        self.assertEqual(found.get("rate-limited", 0), 0, found)

    def test_a_victims_tries_are_answered_under_forgery_from_other_ports_of_its_address(self):
        server = self.relay()
        forger = self.forger(server.port)
        victim = self.socket()
        address = ("127.0.0.1", server.port)
        # A JOIN without a cookie and a token the relay does not know: each try answered,
        # as `hello chat` makes them (a second apart at most).
        for request, answer in [(unproven_requests()["join"], wire.CHALLENGE),
                                (unproven_requests()["keepalive"], wire.NOT_A_MEMBER)]:
            answered = 0
            for _ in range(6):
                victim.sendto(request, address)
                victim.settimeout(1.0)
                try:
                    while wire.type_of(victim.recv(2048)) != answer:
                        pass
                    answered += 1
                except socket.timeout:
                    pass
            # The kernel may lose one under load; before the budget was per endpoint, a
            # forger on other ports of the address left none answered.
            self.assertGreaterEqual(answered, 4, "%r: %d of 6 tries answered" % (answer, answered))
        forger.stop()

    def test_one_endpoint_flooding_gets_its_burst_and_rate_and_never_more_bytes_than_it_sent(self):
        server = self.relay()
        address = ("127.0.0.1", server.port)
        # Each kind of unproven request, each from a socket of its own: a CHALLENGE to a
        # JOIN without a cookie, to a bad cookie, to a rejoin with a random token; NOT A
        # MEMBER to every token; v1's refusal to a v1 JOIN, v1's NOT A MEMBER to its tokens.
        # Each answer with the request's tag.
        for name, request in unproven_requests().items():
            with self.subTest(request=name):
                flooder = self.socket()
                start = time.monotonic()
                for _ in range(2000):
                    flooder.sendto(request, address)
                got, last = receive_all(flooder)
                if request[0] == wire.LEGACY_VERSION:
                    token = request[2:10]
                    expected = {wire.v1_refusal() if request[1] == wire.JOIN else wire.v1_not_a_member(int.from_bytes(token, "big"))}
                    self.assertEqual(set(got), expected, got[:3])
                else:
                    answer = wire.CHALLENGE if request[1] == wire.JOIN else wire.NOT_A_MEMBER
                    self.assertEqual({(wire.type_of(d), wire.tag_of(d)) for d in got}, {(answer, wire.tag_of(request))}, got[:3])
                self.assertLessEqual(len(got), BURST + RATE * (last - start) + 1, "%d answers" % len(got))
                self.assertLessEqual(sum(map(len, got)), len(request) * 2000)
                self.assertTrue(all(len(d) <= len(request) for d in got))
        found = counters(server.stop()[1])
        self.assertGreater(found["chat-rate-limited"], 0, found)

    def test_the_relays_cap_holds_over_every_source_and_both_workers(self):
        server = self.relay("--workers", "2", "--chat-unproven-answer-rate", "10", "--chat-unproven-answer-burst", "100")
        address = ("127.0.0.1", server.port)
        sources = [self.socket() for _ in range(400)]  # each its own endpoint, its budget full
        start = time.monotonic()
        for s in sources:
            s.sendto(unproven_requests()["join"], address)
        time.sleep(0.5)
        answers = 0
        for s in sources:
            s.setblocking(False)
            try:
                while s.recv(2048):
                    answers += 1
            except BlockingIOError:
                pass
        last = time.monotonic()  # every answer counted came before
        # Each worker capped on its own would answer 100 each at once: 200.
        self.assertGreaterEqual(answers, 1)
        self.assertLessEqual(answers, 100 + 10 * (last - start) + 1, "%d answers" % answers)


if __name__ == "__main__":
    unittest.main()

"""The chat relay's fan-out interval (`--chat-fanout-us`) over real sockets: a message
after a quiet interval goes to the room at once; the messages that follow within the
interval are held and go together, in one EVENTS datagram to each member; nothing is lost
or counted twice."""
import time

import chatwire as wire
import test_chat as chat  # a module, so that its tests do not run twice
from harness import Hellod, TestCase, counters, metric

drain, events = chat.drain, chat.events


class FanOutIntervalTest(TestCase):
    def joined(self, server, nick, secret):
        c = chat.Client(server.port, nick, secret)
        self.addCleanup(c.close)
        self.assertEqual(wire.type_of(c.join(b"r")), wire.WELCOME)
        return c

    def test_messages_within_the_interval_arrive_together_and_a_lone_one_at_once(self):
        # A second: long beside the few milliseconds the test's sends take.
        server = Hellod("--listen", "chat@127.0.0.1:0", "--chat-fanout-us", "1000000",
                        "--chat-message-rate", "100", "--chat-message-burst", "20")
        self.addCleanup(server.__exit__)
        ada, bob = self.joined(server, b"ada", 1), self.joined(server, b"bob", 2)
        time.sleep(1.2)  # a quiet interval: what the joins sent is out, and the next goes at once
        drain(bob.sock, 0.1)

        ada.say(1, b"first")
        bob.sock.settimeout(0.8)  # within the interval: it was not held
        first = events(bob.sock.recvfrom(2048)[0])
        self.assertEqual([(e[2], e[3]) for e in first], [(b"ada", b"first")])

        for sequence, text in ((2, b"two"), (3, b"three"), (4, b"four")):
            ada.say(sequence, text)
            time.sleep(0.01)
        got = drain(bob.sock, 2.0)
        self.assertEqual(len(got), 1, got)  # the three, held, then one datagram
        self.assertEqual([e[3] for e in events(got[0]) if e[1] == 1], [b"two", b"three", b"four"])
        sequences = [e[0] for e in first + events(got[0])]
        self.assertEqual(sequences, list(range(sequences[0], sequences[0] + 4)))

        code, text = server.stop()
        self.assertEqual(code, 0, text)
        found = counters(text)
        self.assertBalanced(found)
        self.assertEqual(found["dropped"], 0)
        self.assertEqual(metric(text.metrics, "hellod_chat_messages_total"), 4)

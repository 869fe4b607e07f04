"""The chat relay over real sockets: Python clients speaking docs/PROTOCOL.md's chat
protocol to `hellod --listen chat@127.0.0.1:0`."""
import socket
import struct
import time
import unittest

from harness import Hellod, TestCase, counters


def join(cookie, session, token, room, nick):
    body = struct.pack(">BB", 1, 1) + cookie + struct.pack(">QQ", session, token)
    body += bytes([len(room)]) + room + bytes([len(nick)]) + nick
    return body.ljust(64, b"\0")


def say(token, sequence, text):
    return struct.pack(">BBQIH", 1, 2, token, sequence, len(text)) + text


def events(datagram):
    """The events of an EVENTS datagram: (room sequence, kind, nick, text)."""
    assert datagram[:2] == bytes([1, 131]), datagram[:2]
    found, at = [], 10
    while at < len(datagram):
        sequence, kind, _session, _client = struct.unpack_from(">IBQI", datagram, at)
        at += 17
        nick = datagram[at + 1:at + 1 + datagram[at]]
        at += 1 + len(nick)
        (length,) = struct.unpack_from(">H", datagram, at)
        text = datagram[at + 2:at + 2 + length]
        at += 2 + length
        found.append((sequence, kind, nick, text))
    return found


class Client:
    def __init__(self, port, nick, session):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2)
        self.address = ("127.0.0.1", port)
        self.nick, self.session = nick, session
        self.events = []

    def ask(self, datagram):
        self.sock.sendto(datagram, self.address)
        reply, _ = self.sock.recvfrom(2048)
        return reply

    def join(self, room):
        challenge = self.ask(join(bytes(16), self.session, 0, room, self.nick))
        self.assert_type(challenge, 129)
        assert len(challenge) == 64
        welcome = self.ask(join(challenge[2:18], self.session, 0, room, self.nick))
        self.assert_type(welcome, 130)
        self.token, _instance, self.next = struct.unpack_from(">QQI", welcome, 2)

    @staticmethod
    def assert_type(datagram, type_):
        assert datagram[:2] == bytes([1, type_]), datagram[:20]

    def read_events(self, until, timeout=3):
        """Reads EVENTS until `until(self.events)` holds; bounded by `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until(self.events):
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                datagram, _ = self.sock.recvfrom(2048)
            except socket.timeout:
                raise AssertionError("events so far: %r" % self.events) from None
            self.events += events(datagram)

    def close(self):
        self.sock.close()


class ChatTest(TestCase):
    def test_two_clients_exchange_messages_each_getting_both_in_order(self):
        with Hellod("--listen", "chat@127.0.0.1:0") as server:
            ada, bob = Client(server.port, b"ada", 1), Client(server.port, b"bob", 2)
            try:
                ada.join(b"lobby")
                bob.join(b"lobby")
                said = [(ada, b"hi bob"), (bob, b"hi ada"), (ada, b"how are you?"), (bob, b"fine")]
                for sequence, (client, text) in enumerate(said, 1):
                    client.sock.sendto(say(client.token, sequence, text), client.address)
                    time.sleep(0.05)  # one order: the order they were sent in
                expected = [(c.nick, text) for c, text in said]
                for client in (ada, bob):
                    client.read_events(lambda got: len([e for e in got if e[1] == 1]) >= len(said))
                    messages = [e for e in client.events if e[1] == 1]
                    self.assertEqual([(e[2], e[3]) for e in messages], expected)
                    sequences = [e[0] for e in messages]
                    self.assertEqual(sequences, list(range(sequences[0], sequences[0] + len(said))))
                # Bob saw ada join (history) and itself.
                self.assertEqual([e[2] for e in bob.events if e[1] == 2], [b"ada", b"bob"])
            finally:
                ada.close()
                bob.close()
            code, text = server.stop()
        self.assertEqual(code, 0)
        found = counters(text)
        self.assertBalanced(found)
        self.assertEqual(found["dropped"], 0, found)


if __name__ == "__main__":
    unittest.main()

"""The chat relay over real sockets: Python clients speaking docs/PROTOCOL.md's chat
protocol to `hellod --listen chat@127.0.0.1:0` (where a test must misbehave: forge a
source over a raw socket, replay a cookie, flood, exceed a limit), and `hello chat` in pipe
mode where a real member is what is needed. A forged source is an address of loopback's
127.0.0.0/8 where the test listens, so that what the relay sends it is seen."""
import socket
import struct
import subprocess
import time
import unittest

import test_chat_client as client_tests  # its ChatProcess (a module, so its tests do not run twice)
import udptool
from harness import HELLOD, Hellod, TestCase, counters


def join(cookie, session, token, room, nick):
    body = struct.pack(">BB", 1, 1) + cookie + struct.pack(">QQ", session, token)
    body += bytes([len(room)]) + room + bytes([len(nick)]) + nick
    return body.ljust(64, b"\0")


def say(token, sequence, text):
    return struct.pack(">BBQIH", 1, 2, token, sequence, len(text)) + text


def keepalive(token, highest):
    return struct.pack(">BBQI", 1, 3, token, highest)


def resend(token, first, count):
    return struct.pack(">BBQIH", 1, 5, token, first, count)


def who(token):
    return struct.pack(">BBQ", 1, 6, token)


def nick(token, name):
    return struct.pack(">BBQ", 1, 7, token) + bytes([len(name)]) + name


def members(datagram):
    """The nicks of a MEMBERS datagram."""
    assert datagram[:2] == bytes([1, 132]), datagram[:20]
    (count,) = struct.unpack_from(">H", datagram, 10)
    nicks, at = [], 12
    for _ in range(count):
        nicks.append(datagram[at + 1:at + 1 + datagram[at]])
        at += 1 + datagram[at]
    return nicks


def forge(source, sport, port, payload):
    """One datagram to the relay from a forged source address (raw socket; root)."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.sendto(udptool.udp_packet(source, sport, "127.0.0.1", port, payload), ("127.0.0.1", 0))


def drain(sock, seconds):
    """Every datagram `sock` receives within `seconds`."""
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            got.append(sock.recvfrom(2048)[0])
        except socket.timeout:
            pass
    return got


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
    def __init__(self, port, nick, session, address="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(2)
        self.address = ("127.0.0.1", port)
        self.nick, self.session = nick, session
        self.events = []

    def ask(self, datagram):
        """Sends `datagram`; the first answer that is not EVENTS (those are kept)."""
        self.sock.sendto(datagram, self.address)
        for _ in range(100):
            reply, _ = self.sock.recvfrom(2048)
            if reply[:2] != bytes([1, 131]):
                return reply
            self.events += events(reply)
        raise AssertionError("only EVENTS: %r" % self.events)

    def cookie(self):
        challenge = self.ask(join(bytes(16), self.session, 0, b"r", self.nick))
        self.assert_type(challenge, 129)
        assert len(challenge) == 64
        return challenge[2:18]

    def join(self, room, token=0):
        """The two steps; the answer to the second (WELCOME: the token noted; or REFUSED)."""
        answer = self.ask(join(self.cookie(), self.session, token, room, self.nick))
        if answer[:2] == bytes([1, 130]):
            self.token, _instance, self.next = struct.unpack_from(">QQI", answer, 2)
        return answer

    def who(self):
        """The room's nicks, from a MEMBERS (EVENTS that come first are kept)."""
        return members(self.ask(who(self.token)))

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


class Dropper(client_tests.Duplicator):
    """A UDP proxy in front of a relay that loses the first datagram from the relay that
    contains `lose`, as a network may (and passes the others once)."""

    def __init__(self, port, lose):
        self.lose, self.lost = lose, 0
        super().__init__(port)

    def deliver(self, datagram):
        if self.lose in datagram and not self.lost:
            self.lost += 1
        else:
            self.front.sendto(datagram, self.client)


WELCOME, CHALLENGE = bytes([1, 130]), bytes([1, 129])


class ChatTest(TestCase):
    # Helpers: what they make is ended at the test's end, whatever happens.

    def relay(self, *options):
        """`hellod --listen chat@127.0.0.1:0` with `options`."""
        server = Hellod("--listen", "chat@127.0.0.1:0", *options)
        self.addCleanup(server.__exit__)
        return server

    def client(self, server, nick, session, room=None, address="127.0.0.1"):
        """A Python client from `address`, joined to `room` if one is given."""
        c = Client(server.port, nick, session, address)
        self.addCleanup(c.close)
        if room is not None:
            self.assertEqual(c.join(room)[:2], WELCOME)
        return c

    def chat(self, port, nick, *extra):
        """`hello chat` in pipe mode (`extra` options last), once its own "joined" has come."""
        p = client_tests.ChatProcess(port, nick, *extra)
        self.addCleanup(p.kill)
        p.wait_for("* %s joined" % nick)
        return p

    def finished(self, p):
        """Its input ended: its output lines, once it exited 0 with nothing on stderr."""
        code, lines, stderr = p.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        return lines

    def counted(self, server):
        """The relay stopped (exit 0): its stop line's counters, balanced."""
        code, text = server.stop()
        self.assertEqual(code, 0, text)
        found = counters(text)
        self.assertBalanced(found)
        return found

    def test_two_clients_exchange_messages_each_getting_both_in_order(self):
        server = self.relay()
        ada, bob = self.client(server, b"ada", 1, b"lobby"), self.client(server, b"bob", 2, b"lobby")
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
        self.assertEqual(self.counted(server)["dropped"], 0)

    # Hostile sources

    def test_a_forged_source_gets_only_challenges_never_more_bytes_than_were_sent(self):
        victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(victim.close)
        victim.bind(("127.0.0.2", 0))
        server = self.relay()
        ada = self.client(server, b"ada", 1, b"lobby")
        forged = [
            join(bytes(16), 7, 0, b"lobby", b"eve"),                         # a first JOIN: 64 bytes
            join(bytes(16), 7, 0, b"lobby", b"eve").ljust(300, b"\0"),     # longer: still 64 back
            join(bytes(16), 7, 0, b"lobby", b"eve")[:63],                    # short: nothing
            join(struct.pack(">IQI", 1, 0x1234, 0), 7, 0, b"lobby", b"eve"),  # a guessed cookie
            say(ada.token, 1, b"i am ada"),                                  # a member's token
            struct.pack(">BBQ", 1, 4, ada.token),                            # its LEAVE
        ]
        for payload in forged:
            forge("127.0.0.2", victim.getsockname()[1], server.port, payload)
        received = drain(victim, 1.0)
        self.assertEqual([(d[:2], len(d)) for d in received], [(CHALLENGE, 64)] * 3)
        self.assertLessEqual(sum(map(len, received)), sum(map(len, forged)))
        # No member was made, none was removed, nothing was said: ada's WHO, ada's events.
        self.assertEqual(ada.who(), [b"ada"])
        self.assertEqual([e[1:] for e in ada.events], [(2, b"ada", b"")])
        found = self.counted(server)
        self.assertEqual((found["chat-short-join"], found["chat-bad-cookie"], found["chat-bad-token"]), (1, 1, 2), found)

    def test_a_cookie_replayed_from_another_address_is_challenged_again(self):
        server = self.relay()
        ada = self.client(server, b"ada", 1, b"lobby")
        cookie = ada.cookie()
        for thief in (self.client(server, b"mal", 2, address="127.0.0.3"), self.client(server, b"mal", 3)):  # another port
            answer = thief.ask(join(cookie, thief.session, 0, b"lobby", b"mal"))
            self.assertEqual((answer[:2], len(answer)), (CHALLENGE, 64))
            self.assertNotEqual(answer[2:18], cookie)
        self.assertEqual(ada.who(), [b"ada"])
        self.assertEqual(self.counted(server)["chat-bad-cookie"], 2)

    def test_an_expired_cookie_is_challenged_again(self):
        server = self.relay("--chat-epoch-s", "1")
        ada = self.client(server, b"ada", 1)
        cookie = ada.cookie()
        time.sleep(2.1)  # two epochs on: neither the current nor the previous one
        answer = ada.ask(join(cookie, 1, 0, b"lobby", b"ada"))
        self.assertEqual((answer[:2], len(answer)), (CHALLENGE, 64))
        self.assertEqual(ada.ask(join(answer[2:18], 1, 0, b"lobby", b"ada"))[:2], WELCOME)  # a fresh one
        self.assertEqual(self.counted(server)["chat-bad-cookie"], 1)

    def test_a_join_flood_larger_than_the_tables_leaves_members_alone(self):
        server = self.relay("--chat-rooms", "2", "--chat-members", "3")
        ada, bob = self.client(server, b"ada", 1, b"lobby"), self.client(server, b"bob", 2, b"lobby")
        flood = [self.client(server, b"f%d" % i, 100 + i, address="127.0.1.%d" % (i + 1)) for i in range(40)]
        answers = [f.join(b"lobby" if i % 2 == 0 else b"room%d" % i)[:3] for i, f in enumerate(flood)]
        # One place left in lobby (f0) and one room left (f1's): the rest told why.
        self.assertEqual(sum(a[:2] == WELCOME for a in answers), 2, answers)
        self.assertEqual(sorted(set(a for a in answers if a[:2] == bytes([1, 134]))),
                         [bytes([1, 134, 1]), bytes([1, 134, 3])])  # room full, too many rooms
        ada.sock.sendto(say(ada.token, 1, b"still here"), ada.address)
        for member in (ada, bob):
            member.read_events(lambda got: any(e[3] == b"still here" for e in got))
        self.assertEqual(sorted(ada.who()), [b"ada", b"bob", b"f0"])
        self.assertEqual(self.counted(server)["chat-room-full"], 38)

    def test_joins_past_a_prefixs_join_rate_are_dropped_and_the_room_hears_no_more(self):
        # Each join is announced to the room: leaving and joining again in a loop, or
        # joining from many ports, must not flood it.
        server = self.relay("--chat-join-rate", "1", "--chat-join-burst", "4")
        ada = self.client(server, b"ada", 1, b"lobby")
        eve = Client(server.port, b"eve", 7, address="127.0.0.9")
        self.addCleanup(eve.close)
        cookie = eve.cookie()
        for k in range(20):
            eve.sock.sendto(join(cookie, 100 + k, 0, b"lobby", b"eve%d" % k), eve.address)
        welcomes = [d for d in drain(eve.sock, 1.0) if d[:2] == WELCOME]
        self.assertEqual(len(welcomes), 4)
        for w in welcomes:  # and they leave: four joins and four leaves told
            eve.sock.sendto(struct.pack(">BBQ", 1, 4, struct.unpack_from(">Q", w, 2)[0]), eve.address)
        ada.read_events(lambda got: len([e for e in got if e[1] == 3]) >= 4)
        ada.events += sum((events(d) for d in drain(ada.sock, 0.3)), [])
        self.assertEqual(len([e for e in ada.events if e[1] == 2 and e[2].startswith(b"eve")]), 4)
        # A second later the prefix may join again.
        time.sleep(1.1)
        eve.sock.sendto(join(cookie, 200, 0, b"lobby", b"eve"), eve.address)
        self.assertEqual([d[:2] for d in drain(eve.sock, 0.5) if d[:2] != bytes([1, 131])], [WELCOME])
        self.assertEqual(self.counted(server)["chat-join-rate-limited"], 16)

    def test_an_over_rate_member_is_throttled_and_counted(self):
        server = self.relay("--chat-message-rate", "1", "--chat-message-burst", "3")
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        for sequence in range(1, 11):
            ada.sock.sendto(say(ada.token, sequence, b"m%d" % sequence), ada.address)
        bob.read_events(lambda got: len([e for e in got if e[1] == 1]) >= 3)
        bob.events += sum((events(d) for d in drain(bob.sock, 0.5)), [])
        self.assertEqual([e[3] for e in bob.events if e[1] == 1], [b"m1", b"m2", b"m3"])
        self.assertEqual(self.counted(server)["chat-rate-limited"], 7)

    def test_renames_faster_than_the_members_message_rate_are_throttled_and_counted(self):
        # A NICK reaches every member as a message does, so it spends as one: without that,
        # renames in a loop would flood the room past any message limit.
        server = self.relay("--chat-message-rate", "1", "--chat-message-burst", "3")
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        for k in range(1, 11):
            ada.sock.sendto(nick(ada.token, b"ada%d" % k), ada.address)
        bob.read_events(lambda got: len([e for e in got if e[1] == 5]) >= 3)
        bob.events += sum((events(d) for d in drain(bob.sock, 0.5)), [])
        self.assertEqual([(e[2], e[3]) for e in bob.events if e[1] == 5],
                         [(b"ada", b"ada1"), (b"ada1", b"ada2"), (b"ada2", b"ada3")])
        self.assertEqual(self.counted(server)["chat-rate-limited"], 7)

    def test_renames_past_the_rooms_delivery_rate_are_throttled_and_counted(self):
        # 4 deliveries a second, 8 at once, in a room of four: a rename costs 4, as a
        # message does, so two go at once. The member's own limit is out of the way.
        server = self.relay("--chat-members", "4", "--chat-room-delivery-rate", "4", "--chat-room-delivery-burst", "8",
                            "--chat-message-rate", "1000", "--chat-message-burst", "1000")
        ada, bob, _cy, _dee = (self.client(server, name, k, b"r") for k, name in enumerate([b"ada", b"bob", b"cy", b"dee"], 1))
        for k in range(1, 11):
            ada.sock.sendto(nick(ada.token, b"ada%d" % k), ada.address)
        bob.read_events(lambda got: len([e for e in got if e[1] == 5]) >= 2)
        bob.events += sum((events(d) for d in drain(bob.sock, 0.5)), [])
        self.assertEqual([e[3] for e in bob.events if e[1] == 5], [b"ada1", b"ada2"])
        found = self.counted(server)
        self.assertEqual((found.get("chat-room-rate-limited", 0), found.get("chat-rate-limited", 0)), (8, 0), found)

    def test_a_room_over_its_delivery_rate_is_throttled_counted_and_still_told_of_leaves(self):
        # 4 deliveries a second, 8 at once: a message to the room of four costs 4, so two
        # go at once, then one a second. The members' own limit is out of the way.
        server = self.relay("--chat-members", "4", "--chat-room-delivery-rate", "4", "--chat-room-delivery-burst", "8",
                            "--chat-message-rate", "1000", "--chat-message-burst", "1000")
        ada, bob, cy, _dee = (self.client(server, nick, k, b"r") for k, nick in enumerate([b"ada", b"bob", b"cy", b"dee"], 1))
        for sequence in range(1, 21):
            ada.sock.sendto(say(ada.token, sequence, b"m%d" % sequence), ada.address)
        bob.read_events(lambda got: len([e for e in got if e[1] == 1]) >= 2)
        bob.events += sum((events(d) for d in drain(bob.sock, 0.5)), [])
        self.assertEqual([e[3] for e in bob.events if e[1] == 1], [b"m1", b"m2"])
        # A leave is no message: the room is told at once, its budget spent or not.
        cy.sock.sendto(struct.pack(">BBQ", 1, 4, cy.token), cy.address)
        bob.read_events(lambda got: any(e[1] == 3 for e in got), timeout=1)
        # Throttled, not lost: a second on, the resend of m3 goes through.
        time.sleep(1.1)
        ada.sock.sendto(say(ada.token, 3, b"m3"), ada.address)
        bob.read_events(lambda got: any(e[3] == b"m3" for e in got))
        found = self.counted(server)
        self.assertEqual((found.get("chat-room-rate-limited", 0), found.get("chat-rate-limited", 0)), (18, 0), found)

    def test_a_resend_flood_is_bounded_by_the_members_rate(self):
        server = self.relay()  # 5 a second, 10 at once, per member
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        ada.sock.sendto(say(ada.token, 1, b"once"), ada.address)
        bob.read_events(lambda got: any(e[3] == b"once" for e in got))
        sequence = next(e[0] for e in bob.events if e[3] == b"once")
        for _ in range(30):
            bob.sock.sendto(resend(bob.token, sequence, 64), bob.address)
        answers = drain(bob.sock, 0.5)
        self.assertEqual(len(answers), 10)
        self.assertTrue(all(events(a) == [e for e in bob.events if e[3] == b"once"] for a in answers), answers)
        self.assertEqual(self.counted(server)["chat-rate-limited"], 20)

    def test_hello_chat_gets_every_line_acknowledged_under_a_room_throttle(self):
        # A room of two, one message a second (two at once): twelve lines piped at once
        # are refused and resent until each has its turn, with the default timeout and
        # retries of hello chat (about 15 s of resends for one message, but counted from
        # the last of its messages acknowledged: all twelve take 11 s); none is lost, none
        # shown twice. (Their room order may not be the input's: a resend that finds the
        # budget goes first, as after a loss.)
        server = self.relay("--chat-members", "2", "--chat-room-delivery-rate", "2", "--chat-room-delivery-burst", "4")
        bob = self.client(server, b"bob", 2, b"lobby")
        ada = self.chat(server.port, "ada", "--timeout", "0.5", "--retries", "5")
        lines = ["line %d" % k for k in range(1, 13)]
        for line in lines:
            ada.say(line)
        code, output, stderr = ada.finish(timeout=30)
        self.assertEqual((code, stderr), (0, ""), output)
        self.assertEqual(sorted(client_tests.messages(output)), sorted("ada: " + line for line in lines))
        self.assertGreater(self.counted(server).get("chat-room-rate-limited", 0), 0)
        bob.close()

    def test_bad_room_delivery_limits_exit_64_naming_the_option(self):
        for bad, named in ((["--chat-room-delivery-rate", "0"], "--chat-room-delivery-rate"),
                           (["--chat-room-delivery-burst", "0"], "--chat-room-delivery-burst"),
                           (["--chat-members", "8", "--chat-room-delivery-burst", "7"], "--chat-room-delivery-burst")):
            result = subprocess.run([HELLOD, "--check-config", *bad], capture_output=True, text=True, timeout=10)
            self.assertEqual((result.returncode, result.stdout, result.stderr.count("\n")), (64, "", 1), result)
            self.assertTrue(result.stderr.startswith("hellod: " + named), result.stderr)

    def test_oversized_messages_are_refused_and_counted(self):
        server = self.relay("--chat-max-message", "100")
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        for datagram in [say(ada.token, 1, b"x" * 101),     # over --chat-max-message
                         say(ada.token, 2, b"x" * 1001),    # over the protocol's 1000
                         say(ada.token, 3, b"x" * 1300),    # over 1232 bytes in all
                         say(ada.token, 4, b"y" * 100)]:
            ada.sock.sendto(datagram, ada.address)
        bob.read_events(lambda got: any(e[1] == 1 for e in got))
        bob.events += sum((events(d) for d in drain(bob.sock, 0.3)), [])
        self.assertEqual([e[3] for e in bob.events if e[1] == 1], [b"y" * 100])
        self.assertEqual(self.counted(server)["chat-malformed"], 3)

    def test_a_rename_between_the_longest_nicks_is_announced_whatever_the_message_limit(self):
        # A rename's event carries the old nick and the new one as its text: at a message
        # limit of 28 bytes or less it once overflowed the backlog's slot and killed the relay.
        old, new = b"o" * 32, b"n" * 32
        for limit in ("0", "28"):
            with self.subTest(limit=limit):
                server = self.relay("--chat-max-message", limit)
                ada, bob = self.client(server, old, 1, b"r"), self.client(server, b"bob", 2, b"r")
                ada.sock.sendto(nick(ada.token, new), ada.address)
                bob.read_events(lambda got: any(e[1] == 5 for e in got))
                self.assertEqual([(e[2], e[3]) for e in bob.events if e[1] == 5], [(old, new)])
                # Still serving: the room lists the new nick, and a message of the limit goes.
                self.assertEqual(sorted(bob.who()), [b"bob", new])
                ada.sock.sendto(say(ada.token, 1, b"m" * int(limit)), ada.address)
                bob.read_events(lambda got: any(e[1] == 1 for e in got))
                self.assertEqual([(e[2], e[3]) for e in bob.events if e[1] == 1], [(new, b"m" * int(limit))])
                self.assertEqual(self.counted(server)["dropped"], 0)

    # Delivery and liveness

    def test_a_lost_gap_comes_by_resend_and_a_lost_tail_by_keepalive(self):
        server = self.relay()
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        for sequence in range(1, 5):
            ada.sock.sendto(say(ada.token, sequence, b"m%d" % sequence), ada.address)
            bob.read_events(lambda got: any(e[3] == b"m%d" % sequence for e in got))
        sent = {e[3]: e for e in bob.events if e[1] == 1}
        # As if m2 had been lost: RESEND of its sequence brings it, alone.
        bob.sock.sendto(resend(bob.token, sent[b"m2"][0], 1), bob.address)
        self.assertEqual(events(bob.sock.recvfrom(2048)[0]), [sent[b"m2"]])
        # As if m3 and m4 (the last) had been lost: a keepalive naming m2 brings them.
        bob.sock.sendto(keepalive(bob.token, sent[b"m2"][0]), bob.address)
        self.assertEqual(events(bob.sock.recvfrom(2048)[0]), [sent[b"m3"], sent[b"m4"]])
        # Up to date: a keepalive gets nothing.
        bob.sock.sendto(keepalive(bob.token, sent[b"m4"][0]), bob.address)
        self.assertEqual(drain(bob.sock, 0.3), [])
        self.assertEqual(self.counted(server)["dropped"], 0)

    def test_hello_chat_repairs_a_gap_by_resend(self):
        server = self.relay()
        dropper = Dropper(server.port, b"second")
        self.addCleanup(dropper.close)
        ada = self.chat(server.port, "ada")
        bob = self.chat(dropper.port, "bob", "--keepalive", "30")  # no keepalive to catch up by
        ada.wait_for("* bob joined")
        for text in ("first", "second", "third"):
            ada.say(text)
            ada.wait_for("ada: " + text)
        bob.wait_for("ada: third", timeout=3)
        self.assertEqual(dropper.lost, 1)
        self.assertEqual(self.finished(bob), ["* ada joined", "* bob joined", "ada: first", "ada: second", "ada: third"])
        self.finished(ada)
        self.assertEqual(self.counted(server)["dropped"], 0)

    def test_hello_chat_gets_a_lost_last_message_by_its_keepalive(self):
        # The last EVENTS to bob lost, and nothing said after it: no gap to see. Bob's
        # keepalive (every 0.3 s) names what it has; the relay sends the rest again.
        server = self.relay()
        dropper = Dropper(server.port, b"the last word")
        self.addCleanup(dropper.close)
        ada = self.chat(server.port, "ada")
        bob = self.chat(dropper.port, "bob")
        ada.wait_for("* bob joined")
        ada.say("the last word")
        ada.wait_for("ada: the last word")
        bob.wait_for("ada: the last word", timeout=3)
        self.assertEqual(dropper.lost, 1)
        self.assertEqual(self.finished(bob), ["* ada joined", "* bob joined", "ada: the last word"])
        self.finished(ada)
        self.assertEqual(self.counted(server)["dropped"], 0)

    def test_a_resent_say_reaches_the_room_once_and_its_sender_gets_its_copy_again(self):
        server = self.relay()
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        ada.sock.sendto(say(ada.token, 1, b"once"), ada.address)
        for c in (ada, bob):
            c.read_events(lambda got: any(e[1] == 1 for e in got))
        copy = [e for e in ada.events if e[1] == 1]
        self.assertEqual([e[2:] for e in copy], [(b"ada", b"once")])
        for _ in range(3):  # as if each copy had been lost
            ada.sock.sendto(say(ada.token, 1, b"once"), ada.address)
            self.assertEqual(events(ada.sock.recvfrom(2048)[0]), copy)
        self.assertEqual(drain(bob.sock, 0.3), [])
        self.assertEqual([e for e in bob.events if e[1] == 1], copy)
        found = self.counted(server)
        self.assertEqual((found["dropped"], found["replied"]), (0, 4 + 4))  # 2 JOINs each; a SAY, 3 again

    def test_a_resent_say_whose_copy_left_the_backlog_is_dropped_as_stale(self):
        # The backlog at its least: 64 events (a RESEND's most).
        server = self.relay("--chat-backlog", "1", "--chat-history", "0", "--batch", "1", "--chat-members", "2",
                            "--chat-message-rate", "1000", "--chat-message-burst", "1000")
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        ada.sock.sendto(say(ada.token, 1, b"first"), ada.address)
        ada.read_events(lambda got: any(e[1] == 1 for e in got))
        for sequence in range(1, 65):
            bob.sock.sendto(say(bob.token, sequence, b"b%d" % sequence), bob.address)
            ada.read_events(lambda got: any(e[3] == b"b%d" % sequence for e in got))
        ada.sock.sendto(say(ada.token, 1, b"first"), ada.address)
        self.assertEqual(drain(ada.sock, 0.3), [])
        self.assertEqual(self.counted(server)["chat-stale"], 1)

    def test_keepalives_keep_a_member_and_the_silent_one_is_evicted(self):
        server = self.relay("--chat-silence-s", "1", "--chat-evict-s", "2")
        ada = self.chat(server.port, "ada")  # keepalive every 0.3 s
        bob = self.client(server, b"bob", 2, b"lobby")
        ada.wait_for("* bob joined")
        ada.wait_for("* bob timed out", timeout=5)  # bob said nothing for 2 s
        time.sleep(1.5)  # ada, silent but for its keepalives, is still a member
        ada.say("still here")
        ada.wait_for("ada: still here")
        drain(bob.sock, 0.1)  # what it was sent before it fell silent
        bob.sock.sendto(say(bob.token, 1, b"back"), bob.address)
        self.assertEqual([d[:10] for d in drain(bob.sock, 0.5)], [bytes([1, 133]) + struct.pack(">Q", bob.token)])
        self.assertEqual(self.finished(ada), ["* ada joined", "* bob joined", "* bob timed out", "ada: still here"])
        self.assertEqual(self.counted(server)["chat-not-member"], 1)

    def test_a_member_whose_address_changed_keeps_its_nick_and_place_unseen(self):
        server = self.relay()
        bob = self.chat(server.port, "bob")
        ada = self.client(server, b"ada", 1, b"lobby")
        bob.wait_for("* ada joined")
        ada.sock.sendto(say(ada.token, 1, b"from here"), ada.address)
        bob.wait_for("ada: from here")
        moved = self.client(server, b"ada", 1, address="127.0.0.5")  # a NAT rebinding
        self.assertEqual(moved.join(b"lobby", token=ada.token)[:10], WELCOME + struct.pack(">Q", ada.token))
        moved.sock.sendto(say(ada.token, 2, b"from there"), moved.address)
        bob.wait_for("ada: from there")
        # The old address is no longer the member's: what it sends is dropped.
        ada.sock.sendto(say(ada.token, 3, b"old address"), ada.address)
        time.sleep(0.2)  # dropped before the LEAVE, as the token's, not as an unknown one
        moved.sock.sendto(struct.pack(">BBQ", 1, 4, ada.token), moved.address)  # LEAVE
        bob.wait_for("* ada left")
        self.assertEqual(self.finished(bob), ["* bob joined", "* ada joined", "ada: from here", "ada: from there", "* ada left"])
        self.assertEqual(self.counted(server)["chat-bad-token"], 1)

if __name__ == "__main__":
    unittest.main()

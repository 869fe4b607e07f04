"""The chat relay over real sockets: Python clients speaking docs/PROTOCOL.md's chat
protocol to `hellod --listen chat@127.0.0.1:0` (where a test must misbehave: forge a
source over a raw socket, replay a cookie, flood, exceed a limit), and `hello chat` in pipe
mode where a real member is what is needed. A forged source is an address of loopback's
127.0.0.0/8 where the test listens, so that what the relay sends it is seen."""
import socket
import subprocess
import time
import unittest

import test_chat_client as client_tests  # its ChatProcess (a module, so its tests do not run twice)
import chatwire as wire
import udptool
from harness import HELLOD, Hellod, TestCase, counters, metric


def forge(source, sport, port, payload, destination="127.0.0.1"):
    """One datagram to `destination`:`port` from a forged source address and port (raw
    socket; root)."""
    udptool.spoof(source, sport, destination, port, payload)


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
    """The events of an EVENTS datagram (chatwire.Event: sequence, kind, nick, text, sender id,
    client sequence)."""
    return wire.decode_events(datagram)


class Client:
    """A member speaking chatwire from a socket of its own, bound to `address`, to the relay
    at `server`:`port`: its tag random, its secret from `secret` (bytes, or an int: the same
    secret for the same int, chatwire.new_secret)."""

    def __init__(self, port, nick, secret=None, address="127.0.0.1", server="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.settimeout(2)
        self.address = (server, port)
        self.nick = nick
        self.secret = secret if isinstance(secret, bytes) else wire.new_secret(secret)
        self.id = wire.ident(self.secret)
        self.tag = wire.new_tag()
        self.token = 0
        self.events = []

    def send(self, datagram):
        self.sock.sendto(datagram, self.address)

    def ask(self, datagram):
        """Sends `datagram`; the first answer that is not EVENTS (those are kept). Every answer
        must carry this client's tag."""
        self.send(datagram)
        for _ in range(100):
            reply, _ = self.sock.recvfrom(2048)
            assert wire.tag_of(reply) == self.tag, reply[:20]
            if wire.type_of(reply) != wire.EVENTS:
                return reply
            self.events += events(reply)
        raise AssertionError("only EVENTS: %r" % self.events)

    def join_datagram(self, cookie, room, token=0, nick=None):
        return wire.join(self.tag, cookie, self.secret, token, room, self.nick if nick is None else nick)

    def cookie(self):
        challenge = self.ask(self.join_datagram(wire.NO_COOKIE, b"r"))
        self.assert_type(challenge, wire.CHALLENGE)
        assert len(challenge) == wire.CHALLENGE_LENGTH
        return wire.decode(challenge).cookie

    def join(self, room, token=0):
        """The two steps; the answer to the second (WELCOME: the token noted; or REFUSED)."""
        answer = self.ask(self.join_datagram(self.cookie(), room, token))
        if wire.type_of(answer) == wire.WELCOME:
            w = wire.decode(answer)
            self.token, self.next = w.token, w.next
        return answer

    def say(self, sequence, text, token=None):
        self.send(wire.say(self.tag, self.token if token is None else token, sequence, text))

    def keepalive(self, highest):
        self.send(wire.keepalive(self.tag, self.token, highest))

    def resend(self, first, count):
        self.send(wire.resend(self.tag, self.token, first, count))

    def leave(self, token=None):
        self.send(wire.leave(self.tag, self.token if token is None else token))

    def rename(self, name):
        self.send(wire.nick(self.tag, self.token, name))

    def who(self):
        """The room's nicks, from a MEMBERS (EVENTS that come first are kept)."""
        return wire.decode_members(self.ask(wire.who(self.tag, self.token)))

    @staticmethod
    def assert_type(datagram, type_):
        assert wire.type_of(datagram) == type_, datagram[:20]

    def read_events(self, until, timeout=3):
        """Reads EVENTS until `until(self.events)` holds; bounded by `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until(self.events):
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                datagram, _ = self.sock.recvfrom(2048)
            except socket.timeout:
                raise AssertionError("events so far: %r" % self.events) from None
            assert wire.tag_of(datagram) == self.tag, datagram[:20]
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




class ChatCase(TestCase):
    """Helpers for the chat's tests (test_chat_v2 uses them too): what they make is ended at
    the test's end, whatever happens."""

    def relay(self, *options):
        """`hellod --listen chat@127.0.0.1:0` with `options`."""
        server = Hellod("--listen", "chat@127.0.0.1:0", *options)
        self.addCleanup(server.__exit__)
        return server

    def client(self, server, nick, secret, room=None, address="127.0.0.1"):
        """A Python client from `address`, joined to `room` if one is given."""
        c = Client(server.port, nick, secret, address)
        self.addCleanup(c.close)
        if room is not None:
            self.assertEqual(wire.type_of(c.join(room)), wire.WELCOME)
        return c

    def chat(self, port, nick, *extra, joined=True):
        """`hello chat` in pipe mode (`extra` options last), once its own "joined" has come
        (`joined`: else at once)."""
        p = client_tests.ChatProcess(port, nick, *extra)
        self.addCleanup(p.kill)
        if joined:
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


class ChatTest(ChatCase):

    def test_two_clients_exchange_messages_each_getting_both_in_order(self):
        server = self.relay()
        ada, bob = self.client(server, b"ada", 1, b"lobby"), self.client(server, b"bob", 2, b"lobby")
        said = [(ada, b"hi bob"), (bob, b"hi ada"), (ada, b"how are you?"), (bob, b"fine")]
        for sequence, (client, text) in enumerate(said, 1):
            client.say(sequence, text)
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
        tag, secret = wire.new_tag(), wire.new_secret()
        forged = [
            wire.join(tag, wire.NO_COOKIE, secret, 0, b"lobby", b"eve"),             # a first JOIN: 64 bytes
            wire.join(tag, wire.NO_COOKIE, secret, 0, b"lobby", b"eve", pad=300),    # longer: still 22 back
            wire.join(tag, wire.NO_COOKIE, secret, 0, b"lobby", b"eve")[:63],        # short: nothing
            wire.join(tag, wire.cookie(1, 0x1234), secret, 0, b"lobby", b"eve"),     # a guessed cookie
            wire.say(tag, ada.token, 1, b"i am ada"),                                # a member's token: challenged
            wire.leave(tag, ada.token),                                              # its LEAVE: 18 bytes, nothing
        ]
        for payload in forged:
            forge("127.0.0.2", victim.getsockname()[1], server.port, payload)
        received = drain(victim, 1.0)
        self.assertEqual([(wire.type_of(d), wire.tag_of(d), len(d)) for d in received], [(wire.CHALLENGE, tag, 22)] * 4)
        self.assertLessEqual(sum(map(len, received)), sum(map(len, forged)))
        # No member was made, none was removed, nothing was said: ada's WHO, ada's events.
        self.assertEqual(ada.who(), [b"ada"])
        self.assertEqual([(e.kind, e.nick, e.text, e.sender) for e in ada.events], [(wire.JOINED, b"ada", b"", ada.id)])
        found = self.counted(server)
        # The SAY and the LEAVE with ada's token from another address: moved, not acted on.
        self.assertEqual((found["chat-short-join"], found["chat-bad-cookie"], found["chat-moved"]), (1, 1, 2), found)

    def test_a_cookie_replayed_from_another_address_is_challenged_again(self):
        server = self.relay()
        ada = self.client(server, b"ada", 1, b"lobby")
        cookie = ada.cookie()
        for thief in (self.client(server, b"mal", 2, address="127.0.0.3"), self.client(server, b"mal", 3)):  # another port
            answer = thief.ask(thief.join_datagram(cookie, b"lobby"))
            self.assertEqual((wire.type_of(answer), len(answer)), (wire.CHALLENGE, 22))
            self.assertNotEqual(wire.decode(answer).cookie, cookie)
        self.assertEqual(ada.who(), [b"ada"])
        self.assertEqual(self.counted(server)["chat-bad-cookie"], 2)

    def test_an_expired_cookie_is_challenged_again(self):
        server = self.relay("--chat-epoch-s", "1")
        ada = self.client(server, b"ada", 1)
        cookie = ada.cookie()
        time.sleep(2.1)  # two epochs on: neither the current nor the previous one
        answer = ada.ask(ada.join_datagram(cookie, b"lobby"))
        self.assertEqual((wire.type_of(answer), len(answer)), (wire.CHALLENGE, 22))
        self.assertEqual(wire.type_of(ada.ask(ada.join_datagram(wire.decode(answer).cookie, b"lobby"))), wire.WELCOME)  # a fresh one
        self.assertEqual(self.counted(server)["chat-bad-cookie"], 1)

    def test_a_join_flood_larger_than_the_tables_leaves_members_alone(self):
        server = self.relay("--chat-rooms", "2", "--chat-members", "3")
        ada, bob = self.client(server, b"ada", 1, b"lobby"), self.client(server, b"bob", 2, b"lobby")
        flood = [self.client(server, b"f%d" % i, 100 + i, address="127.0.1.%d" % (i + 1)) for i in range(40)]
        answers = [f.join(b"lobby" if i % 2 == 0 else b"room%d" % i) for i, f in enumerate(flood)]
        # One place left in lobby (f0) and one room left (f1's): the rest told why.
        self.assertEqual(sum(wire.type_of(a) == wire.WELCOME for a in answers), 2, answers)
        self.assertEqual(sorted(set(wire.decode(a).reason for a in answers if wire.type_of(a) == wire.REFUSED)),
                         [wire.ROOM_FULL, wire.TOO_MANY_ROOMS])
        ada.say(1, b"still here")
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
            eve.send(wire.join(eve.tag, cookie, wire.new_secret(100 + k), 0, b"lobby", b"eve%d" % k))
        welcomes = [d for d in drain(eve.sock, 1.0) if wire.type_of(d) == wire.WELCOME]
        self.assertEqual(len(welcomes), 4)
        for w in welcomes:  # and they leave: four joins and four leaves told
            eve.leave(wire.decode(w).token)
        ada.read_events(lambda got: len([e for e in got if e[1] == 3]) >= 4)
        ada.events += sum((events(d) for d in drain(ada.sock, 0.3)), [])
        self.assertEqual(len([e for e in ada.events if e[1] == 2 and e[2].startswith(b"eve")]), 4)
        # A second later the prefix may join again.
        time.sleep(1.1)
        eve.send(wire.join(eve.tag, cookie, wire.new_secret(200), 0, b"lobby", b"eve"))
        self.assertEqual([wire.type_of(d) for d in drain(eve.sock, 0.5) if wire.type_of(d) != wire.EVENTS], [wire.WELCOME])
        self.assertEqual(self.counted(server)["chat-join-rate-limited"], 16)

    def test_an_over_rate_member_is_throttled_and_counted(self):
        server = self.relay("--chat-message-rate", "1", "--chat-message-burst", "3")
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        for sequence in range(1, 11):
            ada.say(sequence, b"m%d" % sequence)
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
            ada.rename(b"ada%d" % k)
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
            ada.rename(b"ada%d" % k)
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
            ada.say(sequence, b"m%d" % sequence)
        bob.read_events(lambda got: len([e for e in got if e[1] == 1]) >= 2)
        bob.events += sum((events(d) for d in drain(bob.sock, 0.5)), [])
        self.assertEqual([e[3] for e in bob.events if e[1] == 1], [b"m1", b"m2"])
        # A leave is no message: the room is told at once, its budget spent or not.
        cy.leave()
        bob.read_events(lambda got: any(e[1] == 3 for e in got), timeout=1)
        # Throttled, not lost: a second on, the resend of m3 goes through.
        time.sleep(1.1)
        ada.say(3, b"m3")
        bob.read_events(lambda got: any(e[3] == b"m3" for e in got))
        found = self.counted(server)
        self.assertEqual((found.get("chat-room-rate-limited", 0), found.get("chat-rate-limited", 0)), (18, 0), found)

    def test_a_resend_flood_is_bounded_by_the_members_rate(self):
        server = self.relay()  # 5 a second, 10 at once, per member
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        ada.say(1, b"once")
        bob.read_events(lambda got: any(e[3] == b"once" for e in got))
        sequence = next(e[0] for e in bob.events if e[3] == b"once")
        for _ in range(30):
            bob.resend(sequence, 64)
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
        for sequence, text in [(1, b"x" * 101),     # over --chat-max-message
                               (2, b"x" * 1001),    # over the protocol's 1000
                               (3, b"x" * 1300),    # over 1232 bytes in all
                               (4, b"y" * 100)]:
            ada.say(sequence, text)
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
                ada.rename(new)
                bob.read_events(lambda got: any(e[1] == 5 for e in got))
                self.assertEqual([(e[2], e[3]) for e in bob.events if e[1] == 5], [(old, new)])
                # Still serving: the room lists the new nick, and a message of the limit goes.
                self.assertEqual(sorted(bob.who()), [b"bob", new])
                ada.say(1, b"m" * int(limit))
                bob.read_events(lambda got: any(e[1] == 1 for e in got))
                self.assertEqual([(e[2], e[3]) for e in bob.events if e[1] == 1], [(new, b"m" * int(limit))])
                self.assertEqual(self.counted(server)["dropped"], 0)

    # Delivery and liveness

    def test_a_lost_gap_comes_by_resend_and_a_lost_tail_by_keepalive(self):
        server = self.relay()
        ada, bob = self.client(server, b"ada", 1, b"r"), self.client(server, b"bob", 2, b"r")
        for sequence in range(1, 5):
            ada.say(sequence, b"m%d" % sequence)
            bob.read_events(lambda got: any(e[3] == b"m%d" % sequence for e in got))
        sent = {e[3]: e for e in bob.events if e[1] == 1}
        # As if m2 had been lost: RESEND of its sequence brings it, alone.
        bob.resend(sent[b"m2"][0], 1)
        self.assertEqual(events(bob.sock.recvfrom(2048)[0]), [sent[b"m2"]])
        # As if m3 and m4 (the last) had been lost: a keepalive naming m2 brings them.
        bob.keepalive(sent[b"m2"][0])
        self.assertEqual(events(bob.sock.recvfrom(2048)[0]), [sent[b"m3"], sent[b"m4"]])
        # Up to date: a keepalive gets nothing.
        bob.keepalive(sent[b"m4"][0])
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
        ada.say(1, b"once")
        for c in (ada, bob):
            c.read_events(lambda got: any(e[1] == 1 for e in got))
        copy = [e for e in ada.events if e[1] == 1]
        self.assertEqual([(e.nick, e.text, e.sender, e.client) for e in copy], [(b"ada", b"once", ada.id, 1)])
        for _ in range(3):  # as if each copy had been lost
            ada.say(1, b"once")
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
        ada.say(1, b"first")
        ada.read_events(lambda got: any(e[1] == 1 for e in got))
        for sequence in range(1, 65):
            bob.say(sequence, b"b%d" % sequence)
            ada.read_events(lambda got: any(e[3] == b"b%d" % sequence for e in got))
        ada.say(1, b"first")
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
        bob.say(1, b"back")
        self.assertEqual(drain(bob.sock, 0.5), [wire.not_a_member(bob.tag, bob.token)])
        self.assertEqual(self.finished(ada), ["* ada joined", "* bob joined", "* bob timed out", "ada: still here"])
        self.assertEqual(self.counted(server)["chat-not-member"], 1)

    def test_an_idle_relay_evicts_the_silent_and_its_gauges_say_so(self):
        # Nothing comes after bob's join: the relay's own wake-ups (its ticks) time bob out,
        # and the metrics file follows.
        server = self.relay("--chat-silence-s", "1", "--chat-evict-s", "2", "--metrics-interval", "1")
        self.client(server, b"bob", 2, b"lobby")

        def gauges(want, within):
            deadline = time.monotonic() + within
            while True:
                now = server.metrics()
                found = (metric(now, "hellod_chat_rooms"), metric(now, "hellod_chat_members"))
                if found == want or time.monotonic() > deadline:
                    return found
                time.sleep(0.1)

        self.assertEqual(gauges((1, 1), within=3), (1, 1))
        self.assertEqual(gauges((0, 0), within=8), (0, 0))  # evicted after 2 s, written each 1 s
        code, text = server.stop()
        self.assertEqual(code, 0, text)
        self.assertEqual([metric(text.metrics, "hellod_chat_%s_total" % n) for n in ("joins", "leaves")], [1, 1])

    def test_a_member_whose_address_changed_keeps_its_nick_and_place_unseen(self):
        server = self.relay()
        bob = self.chat(server.port, "bob")
        ada = self.client(server, b"ada", 1, b"lobby")
        bob.wait_for("* ada joined")
        ada.say(1, b"from here")
        bob.wait_for("ada: from here")
        moved = self.client(server, b"ada", 1, address="127.0.0.5")  # a NAT rebinding: the same secret
        moved.tag = ada.tag
        welcome = wire.decode(moved.join(b"lobby", token=ada.token))
        self.assertEqual((type(welcome), welcome.tag, welcome.token), (wire.Welcome, ada.tag, ada.token))
        moved.say(2, b"from there")
        bob.wait_for("ada: from there")
        # The old address is no longer the member's: what it sends is dropped.
        ada.say(3, b"old address")
        time.sleep(0.2)  # dropped before the LEAVE, as the token's, not as an unknown one
        moved.leave()
        bob.wait_for("* ada left")
        self.assertEqual(self.finished(bob), ["* bob joined", "* ada joined", "ada: from here", "ada: from there", "* ada left"])
        self.assertEqual(self.counted(server)["chat-moved"], 1)

if __name__ == "__main__":
    unittest.main()

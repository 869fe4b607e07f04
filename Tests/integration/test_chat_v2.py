"""What chat protocol 2 guarantees that 1 did not (docs/PROTOCOL.md, "chat"), over real
sockets: hellod 1.x's datagrams are refused in their own format and never amplified; no
member can claim another's id, and its secret never leaves the JOIN; an off-path forger
that spoofs the relay's own address cannot make `hello chat` take anything (it does not
know the client's tag); and a member whose NAT rebinds it to a new port is moved, not
dropped, within a round trip, losing and repeating nothing."""
import os
import selectors
import socket
import threading
import time
import unittest

import chatwire as wire
import test_chat_client as client_tests  # its ChatProcess (a module, so its tests do not run twice)
import udptool
from harness import Hellod
from test_chat import ChatCase, Client, drain


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_ports(pid):
    """The local ports of process `pid`'s IPv4 UDP sockets (/proc: its fds' inodes)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    with open("/proc/%d/net/udp" % pid) as table:
        for line in list(table)[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.append(int(fields[1].split(":")[1], 16))
    return ports


def client_port(p, timeout=5):
    """The port `hello chat` (a ChatProcess) sends from, once it has its socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ports = udp_ports(p.proc.pid)
        if ports:
            return ports[0]
        time.sleep(0.01)
    raise AssertionError("hello chat has no UDP socket")


class Sweeper:
    """An off-path forger that knows the relay's address and port and the client's address,
    but not its port nor its tag: from the relay's exact address and port (a raw socket, as
    udptool spoofs), it sends every relay message type with random tags to every port of
    `ports`, round after round, until stopped (bounded: `seconds`)."""

    def __init__(self, relay_port, ports, seconds=30):
        self.relay_port, self.ports, self.seconds = relay_port, ports, seconds
        self.stopping = threading.Event()
        self.rounds = self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def forged():
        tag = wire.new_tag()
        token, instance = wire.new_tag(), wire.new_tag()
        fake = [wire.Event(s, wire.MESSAGE, b"forger", b"FORGED %d" % s, wire.new_tag(), s) for s in range(1, 4)]
        return [
            wire.challenge(tag, wire.cookie(1, wire.new_tag())),
            wire.welcome(tag, token, instance, 1, 2),
            wire.events(tag, instance, fake + [wire.Event(4, wire.JOINED, b"forger", b"", wire.new_tag(), 0)]),
            wire.events(tag, instance, [wire.Event(s, wire.MESSAGE, b"forger", b"FORGED", 1, s) for s in range(1000, 1003)]),
            wire.members(tag, instance, [b"forger", b"FORGED"]),
            wire.not_a_member(tag, token),
            wire.refused(tag, wire.TOO_MANY_ROOMS),
        ]

    def _run(self):
        deadline = time.monotonic() + self.seconds
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                for port in self.ports:
                    for payload in self.forged():
                        packet = udptool.udp_packet("127.0.0.1", self.relay_port, "127.0.0.1", port, payload)
                        try:
                            raw.sendto(packet, ("127.0.0.1", 0))
                            self.sent += 1
                        except OSError:
                            pass
                self.rounds += 1

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)


class RebindingProxy:
    """A UDP proxy between a client and the relay, as a NAT: the client sends to `port`, and
    the proxy forwards from its upstream socket. `rebind()` replaces that socket with a new
    one (a new source port, as a NAT that forgot the flow): what the relay then sends to the
    old port is lost."""

    def __init__(self, relay_port):
        self.relay = ("127.0.0.1", relay_port)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.upstream = self._new_upstream()
        self.client = None
        self.lost_after_rebinding = 0
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.front, selectors.EVENT_READ)
        self.selector.register(self.upstream, selectors.EVENT_READ)
        self.old = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _new_upstream():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        return s

    def rebind(self):
        with self.lock:
            old, self.upstream = self.upstream, self._new_upstream()
            self.selector.register(self.upstream, selectors.EVENT_READ)
            self.old.append(old)  # still read, and what comes to it thrown away: lost
        return old.getsockname()[1], self.upstream.getsockname()[1]

    def _run(self):
        while self.running:
            for key, _ in self.selector.select(timeout=0.1):
                try:
                    datagram, source = key.fileobj.recvfrom(70000)
                except OSError:
                    continue
                with self.lock:
                    if key.fileobj is self.front:
                        self.client = source
                        self.upstream.sendto(datagram, self.relay)
                    elif key.fileobj is self.upstream and self.client:
                        self.front.sendto(datagram, self.client)
                    else:
                        self.lost_after_rebinding += 1

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        for s in [self.front, self.upstream, *self.old]:
            s.close()
        self.selector.close()


class ChatV2Test(ChatCase):
    def test_version_1_is_refused_in_its_own_format_never_longer_than_the_request(self):
        server = self.relay()
        old = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(old.close)
        old.bind(("127.0.0.1", 0))
        old.settimeout(2)
        relay = ("127.0.0.1", server.port)
        token = 0x0123_4567_89AB_CDEF
        join = wire.v1_join(bytes(16), 7, 0, b"lobby", b"eve")
        # The exact bytes (chatwire's v1_refusal and v1_not_a_member are docs/PROTOCOL.md's).
        expected = [(join, wire.v1_refusal())]
        expected += [(request, wire.v1_not_a_member(token))
                     for request in (wire.v1_say(token, 1, b"hi"), wire.v1_keepalive(token, 0),
                                     wire.v1_request(wire.LEAVE, token), wire.v1_request(wire.WHO, token))]
        for request, answer in expected:
            old.sendto(request, relay)
            got = old.recv(2048)
            self.assertEqual(got, answer)
            self.assertLessEqual(len(got), len(request))
        # A v1 JOIN shorter than 64 bytes, and a v1 request with no token: nothing.
        for request in (join[:63], wire.v1_say(0, 1, b"hi"), wire.v1_request(wire.LEAVE, 0)):
            old.sendto(request, relay)
        self.assertEqual(drain(old, 0.5), [])
        found = self.counted(server)
        self.assertEqual((found["chat-old-version"], found["chat-malformed"]), (5, 3), found)

    def test_no_member_can_claim_anothers_id_and_no_secret_leaves_a_join(self):
        server = self.relay()
        ada, bob = self.client(server, b"ada", None, b"lobby"), self.client(server, b"bob", None, b"lobby")
        seen = []  # every datagram the relay sent ada or bob

        def said(member, sequence, text, readers):
            member.say(sequence, text)
            for reader in readers:
                before = len(reader.events)
                reader.read_events(lambda got: any(e.text == text for e in got[before:]))

        said(ada, 1, b"from ada", (ada, bob))
        said(bob, 1, b"from bob", (ada, bob))
        for reader in (ada, bob):
            self.assertEqual({(e.nick, e.sender, e.client) for e in reader.events if e.kind == wire.MESSAGE},
                             {(b"ada", wire.ident(ada.secret), 1), (b"bob", wire.ident(bob.secret), 1)})
            self.assertNotEqual(ada.id, bob.id)
        # Mallory saw ada's tag and token in clear (they travel in every datagram), not its
        # secret: its rejoin from another address, with them and its own secret, is dropped.
        mallory = self.client(server, b"ada", None, address="127.0.0.7")
        mallory.tag = ada.tag
        mallory.say(2, b"i am ada", token=ada.token)  # a datagram with ada's token: challenged
        challenge = wire.decode(mallory.sock.recv(2048))
        self.assertEqual((type(challenge), challenge.tag), (wire.Challenge, ada.tag))
        mallory.send(mallory.join_datagram(challenge.cookie, b"lobby", token=ada.token))
        self.assertEqual(drain(mallory.sock, 0.5), [])  # no WELCOME: nothing at all
        # And a member of its own cannot take ada's id: its events carry its own.
        eve = self.client(server, b"eve", None, b"lobby")
        said(eve, 1, b"from eve", (ada, bob))
        # Ada still posts and receives from its own address, under its own id.
        said(ada, 2, b"still ada", (ada, bob))
        said(bob, 2, b"still bob", (ada, bob))
        for reader in (ada, bob):
            self.assertEqual(sorted((e.text, e.sender) for e in reader.events if e.kind == wire.MESSAGE),
                             sorted([(b"from ada", ada.id), (b"from bob", bob.id), (b"from eve", eve.id),
                                     (b"still ada", ada.id), (b"still bob", bob.id)]))
            self.assertEqual([e.nick for e in reader.events if e.kind in (wire.LEFT, wire.TIMED_OUT)], [])
            seen.extend(reader.events)
        # No secret in anything the relay sent: the events (re-encoded, byte for byte as
        # sent but for the tag) and the MEMBERS of a WHO.
        for c in (ada, bob):
            members = c.ask(wire.who(c.tag, c.token))
            for secret in (ada.secret, bob.secret, eve.secret, mallory.secret):
                self.assertNotIn(secret, members)
        for e in seen:
            for secret in (ada.secret, bob.secret, eve.secret, mallory.secret):
                self.assertNotIn(secret, wire.encode_event(e))
        found = self.counted(server)
        self.assertEqual((found["chat-bad-token"], found["chat-moved"]), (1, 1), found)

    def test_a_blind_sweep_spoofing_the_relay_reaches_nothing_hello_chat_shows(self):
        port = free_port()
        ada = self.chat(port, "ada", joined=False)  # no relay yet: its JOINs go unanswered, and it retries
        own = client_port(ada)
        sweeper = Sweeper(port, range(max(own - 64, 1024), min(own + 64, 65536)))
        self.addCleanup(sweeper.stop)
        while sweeper.rounds < 1:  # every port and type at least once before the relay is up
            time.sleep(0.05)
        server = Hellod("--listen", "chat@127.0.0.1:%d" % port)
        self.addCleanup(server.__exit__)
        ada.wait_for("* ada joined", timeout=10)
        for k in range(3):
            ada.say("line %d" % k)
            ada.wait_for("ada: line %d" % k, timeout=10)  # its own copy: acknowledged
        time.sleep(0.5)
        rounds = sweeper.rounds
        sweeper.stop()
        code, lines, stderr = ada.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        self.assertEqual(lines, ["* ada joined", "ada: line 0", "ada: line 1", "ada: line 2"])
        self.assertGreaterEqual(rounds, 2, "the sweep ran during the join and the chat")
        found = self.counted(server)
        self.assertEqual(found.get("chat-not-member", 0), 0, found)  # it never took a forged WELCOME

    def test_a_member_rebound_to_a_new_port_is_moved_within_a_round_trip_losing_nothing(self):
        server = self.relay()
        bob = self.client(server, b"bob", None, b"lobby")
        proxy = RebindingProxy(server.port)
        self.addCleanup(proxy.close)
        ada = self.chat(proxy.port, "ada", joined=False)
        ada.wait_for("* ada joined")
        bob.read_events(lambda got: any(e.kind == wire.JOINED and e.nick == b"ada" for e in got))
        ada_id = next(e.sender for e in bob.events if e.kind == wire.JOINED and e.nick == b"ada")

        def bob_says(sequence, text):
            bob.say(sequence, text)
            before = len(bob.events)
            bob.read_events(lambda got: any(e.text == text for e in got[before:]))

        ada.say("before")
        bob.read_events(lambda got: any(e.text == b"before" for e in got))
        bob_says(1, b"b1")
        ada.wait_for("bob: b1")
        proxy.rebind()
        bob_says(2, b"during")  # the relay sends it to ada's old port: lost
        written = time.monotonic()
        ada.say("after")
        bob.read_events(lambda got: any(e.text == b"after" for e in got), timeout=2)
        took = time.monotonic() - written
        ada.wait_for("ada: after", timeout=2)
        bob_says(3, b"b3")
        for line in ("bob: during", "bob: b3"):
            ada.wait_for(line, timeout=5)
        time.sleep(0.5)  # what would come twice, if anything did
        bob.events += sum((wire.decode_events(d) for d in drain(bob.sock, 0.3)), [])
        about_ada = [(e.kind, e.text) for e in bob.events if e.sender == ada_id]
        self.assertEqual(about_ada, [(wire.JOINED, b""), (wire.MESSAGE, b"before"), (wire.MESSAGE, b"after")],
                         "bob saw ada leave, join, time out, or a message twice")
        code, lines, stderr = ada.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        self.assertEqual(sorted(client_tests.messages(lines)),
                         sorted(["ada: before", "bob: b1", "bob: during", "ada: after", "bob: b3"]), lines)
        self.assertEqual([line for line in lines if line.startswith("* ")], ["* bob joined", "* ada joined"], lines)
        self.assertGreaterEqual(proxy.lost_after_rebinding, 1, "nothing went to the old port: no loss tested")
        found = self.counted(server)
        self.assertGreaterEqual(found["chat-moved"], 1, found)
        print("\n    measured: after the rebinding, a line written to the other member's receipt: %.1f ms" % (took * 1000))


if __name__ == "__main__":
    unittest.main()

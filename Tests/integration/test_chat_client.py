"""`hello chat` in pipe mode (each input line a message, each event an output line) against
the real relay, `hellod --listen chat@127.0.0.1:0`."""
import selectors
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import chatwire as wire
from harness import HELLO, Hellod, LineReader, TestCase

# Short keepalives and resends, so that a restart is noticed and a loss resent quickly.
FAST = ["--keepalive", "0.3", "--timeout", "0.2"]
# What hello chat shows when it joins a relay that restarted (a new instance).
RESTARTED = "* the relay restarted: members rejoin"


class ChatProcess:
    """One `hello chat` process: lines in through a pipe, event lines out through another."""

    def __init__(self, port, nick, *extra, room="lobby", retries=8, prefix=()):
        """`prefix`: a command to run it under (e.g. nsenter into a network)."""
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [*prefix, HELLO, "chat", "--port", str(port), "--room", room, "--nick", nick, *FAST, "--retries", str(retries), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file,
            text=True, encoding="utf-8", errors="surrogateescape")
        self.out = LineReader(self.proc.stdout)
        self.lines = []

    def say(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def wait_for(self, line, timeout=10):
        """Reads output until `line` has come; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while line not in self.lines:
            got = self.out.next(deadline - time.monotonic()) if time.monotonic() < deadline else None
            if got is None:
                raise AssertionError("no %r within %s s; output so far: %r" % (line, timeout, self.lines))
            self.lines.append(got.rstrip("\n"))

    def finish(self, timeout=15):
        """Ends the input; returns (exit code, every output line, stderr), the exit bounded."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("hello chat did not exit within %s s of its input's end: %r" % (timeout, self.lines))
        self.lines += [line for line in self.out.rest(timeout=5).split("\n") if line]
        self.stderr_file.seek(0)
        return self.proc.returncode, self.lines, self.stderr_file.read().decode("utf-8", "surrogateescape")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.out.rest(timeout=1)
        if self.out.finished:
            self.proc.stdout.close()
        if not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass  # the process is gone: the pipe is broken
        self.stderr_file.close()


# What a relay sends (docs/PROTOCOL.md), for the tests that play the relay themselves.

def event(sequence, kind, sender, name, text=b"", client_sequence=0):
    """One event (chatwire.MESSAGE, JOINED, LEFT, TIMED_OUT, RENAMED), `sender` its id."""
    return wire.Event(sequence, kind, name, text, sender, client_sequence)


EVE, BOB = wire.ident(b"eve's secret 16b"), wire.ident(b"bob's secret 16b")


class PlayedRelay:
    """A UDP socket that plays the relay for one client, as a test says, step by step:
    what the client sends besides its JOINs (KEEPALIVE, RESEND) is read and ignored. It
    answers with the client's tag, and knows the client's id from its JOIN's secret."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.client = None
        self.tag = self.id = None

    def next_join(self):
        """The client's next JOIN, decoded (bounded: a socket timeout of 10 s per datagram)."""
        while True:
            datagram, self.client = self.sock.recvfrom(2048)
            if wire.type_of(datagram) == wire.JOIN:
                join = wire.decode_request(datagram)
                self.tag, self.id = join.tag, wire.ident(join.secret)
                return join

    def admit(self, token, instance):
        """Its JOIN answered with a CHALLENGE, and its JOIN with the cookie with a WELCOME."""
        self.next_join()
        self.send(wire.challenge(self.tag, wire.cookie(1, 7)))
        self.next_join()
        self.send(wire.welcome(self.tag, token, instance, 1, 1))

    def events(self, instance, *evs):
        self.send(wire.events(self.tag, instance, evs))

    def not_a_member(self, token):
        self.send(wire.not_a_member(self.tag, token))

    def send(self, datagram):
        self.sock.sendto(datagram, self.client)

    def close(self):
        self.sock.close()


def messages(lines):
    return [line for line in lines if not line.startswith("* ")]


class Duplicator:
    """A UDP proxy in front of a relay that delivers every datagram from the relay twice, as
    a network may: the client must show each event once."""

    def __init__(self, port):
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(("127.0.0.1", port))
        self.client = None
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with selectors.DefaultSelector() as selector:
            selector.register(self.front, selectors.EVENT_READ)
            selector.register(self.back, selectors.EVENT_READ)
            while self.running:
                for key, _ in selector.select(timeout=0.1):
                    try:
                        if key.fileobj is self.front:
                            datagram, self.client = self.front.recvfrom(70000)
                            self.back.send(datagram)
                        else:
                            datagram = self.back.recv(70000)
                            if self.client:
                                self.deliver(datagram)
                    except OSError:
                        pass

    def deliver(self, datagram):
        """What the client gets of a datagram from the relay: here, two copies."""
        self.front.sendto(datagram, self.client)
        self.front.sendto(datagram, self.client)

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        self.front.close()
        self.back.close()


class ChatClientTest(TestCase):
    def setUp(self):
        self.processes = []

    def tearDown(self):
        for p in self.processes:
            p.kill()

    def chat(self, port, nick, *extra, **options):
        p = ChatProcess(port, nick, *extra, **options)
        self.processes.append(p)
        return p

    def assertFinishedCleanly(self, p):
        code, lines, stderr = p.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        return lines

    def test_two_members_see_every_message_once_in_one_order(self):
        with Hellod("--listen", "chat@127.0.0.1:0") as server:
            duplicator = Duplicator(server.port)
            try:
                ada = self.chat(server.port, "ada")
                ada.wait_for("* ada joined")
                bob = self.chat(duplicator.port, "bob")  # every datagram to bob comes twice
                bob.wait_for("* bob joined")
                ada.wait_for("* bob joined")
                said = [(ada, "ada", "hi bob"), (bob, "bob", "hi ada"), (ada, "ada", "how are you?"), (bob, "bob", "fine")]
                for client, _, text in said:
                    client.say(text)
                for client in (ada, bob):
                    for _, nick, text in said:
                        client.wait_for("%s: %s" % (nick, text))
                ada_lines = self.assertFinishedCleanly(ada)
                bob_lines = self.assertFinishedCleanly(bob)
            finally:
                duplicator.close()
        self.assertEqual(sorted(messages(ada_lines)), sorted("%s: %s" % (nick, text) for _, nick, text in said))
        self.assertEqual(messages(bob_lines), messages(ada_lines))  # one order, each once
        # ada may have left before bob's input ended.
        self.assertEqual([l for l in bob_lines if l != "* ada left"], ["* ada joined", "* bob joined", *messages(ada_lines)])

    def test_a_joiner_sees_the_rooms_history(self):
        with Hellod("--listen", "chat@127.0.0.1:0") as server:
            ada = self.chat(server.port, "ada")
            ada.say("first")
            ada.say("second")
            ada.wait_for("ada: second")
            carl = self.chat(server.port, "carl")
            carl.wait_for("* carl joined")
            carl_lines = self.assertFinishedCleanly(carl)
            self.assertFinishedCleanly(ada)
        self.assertEqual(carl_lines, ["* ada joined", "ada: first", "ada: second", "* carl joined"])

    def test_a_relay_restart_loses_nothing_and_shows_nothing_twice(self):
        server = Hellod("--listen", "chat@127.0.0.1:0")
        port = server.port
        try:
            ada = self.chat(port, "ada")
            ada.wait_for("* ada joined")
            bob = self.chat(port, "bob")
            bob.wait_for("* bob joined")
            ada.say("before")
            for client in (ada, bob):
                client.wait_for("ada: before")
            code, _ = server.stop()
            server.__exit__()
            self.assertEqual(code, 0)
            ada.say("during")  # sent while nothing listens; resent until the new relay has it
            time.sleep(0.5)
            server = Hellod("--listen", "chat@127.0.0.1:%d" % port)  # the same port: a restart
            for client in (ada, bob):
                client.wait_for("ada: during", timeout=15)
            bob.say("after")
            for client in (ada, bob):
                client.wait_for("bob: after")
            ada_lines = self.assertFinishedCleanly(ada)
            bob_lines = self.assertFinishedCleanly(bob)
        finally:
            server.__exit__()
        for lines in (ada_lines, bob_lines):
            self.assertEqual(messages(lines), ["ada: before", "ada: during", "bob: after"], lines)

    def test_who_typed_before_the_join_completes_waits_for_it(self):
        with Hellod("--listen", "chat@127.0.0.1:0") as server:
            ada = self.chat(server.port, "ada")
            ada.wait_for("* ada joined")
            server.proc.send_signal(signal.SIGSTOP)  # bob's JOIN waits
            try:
                bob = self.chat(server.port, "bob")
                bob.say("/who")
                bob.proc.stdin.close()  # and its input ends: the exit waits for the answer too
                time.sleep(0.5)  # bob has read both, still joining
            finally:
                server.proc.send_signal(signal.SIGCONT)
            code, lines, stderr = bob.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        self.assertIn("* members: ada, bob", lines)

    def test_escape_sequences_from_the_network_are_neutralised(self):
        hostile = "\x1b[2J\x1b]0;owned\x07\x9b31m\u202eevil\u2066\x7f"
        shown = "ada: \\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202eevil\\u2066\\x7f"
        with Hellod("--listen", "chat@127.0.0.1:0") as server:
            ada = self.chat(server.port, "ada")
            ada.wait_for("* ada joined")
            bob = self.chat(server.port, "bob")
            bob.wait_for("* bob joined")
            ada.say(hostile)
            bob.wait_for(shown)
            ada.wait_for(shown)
            lines = self.assertFinishedCleanly(bob) + self.assertFinishedCleanly(ada)
        for line in lines:
            bad = [c for c in line if ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or 0x202a <= ord(c) <= 0x202e
                   or 0x2066 <= ord(c) <= 0x2069 or 0xdc80 <= ord(c) <= 0xdcff]
            self.assertEqual(bad, [], line)

    def test_hostile_nicks_from_a_relay_are_neutralised_too(self):
        """hellod refuses such nicks; a relay that is not hellod may send them anyway."""
        nick = "\x1b]0;x\x07ev\u202eil".encode()
        shown = "\\x1b]0;x\\x07ev\\u202eil"

        relay = self.played_relay()
        p = self.chat(relay.port, "ada")
        p.proc.stdin.close()
        relay.admit(99, 5)
        relay.events(5, event(1, 2, EVE, nick), event(2, 1, EVE, nick, b"\x9b2J\xff"), event(3, 2, relay.id, b"ada"))
        code = p.proc.wait(timeout=10)
        lines = [line for line in p.out.rest(timeout=5).split("\n") if line]
        self.assertEqual(code, 0)
        self.assertEqual(lines, ["* %s joined" % shown, "%s: \ufffd2J\ufffd" % shown, "* ada joined"])

    def played_relay(self):
        relay = PlayedRelay()
        self.addCleanup(relay.close)
        return relay

    def test_an_event_the_relay_sends_twice_is_shown_once(self):
        # The same instance and room sequence: one event, whatever its kind, by the room's order.
        relay = self.played_relay()
        p = self.chat(relay.port, "ada")
        relay.admit(99, 5)
        first = [event(1, 2, EVE, b"eve"), event(2, 1, EVE, b"eve", b"hi", client_sequence=1), event(3, 2, relay.id, b"ada")]
        relay.events(5, *first)
        relay.events(5, *first)
        relay.events(5, first[0], event(4, 2, BOB, b"bob"))
        p.wait_for("* bob joined")
        code, lines, stderr = p.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        self.assertEqual(lines, ["* eve joined", "eve: hi", "* ada joined", "* bob joined"])

    def test_a_message_a_restarted_relay_sends_again_is_shown_once(self):
        # A restarted relay has forgotten what it delivered: eve's resend of "hi", taken
        # again, comes back under a new instance and room sequence, with the same id
        # and client sequence. Only the client's filter by those two shows it once.
        relay = self.played_relay()
        p = self.chat(relay.port, "ada")
        relay.admit(99, 5)
        relay.events(5, event(1, 2, EVE, b"eve"), event(2, 2, relay.id, b"ada"),
                     event(3, 1, EVE, b"eve", b"hi", client_sequence=1))
        p.wait_for("eve: hi")
        relay.not_a_member(99)  # the restart: the new relay does not know ada's token
        relay.admit(100, 6)
        relay.events(6, event(1, 2, EVE, b"eve"), event(2, 1, EVE, b"eve", b"hi", client_sequence=1),
                     event(3, 2, relay.id, b"ada"), event(4, 1, EVE, b"eve", b"bye", client_sequence=2))
        p.wait_for("eve: bye")
        code, lines, stderr = p.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        self.assertEqual(messages(lines), ["eve: hi", "eve: bye"], lines)
        self.assertEqual(lines, ["* eve joined", "* ada joined", "eve: hi",
                                 RESTARTED, "* eve joined", "* ada joined", "eve: bye"])

    def test_a_restart_is_told_once_each_and_an_eviction_is_not(self):
        relay = self.played_relay()
        p = self.chat(relay.port, "ada")
        relay.admit(99, 5)
        relay.events(5, event(1, 2, relay.id, b"ada"))
        p.wait_for("* ada joined")
        relay.not_a_member(99)  # evicted: the same relay, the same instance
        relay.admit(100, 5)
        relay.events(5, event(2, 4, relay.id, b"ada"), event(3, 2, relay.id, b"ada"))
        p.wait_for("* ada timed out")
        for token, instance in ((101, 6), (102, 7)):  # two restarts
            relay.not_a_member(token - 1)
            relay.admit(token, instance)
            relay.events(instance, event(1, 2, relay.id, b"ada"), event(2, 1, EVE, b"eve", b"%d" % instance, instance))
            p.wait_for("eve: %d" % instance)
        code, lines, stderr = p.finish()
        self.assertEqual((code, stderr), (0, ""), lines)
        self.assertEqual(lines, ["* ada joined", "* ada timed out", "* ada joined",
                                 RESTARTED, "* ada joined", "eve: 6", RESTARTED, "* ada joined", "eve: 7"])

    def test_a_relay_restart_is_told_before_the_members_rejoin(self):
        server = Hellod("--listen", "chat@127.0.0.1:0")
        port = server.port
        try:
            ada = self.chat(port, "ada")
            ada.wait_for("* ada joined")
            bob = self.chat(port, "bob")
            bob.wait_for("* bob joined")
            ada.wait_for("* bob joined")
            code, _ = server.stop()
            server.__exit__()
            self.assertEqual(code, 0)
            server = Hellod("--listen", "chat@127.0.0.1:%d" % port)  # the same port: a restart
            for client in (ada, bob):
                client.wait_for(RESTARTED, timeout=15)  # a keepalive heard NOT A MEMBER
            ada.say("after")  # and a message is acknowledged by the new relay
            for client in (ada, bob):
                client.wait_for("ada: after", timeout=15)
            ada_lines = self.assertFinishedCleanly(ada)
            bob_lines = self.assertFinishedCleanly(bob)
        finally:
            server.__exit__()
        for lines in (ada_lines, bob_lines):
            # The rejoins come in either order, and bob's may follow ada's message.
            lines = [line for line in lines if line != "* ada left"]
            self.assertEqual(lines[:3], ["* ada joined", "* bob joined", RESTARTED], lines)
            self.assertEqual(sorted(lines[3:]), ["* ada joined", "* bob joined", "ada: after"], lines)

    def test_a_relay_that_never_answers_ends_in_exit_1_naming_the_message(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))  # receives, never answers
            started = time.monotonic()
            p = self.chat(silent.getsockname()[1], "ada", retries=3)
            p.say("anyone there?")
            code, lines, stderr = p.finish(timeout=15)
            elapsed = time.monotonic() - started
        self.assertEqual(code, 1, lines)
        self.assertEqual(lines, [])
        self.assertEqual(stderr.count("\n"), 1, stderr)
        self.assertIn("no answer to JOIN", stderr)
        self.assertIn('"anyone there?"', stderr)
        self.assertLess(elapsed, 10)

    def test_bad_arguments_exit_64_in_one_line(self):
        for args in (["--room", "lobby", "--nick", "a\x1bb"], ["--room", "", "--nick", "ada"],
                     ["--room", "lobby", "--nick", "ada", "--retries", "-1"]):
            done = subprocess.run([HELLO, "chat", *args], capture_output=True, text=True, timeout=10)
            self.assertEqual(done.returncode, 64, done)
            self.assertEqual(done.stderr.count("\n"), 1, done.stderr)


if __name__ == "__main__":
    unittest.main()

"""Look-alike nicks over real sockets (docs/PROTOCOL.md, "Names"): the relay refuses a
nick that reads as a member's as taken, and one with invisible characters or mixed
scripts as a bad name, on JOIN and on NICK; `hello chat` refuses the latter before
sending anything."""
import subprocess
import unittest

import chatwire as wire
import test_chat_client as client_tests
from harness import HELLO, Hellod, TestCase
from test_chat import Client

NICK_TAKEN, BAD_NAME = wire.NICK_TAKEN, wire.BAD_NAME
ALICE_IN_CYRILLIC = "\u0430\u04cf\u0456\u0441\u0435".encode()  # а ӏ і с е: one script, reads "alice"


class NickTest(TestCase):
    def setUp(self):
        self.server = Hellod("--listen", "chat@127.0.0.1:0")
        self.addCleanup(self.server.__exit__)
        self.alice = self.client(b"alice", 1)
        self.assertEqual(wire.type_of(self.alice.join(b"r")), wire.WELCOME)

    def client(self, name, secret):
        c = Client(self.server.port, name, secret)
        self.addCleanup(c.close)
        return c

    def assertRefused(self, answer, reason, client):
        self.assertEqual(wire.decode(answer), wire.Refused(client.tag, reason), answer[:20])

    def test_a_look_alike_join_is_refused_and_a_distinct_one_welcomed(self):
        for secret, (name, reason) in enumerate([
                (b"ALICE", NICK_TAKEN),
                ("\uff41lice".encode(), NICK_TAKEN),           # a fullwidth a
                (ALICE_IN_CYRILLIC, NICK_TAKEN),
                ("alice\u200b".encode(), BAD_NAME),            # a zero-width space
                ("\u0430lice".encode(), BAD_NAME),             # Cyrillic a among Latin
        ], 2):
            c = self.client(name, secret)
            self.assertRefused(c.join(b"r"), reason, c)
        self.assertEqual(wire.type_of(self.client("alicé".encode(), 10).join(b"r")), wire.WELCOME)
        self.assertEqual(self.alice.who(), [b"alice", "alicé".encode()])

    def test_a_look_alike_rename_is_refused_and_a_distinct_one_announced(self):
        bob = self.client(b"bob", 2)
        self.assertEqual(wire.type_of(bob.join(b"r")), wire.WELCOME)
        for name, reason in ((b"Alice", NICK_TAKEN), (ALICE_IN_CYRILLIC, NICK_TAKEN), ("bob\u00ad".encode(), BAD_NAME)):
            self.assertRefused(bob.ask(wire.nick(bob.tag, bob.token, name)), reason, bob)
        bob.rename(b"carol")
        self.alice.read_events(lambda seen: any(e[1] == 5 for e in seen))
        self.assertIn((wire.RENAMED, b"bob", b"carol", bob.id), [(e.kind, e.nick, e.text, e.sender) for e in self.alice.events])

    def test_hello_chat_refuses_a_bad_nick_before_sending(self):
        for name in ("alice\u200b", "\u0430lice", "a\u0301\u034f"):
            done = subprocess.run([HELLO, "chat", "--port", str(self.server.port), "--room", "r", "--nick", name],
                                  capture_output=True, text=True, timeout=10)
            self.assertEqual((done.returncode, done.stdout, done.stderr.count("\n")), (64, "", 1), done)
            self.assertIn("--nick", done.stderr)
        p = client_tests.ChatProcess(self.server.port, "bob", room="r")
        self.addCleanup(p.kill)
        p.wait_for("* bob joined")
        p.say("/nick b\u043eb")
        p.say("/nick Alice")
        p.say("after")
        p.wait_for("bob: after")  # the relay's refusal came before it
        code, lines, stderr = p.finish()
        self.assertEqual(code, 0, (lines, stderr))
        problems = stderr.splitlines()
        self.assertEqual(len(problems), 2, stderr)
        self.assertIn("/nick", problems[0])     # refused here: nothing sent
        self.assertIn("taken", problems[1])     # refused by the relay
        self.assertNotIn("* bob is now", "\n".join(lines))


if __name__ == "__main__":
    unittest.main()

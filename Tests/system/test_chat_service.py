"""The chat relay installed under a real systemd (PID 1 in private namespaces with its own
network): hellod-chat.socket (UDP 6000, FileDescriptorName=chat) enabled beside
hellod.socket, the first JOIN starting hellod.service and answered, two `hello chat`
clients (pipe mode) talking, and then `systemctl restart hellod` and a `kill -9` of its
main process in the middle of a conversation: both clients keep sending through it, each
shows every message exactly once and exits 0.

What is checked is what users see: the clients' output lines and exit codes, `systemctl
show` properties, and the journal's HELLOD_* fields (the machine interface), never the
prose of MESSAGE. The steps run in order (their names are numbered) on one booted systemd,
powered off whatever happens.
"""
import collections
import json
import os
import sys
import threading
import time
import unittest

from private_systemd import InstalledCheckout, VERSION
import chatwire as wire
import test_chat_client as client_tests  # its ChatProcess (a module, so its tests do not run here)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A JOIN without a cookie, padded to 64 bytes, from the namespace's network: the answer's
# bytes as hex (None: nothing in 10 s), and the don't-fragment bit and IP ID of each
# packet from port 6000 seen on loopback meanwhile, as JSON.
FIRST_JOIN = r"""
import json, socket, sys
sys.path.insert(0, %r)
import chatwire as wire
import udptool
capture = udptool.capture("lo")
join = wire.join(wire.new_tag(), wire.NO_COOKIE, wire.new_secret(), 0, b"r", b"eve")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(join, ("127.0.0.1", 6000))
try:
    reply = s.recv(2048).hex()
except socket.timeout:
    reply = None
sent = [(p["df"], p["id"]) for p in udptool.captured(capture) if p["sport"] == 6000]
print(json.dumps({"reply": reply, "sent": sent}))
""" % os.path.join(ROOT, "Tests", "integration")


class Chatter(client_tests.ChatProcess):
    """`hello chat` in the namespace's network, in pipe mode, with short keepalives and
    resends (a restart is noticed within a second); `say_paced` feeds it from a thread."""

    def __init__(self, systemd, nick):
        super().__init__(6000, nick, prefix=("nsenter", "-t", str(systemd.pid), "-n", "--"))
        self.nick = nick
        self.feeder = None

    def say_paced(self, texts, pace):
        def feed():
            for text in texts:
                self.say(text)
                time.sleep(pace)
        self.feeder = threading.Thread(target=feed)
        self.feeder.start()

    def finish(self, timeout=20):
        if self.feeder:
            self.feeder.join(timeout=timeout)
        return super().finish(timeout=timeout)


def messages(lines):
    """The message lines ("nick: text"), without the announcements ("* ...")."""
    return [line for line in lines if not line.startswith("* ")]


def counter_fields(entry, prefix="HELLOD_CHAT_"):
    return {key[len(prefix):]: int(value) for key, value in entry.items() if key.startswith(prefix)}


class InstalledChat(InstalledCheckout):

    def setUp(self):
        self.chatters = []

    def tearDown(self):
        for c in self.chatters:
            c.kill()

    # Helpers

    def chatter(self, nick):
        """A `hello chat` as `nick`, once its own "joined" has come (ended in tearDown)."""
        c = Chatter(self.systemd, nick)
        self.chatters.append(c)
        c.wait_for("* %s joined" % nick)
        return c

    def converse_across(self, action, lines=20, pace=0.1, at=0.8):
        """Ada and bob each say `lines` lines, one every `pace` s; `action` runs `at` s in.
        Both must exit 0, each showing every message of both exactly once."""
        self.systemctl("reset-failed", "hellod.service")
        ada, bob = self.chatter("ada"), self.chatter("bob")
        said = {"ada": ["a%02d" % i for i in range(lines)], "bob": ["b%02d" % i for i in range(lines)]}
        ada.say_paced(said["ada"], pace)
        bob.say_paced(said["bob"], pace)
        time.sleep(at)
        action()
        results = {c.nick: c.finish() for c in (ada, bob)}
        expected = collections.Counter("%s: %s" % (nick, text) for nick in said for text in said[nick])
        for nick, (code, output, stderr) in results.items():
            self.assertEqual((code, stderr), (0, ""), "%s: %r" % (nick, output))
            self.assertEqual(collections.Counter(messages(output)), expected, nick)
            # It noticed: the relay had forgotten it, it joined again (the room saw it).
            self.assertGreaterEqual(output.count("* %s joined" % nick), 2, output)
            # Each sender's own lines in the order it said them.
            own = [line for line in messages(output) if line.startswith(nick + ": ")]
            self.assertEqual(own, ["%s: %s" % (nick, text) for text in said[nick]], nick)
        return results

    # The steps, in order

    def test_01_install_and_enable_the_chat_socket(self):
        result = self.systemd.run("make", "-C", ROOT, "install", check=False, timeout=600)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.systemctl("enable", "--now", "hellod.socket", "hellod-chat.socket", check=True)
        chat = self.show("hellod-chat.socket", "ActiveState", "Triggers", "FileDescriptorName", "PassPacketInfo", "Listen")
        self.assertEqual(chat, {"ActiveState": "active", "Triggers": "hellod.service", "FileDescriptorName": "chat",
                                "PassPacketInfo": "yes", "Listen": "[::]:6000 (Datagram)"})
        self.assertEqual(self.show("hellod.service", "ActiveState")["ActiveState"], "inactive")
        # Enabled into hellod.service's wants too: a restart brings the socket along.
        wants = self.systemd.run("ls", "/etc/systemd/system/hellod.service.wants", check=False).stdout.split()
        self.assertEqual(wants, ["hellod-chat.socket"])

    def test_02_the_first_join_starts_hellod_and_is_answered(self):
        started = time.monotonic()
        answer = json.loads(self.systemd.run_in_network(sys.executable, "-c", FIRST_JOIN).stdout)
        self.assertIsNotNone(answer["reply"], "no CHALLENGE to the activating JOIN")
        challenge = bytes.fromhex(answer["reply"])
        self.assertEqual((wire.type_of(challenge), len(challenge)), (wire.CHALLENGE, wire.CHALLENGE_LENGTH))
        # Sent whole from the socket systemd made, under the unit's sandbox: don't-fragment, ID 0.
        self.assertTrue(answer["sent"], "the CHALLENGE was not seen on loopback")
        self.assertEqual({tuple(p) for p in answer["sent"]}, {(True, 0)})
        print("\n    measured: a JOIN through a cold socket activation to its CHALLENGE: %.0f ms"
              % ((time.monotonic() - started) * 1000), file=sys.stderr)
        props = self.show("hellod.service", "ActiveState", "SubState", "MainPID")
        self.assertEqual((props["ActiveState"], props["SubState"]), ("active", "running"))
        start = self.wait_for_entry(props["MainPID"], "hellod %s serving " % VERSION)
        self.assertEqual((start["HELLOD_ORIGIN"], sorted(start["HELLOD_SERVICES"].split())),
                         ("socket activation", ["chat", "hello"]))
        self.assertEqual(sorted(start["HELLOD_SOCKETS"].split()), ["chat@[::]:6000", "hello@[::]:9999"])

    def test_03_two_clients_chat(self):
        ada, bob = self.chatter("ada"), self.chatter("bob")
        ada.wait_for("* bob joined")
        ada.say("hi bob")
        bob.wait_for("ada: hi bob")
        bob.say("hi ada, how are you?")
        ada.wait_for("bob: hi ada, how are you?")
        results = {"bob": bob.finish()}
        ada.wait_for("* bob left")
        results["ada"] = ada.finish()
        code, lines, stderr = results["bob"]
        self.assertEqual((code, stderr), (0, ""))
        self.assertEqual(lines, ["* ada joined", "* bob joined", "ada: hi bob", "bob: hi ada, how are you?"])
        code, lines, stderr = results["ada"]
        self.assertEqual((code, stderr), (0, ""))
        self.assertEqual(lines, ["* ada joined", "* bob joined", "ada: hi bob", "bob: hi ada, how are you?", "* bob left"])

    def test_04_systemctl_restart_mid_conversation_loses_nothing(self):
        before = self.main_pid()
        self.assertNotEqual(before, "0")
        self.converse_across(lambda: self.systemctl("restart", "hellod.service", check=True))
        after = self.show("hellod.service", "MainPID", "ActiveState", "NRestarts")
        self.assertNotIn(after["MainPID"], ("0", before))
        self.assertEqual((after["ActiveState"], after["NRestarts"]), ("active", "0"))
        self.assertEqual(self.show("hellod-chat.socket", "ActiveState")["ActiveState"], "active")
        # The stopped hellod's counters: every chat datagram it read replied or counted.
        stop = counter_fields(self.wait_for_entry(before, "hellod stopped on SIGTERM"))
        self.assertGreater(stop["READ"], 0, stop)
        self.assertEqual(stop["READ"], stop["REPLIED"] + stop["DROPPED"], stop)

    def test_05_kill_9_mid_conversation_loses_nothing(self):
        before = self.show("hellod.service", "MainPID", "NRestarts")
        self.converse_across(lambda: self.systemd.run("kill", "-9", before["MainPID"]))
        after = self.show("hellod.service", "MainPID", "ActiveState", "NRestarts", "Result")
        self.assertNotIn(after["MainPID"], ("0", before["MainPID"]))
        self.assertEqual(after["ActiveState"], "active")
        self.assertEqual(int(after["NRestarts"]), int(before["NRestarts"]) + 1)  # Restart=on-failure
        self.assertEqual(self.show("hellod-chat.socket", "ActiveState")["ActiveState"], "active")
        self.assertEqual(self.hellod_entries(before["MainPID"], "hellod stopped on "), [])  # killed: no stop line


if __name__ == "__main__":
    unittest.main()

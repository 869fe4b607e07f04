"""`hello chat` on a real terminal: a tmux server of the test's own (never the user's), the
release client in its pane against `hellod --listen chat@127.0.0.1:0`, and a second member
in pipe mode. Keys go in with send-keys; what the terminal shows comes out of capture-pane."""
import itertools
import os
import shlex
import signal
import subprocess
import tempfile
import time
import unicodedata
import unittest

from harness import HELLO, Hellod, TestCase
from test_chat_client import RESTARTED, ChatProcess

WIDTH, HEIGHT = 100, 30
_servers = itertools.count()


class Tmux:
    """A tmux server named for this test, one pane running `command` in a shell, a fixed size."""

    def __init__(self, command):
        self.name = "hellod-test-%d-%d" % (os.getpid(), next(_servers))
        self.env = dict(os.environ, LC_ALL="C.UTF-8", TERM="xterm-256color")
        self.run("new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT), "-s", "chat", command)

    def run(self, *args):
        return subprocess.run(["tmux", "-u", "-L", self.name, "-f", "/dev/null", *args], env=self.env,
                              capture_output=True, text=True, timeout=10, check=True).stdout

    def type(self, text):
        self.run("send-keys", "-t", "chat", "-l", text)

    def keys(self, *names):
        self.run("send-keys", "-t", "chat", *names)

    def screen(self, *options):
        return self.run("capture-pane", "-p", "-t", "chat", *options)

    def display(self, what):
        return self.run("display-message", "-p", "-t", "chat", what).strip()

    def wait_for(self, check, what, timeout=5):
        """Captures the pane until `check(screen)`; fails with the screen after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError("%s not on the screen within %s s:\n%s" % (what, timeout, screen))
            time.sleep(0.05)

    def wait_for_text(self, text, timeout=5):
        return self.wait_for(lambda screen: text in screen, repr(text), timeout)

    def kill(self):
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True, timeout=10)


def rows(screen):
    return [row.rstrip() for row in screen.split("\n") if row.strip()]


class ChatTerminalTest(TestCase):
    def setUp(self):
        self.server = Hellod("--listen", "chat@127.0.0.1:0")
        self.addCleanup(self.server.__exit__)
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def pipe_member(self, nick):
        p = ChatProcess(self.server.port, nick)
        self.addCleanup(p.kill)
        return p

    def terminal_member(self, nick):
        """`hello chat` in a tmux pane; once it exits, its status and `stty -a` go to files."""
        status, stty = (os.path.join(self.dir.name, "%s.%s" % (nick, name)) for name in ("status", "stty"))
        command = "%s chat --port %d --room lobby --nick %s --keepalive 0.3 --timeout 0.2; echo $? > %s; " \
                  "stty -a > %s; exec sleep 60" % (shlex.quote(HELLO), self.server.port, nick, status, stty)
        tmux = Tmux(command)
        self.addCleanup(tmux.kill)
        tmux.wait_for_text("* %s joined" % nick)
        return tmux

    def ada_and_bob(self):
        """ada on a terminal, bob in a pipe, both in the room."""
        ada = self.terminal_member("ada")
        bob = self.pipe_member("bob")
        ada.wait_for_text("* bob joined")
        bob.wait_for("* bob joined")
        return ada, bob

    def stop_relay(self):
        """The relay hears nothing until SIGCONT (sent at the end in any case)."""
        self.server.proc.send_signal(signal.SIGSTOP)
        self.addCleanup(self.server.proc.send_signal, signal.SIGCONT)

    def assertLeft(self, nick, status):
        """`nick`'s hello chat exited with `status`, the terminal back in cooked mode."""
        got, stty = self.exit_status_and_stty(nick)
        self.assertEqual(got, status, nick)
        for setting in ("echo", "icanon", "isig"):
            self.assertIn(setting, stty)

    def exit_status_and_stty(self, nick, timeout=5):
        path = os.path.join(self.dir.name, nick + ".stty")
        deadline = time.monotonic() + timeout
        while not (os.path.exists(path) and os.path.getsize(path) > 0):
            if time.monotonic() > deadline:
                raise AssertionError("hello chat did not exit within %s s" % timeout)
            time.sleep(0.05)
        with open(os.path.join(self.dir.name, nick + ".status")) as status, open(path) as stty:
            return int(status.read()), stty.read().split()

    def test_a_message_arrives_while_a_line_is_half_typed_and_the_line_stays(self):
        ada, bob = self.ada_and_bob()
        ada.type("hello wrld")
        ada.wait_for_text("[lobby] ada> hello wrld")
        bob.say("hi ada")
        screen = ada.wait_for_text("bob: hi ada")
        # The message is above the prompt, the half-typed line still on it, the cursor after it.
        self.assertEqual(rows(screen)[-2:], ["bob: hi ada", "[lobby] ada> hello wrld"], screen)
        self.assertEqual(ada.display("#{cursor_x}"), str(len("[lobby] ada> hello wrld")))
        ada.keys("Left", "Left", "Left", "o", "End", "x", "BSpace", "!", "Enter")  # still editable
        bob.wait_for("ada: hello world!")
        ada.wait_for_text("ada: hello world! \u2713")  # acknowledged: its copy came back
        # The whole history, not only the screen: no stale copy of the line typed anywhere.
        self.assertEqual(rows(ada.screen("-S", "-")), ["* ada joined", "* bob joined", "bob: hi ada",
                                                       "ada: hello world! \u2713", "[lobby] ada>"])

    def test_a_message_full_of_escape_sequences_arrives_harmless(self):
        ada, bob = self.ada_and_bob()
        title = ada.display("#{pane_title}")
        ada.type("half")
        hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x9b\udc9b[2J\u202eevil\x1b[H"
        bob.say(hostile)
        shown = "bob: \\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred\\x9b\ufffd[2J\\u202eevil\\x1b[H"
        screen = ada.wait_for_text(shown)
        self.assertEqual(rows(screen), ["* ada joined", "* bob joined", shown, "[lobby] ada> half"])  # not cleared
        self.assertEqual(ada.display("#{pane_title}"), title)  # not retitled
        self.assertNotIn("\x1b[31m", ada.screen("-e"))  # not coloured

    def test_who_nick_and_quit_and_the_terminal_restored(self):
        ada, bob = self.ada_and_bob()
        # One at a time: a reply (MEMBERS, REFUSED) and an event may cross on the way.
        for line, outcome in (("/who", "* members: ada, bob"), ("/nick alice", "* ada is now alice"),
                              ("/nick bob", "! refused: the nick, or one that reads the same, is taken"),
                              ("/frob", "! /frob: no such command")):
            ada.type(line)
            ada.keys("Enter")
            screen = ada.wait_for_text(outcome)
        self.assertEqual(rows(screen), ["* ada joined", "* bob joined", "* members: ada, bob", "* ada is now alice",
                                        "! refused: the nick, or one that reads the same, is taken",
                                        "! /frob: no such command (/who, /nick NEW, /quit; //text sends /text)",
                                        "[lobby] alice>"])
        bob.wait_for("* ada is now alice")
        ada.type("/quit")
        ada.keys("Enter")
        self.assertLeft("ada", 0)
        bob.wait_for("* alice left")

    def test_sigterm_leaves_and_restores_the_terminal(self):
        ada, bob = self.ada_and_bob()
        ada.type("half typed")
        ada.wait_for_text("ada> half typed")
        shell = ada.display("#{pane_pid}")  # the pane's shell; hello chat is its child
        pid = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True, timeout=10).stdout.split()
        self.assertEqual(len(pid), 1, pid)
        os.kill(int(pid[0]), signal.SIGTERM)
        self.assertLeft("ada", 0)
        bob.wait_for("* ada left")

    def test_own_messages_show_as_sending_until_their_copy_comes_back(self):
        ada = self.terminal_member("ada")
        self.stop_relay()
        ada.type("anyone?")
        ada.keys("Enter")
        screen = ada.wait_for_text("ada: anyone? (sending)")
        self.assertEqual(rows(screen)[-2:], ["ada: anyone? (sending)", "[lobby] ada>"], screen)
        self.server.proc.send_signal(signal.SIGCONT)  # a resend gets through
        screen = ada.wait_for_text("ada: anyone? \u2713")
        self.assertEqual(rows(screen), ["* ada joined", "ada: anyone? \u2713", "[lobby] ada>"])

    def test_a_relay_restart_is_told_once_above_the_rejoins(self):
        ada = self.terminal_member("ada")
        code, _ = self.server.stop()
        self.server.__exit__()
        self.assertEqual(code, 0)
        self.server = Hellod("--listen", "chat@127.0.0.1:%d" % self.server.port)  # the same port: a restart
        self.addCleanup(self.server.__exit__)
        ada.wait_for_text(RESTARTED, timeout=15)  # a keepalive heard NOT A MEMBER
        ada.type("back")
        ada.keys("Enter")
        screen = ada.wait_for_text("ada: back \u2713", timeout=15)
        self.assertEqual(rows(screen), ["* ada joined", RESTARTED, "* ada joined", "ada: back \u2713", "[lobby] ada>"])

    def test_a_second_ctrl_c_leaves_at_once_naming_what_was_not_acknowledged(self):
        ada = self.terminal_member("ada")
        self.stop_relay()
        ada.type("anyone?")
        ada.keys("Enter", "C-c")  # leaving, once "anyone?" is acknowledged
        ada.wait_for_text("[lobby] ada (leaving)>")
        ada.keys("C-c")  # now
        self.assertLeft("ada", 1)
        ada.wait_for_text('hello: 1 message(s) not acknowledged by 127.0.0.1:%d: "anyone?"' % self.server.port)

    def test_ctrl_d_on_an_empty_line_and_ctrl_c_leave_and_restore_the_terminal(self):
        ada, bob = self.terminal_member("ada"), self.terminal_member("bob")
        ada.type("not empty")
        ada.keys("C-d")  # on a line with text: Delete (nothing under the cursor)
        ada.type("!")
        ada.wait_for_text("[lobby] ada> not empty!")
        ada.keys("C-a", "C-k", "C-d")
        bob.keys("C-c")
        for nick in ("ada", "bob"):
            self.assertLeft(nick, 0)
        self.assertNotIn("not empty", ada.screen())

    def test_a_line_longer_than_the_terminal_scrolls_sideways_and_is_sent_whole(self):
        ada, bob = self.ada_and_bob()
        text = " ".join("word%03d" % i for i in range(30))  # 239 characters, the pane 100 wide
        ada.type(text)
        screen = ada.wait_for_text(text[-40:])
        self.assertEqual(rows(screen)[-1], "[lobby] ada> " + text[-(WIDTH - 1 - len("[lobby] ada> ")):], screen)
        ada.keys("Enter")
        bob.wait_for("ada: " + text)


    def test_utf8_input_is_edited_a_character_at_a_time(self):
        ada, bob = self.ada_and_bob()
        ada.type("he\u0301llo \u4e2d\u6587 e\u0301!")  # a combining accent, two wide characters
        ada.keys("BSpace", "BSpace")  # "!", then the whole "e\u0301"
        ada.type("?")
        prompt = unicodedata.normalize("NFC", "[lobby] ada> he\u0301llo \u4e2d\u6587 ?")
        ada.wait_for(lambda screen: unicodedata.normalize("NFC", rows(screen)[-1]) == prompt, repr(prompt))
        self.assertEqual(ada.display("#{cursor_x}"), str(len("[lobby] ada> hello ") + 4 + 2))
        ada.keys("Enter")
        bob.wait_for("ada: he\u0301llo \u4e2d\u6587 ?")

    def test_a_narrower_terminal_gets_the_live_area_drawn_anew(self):
        ada, bob = self.ada_and_bob()
        text = "x" * 80
        ada.type(text)
        ada.wait_for_text("ada> " + text)
        ada.run("resize-window", "-t", "chat", "-x", "50", "-y", str(HEIGHT))
        screen = ada.wait_for(lambda screen: rows(screen)[-1] == "[lobby] ada> " + "x" * (49 - 13), "a 50-column prompt row")
        # The rows the old prompt row was wrapped into are gone; what scrolled off is in the history.
        self.assertEqual(rows(ada.screen("-S", "-")), ["* ada joined", "* bob joined", "[lobby] ada> " + "x" * 36])
        bob.say("still here")
        screen = ada.wait_for_text("bob: still here")
        self.assertEqual(rows(screen)[-2:], ["bob: still here", "[lobby] ada> " + "x" * 36], screen)


if __name__ == "__main__":
    unittest.main()

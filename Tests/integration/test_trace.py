"""The per-datagram trace (--trace, --trace-from, --trace-rate, SIGUSR1), read as a user
reads it outside systemd: one stderr line per datagram, saying its service, peer, the
address it came to, its size and its fate (replied with the reply's size and source,
served, or the drop reason as the counters name it). Real sockets, the release binary;
the journal's fields are Tests/system/test_trace_journal.py's."""
import re
import signal
import socket
import time
import unittest

import chatwire as wire
from harness import Hellod, counters, hello
from test_chat import Client

LINE = re.compile(r"hellod: trace: (?P<service>\w+) (?P<peer>\S+) -> (?P<local>\S+), (?P<bytes>\d+) bytes"
                  r"(?:, (?P<request>[A-Z]+))?(?: room \"(?P<room>.*)\")?: (?P<fate>.*)$")


def traced(lines):
    """The trace lines among `lines`, parsed."""
    return [m.groupdict() for m in (LINE.match(line) for line in lines.splitlines()) if m]


def sender(address="127.0.0.1", port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, port))
    s.settimeout(2)
    return s


def peer_of(s):
    return "%s:%d" % s.getsockname()


class TraceLines(unittest.TestCase):
    def test_each_fate_the_test_can_provoke_is_one_line_and_sources_outside_the_filter_none(self):
        with Hellod("--listen", "hello@127.0.0.1:0", "--listen", "chat@127.0.0.1:0",
                    "--trace", "--trace-from", "127.0.0.1", "--trace-from", "127.0.0.2/32") as d:
            hello_port, chat_port = (int(a.rsplit(":", 1)[1]) for a in d.addresses)
            local = "127.0.0.1:%d" % hello_port
            sent = {}
            with sender() as plain, sender(port=80) as privileged, sender("127.0.0.2", hello_port) as own, \
                    sender("127.0.0.9") as outside, sender() as large:
                plain.sendto(b"Michael", ("127.0.0.1", hello_port))
                self.assertEqual(plain.recv(100), b"Hello, Michael!")
                privileged.sendto(b"Tracy", ("127.0.0.1", hello_port))
                own.sendto(b"Sarah", ("127.0.0.1", hello_port))
                outside.sendto(b"not traced", ("127.0.0.1", hello_port))
                self.assertEqual(outside.recv(100), b"Hello, not traced!")
                large.sendto(b"x" * 65500, ("127.0.0.1", hello_port))  # its reply would pass 65507
                sent.update(plain=peer_of(plain), privileged=peer_of(privileged), own="127.0.0.2:%d" % hello_port,
                            large=peer_of(large))
                member = Client(chat_port, b"al")
                member.join(b"lobby")
                member.say(1, b"hi")
                member.sock.recv(2048)  # its own message, as an event: the SAY was served
                short = sender()
                short.sendto(bytes([wire.VERSION, wire.JOIN]) + b"\0" * 8, ("127.0.0.1", chat_port))
                sent.update(member=peer_of(member.sock), short=peer_of(short))
                short.close()
                evil = Client(chat_port, b"ev")
                refused = evil.ask(evil.join_datagram(evil.cookie(), b"\x1b[31mred"))
                self.assertEqual(wire.type_of(refused), wire.REFUSED)
                sent["evil"] = peer_of(evil.sock)
                member.sock.close()
                evil.sock.close()
                time.sleep(0.3)  # the writer empties the rings every 100 ms
            code, out = d.stop()
        self.assertEqual(code, 0, out)
        lines = traced(out)
        by_peer = {}
        for line in lines:
            by_peer.setdefault(line["peer"], []).append(line)
        hello_line = dict(service="hello", local=local, request=None, room=None)
        self.assertEqual(by_peer[sent["plain"]], [dict(hello_line, peer=sent["plain"], bytes="7",
                                                       fate="replied, 15 bytes from 127.0.0.1")])
        self.assertEqual(by_peer[sent["privileged"]], [dict(hello_line, peer=sent["privileged"], bytes="5",
                                                            fate="dropped, privileged-source-port")])
        self.assertEqual(by_peer[sent["own"]], [dict(hello_line, peer=sent["own"], bytes="5",
                                                     fate="dropped, own-port")])
        self.assertEqual(by_peer[sent["large"]], [dict(hello_line, peer=sent["large"], bytes="65500",
                                                       fate="dropped, reply-too-large")])
        self.assertFalse([line for line in lines if line["peer"].startswith("127.0.0.9:")], "outside the filter")
        # The chat: the two steps of a JOIN answered, the SAY served (its answer is the event
        # to the room), a short JOIN dropped; a room name as the chat client would show it.
        chat = [(line["request"], line["room"], line["fate"]) for line in by_peer[sent["member"]]]
        self.assertEqual(chat[:2], [("JOIN", "r", "replied, 22 bytes from 127.0.0.1"),
                                    ("JOIN", "lobby", "replied, %d bytes from 127.0.0.1" % len(wire.welcome(0, 0, 0, 0, 0)))])
        self.assertEqual(chat[2], ("SAY", "lobby", "served"))
        self.assertEqual([(line["request"], line["fate"]) for line in by_peer[sent["short"]]],
                         [("JOIN", "dropped, chat-short-join")])
        evil_join = by_peer[sent["evil"]][-1]
        self.assertEqual(evil_join["room"], "\\x1b[31mred")
        self.assertTrue(evil_join["fate"].startswith("dropped, chat-"), evil_join)
        self.assertNotIn("\x1b", out)  # nothing from the network reaches the terminal raw
        # Every traced drop is one the counters have under the same name.
        found = counters(out, "hello")
        for reason in ("privileged-source-port", "own-port", "reply-too-large"):
            self.assertEqual(found.get(reason), 1, reason)

    def test_past_the_rate_datagrams_are_counted_in_a_line_a_second_and_all_still_answered(self):
        with Hellod("--listen", "127.0.0.1:0", "--trace", "--trace-rate", "5") as d:
            with sender() as s:
                for i in range(40):
                    s.sendto(b"n%d" % i, ("127.0.0.1", d.port))
                    self.assertEqual(s.recv(100), b"Hello, n%d!" % i)
            d.wait_for_line(r"not traced", timeout=5)
            code, out = d.stop()
        # 5 a second: the 40 take well under a second, but may straddle the writer's refill.
        lines = len(traced(out))
        not_traced = [int(n) for n in re.findall(
            r"trace: (\d+) datagram\(s\) not traced in the last second \(over --trace-rate 5, or the trace ring full\)",
            out)]
        self.assertIn(lines, (5, 10), out)
        self.assertEqual(lines + sum(not_traced), 40, out)
        self.assertEqual(counters(out)["replied"], 40)

    def test_sigusr1_switches_the_trace_and_the_same_process_serves_on(self):
        with Hellod("--listen", "127.0.0.1:0") as d:
            self.assertIn("trace off;", d.start_line)
            pid = d.proc.pid
            with sender() as s:
                def ask(name):
                    s.sendto(name, ("127.0.0.1", d.port))
                    self.assertEqual(s.recv(100), b"Hello, %s!" % name)
                ask(b"Michael")  # off: no line
                d.proc.send_signal(signal.SIGUSR1)
                on = d.wait_for_line(r"trace", timeout=5)
                self.assertRegex(on, r"notice: trace on: a line per datagram from every source, at most 200 a second")
                ask(b"Tracy")
                line = d.wait_for_line(r"hellod: trace: ", timeout=5)
                self.assertIn("%s -> 127.0.0.1:%d, 5 bytes: replied" % (peer_of(s), d.port), line)
                d.proc.send_signal(signal.SIGUSR1)
                self.assertRegex(d.wait_for_line(r"trace", timeout=5), r"notice: trace off \(SIGUSR1\)")
                ask(b"Sarah")
                time.sleep(0.3)
            self.assertEqual(d.proc.pid, pid)
            self.assertIsNone(d.proc.poll(), "SIGUSR1 must not end hellod")
            code, out = d.stop()
        self.assertEqual(code, 0)
        self.assertEqual([line["bytes"] for line in traced("".join(d.later_lines))], ["5"])
        self.assertEqual(counters(out)["replied"], 3)

    def test_a_bad_trace_option_is_one_line_and_exit_64(self):
        for args, says in ((["--trace-from", "192.0.2.0/33"], "192.0.2.0/33"), (["--trace-from", "nowhere"], "nowhere"),
                           (["--trace-rate", "0"], "--trace-rate")):
            out = hello_daemon(*args)
            self.assertEqual(out.returncode, 64, out)
            self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)
            self.assertIn(says, out.stderr)


def hello_daemon(*args):
    import subprocess
    from harness import HELLOD
    return subprocess.run([HELLOD, "--check-config", *args], capture_output=True, text=True, timeout=30)


if __name__ == "__main__":
    unittest.main()

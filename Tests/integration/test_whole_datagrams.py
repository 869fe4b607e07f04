"""Datagrams that leave whole: a service whose every datagram fits any path (the chat's, at
most 1232 bytes; hello's with `--max-datagram 1224`) sends them with the don't-fragment
bit, IP ID 0, and deaf to what ICMP says of the path's MTU. A forged "fragmentation
needed" toward a member, which the host believes (its route cache says so), still cannot
make the relay fragment what it sends there, nor `hello chat` what it sends the relay;
hello with its default 64 KiB datagrams keeps path MTU discovery, and the same forgery
makes it fragment its replies.

Each case in a TestNetwork of its own: the server's namespace runs hellod, the client's
captures what crosses its end of the veth pair (AF_PACKET: fragments as they travel),
talks to hellod, and forges the ICMP."""
import json
import os
import socket
import unittest

import udptool
from harness import HELLO, HELLOD, Hellod, TestCase, activated
from netns import CLIENT, SERVER, TestNetwork

PORT = 6000
FORGED_MTU = 576
LONG = 900  # bytes of text: the answer is longer than FORGED_MTU

# Runs in the client's namespace: asks twice for a long answer, before and after forging
# an ICMP "fragmentation needed" (MTU FORGED_MTU) for the server's datagrams to this
# client; prints every IPv4 packet the server sent here, as captured.
PROBE = r"""
import json, socket, sys, time
tests, kind, server, client, port, forged_mtu, long = sys.argv[1:]
sys.path.insert(0, tests)
port, forged_mtu, long = int(port), int(forged_mtu), int(long)
import udptool
capture = udptool.capture("v-cli")

if kind == "chat":
    import chatwire as wire
    from test_chat import Client
    member = Client(port, b"ann", address=client, server=server)
    member.join(b"room")
    local_port = member.sock.getsockname()[1]
    def ask(n):
        member.say(n, b"x" * long)
        member.read_events(lambda events: sum(e.kind == wire.MESSAGE for e in events) >= n)
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((client, 0))
    sock.settimeout(3)
    local_port = sock.getsockname()[1]
    def ask(n):
        sock.sendto(b"x" * long, (server, port))
        assert len(sock.recv(70000)) == long + 8

def captured():
    return [p for p in udptool.captured(capture) if p["source"] == server]

ask(1)
time.sleep(0.2)
before = captured()
udptool.fragmentation_needed(client, server, (server, port), (client, local_port), forged_mtu)
time.sleep(0.2)
ask(2)
time.sleep(0.2)
print(json.dumps({"before": before, "after": captured()}))
"""


# Runs in the client's namespace: `hello chat` (pipe mode) joins the relay and says a line;
# then an ICMP "fragmentation needed" (MTU FORGED_MTU) for its datagrams to the relay is
# forged to this namespace's own stack, and it says a long line. Prints every IPv4 packet
# it sent the relay, as captured, and what the route to the relay says after.
CLIENT_PROBE = r"""
import json, subprocess, sys, time
tests, hello, server, client, port, forged_mtu, long = sys.argv[1:]
sys.path.insert(0, tests)
port, forged_mtu, long = int(port), int(forged_mtu), int(long)
import udptool
capture = udptool.capture("v-cli")
chat = subprocess.Popen([hello, "chat", "--host", server, "--port", str(port), "--room", "r", "--nick", "ann",
                         "--keepalive", "0.3", "--timeout", "0.2"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
chat.stdin.write("short\n")
chat.stdin.flush()
deadline = time.monotonic() + 10
while "ann: short" not in chat.stdout.readline() and time.monotonic() < deadline:
    pass
sent = [p for p in udptool.captured(capture) if p["source"] == client]
local_port = sent[0]["sport"]
udptool.fragmentation_needed(server, client, (client, local_port), (server, port), forged_mtu)
time.sleep(0.2)
route = subprocess.run(["ip", "route", "get", server], capture_output=True, text=True).stdout
chat.stdin.write("x" * long + "\n")
chat.stdin.flush()
while "ann: x" not in chat.stdout.readline() and time.monotonic() < deadline:
    pass
chat.stdin.close()
chat.wait(timeout=10)
sent += [p for p in udptool.captured(capture) if p["source"] == client]
print(json.dumps({"sent": sent, "route": route}))
"""


class WholeDatagrams(TestCase):
    def probe(self, kind, *options, left_whole=False):
        """hellod serving `kind` with `options` in a network of its own, probed: the
        packets it sent before and after the forgery, and the server's route to the
        client as the forgery left it. `left_whole`: hellod on a socket handed over as
        systemd does, which an earlier run left sending whole."""
        with TestNetwork() as net:
            if left_whole:
                command = [*net.server_prefix(), *activated(SERVER, PORT, [HELLOD], options=[(socket.IPPROTO_IP, udptool.IP_MTU_DISCOVER, udptool.IP_PMTUDISC_PROBE)])]
            else:
                command = [*net.server_prefix(), HELLOD]
                options = ("--listen", "%s@%s:%d" % (kind, SERVER, PORT), *options)
            with Hellod(*options, command=command) as d:
                out = net.client(["python3", "-c", PROBE, os.path.dirname(os.path.abspath(__file__)), kind,
                                  SERVER, CLIENT, str(PORT), str(FORGED_MTU), str(LONG)], check=False)
                route = net.server(["ip", "route", "get", CLIENT]).stdout
                d.stop()
        self.assertEqual(out.returncode, 0, out.stderr)
        packets = json.loads(out.stdout)
        self.assertTrue(packets["before"] and packets["after"], packets)
        return packets, route

    def assertWhole(self, packets, route):
        # The host believes the forgery: without the socket's mode, this route would cut.
        self.assertIn("mtu %d" % FORGED_MTU, route)
        for p in packets["before"] + packets["after"]:
            self.assertEqual((p["df"], p["mf"], p["offset"], p["id"]), (True, False, 0, 0), p)
        self.assertGreater(max(p["length"] for p in packets["after"]), FORGED_MTU, packets)

    def test_the_chat_relays_datagrams_leave_whole_after_a_forged_fragmentation_needed(self):
        self.assertWhole(*self.probe("chat"))

    def test_hello_chat_sends_whole_after_a_forged_fragmentation_needed(self):
        with TestNetwork() as net:
            command = [*net.server_prefix(), HELLOD]
            with Hellod("--listen", "chat@%s:%d" % (SERVER, PORT), command=command) as d:
                out = net.client(["python3", "-c", CLIENT_PROBE, os.path.dirname(os.path.abspath(__file__)), HELLO,
                                  SERVER, CLIENT, str(PORT), str(FORGED_MTU), str(LONG)], check=False)
                d.stop()
        self.assertEqual(out.returncode, 0, out.stderr)
        probed = json.loads(out.stdout)
        # Its stack believes the forgery: without the socket's mode, this route would cut.
        self.assertIn("mtu %d" % FORGED_MTU, probed["route"])
        for p in probed["sent"]:
            self.assertEqual((p["df"], p["mf"], p["offset"]), (True, False, 0), p)
        self.assertGreater(max(p["length"] for p in probed["sent"]), FORGED_MTU, probed["sent"])

    def test_hello_with_datagrams_that_fit_any_path_sends_them_whole(self):
        self.assertWhole(*self.probe("hello", "--max-datagram", "1224", "--rate-limit", "0"))

    def test_hello_with_64_kib_datagrams_keeps_path_mtu_discovery(self):
        self.assertFragmentedAfterTheForgery(*self.probe("hello", "--rate-limit", "0"))

    def test_hello_with_64_kib_datagrams_on_a_socket_left_sending_whole_discovers_again(self):
        self.assertFragmentedAfterTheForgery(*self.probe("hello", "--rate-limit", "0", left_whole=True))

    def assertFragmentedAfterTheForgery(self, packets, route):
        self.assertIn("mtu %d" % FORGED_MTU, route)
        self.assertTrue(all(not p["mf"] and p["offset"] == 0 for p in packets["before"]), packets)
        self.assertTrue(any(p["mf"] for p in packets["after"]), packets)
        self.assertTrue(all(p["length"] <= FORGED_MTU for p in packets["after"]), packets)
        self.assertTrue(any(p["id"] != 0 for p in packets["before"] + packets["after"]), packets)


if __name__ == "__main__":
    unittest.main()

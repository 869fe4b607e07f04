"""hellod never answers a datagram sent to a broadcast or multicast address, on a real link.

Two network namespaces of the test's own, joined by a veth pair with a broadcast address
(documentation ranges only; deleted when the tests end, pass or fail). A client in one sends,
with SO_BROADCAST, to the directed (192.0.2.255) and the limited (255.255.255.255) broadcast
address, to an IPv4 and an IPv6 multicast group, and to hellod's unicast addresses. A helper
in the server's namespace joins both groups and receives, on raw sockets, every datagram to
hellod's port: its report proves the group datagrams really reached the port. hellod must
answer exactly the unicast ones, and count every other one it read as
"broadcast-or-multicast".
"""
import itertools
import json
import os
import select
import subprocess
import unittest

from harness import HELLO, Hellod, TestCase, counters, wait_until_drained

HELLOD = os.path.join(os.path.dirname(HELLO), "hellod")

SERVER4, CLIENT4, BROADCAST4, LIMITED4 = "192.0.2.1", "192.0.2.2", "192.0.2.255", "255.255.255.255"
SERVER6, CLIENT6 = "2001:db8::1", "2001:db8::2"
GROUP4, GROUP6 = "239.255.0.1", "ff12::1234"  # organization-local; transient link-local

N = 3  # datagrams to each broadcast or multicast address
M = 3  # datagrams to each unicast address

# Where the client sends, in order: broadcasts and multicasts first, unicasts last, so that
# once the unicast replies are in, everything before them has reached hellod's sockets.
SENDS = [("dbc", BROADCAST4, N), ("lbc", LIMITED4, N), ("mc4", GROUP4, N), ("mc6", GROUP6, N),
         ("uc4", SERVER4, M), ("uc6", SERVER6, M)]
MULTI = ("dbc", "lbc", "mc4", "mc6")

_names = itertools.count()


def ip(*args, input=None):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, input=input, timeout=60)


class BroadcastNetwork:
    """Two fresh namespaces joined by a veth pair (v-srv, v-cli) on 192.0.2.0/24 with
    broadcast address 192.0.2.255 and on 2001:db8::/64; `close` deletes them."""

    def __init__(self):
        tag = "%d-%d" % (os.getpid() % 100000, next(_names))
        self.server_ns, self.client_ns = "hd-bs%s" % tag, "hd-bc%s" % tag
        ip("netns", "add", self.server_ns)
        try:
            ip("netns", "add", self.client_ns)
            for ns in (self.server_ns, self.client_ns):
                # No duplicate address detection: no address is ever tentative.
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                                "net.ipv6.conf.default.accept_dad=0"], check=True, capture_output=True, timeout=60)
            ip("-n", self.server_ns, "link", "add", "v-srv", "type", "veth", "peer", "name", "v-cli",
               "netns", self.client_ns)
            ip("-n", self.server_ns, "-batch", "-", input=
               "addr add %s/24 brd %s dev v-srv\n" % (SERVER4, BROADCAST4)
               + "addr add %s/64 dev v-srv nodad\n" % SERVER6
               + "link set lo up\nlink set v-srv up\n")
            ip("-n", self.client_ns, "-batch", "-", input=
               "addr add %s/24 brd %s dev v-cli\n" % (CLIENT4, BROADCAST4)
               + "addr add %s/64 dev v-cli nodad\n" % CLIENT6
               + "link set lo up\nlink set v-cli up\n"
               # 255.255.255.255 and the groups leave through the veth.
               + "route add default dev v-cli\n")
        except BaseException:
            self.close()
            raise

    def server_prefix(self):
        return ["ip", "netns", "exec", self.server_ns]

    def client_prefix(self):
        return ["ip", "netns", "exec", self.client_ns]

    def close(self):
        for ns in (self.server_ns, self.client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)


# In the server's namespace: joins both groups on v-srv and counts, on raw sockets (which
# take no port, so hellod keeps its own), every datagram to a group and hellod's port.
# Prints "ready" once joined; on EOF on stdin (or after 30 s) prints what it received.
HELPER = r"""
import json, select, socket, struct, sys, time
port, ifindex = int(sys.argv[1]), socket.if_nametoindex(sys.argv[2])
group4, group6 = sys.argv[3], sys.argv[4]
raw4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
raw4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                struct.pack("4s4si", socket.inet_aton(group4), bytes(4), ifindex))  # ip_mreqn
raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
raw6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
raw6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                socket.inet_pton(socket.AF_INET6, group6) + struct.pack("@I", ifindex))
print("ready", flush=True)
got = {group4: [], group6: []}
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    ready = select.select([raw4, raw6, sys.stdin], [], [], 1)[0]
    if raw4 in ready:
        packet = raw4.recv(70000)  # the IPv4 header, then UDP's
        start = (packet[0] & 15) * 4
        if socket.inet_ntoa(packet[16:20]) == group4 and struct.unpack("!H", packet[start + 2:start + 4])[0] == port:
            got[group4].append(packet[start + 8:].decode())
    if raw6 in ready:
        packet, ancillary, _, _ = raw6.recvmsg(70000, socket.CMSG_SPACE(20))  # UDP's header on
        destination = [socket.inet_ntop(socket.AF_INET6, data[:16]) for level, kind, data in ancillary
                       if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO]
        if destination == [group6] and struct.unpack("!H", packet[2:4])[0] == port:
            got[group6].append(packet[8:].decode())
    if sys.stdin in ready and not sys.stdin.readline():
        break
print(json.dumps(got), flush=True)
"""

# In the client's namespace: sends SENDS (argv[3], JSON) to port argv[1] from one IPv4 and one
# IPv6 socket, with SO_BROADCAST and multicast TTL/hop limit 1 on v-cli; then collects every
# datagram either socket gets until argv[2] have come and 0.3 s more passed (2 s at most).
CLIENT = r"""
import json, select, socket, sys, time
port, expected, sends = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
ifindex = socket.if_nametoindex("v-cli")
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s4.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s4.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
s4.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.0.2.2"))
s4.bind(("192.0.2.2", 0))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
s6.bind(("2001:db8::2", 0))
for name, address, count in sends:
    for i in range(count):
        if ":" in address:
            s6.sendto(b"%s-%d" % (name.encode(), i), (address, port, 0, ifindex))
        else:
            s4.sendto(b"%s-%d" % (name.encode(), i), (address, port))
got = []
started = time.monotonic()
quiet_from = None
while True:
    now = time.monotonic()
    if len(got) >= expected and quiet_from is None:
        quiet_from = now
    end = min(started + 2, quiet_from + 0.3 if quiet_from is not None else started + 2)
    if now >= end:
        break
    for s in select.select([s4, s6], [], [], end - now)[0]:
        data, source = s.recvfrom(70000)
        got.append([data.decode(errors="replace"), source[0], source[1]])
print(json.dumps(got))
"""


def read_line(stream, timeout):
    """One line from a child's pipe, or an AssertionError after `timeout` s."""
    if not select.select([stream], [], [], timeout)[0]:
        raise AssertionError("no line in %s s" % timeout)
    return stream.readline()


class BroadcastAndMulticast(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.net = BroadcastNetwork()
        cls.addClassCleanup(cls.net.close)

    def run_case(self, listen, receives, replies_from, per_socket=None, workers=1, port=0):
        """Starts hellod on `listen` in the server's namespace and the helper, sends SENDS
        from the client, and checks: the helper got every group datagram; the client got
        exactly the replies to the unicast kinds in `replies_from` ({kind: server address});
        the stop line read what `receives` ({kind: how many sockets get each datagram of
        it}) says, counted every broadcast/multicast one and replied to the rest."""
        args = [a for address in listen for a in ("--listen", address % {"port": port})]
        if workers > 1:
            args += ["--workers", str(workers)]
        with Hellod(*args, "--rate-limit", "0", command=[*self.net.server_prefix(), HELLOD]) as d:
            helper = subprocess.Popen([*self.net.server_prefix(), "python3", "-c", HELPER, str(d.port), "v-srv",
                                       GROUP4, GROUP6], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.addCleanup(lambda: helper.poll() is None and (helper.kill(), helper.wait()))
            self.assertEqual(read_line(helper.stdout, 10).strip(), "ready")
            expected_replies = sum(M for kind in replies_from)
            client = subprocess.run([*self.net.client_prefix(), "python3", "-c", CLIENT, str(d.port),
                                     str(expected_replies), json.dumps(SENDS)],
                                    capture_output=True, text=True, timeout=30, check=True)
            got = json.loads(client.stdout)
            wait_until_drained(d.proc.pid, d.port, timeout=5)  # every datagram that reached hellod read
            heard = json.loads(helper.communicate(timeout=10)[0])  # closes its stdin: it reports
            code, rest = d.stop()
        found = counters(rest)

        # The group datagrams really reached hellod's port, on the server's link.
        self.assertEqual(heard, {GROUP4: ["mc4-%d" % i for i in range(N)], GROUP6: ["mc6-%d" % i for i in range(N)]})
        # Replies to the unicast datagrams only, from the address each was sent to.
        self.assertEqual(sorted(map(tuple, got)), sorted(("Hello, %s-%d!" % (kind, i), source, d.port)
                                                         for kind, source in replies_from.items() for i in range(M)))
        count = dict((kind, n) for kind, _, n in SENDS)
        multi = sum(count[kind] * sockets for kind, sockets in receives.items() if kind in MULTI)
        unicast = sum(count[kind] * sockets for kind, sockets in receives.items() if kind not in MULTI)
        self.assertEqual(unicast, expected_replies)
        self.assertEqual((found["read"], found.get("broadcast-or-multicast", 0), found["replied"], found["queue"]),
                         (multi + unicast, multi, unicast, 0), rest)
        self.assertBalanced(found)
        if per_socket is not None:
            self.assertEqual(sorted(found["per_socket"]), sorted(per_socket), rest)
        self.assertEqual(code, 0)
        return found

    def test_wildcard_ipv4(self):
        # 0.0.0.0 gets both broadcasts, the IPv4 group (IP_MULTICAST_ALL) and IPv4 unicast;
        # nothing of IPv6.
        self.run_case(["0.0.0.0:0"], receives={"dbc": 1, "lbc": 1, "mc4": 1, "uc4": 1},
                      replies_from={"uc4": SERVER4})

    def test_dual_stack(self):
        # [::] (IPV6_V6ONLY off) gets both broadcasts (v4-mapped), the IPv6 group
        # (IPV6_MULTICAST_ALL) and unicast of both families, but not the IPv4 group: Linux
        # starts an AF_INET6 socket with IP_MULTICAST_ALL off (an AF_INET one with it on).
        self.run_case(["[::]:0"], receives={"dbc": 1, "lbc": 1, "mc6": 1, "uc4": 1, "uc6": 1},
                      replies_from={"uc4": SERVER4, "uc6": SERVER6})

    def test_socket_bound_to_the_broadcast_address(self):
        # A socket bound to 192.0.2.255 gets the directed broadcast only (not the limited
        # one, not the group); its neighbour on 192.0.2.1, same port, gets IPv4 unicast only.
        # A fresh namespace: any fixed port is free.
        self.run_case(["%s:%%(port)d" % BROADCAST4, "%s:%%(port)d" % SERVER4], port=4242,
                      receives={"dbc": 1, "uc4": 1}, replies_from={"uc4": SERVER4}, per_socket=[N, M])

    def test_two_workers_on_a_wildcard(self):
        # Two SO_REUSEPORT sockets: the kernel gives each broadcast and multicast datagram to
        # both; a unicast one to one of them (one client port: always the same one).
        self.run_case(["0.0.0.0:0"], workers=2, receives={"dbc": 2, "lbc": 2, "mc4": 2, "uc4": 1},
                      replies_from={"uc4": SERVER4}, per_socket=[3 * N, 3 * N + M])


if __name__ == "__main__":
    unittest.main()

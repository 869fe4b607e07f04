"""GSO that learns: after the kernel refuses a segmented send with EIO, hellod sends plain
datagrams on that socket for good, says so once, and never tries segmenting there again.

EIO has to be real. Since Linux 6.11 a device without checksum offload (`ethtool -K dev
tx off`) no longer makes UDP_SEGMENT fail: the kernel checksums in software. What still
does is an IPsec route or a UDP-Lite socket. So hellod is handed, as under socket
activation, a UDP-Lite socket in the server's namespace of a TestNetwork: everything else
about it is UDP, and every segmented send on it fails with EIO."""
import json
import os
import socket
import unittest

from harness import Hellod, TestCase, activated, counters, metric
from harness import HELLO
from netns import SERVER, TestNetwork

HELLOD = os.path.join(os.path.dirname(HELLO), "hellod")
IPPROTO_UDPLITE = 136
PORT = 9999
BURSTS = 5
PER_BURST = 20

# Bursts of same-length requests from one UDP-Lite socket: each burst is one batch whose
# replies would leave as one segmented send. Prints every reply received.
BURSTS_CLIENT = r"""
import json, socket, sys, time
dst, port, bursts, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136)
s.settimeout(2)
got = []
for b in range(bursts):
    for i in range(per):
        s.sendto(b"n%02d-%03d" % (b, i), (dst, port))
    for i in range(per):
        try:
            got.append(s.recv(100).decode())
        except socket.timeout:
            break
    time.sleep(0.1)
print(json.dumps(got))
"""


def udplite_available():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, IPPROTO_UDPLITE).close()
        return True
    except OSError:
        return False


@unittest.skipUnless(udplite_available(), "this kernel has no UDP-Lite")
class SegmentationTurnedOff(TestCase):
    def test_an_eio_turns_gso_off_for_the_socket_once_and_for_good(self):
        with TestNetwork() as net:
            command = [*net.server_prefix(), *activated(SERVER, PORT, [HELLOD], protocol=IPPROTO_UDPLITE)]
            with Hellod("--rate-limit", "0", command=command) as d:
                self.assertEqual(d.origin, "socket activation")
                out = net.client(["python3", "-c", BURSTS_CLIENT, SERVER, str(PORT), str(BURSTS), str(PER_BURST)])
                code, rest = d.stop()
        got = json.loads(out.stdout)
        self.assertEqual(got, ["Hello, n%02d-%03d!" % (b, i) for b in range(BURSTS) for i in range(PER_BURST)])
        found = counters(rest)
        self.assertEqual((found["read"], found["replied"]), (BURSTS * PER_BURST, BURSTS * PER_BURST))
        # One segmented attempt, refused and resent as plain datagrams; none after it.
        self.assertEqual(metric(rest.metrics, "hellod_segmented_sends_resent_total"), 1)
        self.assertEqual(metric(rest.metrics, "hellod_segmented_sends_total"), 0)
        self.assertEqual(metric(rest.metrics, "hellod_socket_gso_off", socket="0"), 1)
        warnings = [line for line in rest.splitlines() if "gso off on" in line and "warning" in line]
        self.assertEqual(len(warnings), 1, rest)
        self.assertIn("%s:%d" % (SERVER, PORT), warnings[0])
        self.assertEqual(code, 0)

"""hellod when the kernel refuses replies: a per-message error inside a batch, and a send
buffer that stays full. Provoked for real in network namespaces the tests make: the rest
of the batch still goes, retries are bounded, nothing blocks, everything is counted."""
import json
import os
import signal
import time

from harness import HELLO, Hellod, TestCase, counters, wait_until_drained
from netns import CLIENT, SERVER, TestNetwork

HELLOD = os.path.join(os.path.dirname(HELLO), "hellod")

# Two client sockets in one burst, one of them unreachable from the server.
INTERLEAVED = r"""
import json, socket, sys, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
good = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); good.bind(("10.77.0.2", 0))
bad = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); bad.bind(("10.77.1.0", 0))
for i in range(n):
    bad.sendto(b"bad-%04d" % i, (dst, port))
    good.sendto(b"good-%04d" % i, (dst, port))
good.settimeout(1)
got = []
try:
    while len(got) < n:
        got.append(good.recv(100).decode())
except socket.timeout:
    pass
bad.setblocking(False)
stray = 0
try:
    while True:
        bad.recv(100); stray += 1
except BlockingIOError:
    pass
print(json.dumps({"good": got, "bad": stray}))
"""


class SendFailures(TestCase):
    def test_a_refused_destination_inside_a_batch_does_not_stop_the_rest(self):
        with TestNetwork(client_addresses=1) as net:
            net.server(["ip", "route", "add", "prohibit", "10.77.1.0/32"])  # replies to it: EACCES
            with Hellod("--listen", "%s:0" % SERVER, "--rate-limit", "0", command=[*net.server_prefix(), HELLOD]) as d:
                out = json.loads(net.client(["python3", "-c", INTERLEAVED, SERVER, str(d.port), "40"]).stdout)
                code, rest = d.stop()
        found = counters(rest)
        self.assertEqual(out["good"], ["Hello, good-%04d!" % i for i in range(40)])
        self.assertEqual(out["bad"], 0)
        self.assertEqual((found["read"], found["replied"], found["send-failed"]), (80, 40, 40))
        self.assertBalanced(found)
        self.assertEqual(code, 0)

    def test_a_refused_destination_without_gso(self):
        with TestNetwork(client_addresses=1) as net:
            net.server(["ip", "route", "add", "prohibit", "10.77.1.0/32"])
            with Hellod("--listen", "%s:0" % SERVER, "--rate-limit", "0", "--no-gso",
                        command=[*net.server_prefix(), HELLOD]) as d:
                out = json.loads(net.client(["python3", "-c", INTERLEAVED, SERVER, str(d.port), "40"]).stdout)
                found = counters(d.stop()[1])
        self.assertEqual(len(out["good"]), 40)
        self.assertEqual((found["replied"], found["send-failed"]), (40, 40))
        self.assertBalanced(found)

    def test_a_send_buffer_that_stays_full_costs_bounded_waits_and_counted_drops(self):
        with TestNetwork() as net:
            # Replies leave at 1 Mbit/s into a queue that never drops: the socket's send
            # buffer fills and stays full, so sendmmsg says EAGAIN.
            net.server(["tc", "qdisc", "add", "dev", "v-srv", "root", "tbf", "rate", "1mbit", "burst", "2kb",
                        "limit", "100mb"])
            with Hellod("--listen", "%s:0" % SERVER, "--rate-limit", "0", command=[*net.server_prefix(), HELLOD]) as d:
                started = time.monotonic()
                result = net.client([HELLO, "bench", "--host", SERVER, "--port", str(d.port), "--rate", "20000",
                                     "--duration", "2", "--size", "200", "--timeout", "0.5", "--json"],
                                    check=False, timeout=60)
                cpu = self.cpu_seconds(d.proc.pid)
                wait_until_drained(d.proc.pid, d.port)
                stop_started = time.monotonic()
                code, rest = d.stop(timeout=5)
                stop_took = time.monotonic() - stop_started
                elapsed = time.monotonic() - started
        found = counters(rest)
        report = json.loads(result.stdout)
        self.assertEqual(code, 0)
        self.assertLess(stop_took, 3, "SIGTERM took %.1f s: a send blocked" % stop_took)
        self.assertGreater(found["send-failed"], 0)
        self.assertBalanced(found)
        self.assertEqual(found["read"] + found["queue"], report["sent"])
        print("\n    measured: full send buffer (tbf 1 Mbit/s, 20,000 requests/s of 200 bytes for 2 s): "
              "read %d, replied %d, send-failed %d; hellod CPU %.2f s of %.1f s; SIGTERM to exit %.2f s"
              % (found["read"], found["replied"], found["send-failed"], cpu, elapsed, stop_took))

    @staticmethod
    def cpu_seconds(pid):
        with open("/proc/%d/stat" % pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

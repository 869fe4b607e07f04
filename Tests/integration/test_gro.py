"""UDP GRO through a veth pair: trains from one peer reach hellod as coalesced receives,
and every datagram in them is answered or counted as if it came alone.

On loopback only a UDP_SEGMENT send arrives coalesced (the unit tests use that:
Tests/HelloSocketTests/CoalescedReceiveTests.swift). Plain trains coalesce only in a
device's GRO: here the server's end of a TestNetwork's veth pair
(`TestNetwork.coalesce_on_server`). `hello bench` in the client's namespace sends both
kinds: plain datagrams by sendmmsg, and `--gso 16` trains."""
import json
import os
import re
import socket
import unittest

import udptool
from harness import HELLO, Hellod, TestCase, activated, counters
from netns import SERVER, TestNetwork

HELLOD = os.path.join(os.path.dirname(HELLO), "hellod")
PORT = 7301
COALESCED = re.compile(r"batches \d+ \((\d+) with coalesced receives\)")


def coalesced_batches(stopped):
    match = COALESCED.search(stopped)
    return int(match.group(1)) if match else 0


class CoalescedThroughAVethPair(TestCase):
    def bench(self, net, *args):
        out = net.client([HELLO, "bench", "--host", SERVER, "--port", str(PORT), "--size", "16", "--duration", "2",
                          "--flows", "4", "--window", "32", "--json", *args], check=False, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        return json.loads(out.stdout)

    def serve(self, bench_args, *options, left_coalescing=False):
        """(the bench's report, hellod's stop text, its start line): `hello bench
        bench_args` from the client's namespace to hellod in the server's. `left_coalescing`:
        hellod on a socket handed over as systemd does, which an earlier run left taking
        trains as one receive (UDP_GRO)."""
        with TestNetwork() as net:
            net.coalesce_on_server()
            if left_coalescing:
                command = [*net.server_prefix(), *activated(SERVER, PORT, [HELLOD], options=[(socket.SOL_UDP, udptool.UDP_GRO, 1)])]
            else:
                command = [*net.server_prefix(), HELLOD]
                options = ("--listen", "hello@%s:%d" % (SERVER, PORT), *options)
            with Hellod("--rate-limit", "0", *options, command=command) as d:
                report = self.bench(net, *bench_args)
                code, stopped = d.stop()
        self.assertEqual(code, 0)
        return report, stopped, d.start_line

    def check_every_datagram_answered(self, report, stopped):
        found = counters(stopped)
        self.assertEqual((report["lost"], report["wrong"], report["duplicates"]), (0, 0, 0), report)
        self.assertEqual(report["answered"], report["sent"])
        self.assertEqual((found["read"], found["replied"], found["dropped"]), (report["sent"], report["sent"], 0),
                         stopped)

    def test_plain_trains_arrive_coalesced_and_each_datagram_is_answered(self):
        report, stopped, start = self.serve([])
        self.assertIn("gro on", start)
        self.check_every_datagram_answered(report, stopped)
        self.assertGreater(coalesced_batches(stopped), 0, stopped)

    def test_gso_trains_arrive_coalesced_and_each_datagram_is_answered(self):
        report, stopped, _ = self.serve(["--gso", "16"])
        self.check_every_datagram_answered(report, stopped)
        self.assertGreater(coalesced_batches(stopped), 0, stopped)

    def test_without_gro_nothing_arrives_coalesced(self):
        report, stopped, start = self.serve(["--gso", "16"], "--no-gro")
        self.assertIn("gro off", start)
        self.check_every_datagram_answered(report, stopped)
        self.assertEqual(coalesced_batches(stopped), 0, stopped)

    def test_without_gro_on_a_socket_left_coalescing_each_datagram_is_answered(self):
        # Not read as one datagram per train: `--no-gro` turns UDP_GRO off again.
        report, stopped, start = self.serve(["--gso", "16"], "--no-gro", left_coalescing=True)
        self.assertIn("gro off", start)
        self.check_every_datagram_answered(report, stopped)
        self.assertEqual(coalesced_batches(stopped), 0, stopped)


if __name__ == "__main__":
    unittest.main()

"""A soak: 5 million datagrams of mixed sizes from IPv4 and IPv6 sources. Every one must be
answered, the counters must balance, and anonymous memory may grow by at most 16 KiB (4
pages) from the first million to the last."""
import json
import subprocess
import time

from harness import HELLO, Hellod, TestCase, counters, rss_anon_kb, wait_until_drained


class Soak(TestCase):
    def send(self, port, per_flow):
        """IPv4 and IPv6 benches at once, 4 flows each, closed loop, 16-300 byte requests."""
        benches = [subprocess.Popen([HELLO, "bench", "--host", host, "--port", str(port), "--flows", "4",
                                     "--requests", str(per_flow), "--size", "16-300", "--duration", "600",
                                     "--json"], stdout=subprocess.PIPE, text=True)
                   for host in ("127.0.0.1", "::1")]
        reports = [json.loads(b.communicate(timeout=600)[0]) for b in benches]
        return tuple(sum(r[k] for r in reports) for k in ("sent", "answered", "wrong"))

    def test_five_million_datagrams(self):
        with Hellod("--listen", "[::]:0") as d:
            started = time.monotonic()
            sent, answered, wrong = self.send(d.port, 125_000)  # the first million
            first = rss_anon_kb(d.proc.pid)
            for _ in range(4):  # four more
                s, a, w = self.send(d.port, 125_000)
                sent, answered, wrong = sent + s, answered + a, wrong + w
            last = rss_anon_kb(d.proc.pid)
            elapsed = time.monotonic() - started
            wait_until_drained(d.proc.pid, d.port)
            found = counters(d.stop()[1])
        self.assertEqual(sent, 5_000_000)
        self.assertEqual(answered, sent)  # the clients' count: a reply lost on the way shows here only
        self.assertEqual(wrong, 0)
        self.assertBalanced(found)
        self.assertEqual(found["read"] + found["queue"], sent)
        self.assertEqual(found["replied"], found["read"])
        self.assertLessEqual(last - first, 16, "anonymous RSS %d KiB after 1M, %d KiB after 5M" % (first, last))
        print("\n    measured: soak of %d datagrams (16-300 bytes, IPv4 and IPv6) in %.0f s: answered %d, "
              "anonymous RSS %d KiB after the first million, %d KiB after the last" % (sent, elapsed, answered, first, last))

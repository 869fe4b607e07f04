"""`hello bench --hgrm FILE` and `hello bench chat --hgrm FILE`: the latency histogram in
HdrHistogram's percentile-distribution text (.hgrm, as wrk2 writes it and HdrHistogram's
plotter reads it), checked as such a reader would read it, its count against the bench's
own report; and a file that cannot be written refused in one line, before any load."""
import json
import os
import re
import tempfile

from harness import Hellod, TestCase, hello

HEADER = "       Value     Percentile TotalCount 1/(1-Percentile)"
ROW = re.compile(r"^\s*(?P<value>\d+\.\d{3}) (?P<percentile>[01]\.\d{12})\s+(?P<count>\d+)(?:\s+(?P<inverse>\d+\.\d{2}))?$")
MEAN = re.compile(r"^#\[Mean    = \s*(?P<mean>\d+\.\d{3}), StdDeviation   = \s*\d+\.\d{3}\]$")
MAX = re.compile(r"^#\[Max     = \s*(?P<max>\d+\.\d{3}), Total count    = \s*(?P<count>\d+)\]$")
BUCKETS = re.compile(r"^#\[Buckets = \s*\d+, SubBuckets     = \s*\d+\]$")


def read_hgrm(test, path):
    """The rows [(value us, percentile 0-1, count)], the mean, the max and the total count
    of a .hgrm file, each line checked on the way."""
    with open(path) as f:
        lines = f.read().split("\n")
    test.assertEqual(lines[:2], [HEADER, ""], lines[:3])
    test.assertEqual(lines[-1], "", "ends with a newline")
    body, footer = lines[2:-4], lines[-4:-1]
    rows = []
    for line in body:
        m = ROW.match(line)
        test.assertIsNotNone(m, "not a percentile row: %r" % line)
        value, percentile, count = float(m.group("value")), float(m.group("percentile")), int(m.group("count"))
        if percentile < 1:
            test.assertAlmostEqual(float(m.group("inverse")), 1 / (1 - percentile), delta=0.01 + 1e-6 / (1 - percentile))
        rows.append((value, percentile, count))
    test.assertGreater(len(rows), 10)
    for before, after in zip(rows, rows[1:]):
        test.assertLessEqual(before[0], after[0], "values rise: %s %s" % (before, after))
        test.assertLessEqual(before[1], after[1], "percentiles rise: %s %s" % (before, after))
        test.assertLessEqual(before[2], after[2], "counts rise: %s %s" % (before, after))
    test.assertEqual(rows[-1][1], 1.0)
    mean, top, buckets = MEAN.match(footer[0]), MAX.match(footer[1]), BUCKETS.match(footer[2])
    test.assertTrue(mean and top and buckets, footer)
    test.assertEqual(int(top.group("count")), rows[-1][2])
    test.assertAlmostEqual(float(top.group("max")), rows[-1][0], delta=0.001)
    test.assertTrue(rows[0][0] <= float(mean.group("mean")) <= rows[-1][0], (rows[0], mean.group(0), rows[-1]))
    return rows, float(mean.group("mean")), float(top.group("max")), int(top.group("count"))


def at(rows, percentile):
    """The value of the first row at or past `percentile` (0-1; 0.5 is always a row)."""
    return next(value for value, p, _ in rows if p >= percentile)


class BenchHgrm(TestCase):
    def test_requests_write_their_round_trips(self):
        with Hellod("--listen", "127.0.0.1:0") as server, tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "hellod.hgrm")
            result = hello("bench", "--port", str(server.port), "--duration", "0.5", "--flows", "2", "--window", "4",
                           "--json", "--hgrm", path)
            self.assertEqual(result.returncode, 0, result.stderr)
            report = json.loads(result.stdout)
            rows, mean, top, count = read_hgrm(self, path)
        # Every reply in time is in it (a late one was counted lost first: not timed).
        self.assertEqual(count, report["answered"] - report["late"], report)
        self.assertGreater(count, 100, report)
        # The histogram the report's p50 comes from (microseconds; the report rounds to 0.1).
        self.assertAlmostEqual(at(rows, 0.5), report["rtt_us"]["p50"], delta=0.1 + report["rtt_us"]["p50"] * 0.002)

    def test_chat_writes_every_deliverys_latency(self):
        limits = ["--chat-memberships-per-prefix", "16", "--chat-message-rate", "1000", "--chat-message-burst", "1000"]
        with Hellod("--listen", "chat@127.0.0.1:0", *limits) as server, tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "chat.hgrm")
            result = hello("bench", "chat", "--port", str(server.port), "--members", "4", "--rate", "200",
                           "--duration", "0.5", "--json", "--hgrm", path)
            self.assertEqual(result.returncode, 0, result.stderr)
            report = json.loads(result.stdout)
            rows, mean, top, count = read_hgrm(self, path)
        self.assertEqual(count, report["deliveries"], report)
        self.assertEqual(report["deliveries"], report["sent"] * 4, report)
        self.assertAlmostEqual(at(rows, 0.5), report["latency_us"]["p50"],
                               delta=0.1 + report["latency_us"]["p50"] * 0.002)

    def test_a_file_that_cannot_be_written_is_one_line_and_exit_64_before_any_load(self):
        with tempfile.TemporaryDirectory() as tmp:
            for args in (["bench"], ["bench", "requests"], ["bench", "chat"]):
                for path in ("", tmp, os.path.join(tmp, "missing", "x.hgrm")):
                    # Port 1: nothing listens, and nothing is sent: the file is refused first.
                    result = hello(*args, "--port", "1", "--duration", "30", "--hgrm", path, timeout=10)
                    self.assertEqual(result.returncode, 64, (args, path, result))
                    self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
                    self.assertIn("--hgrm %s: cannot create it" % path, result.stderr)
                    self.assertEqual(result.stdout, "")
            self.assertEqual(os.listdir(tmp), [])

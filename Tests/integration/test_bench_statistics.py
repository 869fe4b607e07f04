"""The statistics the benches judge by: the confidence interval of a median ratio
(bench/compare.py's median_interval), which says whether a run can tell hellod from a C
yardstick, and which rounds bench/chat.py --pause-free keeps. An interval too narrow would
claim a difference that the machine's noise made; one too wide would hide a real one. A
pause line too low would throw away a big room's rounds for its own tail; one too high
would keep the pauses that flatter hellod. Pure arithmetic: no server, no timing."""
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))

from chat import pause_line, without_pauses  # noqa: E402
from compare import median_interval  # noqa: E402


class MedianIntervalTests(unittest.TestCase):
    def test_order_statistics_of_the_textbook(self):
        # For n values at 95 %: n = 6 and 8 take the extremes, n = 9 the second from each
        # end, n = 30 the 10th and 21st, n = 100 the 40th and 61st (the binomial tables).
        for n, (low, high) in {6: (1, 6), 8: (1, 8), 9: (2, 8), 30: (10, 21), 100: (40, 61)}.items():
            median, lo, hi, level = median_interval(range(1, n + 1))
            self.assertEqual((lo, hi), (low, high), n)
            self.assertEqual(median, (n + 1) / 2)
            self.assertGreaterEqual(level, 0.95)

    def test_too_few_values_give_no_interval(self):
        # Five values: even the extremes hold the median only 15 times in 16.
        self.assertEqual(median_interval([3, 1, 2, 5, 4]), (3, None, None, None))
        self.assertEqual(median_interval([]), (None, None, None, None))

    def test_order_of_the_runs_does_not_matter(self):
        values = [0.97, 1.04, 0.99, 1.10, 0.93, 1.01, 0.98, 1.02, 0.95]
        shuffled = values[:]
        random.Random(7).shuffle(shuffled)
        self.assertEqual(median_interval(values), median_interval(shuffled))

    def test_the_interval_holds_the_median_as_often_as_it_says(self):
        # Ratios of a relay against itself: the true median is 1.0. Over many simulated
        # runs of 30, the interval must miss it no more often than 5 %, and not far less
        # (an interval of every run would never miss, and tell nothing).
        rng = random.Random(20)
        trials, missed = 2000, 0
        for _ in range(trials):
            ratios = [rng.lognormvariate(0, 0.1) for _ in range(30)]
            _, low, high, _ = median_interval(ratios)
            missed += not low <= 1.0 <= high
        self.assertLessEqual(missed / trials, 0.06)
        self.assertGreaterEqual(missed / trials, 0.02)


def runs(*pairs):
    """A relay's runs, each (p50, p99) in us."""
    return [{"p50": p50, "p99": p99} for p50, p99 in pairs]


class PauseTests(unittest.TestCase):
    def test_the_line_is_ten_times_relay_c_p50_and_never_under_1_ms(self):
        # A room of 64: relay.c's p50 160 us, its own p99 up to 4 times that.
        big = {"hellod": runs((100, 500), (120, 900)), "relay.c": runs((160, 600), (150, 700), (230, 650))}
        self.assertEqual(pause_line(big, "relay.c"), 1600)
        # A room of 2: relay.c's p50 50 us; ten times that would be 500 us.
        small = {"relay.c": runs((50, 150), (45, 40000), (55, 190))}
        self.assertEqual(pause_line(small, "relay.c"), 1000)

    def test_a_round_with_a_pause_is_dropped_for_every_relay(self):
        samples = {"hellod": runs((50, 150), (50, 30000), (50, 160), (50, 170)),
                   "relay.c": runs((50, 140), (50, 150), (50, 9000), (50, 1000))}
        kept, rounds = without_pauses(samples, 1000)
        self.assertEqual(rounds, 4)
        # Round 1 paused for hellod, round 2 for relay.c; round 3 is at the line, not over.
        self.assertEqual([r["p99"] for r in kept["hellod"]], [150, 170])
        self.assertEqual([r["p99"] for r in kept["relay.c"]], [140, 1000])

    def test_a_big_room_keeps_its_own_tail(self):
        # At 64 members a fan-out's own p99 is near 1 ms: kept under a line of 1.6 ms; a
        # pause's tens of ms are not.
        samples = {"hellod": runs((160, 1200), (160, 800), (160, 25000)),
                   "relay.c": runs((160, 1100), (160, 1300), (160, 700))}
        kept, _ = without_pauses(samples, pause_line(samples, "relay.c"))
        self.assertEqual([r["p99"] for r in kept["relay.c"]], [1100, 1300])


if __name__ == "__main__":
    unittest.main()

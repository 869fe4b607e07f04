"""The statistics the benches judge by (bench/compare.py's median_interval): the confidence
interval of a median ratio, which says whether a run can tell hellod from a C yardstick.
An interval too narrow would claim a difference that the machine's noise made; one too
wide would hide a real one. Pure arithmetic: no server, no timing."""
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))

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


if __name__ == "__main__":
    unittest.main()

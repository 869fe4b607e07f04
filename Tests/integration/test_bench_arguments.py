"""The benches refuse a number out of range at once: argparse's one-line error and exit 2,
before any work (bench/arguments.py). Before, `--runs 0` ran the whole bench and then
ended in a traceback, a median of no runs."""
import os
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import arguments  # noqa: E402

# Each bench's numeric options, with the least value each takes.
OPTIONS = {
    "chat.py": {"--seconds": None, "--runs": 1, "--rmax-from": 1, "--fanout-us": 0},
    "compare.py": {"--seconds": None, "--runs": 1},
    "plot.py": {"--seconds": None, "--runs": 1},
    "callgrind.py": {"--runs": 1},
    "footprint.py": {"--members": 2, "--functions": 0},
    "chat-handover.py": {"--rounds": 1, "--callgrind-rounds": 1, "--repeat": 1, "--latency-spin-us": 0},
    "chat_duplicate.py": {"--backlog": 1, "--requests": 1},
    "chat_joins.py": {"--joins": 1},
    "chat_soak.py": {"--messages": 10, "--joins": 10, "--rate": 1},
}


class BenchArguments(unittest.TestCase):
    def test_a_number_out_of_range_is_one_line_and_exit_2(self):
        for script, options in OPTIONS.items():
            for option, least in options.items():
                bad = ["0", "-1", "inf", "nan", "x"] if least is None else [str(least - 1), "x", "1.5"]
                for value in bad:
                    with self.subTest(script=script, option=option, value=value):
                        result = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), option, value],
                                                capture_output=True, text=True, timeout=30)
                        self.assertEqual(result.returncode, 2, result.stderr)
                        self.assertNotIn("Traceback", result.stderr)
                        last = result.stderr.strip().splitlines()[-1]
                        self.assertIn("error: argument %s: " % option, last)
                        self.assertIn(repr(value), last)

    def test_the_least_value_and_more_are_taken(self):
        self.assertEqual(arguments.at_least(2)("2"), 2)
        self.assertEqual(arguments.at_least(0)("0"), 0)
        self.assertEqual(arguments.at_least(1)("40"), 40)
        self.assertEqual(arguments.seconds("0.5"), 0.5)
        self.assertEqual(arguments.seconds("4"), 4.0)


if __name__ == "__main__":
    unittest.main()

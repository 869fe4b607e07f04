"""How bench/footprint.py cuts a valgrind lackey trace into messages and counts the cache
lines each touches: a count off by a line a message would misstate what a change to the
relay's footprint did. A trace written here, in lackey's format; no valgrind, no server."""
import io
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))

from footprint import Messages  # noqa: E402

RECEIVE = 0x4010  # the receive's entry: where a turn begins
SEND = 0x4400  # the send's entry: a turn that fetches it is a message
SENDS = "I  %08x,4\n" % SEND


def trace(*turns, before="", after=""):
    """A trace of `turns` (each its lines of lackey's text), each after a fetch of the
    receive's entry, with `before` ahead of the first and `after` behind the last."""
    text = before
    for lines in turns:
        text += "I  %08x,4\n" % RECEIVE + lines
    return text + "I  %08x,4\n" % RECEIVE + after


def cut(text, boundary=RECEIVE):
    return Messages(io.StringIO(text), boundary, SEND)


class FootprintTests(unittest.TestCase):
    def test_lines_are_counted_once_each_and_kinds_apart(self):
        one = (
            "I  00005000,4\nI  00005004,3\nI  0000503f,1\n"  # one code line, three fetches
            "I  00005040,4\n"  # the next line
            " L 7ff000,8\n S 7ff008,8\n"  # one data line, loaded and stored
            " M 7ff100,4\n"  # another, modified: stored too
            " L 600000,8\n L 600038,8\n"  # a third, only loaded
        )
        self.assertEqual(cut(trace(one + SENDS)).found, [(3, 3, 2)])  # the send's line is code too

    def test_an_access_across_two_lines_counts_both(self):
        one = "I  0000503e,4\n S 7ff03c,8\n"
        self.assertEqual(cut(trace(one + SENDS)).found, [(3, 2, 2)])

    def test_only_what_lies_between_two_receives_is_a_message(self):
        before = SENDS + "I  00009000,4\n L 900000,8\n"  # starting up: no message
        after = SENDS + "I  00009100,4\n S 900100,8\n"  # the last turn, cut short by the stop
        messages = cut(trace(SENDS, "I  00005080,4\n" + SENDS, before=before, after=after))
        self.assertEqual(messages.found, [(1, 0, 0), (2, 0, 0)])

    def test_a_turn_that_sends_nothing_is_a_tick_not_a_message(self):
        messages = cut(trace("I  00005000,4\n" + SENDS, "I  00006000,4\n L 7ff000,8\n", "I  00005000,4\n" + SENDS))
        self.assertEqual(messages.found, [(2, 0, 0), (2, 0, 0)])

    def test_the_receive_itself_is_not_counted_and_each_message_starts_afresh(self):
        each = ["I  %08x,4\n L %x,8\n" % (0x5000 + 64 * k, 0x7ff000 + 64 * k) + SENDS for k in range(3)]
        self.assertEqual(cut(trace(*each)).found, [(2, 1, 0)] * 3)

    def test_without_the_boundary_nothing_is_a_message(self):
        self.assertEqual(cut(trace("I  00005000,4\n" + SENDS), boundary=None).found, [])

    def test_the_first_third_holds_the_joins_and_is_left_out(self):
        messages = cut(trace(*["I  %08x,4\n" % (0x5000 + 64 * k) + SENDS for k in range(9)]))
        self.assertEqual(len(messages.steady()), 6)
        self.assertEqual(len(messages.code), 9)


if __name__ == "__main__":
    unittest.main()

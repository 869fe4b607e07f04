"""argparse types for the benches' numbers: a value out of range is argparse's one-line
error and exit 2 before any work, where it was a traceback (a median of nothing, a
division by zero) minutes later."""
import argparse
import math


def at_least(minimum):
    """The type of an integer option of at least `minimum`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError("an integer of at least %d, not %r" % (minimum, text))
        return value
    return parse


def seconds(text):
    """The type of a duration option: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("a positive number of seconds, not %r" % text)
    return value

#!/usr/bin/env python3
"""User-space instructions per reply (hello, echo) and per delivery (chat) of two builds of
hellod, alternated in one run: what a change costs, in a count that does not move with the
machine's load (valgrind --tool=callgrind). Each build is measured with its own `hello`.

    bench/callgrind.py --before OLD/.build-static/release [--after .build-static/release] [--runs 2] [--members 2,64]
    bench/callgrind.py --before .build-static/release --after-options=--trace   # what the trace costs

Per reply: hellod under callgrind (`--spin-us 0 --coalesce-us 0`, so that no idle polling
counts), `hello bench` with 8 flows x 8 in flight, 3,000 requests per flow minus a run of
1,000, so that starting cancels out. Per delivery: bench/chat.py's `callgrind_instructions`,
a room of 64 members (--members: of each size listed) at 100 messages/s, a 6 s run minus a
2 s run; in a room of 2 a message's own work is shared by two deliveries, not 64, so that
room shows what a change to the request's path saves. The kernel's work, most of the
cost, is not counted. Runs of one build differ by a few percent (how many replies or
deliveries share a system call moves with valgrind's pace): compare the spread too. Both
builds must speak `hello bench chat` (2.0.0 or later).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from arguments import at_least
import chat
from compare import free_port, require


def stripped(hellod, tmp):
    """A copy without debug info (valgrind cannot read Swift's), symbols kept."""
    copy = os.path.join(tmp, "hellod")
    subprocess.run(["strip", "-g", "-o", copy, hellod], check=True)
    return copy


def replies(bin_dir, mode, requests, tmp, options=()):
    """(instructions, replies) of hellod serving `mode` for one `hello bench` run, with
    `options` added to its command line."""
    port = free_port()
    out = os.path.join(tmp, "callgrind.%d" % port)
    proc = subprocess.Popen(["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                             stripped(os.path.join(bin_dir, "hellod"), tmp), "--listen", "%s@127.0.0.1:%d" % (mode, port),
                             "--spin-us", "0", "--coalesce-us", "0", *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # valgrind starts slowly
        result = subprocess.run(["taskset", "-c", "1", os.path.join(bin_dir, "hello"), "bench", "--port", str(port),
                                 "--mode", mode, "--flows", "8", "--window", "8", "--requests", str(requests),
                                 "--timeout", "5", "--json"], capture_output=True, text=True, timeout=300)
        answered = json.loads(result.stdout)["answered"]
    finally:
        proc.terminate()  # callgrind writes its counts at exit
        proc.wait()
    with open(out) as f:
        totals = [line for line in f if line.startswith(("totals:", "summary:"))]
    return int(totals[-1].split()[1]), answered


def per_reply(bin_dir, mode, options=()):
    with tempfile.TemporaryDirectory() as tmp:
        long_ir, long_n = replies(bin_dir, mode, 3000, tmp, options)
        short_ir, short_n = replies(bin_dir, mode, 1000, tmp, options)
    return (long_ir - short_ir) / max(long_n - short_n, 1)


def per_delivery(bin_dir, members, options=()):
    # bench/chat.py's measurement, with this build's own hello (its chat wire).
    chat.RELEASE = bin_dir
    relay = chat.relays("unused", os.path.join(bin_dir, "hellod"))[0]
    with tempfile.TemporaryDirectory() as tmp:
        relay = dict(relay, command=[stripped(relay["command"][0], tmp), *relay["command"][1:], *options])
        long_ir, long_d, _, _ = chat.callgrind_instructions(relay, members, 100, 64, 6, tmp)
        short_ir, short_d, _, _ = chat.callgrind_instructions(relay, members, 100, 64, 2, tmp)
    return (long_ir - short_ir) / max(long_d - short_d, 1)


def rooms(text):
    """--members: room sizes, comma-separated, each at least 2."""
    sizes = [int(m) if m.strip().isdigit() else 0 for m in text.split(",")]
    if any(m < 2 for m in sizes):
        raise argparse.ArgumentTypeError("room sizes of at least 2, comma-separated: not %r" % text)
    return sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a directory with the older build's hellod and hello")
    parser.add_argument("--after", default=chat.RELEASE, help="the newer build's (default: this tree's release build)")
    parser.add_argument("--after-options", default="", help="hellod options for the newer build only (\"--trace\")")
    parser.add_argument("--runs", type=at_least(1), default=2)
    parser.add_argument("--members", type=rooms, default=[64], help="the chat rooms' sizes, comma-separated (default 64)")
    args = parser.parse_args()
    # What is measured: (its row's name, the chat room's size or None for a reply).
    services = [("hello", None), ("echo", None)] + [("chat, %d members" % m, m) for m in args.members]
    require("valgrind")
    builds = [("before", args.before, ()), ("after", args.after, tuple(args.after_options.split()))]
    found = {}
    for _ in range(args.runs):
        for label, bin_dir, options in builds:
            for what, members in services:
                value = per_reply(bin_dir, what, options) if members is None else per_delivery(bin_dir, members, options)
                found.setdefault((what, label), []).append(value)
                print("%s %s: %.1f" % (label, what, value), file=sys.stderr, flush=True)
    print("| service | instructions per %s, before | after |" % "reply (chat: delivery)")
    print("|---|---|---|")
    for what, _ in services:
        print("| %s | %s | %s |" % (what, ", ".join("%.1f" % v for v in found[(what, "before")]),
                                  ", ".join("%.1f" % v for v in found[(what, "after")])))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""hellod's chat relay against relay.c, the project's plainest fast C relay (bench/reference/),
in one run: the relay pinned to CPU 0, `hello bench chat` (one load generator, one latency
clock; --wire raw for relay.c, which speaks no protocol) pinned to CPU 1, all on 127.0.0.1.

    make bench-chat                 # or: bench/chat.py [--seconds 5] [--runs 3] [--rmax-from 500]
                                    #     [--members 2,8,32,64@2500] [--json FILE] [--hgrm DIR]
                                    #     [--before OLD/.build-static/release] [--fanout-us 0]
                                    #     [--c-whole] [--c-one] [--c-again] [--with=OPTIONS] [--awake]
                                    #     [--pause-free]

Cases: 2, 8 and 32 members at 5,000 messages/s of 64 bytes, and 64 at 2,500, where relay.c
is not saturated (--members: the room sizes, one room each, in that order, each with @RATE
if not 5,000; 2,8,32,64@2500 unless given); and R_max, the highest rate in steps of 500
messages/s at which relay.c loses nothing in --runs runs out of --runs (64 members, 64
bytes), then hellod at R_max. hellod runs twice in each case: as it ships, and with
--chat-fanout-us (--fanout-us, 500 by default), which trades latency for CPU. For each
relay: deliveries/s, latency p50/p99/p99.9 (send to each member's receipt),
lost/duplicated/reordered, how many runs had a p99 over 10 ms (a queue, or one of the
machine's pauses: --awake below), server CPU ns per delivery (each thread's time on a CPU,
/proc/PID/task/*/schedstat, over the measured interval, read by `hello bench
--server-pid`), deliveries per datagram and peak RSS. --before: an older build's hellod
beside, in the same run. --c-whole: relay.c beside as well, sending whole (don't-fragment,
IP ID 0) as hellod's chat does, which spares the kernel its IP ID generator. --c-one:
relay.c beside as well, asking recvmmsg for one datagram a call (`relay PORT 1`): the
kernel then never looks at an empty queue after a lone datagram, as with hellod where
datagrams come alone, but that relay never reads a batch either. --c-again:
relay.c once more in each run, listed first, as if it were another relay: its ratio to
itself is how far the machine alone moves a ratio. --with=OPTIONS (repeatable): hellod
once more with OPTIONS added (`--with=--no-gro`), to measure what an option costs beside
relay.c and the null. Each case runs --runs times, relays interleaved (every other run in
reverse order); the table shows medians and ratios against relay.c's, each ratio with its
range run by run (run i of every relay against run i of relay.c), and the median of those
ratios run by run with its 95 % confidence interval (order statistics, which assume
nothing of how the runs spread; 6 runs at least). An interval that holds 1.00x is a run
that cannot tell that relay from relay.c; with --c-again, relay.c's own interval shows
whether the intervals are as wide as the machine makes them. The machine is shared and
noisy: read the ratios with their ranges and intervals, and the load average printed
before and after.

--awake keeps the relay's CPU from idling, with a shell loop at nice 19 on it that a relay
takes the CPU from whenever it wakes. On a virtual machine such as the one PERFORMANCE.md's
figures come from, an idle CPU halts, and a halted CPU sometimes runs again only up to
100 ms later: in small rooms, where a relay sleeps between messages, that is the p99 of
every relay (tens of ms), and the messages queued meanwhile let hellod pack a member's
events into one datagram, which relay.c cannot, so a run with such a pause flatters
hellod's CPU. With --awake the tails are the relays' own; but every wake-up then switches
from the loop, which adds about as much to every relay's CPU (2 us a message there), so
the CPU ratios are pulled towards 1. --pause-free measures without the loop and keeps only
the rounds (run i of every relay) in which no relay's p99 was over ten times relay.c's
median p50 in that case, nor over 1 ms (a relay's own p99 is two to six times its p50), so
no pause. How many rounds that keeps is the machine's: with many short runs (--seconds 1,
four relays) 7 and 31 of 40 at 2 and 8 members one day at noon, 98 and 95 of 100 that
afternoon.

--json FILE also writes each case's medians per relay (bench/plot.py draws CPU per
delivery and p50 against room size from it), and each relay's paired ratios to relay.c's
as [median, low, high]; --hgrm DIR each relay's latencies per case
as HdrHistogram's percentile distribution (`hello bench chat --hgrm`),
DIR/chat-MEMBERS/RELAY.hgrm (the last run's; RELAY as compare.slug() names it).
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from arguments import at_least, seconds
import references
from compare import alternating, free_port, interval_text, medians, paired_interval, paired_ratios, require, slug

ROOM_SIZES = (2, 8, 32, 64)
# The small rooms at 5,000 messages/s, and 64 members at 2,500: at 5,000 relay.c itself
# saturates a core and queues, which is no yardstick.
DEFAULT_CASES = "2,8,32,64@2500"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, ".build-static", "release")
# hellod's chat limits, raised for the run: the defaults (32 members a room, 8 memberships
# per source prefix, 5 messages/s and a burst of 10 per member) protect a public relay;
# here 64 members are all on 127.0.0.1 and each sends rate/members messages a second
# (1,250 at most, for 8 members at R_max up to 10,000). Raised no further than that: the
# relay's tables (and its 100 ms sweep over them) are sized by these. A room's deliveries
# (10,240/s by default) go to 10,000,000/s: 64 members at 20,000 messages/s make 1,280,000.
HELLOD_LIMITS = ["--chat-members", "64", "--chat-memberships-per-prefix", "64",
                 "--chat-message-rate", "20000", "--chat-message-burst", "1000",
                 "--chat-room-delivery-rate", "10000000", "--chat-room-delivery-burst", "1000000",
                 "--chat-join-rate", "1000", "--chat-join-burst", "1000"]


def relays(reference, hellod, fanout_us=0, c_whole=False, c_again=False, before=None, variants=(), c_one=False):
    """relay.c first if `c_again` (the null yardstick: the base against itself), the hellod
    of the build in `before` if given, hellod as it ships (its limits raised), hellod with
    each of `variants` (a string of options each) added, then with a fan-out interval if
    one is given (one more variant: the trade of latency for CPU an operator can choose),
    relay.c sending whole as hellod's chat does if `c_whole`, relay.c reading one datagram a
    call if `c_one`, and relay.c (the binary `reference`), last: the base of the ratios."""
    chat = [hellod, "--listen", "chat@127.0.0.1:PORT", *HELLOD_LIMITS]
    base = {"name": "relay.c", "command": [reference, "PORT", "64"], "raw": True}
    found = [dict(base, name="relay.c again")] if c_again else []
    if before:
        found.append({"name": "hellod before", "command": [os.path.join(before, "hellod"), *chat[1:]], "raw": False})
    found.append({"name": "hellod chat", "command": chat, "raw": False})
    for options in [*variants, *(["--chat-fanout-us %d" % fanout_us] if fanout_us else [])]:
        found.append({"name": "hellod chat, " + options, "command": [*chat, *shlex.split(options)], "raw": False})
    if c_whole:
        found.append(dict(base, name="relay.c whole", command=[*base["command"], "whole"]))
    if c_one:
        found.append(dict(base, name="relay.c one", command=[reference, "PORT", "1"]))
    found.append(base)
    return found


def run_once(relay, members, rate, size, seconds, hgrm=None, awake=False):
    """One run of one relay. `awake` (--awake): a loop at the lowest priority on the relay's
    CPU, which a relay that wakes takes the CPU from at once, so that the CPU never halts
    (the docstring says why)."""
    port = free_port()
    command = [arg.replace("PORT", str(port)) for arg in relay["command"]]
    proc = subprocess.Popen(["taskset", "-c", "0", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    keeper = awake and subprocess.Popen(["taskset", "-c", "0", "nice", "-n", "19", "sh", "-c", "while :; do :; done"])
    try:
        time.sleep(0.5)  # started and idle
        if proc.poll() is not None:
            sys.exit("%s exited at start" % relay["name"])
        bench = [os.path.join(RELEASE, "hello"), "bench", "chat", "--port", str(port), "--members", str(members),
                 "--rate", str(rate), "--size", str(size), "--duration", str(seconds), "--json",
                 "--server-pid", str(proc.pid)]
        if relay["raw"]:
            bench += ["--wire", "raw"]
        if hgrm:
            bench += ["--hgrm", hgrm]
        out = subprocess.run(["taskset", "-c", "1", *bench], capture_output=True, text=True, timeout=seconds + 60)
        if not out.stdout.strip():
            sys.exit("%s: hello bench chat failed: %s" % (relay["name"], out.stderr.strip()))
        report = json.loads(out.stdout)
        server = report["server"]
        return {
            "deliveries_per_second": report["deliveries_per_second"],
            "p50": report["latency_us"]["p50"], "p99": report["latency_us"]["p99"],
            "p999": report["latency_us"]["p999"],
            "ns_per_delivery": server["cpu_ns"] / max(report["deliveries"], 1),
            "peak_rss_kb": server["peak_rss_kb"],
            "per_datagram": report["deliveries"] / max(report["datagrams"], 1),
            "lost": report["lost"], "duplicated": report["duplicated"], "reordered": report["reordered"],
            "wrong": report["wrong"],
        }
    finally:
        proc.terminate()
        proc.wait()
        if keeper:
            keeper.kill()
            keeper.wait()


def ratio(median, samples, name, base_name, key):
    """`name`'s median of `key` against `base_name`'s (`median`, as `table` took them), and
    beside it the least and greatest of the same ratio run by run: the runs are
    interleaved, so run i of each relay met the same moment of the machine, and the range
    shows how far one run's ratio can stray."""
    if not median[base_name][key]:
        return "-"
    text = "%.2fx" % (median[name][key] / median[base_name][key])
    paired = paired_ratios(samples[name], samples[base_name], key)
    if name != base_name and len(paired) > 1:
        text += " (%.2f-%.2f)" % (min(paired), max(paired))
    return text


def table(title, samples, base_name, intervals):
    """The case's table; `intervals`: each relay's paired intervals against `base_name`
    (`compare`'s)."""
    median = medians(samples)
    print("\n%s" % title)
    print("| relay | deliveries/s | p50 us | p99 us | p99.9 us | CPU ns/delivery | vs relay.c (run by run) "
          "| p50 vs relay.c (run by run) | CPU vs relay.c, paired [95 % CI] | p50 vs relay.c, paired [95 % CI] "
          "| deliveries per datagram | lost/dup/reordered (all runs) | runs with p99 over 10 ms | peak RSS KiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in median.items():
        runs = samples[name]
        faults = "%d/%d/%d" % tuple(sum(r[k] for r in runs) for k in ("lost", "duplicated", "reordered"))
        # A queue (a relay past its rate) or a pause of the machine's (--awake): what
        # queued was read in batches, which hellod packs and relay.c cannot.
        paused = sum(r["p99"] > 10_000 for r in runs)
        pairs = ("-", "-") if name == base_name else tuple(
            interval_text(intervals[name][key]) for key in ("ns_per_delivery", "p50"))
        print("| %s | %.0f | %.1f | %.1f | %.1f | %.0f | %s | %s | %s | %s | %.2f | %s | %d of %d | %d |" % (
            name, m["deliveries_per_second"], m["p50"], m["p99"], m["p999"], m["ns_per_delivery"],
            ratio(median, samples, name, base_name, "ns_per_delivery"), ratio(median, samples, name, base_name, "p50"),
            *pairs, m["per_datagram"], faults, paused, len(runs), m["peak_rss_kb"]))
    sys.stdout.flush()
    return median


# A relay's own p99 at these rates is two to six times its p50. A run's p99 over ten times
# relay.c's median p50 in the case, and over 1 ms, is not the relay's own tail but a queue or
# one of the machine's pauses (--pause-free). A fixed 1 ms suits the small rooms; at 64
# members, where a fan-out's own p99 nears it, it kept 5 rounds of 40.
PAUSE_US = 1000
PAUSE_TIMES_P50 = 10


def pause_line(samples, base_name):
    """The p99 (us) above which a run of the case is taken to hold a pause: PAUSE_TIMES_P50
    times `base_name`'s median p50 over all the case's runs (a pause moves a p50 little),
    and never under PAUSE_US."""
    return max(PAUSE_US, PAUSE_TIMES_P50 * statistics.median(r["p50"] for r in samples[base_name]))


def without_pauses(samples, line):
    """The rounds (run i of every relay) in which no relay's p99 was over `line`, and how
    many rounds there were."""
    rounds = len(next(iter(samples.values())))
    kept = [i for i in range(rounds) if all(runs[i]["p99"] <= line for runs in samples.values())]
    return {name: [runs[i] for i in kept] for name, runs in samples.items()}, rounds


def compare(title, servers, members, rate, size, seconds, runs, hgrm_dir=None, awake=False, pause_free=False):
    """The table of one case; returns each relay's medians and its paired ratios against
    relay.c's, each [median, low, high] (`paired_interval`; None: `pause_free` and no
    round was)."""
    samples = {s["name"]: [] for s in servers}
    directory = hgrm_dir and os.path.join(hgrm_dir, "chat-%d" % members)
    if directory:
        os.makedirs(directory, exist_ok=True)
    for server in alternating(servers, runs):
        hgrm = directory and os.path.join(directory, slug(server["name"]) + ".hgrm")
        samples[server["name"]].append(run_once(server, members, rate, size, seconds, hgrm, awake))
    base = servers[-1]["name"]  # relay.c
    if pause_free:
        line = pause_line(samples, base)
        samples, rounds = without_pauses(samples, line)
        kept = len(samples[base])
        title += (": the %d of %d rounds without a pause (every relay's p99 at most %.0f us: %d times relay.c's "
                  "p50, at least %d)" % (kept, rounds, line, PAUSE_TIMES_P50, PAUSE_US))
        if not kept:
            print("\n%s" % title)
            return None, None
    intervals = {name: {key: paired_interval(runs, samples[base], key) for key in ("ns_per_delivery", "p50")}
                 for name, runs in samples.items() if name != base}
    median = table(title, samples, base, intervals)
    return median, {name: {key: list(interval[:3]) for key, interval in keys.items()}
                    for name, keys in intervals.items()}


def room_sizes(text):
    """--members: room sizes among ROOM_SIZES, comma-separated, each with its rate in
    messages/s after an @ (5000 unless given): [(members, rate)]."""
    cases = []
    for case in text.split(","):
        size, _, rate = case.strip().partition("@")
        members = int(size) if size.isdigit() else 0
        messages = int(rate) if rate.isdigit() else (5000 if not rate else 0)
        if members not in ROOM_SIZES or not 0 < messages <= 100_000:
            raise argparse.ArgumentTypeError("room sizes among %s, each with @RATE if not 5000, comma-separated: "
                                             "not %r" % (",".join(map(str, ROOM_SIZES)), text))
        cases.append((members, messages))
    return cases


def callgrind_instructions(relay, members, rate, size, seconds, tmp):
    """User-space instructions of the relay (valgrind --tool=callgrind) over a whole run
    of `seconds`, and the deliveries; the kernel's work is not counted."""
    port = free_port()
    out = os.path.join(tmp, "callgrind.out.%d" % port)
    command = [arg.replace("PORT", str(port)) for arg in relay["command"]]
    proc = subprocess.Popen(["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, *command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # valgrind starts slowly
        bench = [os.path.join(RELEASE, "hello"), "bench", "chat", "--port", str(port), "--members", str(members),
                 "--rate", str(rate), "--size", str(size), "--duration", str(seconds), "--timeout", "3", "--json"]
        if relay["raw"]:
            bench += ["--wire", "raw"]
        result = subprocess.run(["taskset", "-c", "1", *bench], capture_output=True, text=True, timeout=seconds + 120)
        report = json.loads(result.stdout)
    finally:
        proc.terminate()  # callgrind writes its counts at exit
        proc.wait()
    with open(out) as f:
        totals = [line for line in f if line.startswith("totals:") or line.startswith("summary:")]
    return (int(totals[-1].split()[1]), report["deliveries"], report["datagrams"],
            report["lost"] + report["duplicated"] + report["reordered"])


def callgrind(servers, members, rate, size):
    """Instructions per delivery from the difference of a long and a short run, so that
    starting and joining cancel out. At a low rate every message goes out alone (one
    delivery per datagram), however slow valgrind makes the relay."""

    print("\ncallgrind: user-space instructions per delivery, %d members, %d messages/s of %d bytes "
          "(a 6 s run minus a 2 s run)" % (members, rate, size))
    print("| relay | instructions per delivery | deliveries (long, short) | deliveries per datagram | lost+dup+reordered |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for relay in servers:
            if not relay["raw"]:  # valgrind cannot read the static binary's debug info
                stripped = os.path.join(tmp, "hellod")
                subprocess.run(["strip", "-g", "-o", stripped, relay["command"][0]], check=True)
                relay = dict(relay, command=[stripped, *relay["command"][1:]])
            long_ir, long_d, long_g, long_bad = callgrind_instructions(relay, members, rate, size, 6, tmp)
            short_ir, short_d, short_g, short_bad = callgrind_instructions(relay, members, rate, size, 2, tmp)
            print("| %s | %.0f | %d, %d | %.2f | %d |" % (
                relay["name"], (long_ir - short_ir) / max(long_d - short_d, 1), long_d, short_d,
                (long_d + short_d) / max(long_g + short_g, 1), long_bad + short_bad))
            sys.stdout.flush()


def loses(sample):
    return sample["lost"] + sample["duplicated"] + sample["reordered"] + sample["wrong"] > 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=seconds, default=5)
    parser.add_argument("--runs", type=at_least(1), default=3)
    parser.add_argument("--rmax-from", type=at_least(1), default=500, help="the first rate R_max's search tries")
    parser.add_argument("--no-rmax", action="store_true", help="skip the R_max search")
    parser.add_argument("--callgrind", action="store_true",
                        help="only count each relay's instructions per delivery under valgrind (64 members, 100 messages/s)")
    parser.add_argument("--fanout-us", type=at_least(0), default=500,
                        help="also run hellod with this --chat-fanout-us (0: not)")
    parser.add_argument("--members", type=room_sizes, default=room_sizes(DEFAULT_CASES),
                        help="the room sizes, in order, among %s, each at 5000 messages/s or @RATE (default: %s)" % (
                            ",".join(map(str, ROOM_SIZES)), DEFAULT_CASES))
    parser.add_argument("--before", metavar="DIR",
                        help="also run this older build's hellod (DIR/hellod), just before this one's")
    parser.add_argument("--c-whole", action="store_true",
                        help="also run relay.c sending whole (`relay PORT 64 whole`), as hellod's chat sends")
    parser.add_argument("--c-one", action="store_true",
                        help="also run relay.c reading one datagram a call (`relay PORT 1`), as hellod does where they come alone")
    parser.add_argument("--c-again", action="store_true",
                        help="also run relay.c a second time in each run, listed first: its ratio to itself is the machine's noise")
    parser.add_argument("--with", dest="variants", metavar="OPTIONS", action="append", default=[],
                        help="also run hellod with these options added (--with=--no-gro; repeatable): each its own relay")
    parser.add_argument("--awake", action="store_true",
                        help="keep the relay's CPU from idling (a loop at nice 19 on it): no pause of a halted CPU in the tails")
    parser.add_argument("--pause-free", action="store_true",
                        help="the tables from the rounds (run i of every relay) in which no relay's p99 was over "
                             "%d times relay.c's median p50 in the case, nor over %d us: no pause of the machine's "
                             "(the docstring says why)" % (PAUSE_TIMES_P50, PAUSE_US))
    parser.add_argument("--json", metavar="FILE", help="also write each case's medians per relay to FILE")
    parser.add_argument("--hgrm", metavar="DIR", help="also write each relay's latencies per case, DIR/chat-MEMBERS/RELAY.hgrm")
    args = parser.parse_args()
    if args.callgrind:
        require("valgrind")
    reference = references.build()["relay"]
    servers = relays(reference, os.path.join(RELEASE, "hellod"), args.fanout_us, args.c_whole, args.c_again,
                     args.before, args.variants, args.c_one)
    if args.callgrind:
        callgrind(relays(reference, os.path.join(RELEASE, "hellod")), 64, 100, 64)
        return
    print("machine: %s, %d CPUs; %g s per run, %d runs, medians; load average before: %s" % (
        os.uname().release, os.cpu_count(), args.seconds, args.runs, " ".join("%.2f" % x for x in os.getloadavg())))
    print("hellod's chat limits raised for the run: %s" % " ".join(HELLOD_LIMITS))
    cases = []
    for members, rate in args.members:
        median, intervals = compare("%d members, %d messages/s of 64 bytes" % (members, rate), servers, members, rate,
                                    64, args.seconds, args.runs, args.hgrm, args.awake, args.pause_free)
        if median:
            cases.append({"members": members, "rate": rate, "size": 64, "relays": median, "paired": intervals})
    if not args.no_rmax:
        rate, r_max, search = args.rmax_from, None, []
        while True:
            runs = [run_once(servers[-1], 64, rate, 64, args.seconds, awake=args.awake) for _ in range(args.runs)]
            search.append("%d: %s" % (rate, "/".join("%d" % (r["lost"] + r["duplicated"] + r["reordered"]) for r in runs)))
            if any(loses(r) for r in runs):
                break
            r_max, rate = rate, rate + 500
        print("\nR_max search, relay.c, 64 members, 64 bytes (rate: lost+dup+reordered per run): %s" % ", ".join(search))
        if r_max is None:
            print("relay.c lost deliveries at %d messages/s already: no R_max" % args.rmax_from)
        else:
            compare("R_max = %d messages/s, 64 members, 64 bytes" % r_max, servers, 64, r_max, 64, args.seconds, args.runs,
                    awake=args.awake)
    print("\nload average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "runs": args.runs, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()

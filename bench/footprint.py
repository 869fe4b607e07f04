#!/usr/bin/env python3
"""How many cache lines of code and of data the chat relay touches for each message, beside
relay.c's: what a small room pays after every sleep, beyond its instructions.

    bench/footprint.py [--members 2] [--before OLD/.build-static/release] [--functions 25]

In a small room a relay sleeps after every message, and while it sleeps the machine runs
other work on that core: every line the next message touches may have to be fetched again
(PERFORMANCE.md, "Eighth pass: the footprint, counted"). Instruction counts
(bench/callgrind.py) do not see that; this counts the lines. Each relay runs under
valgrind --tool=lackey --trace-mem=yes, which reports every instruction fetched and every
load and store, while `hello bench chat` sends some 300 messages of 64 bytes to a room of
--members, at 50 a second to a room of 2 (100 / members, at least 2): slow enough for a
relay under lackey to serve each before the next comes. A message is what the relay does
from one entry into its receive to the next (hellod's hs_recvmmsg, relay.c's recvmmsg
through its PLT), a sleep between them, if it sent (else it was a tick); the figures are
the medians over the last two thirds of those (the first third holds the joins), in
distinct 64-byte lines, user space only. A relay that fell behind, packing more than one
delivery in twenty with others into a datagram, is said and not measured. The same build
gives the same counts, whatever the machine's load (Tests/integration/test_bench_footprint.py
checks how the trace is cut). --functions: hellod's code lines of one message by function.
"""
import argparse
import bisect
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from arguments import at_least
import chat
import references
from callgrind import stripped
from compare import free_port, require

LINE = 64


class Messages:
    """A lackey trace cut into turns at each fetch of `boundary` (the receive's entry); a
    turn that fetched `send` (the send's entry) is a message, one that did not a wake-up
    with nothing to send (a tick). What comes before the first turn and after the last is
    no message."""

    def __init__(self, stream, boundary, send):
        self.found = []  # (code lines, data lines, stored lines), one per message
        self.code = []  # each message's code lines, and an address fetched in each, for --functions
        code, data, stored = {}, set(), set()
        seen = sent = False
        for line in stream:
            kind = line[:2]
            if kind not in ("I ", " L", " S", " M"):
                continue
            comma = line.index(",")
            address = int(line[3:comma], 16)
            # The lines it spans: an access may straddle two.
            lines = range(address // LINE, (address + int(line[comma + 1:]) - 1) // LINE + 1)
            if kind == "I ":
                if address == boundary:
                    if seen and sent:
                        self.found.append((len(code), len(data), len(stored)))
                        self.code.append(code)
                    seen, sent = True, False
                    code, data, stored = {}, set(), set()
                    continue
                sent = sent or address == send
                for at in lines:
                    code.setdefault(at, address)
            else:
                data.update(lines)
                if kind != " L":
                    stored.update(lines)

    @property
    def first_steady(self):
        """Where the messages after the first third (the joins) begin."""
        return len(self.found) // 3

    def steady(self):
        """The messages after the first third."""
        return self.found[self.first_steady:]


def load_base(pid, binary):
    """Where valgrind mapped `binary` (its first mapping, at file offset 0)."""
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == binary and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    sys.exit("footprint.py: %s is not mapped in valgrind's process %d" % (binary, pid))


def symbols(binary):
    """[(offset, size, name)] of its functions, sorted (nm -S)."""
    out = subprocess.run(["nm", "-S", binary], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in "tTwW":
            found.append((int(fields[0], 16), int(fields[1], 16), fields[3]))
    return sorted(found)


def entries(binary, raw):
    """The offsets of the relay's receive and send entries: hellod's hs_recvmmsg and
    hs_sendmmsg, relay.c's recvmmsg and sendmmsg through its PLT."""
    if not raw:
        offsets = {name: offset for offset, _, name in symbols(binary)}
        return offsets["hs_recvmmsg"], offsets["hs_sendmmsg"]
    out = subprocess.run(["objdump", "-d", binary], capture_output=True, text=True, check=True).stdout
    offsets = {line.split()[1]: int(line.split()[0], 16) for line in out.splitlines() if line.endswith("@plt>:")}
    if "<recvmmsg@plt>:" not in offsets or "<sendmmsg@plt>:" not in offsets:
        sys.exit("footprint.py: %s calls no recvmmsg or sendmmsg through its PLT" % binary)
    return offsets["<recvmmsg@plt>:"], offsets["<sendmmsg@plt>:"]


def bound(port):
    """Whether a UDP socket is bound to 127.0.0.1:`port`."""
    with open("/proc/net/udp") as f:
        return any(line.split()[1] == "0100007F:%04X" % port for line in list(f)[1:])


def settle(pid, deadline):
    """Waits until the relay has started: bound, under lackey it may still be starting its
    worker for seconds, and joins sent then time out. Started is idle: less than a tenth
    of a CPU over a second."""
    def cpu():
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime, in clock ticks
    hertz = os.sysconf("SC_CLK_TCK")
    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = cpu()
        if now - before < hertz // 10:
            return
        before = now
    sys.exit("footprint.py: the relay was still busy starting under valgrind after 2 minutes")


def pace(members):
    """(messages a second, seconds): slow enough for a relay under lackey to serve each
    message before the next comes, and some 300 of them."""
    rate = max(2, 100 // members)
    return rate, 300 // rate


def measure(relay, members, tmp):
    """(the messages, the binary measured, where valgrind loaded it) of one relay."""
    port = free_port()
    command = [arg.replace("PORT", str(port)) for arg in relay["command"]]
    binary = command[0] if relay["raw"] else stripped(command[0], tmp)
    # To a file (some 450 MB, most of it the start): read as it came, the trace held the
    # relay back until it fell behind.
    trace = os.path.join(tmp, "trace-%d" % port)
    proc = subprocess.Popen(["taskset", "-c", "0", "valgrind", "--tool=lackey", "--trace-mem=yes",
                             "--log-file=" + trace, binary, *command[1:]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rate, seconds = pace(members)
    bench = [os.path.join(chat.RELEASE, "hello"), "bench", "chat", "--port", str(port), "--members", str(members),
             "--rate", str(rate), "--size", "64", "--duration", str(seconds), "--timeout", "10", "--json"]
    if relay["raw"]:
        bench += ["--wire", "raw"]
    try:
        deadline = time.monotonic() + 120  # lackey takes tens of seconds to start hellod
        while not bound(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("footprint.py: %s did not start under valgrind" % relay["name"])
            time.sleep(0.5)
        base = load_base(proc.pid, binary)
        settle(proc.pid, deadline)
        start = os.path.getsize(trace)
        result = subprocess.run(["taskset", "-c", "1", *bench], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            sys.exit("footprint.py: %s: hello bench chat failed: %s" % (relay["name"], result.stderr.strip()))
    finally:
        proc.terminate()
        proc.wait()
    report = json.loads(result.stdout)
    # A few packed (the joins' answers, a pause of the machine's) move no median.
    if report["datagrams"] < report["deliveries"] * 0.95:
        sys.exit("footprint.py: %s fell behind under valgrind (%d deliveries in %d datagrams): a message is not "
                 "what lies between two receives" % (relay["name"], report["deliveries"], report["datagrams"]))
    with open(trace, errors="replace") as f:
        f.seek(start)
        receive, send = entries(binary, relay["raw"])
        messages = Messages(f, base + receive, base + send)
    os.remove(trace)
    if len(messages.found) < report["sent"] * 9 // 10:
        sys.exit("footprint.py: %s: %d messages cut from the trace, of %d sent" % (
            relay["name"], len(messages.found), report["sent"]))
    return messages, binary, base


def by_function(messages, binary, base, count):
    """The code lines of the message whose count is the median, by function: lines of text."""
    steady = list(zip(messages.steady(), messages.code[messages.first_steady:]))
    median = statistics.median(found[0] for found, _ in steady)
    _, lines = min(steady, key=lambda pair: abs(pair[0][0] - median))
    table = symbols(binary)
    starts = [base + offset for offset, _, _ in table]
    tally = collections.Counter()
    for address in lines.values():  # the function of an instruction fetched in the line
        i = bisect.bisect_right(starts, address) - 1
        inside = i >= 0 and starts[i] + table[i][1] > address
        tally[table[i][2] if inside else "(outside hellod: libc, the vDSO)"] += 1
    names = [name for name, _ in tally.most_common(count)]
    demangled = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names),
                               capture_output=True, text=True).stdout.splitlines()
    if len(demangled) != len(names):
        demangled = names
    return ["\nhellod's %d code lines of one message, by function:" % len(lines)] + [
        "%5d  %s" % (tally[name], readable) for name, readable in zip(names, demangled)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=at_least(2), default=2, help="the room's size (default 2)")
    parser.add_argument("--before", metavar="DIR", help="also measure this older build's hellod (DIR/hellod)")
    parser.add_argument("--functions", type=at_least(0), default=0, metavar="N",
                        help="also list hellod's N functions with the most code lines in one message")
    args = parser.parse_args()
    require("valgrind")  # nm, objdump and strip come with the C compiler the yardsticks need
    servers = chat.relays(references.build()["relay"], os.path.join(chat.RELEASE, "hellod"), before=args.before)
    print("chat, %d members, %d messages/s of 64 bytes for %d s, under valgrind --tool=lackey; "
          "distinct 64-byte lines a message, median (least-most)" % (args.members, *pace(args.members)))
    print("| relay | code lines | data lines | of them written |")
    print("|---|---|---|---|")
    listing = []
    with tempfile.TemporaryDirectory() as tmp:
        for relay in servers:
            messages, binary, base = measure(relay, args.members, tmp)
            steady = messages.steady()
            cells = []
            for i in range(3):
                values = [found[i] for found in steady]
                cells.append("%d (%d-%d)" % (statistics.median(values), min(values), max(values)))
            print("| %s | %s |" % (relay["name"], " | ".join(cells)))
            sys.stdout.flush()
            if args.functions and relay["name"] == "hellod chat":
                listing = by_function(messages, binary, base, args.functions)
    print("\n".join(listing))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What handing a chat datagram to the worker that owns its room costs, in instructions
(valgrind --tool=callgrind, which the machine's noise does not move) and in latency.

Eight members in one room. Under callgrind, each says one message a round, and every
member reads the round before the next (--callgrind-rounds); for latency, without
valgrind and with hellod's default spin, one member says a message and waits for its own
copy, --rounds times. Three layouts, each hellod run alone:

  one worker   --listen chat@127.0.0.1:0: no rings (the single-worker path)
  two          --listen chat@127.0.0.1:0 --listen chat@127.0.0.2:0: two workers sharing
               the rooms; a probe member learns which owns the room (its token's first
               byte), then all members use the owner's socket, or the other one, whose
               worker hands every SAY over.

Instructions are Worker.serveBatch's, inclusive, summed over the threads (callgrind's
call graph), with --spin-us 0 --coalesce-us 0, divided by the datagrams hellod read.

    bench/chat-handover.py [--bin DIR] [--baseline HELLOD] [--rounds N] [--callgrind-rounds N] [--repeat N]
                           [--latency-spin-us US]      (--repeat 0: latency only)
"""
import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "integration"))
from arguments import at_least  # noqa: E402
from harness import counters, parse_metrics  # noqa: E402
import chatwire as wire  # noqa: E402
from compare import require  # noqa: E402

MEMBERS = 8
OPTIONS = ["--chat-memberships-per-prefix", "64",
           "--chat-message-rate", "1000000", "--chat-message-burst", "1000000",
           "--chat-room-delivery-rate", "1000000000", "--chat-room-delivery-burst", "1000000000",
           "--chat-join-rate", "1000000", "--chat-join-burst", "1000000"]


LATENCY_OPTIONS = []


def start(binary, listens, valgrind=None):
    # Counted in instructions, workers that sleep at once: polling would count as work.
    spin = ["--spin-us", "0", "--coalesce-us", "0"] if valgrind else LATENCY_OPTIONS
    # Counters come from the metrics file hellod writes as it stops (harness.counters).
    metrics = tempfile.mktemp(prefix="chat-handover.", suffix=".prom")
    command = [binary, *[a for l in listens for a in ("--listen", l)], *OPTIONS, *spin, "--metrics-file", metrics]
    if valgrind:
        # Valgrind 3.19 cannot read Swift's DWARF 5: a copy without debug info, symbols kept.
        stripped = valgrind + ".hellod"
        subprocess.run(["strip", "--strip-debug", "-o", stripped, binary], check=True)
        command[0] = stripped
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + valgrind, *command]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        match = re.search(r"serving (.*?) \(", line)
        if match:
            proc.metrics_path = metrics
            return proc, [a.split("@", 1)[1] for a in match.group(1).split()]
        if not line:
            break
    proc.kill()
    raise SystemExit("hellod did not start: %r" % "".join(lines))


def address(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def join_room(target, i):
    """A member's socket and (tag, token)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(30)
    tag, secret = wire.new_tag(), wire.new_secret()
    s.sendto(wire.join(tag, wire.NO_COOKIE, secret, 0, b"lobby", b"m%d" % i), target)
    challenge, _ = s.recvfrom(2048)
    s.sendto(wire.join(tag, wire.decode(challenge).cookie, secret, 0, b"lobby", b"m%d" % i), target)
    welcome = wire.decode(s.recvfrom(2048)[0])
    assert isinstance(welcome, wire.Welcome), welcome
    return s, (tag, welcome.token)


def room_owner(target):
    """Which worker owns the room: a member's token says so in its first byte. The probe
    member leaves at once."""
    s, member = join_room(target, 99)
    s.sendto(wire.leave(*member), target)
    s.close()
    return member[1] >> 56


def run_rounds(clients, target, rounds, first):
    """Each round, every member says one message; waits until each has all of them."""
    pending = [0] * MEMBERS
    for r in range(rounds):
        for s, member in clients:
            s.sendto(wire.say(*member, first + r, b"round %d" % r), target)
        for i, (s, _) in enumerate(clients):
            while pending[i] < MEMBERS:
                datagram, _ = s.recvfrom(2048)
                pending[i] += len([e for e in wire.decode_events(datagram) if e.kind == wire.MESSAGE])
            pending[i] -= MEMBERS


def ping_pong(clients, target, rounds, first):
    """The first member says a message and waits for its own copy, `rounds` times; the
    others' copies are thrown away. Returns each send-to-copy time (s)."""
    times = []
    sender, member = clients[0]
    for r in range(rounds):
        sent = time.monotonic()
        sender.sendto(wire.say(*member, first + r, b"ping %d" % r), target)
        while not [e for e in wire.decode_events(sender.recvfrom(2048)[0]) if e.kind == wire.MESSAGE]:
            pass
        times.append(time.monotonic() - sent)
        for s, _ in clients[1:]:
            drain(s)
    return times


def drain(s):
    s.setblocking(False)
    try:
        while True:
            s.recvfrom(2048)
    except BlockingIOError:
        pass
    s.setblocking(True)
    s.settimeout(30)


def measure(binary, listens, handover, rounds, valgrind=None):
    """`handover`: None with one worker; else whether the members are on the socket of the
    worker that does not own their room (every SAY handed over) or on the owner's."""
    out = None
    if valgrind:
        out = tempfile.mktemp(prefix="chat-handover.", suffix=".callgrind")
    proc, addresses = start(binary, listens, valgrind=out)
    side = 0
    if handover is not None:
        owner = room_owner(address(addresses[0]))
        side = 1 - owner if handover else owner
    target = address(addresses[side])
    clients = [join_room(target, i) for i in range(MEMBERS)]
    # Let the joins' events arrive and be thrown away.
    time.sleep(1.0 if valgrind else 0.1)
    for s, _ in clients:
        drain(s)
    times = None
    if valgrind:
        run_rounds(clients, target, rounds, first=1)
    else:
        times = ping_pong(clients, target, rounds, first=1)
    proc.send_signal(2)
    _, stderr = proc.communicate(timeout=120)
    for s, _ in clients:
        s.close()
    with open(proc.metrics_path) as f:
        found = counters(parse_metrics(f.read()))
    os.unlink(proc.metrics_path)
    instructions = None
    if out:
        # serveBatch's inclusive cost, from the call graph, summed over both threads (a
        # --toggle-collect would not do: valgrind's collection state is not per thread).
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
                              capture_output=True, text=True, check=True).stdout
        os.unlink(out)
        os.unlink(out + ".hellod")
        instructions = sum(int(n.replace(",", "")) for n in
                           re.findall(r"^\s*([\d,]+) .*Worker.*serveBatch.*ChatService.*_Tg5", text, re.M))
    return found, times, instructions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build-static", "release"))
    parser.add_argument("--rounds", type=at_least(1), default=2000)
    parser.add_argument("--callgrind-rounds", type=at_least(1), default=200)
    parser.add_argument("--repeat", type=at_least(1), default=3, help="callgrind runs per layout (median; batching varies)")
    parser.add_argument("--baseline", help="another hellod binary, measured in the one-worker layout too")
    parser.add_argument("--latency-spin-us", type=at_least(0),
                        help="--spin-us for the latency runs (0 also sets --coalesce-us 0); default: hellod's")
    args = parser.parse_args()
    require("valgrind")
    if args.latency_spin_us is not None:
        LATENCY_OPTIONS[:] = ["--spin-us", str(args.latency_spin_us)] + (["--coalesce-us", "0"] if args.latency_spin_us == 0 else [])
    binary = os.path.join(args.bin, "hellod")
    two = ["chat@127.0.0.1:0", "chat@127.0.0.2:0"]
    layouts = [("one worker", binary, ["chat@127.0.0.1:0"], None),
               ("two, members on the owner's socket", binary, two, False),
               ("two, members on the other's: every SAY handed over", binary, two, True)]
    if args.baseline:
        layouts.insert(0, ("one worker, " + args.baseline, args.baseline, ["chat@127.0.0.1:0"], None))
    print("| layout | datagrams read under callgrind (per socket) | instructions in serveBatch per datagram read, median (range) | SAY to own copy p50 us | p99 us |")
    print("|---|---|---|---|---|")
    for name, binary, listens, handover in layouts:
        per_datagram = []
        found = {"read": 0, "per_socket": []}
        for _ in range(args.repeat):
            found, _, instructions = measure(binary, listens, handover, args.callgrind_rounds, valgrind=True)
            per_datagram.append(instructions / found["read"])
        per_datagram = per_datagram or [0]
        _, times, _ = measure(binary, listens, handover, args.rounds)
        times.sort()
        print("| %s | %d (%s) | %.0f (%.0f-%.0f) | %.1f | %.1f |" % (
            name, found["read"], "/".join(map(str, found["per_socket"])), statistics.median(per_datagram),
            min(per_datagram), max(per_datagram),
            statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6))
        sys.stdout.flush()


if __name__ == "__main__":
    main()

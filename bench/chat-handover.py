#!/usr/bin/env python3
"""What handing a chat datagram to the worker that owns its room costs, in instructions
(valgrind --tool=callgrind, which the machine's noise does not move) and in latency.

Eight members in one room each say one message a round; each round is read by every
member before the next. Three layouts, each hellod run alone:

  one       --listen chat@127.0.0.1:0: one worker, no rings (the single-worker path)
  A, B      --listen chat@127.0.0.1:0 --listen chat@127.0.0.2:0: two workers sharing the
            rooms; all members on the first socket (A) or on the second (B). The room
            has one owner: in one layout every SAY is read by the owner, in the other
            every SAY is read by the other worker and handed over.

Instructions are counted in Worker.serveBatch only (--toggle-collect), over every
thread, and divided by the datagrams hellod read. Latency (without valgrind) is from a
SAY's send to its sender's copy, p50 over the rounds.

    bench/chat-handover.py [--bin DIR] [--baseline HELLOD] [--rounds N] [--callgrind-rounds N]
"""
import argparse
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "integration"))
from harness import counters  # noqa: E402
from test_chat import join, say, events  # noqa: E402

MEMBERS = 8
OPTIONS = ["--spin-us", "0", "--coalesce-us", "0", "--chat-memberships-per-prefix", "64",
           "--chat-message-rate", "1000000", "--chat-message-burst", "1000000"]


def start(binary, listens, valgrind=None):
    command = [binary, *[a for l in listens for a in ("--listen", l)], *OPTIONS]
    if valgrind:
        # Valgrind 3.19 cannot read Swift's DWARF 5: a copy without debug info, symbols kept.
        stripped = valgrind + ".hellod"
        subprocess.run(["strip", "--strip-debug", "-o", stripped, binary], check=True)
        command[0] = stripped
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + valgrind,
                   "--toggle-collect=*Worker*serveBatch*", *command]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        match = re.search(r"serving (.*?) \(", line)
        if match:
            return proc, [a.split("@", 1)[1] for a in match.group(1).split()]
        if not line:
            break
    proc.kill()
    raise SystemExit("hellod did not start: %r" % "".join(lines))


def address(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def members_join(target):
    clients = []
    for i in range(MEMBERS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(30)
        s.sendto(join(bytes(16), 100 + i, 0, b"lobby", b"m%d" % i), target)
        challenge, _ = s.recvfrom(2048)
        s.sendto(join(challenge[2:18], 100 + i, 0, b"lobby", b"m%d" % i), target)
        welcome, _ = s.recvfrom(2048)
        assert welcome[:2] == bytes([1, 130]), welcome[:2]
        (token,) = struct.unpack_from(">Q", welcome, 2)
        clients.append((s, token))
    return clients


def run_rounds(clients, target, rounds, first):
    """Each round, every member says one message; waits until each has all of them.
    Returns each round's time from the first send to the last member's last copy (s)."""
    times = []
    pending = {i: 0 for i in range(MEMBERS)}
    for r in range(rounds):
        sent = time.monotonic()
        for s, token in clients:
            s.sendto(say(token, first + r, b"round %d" % r), target)
        for i, (s, _) in enumerate(clients):
            got = pending[i]
            while got < MEMBERS:
                datagram, _ = s.recvfrom(2048)
                got += len([e for e in events(datagram) if e[1] == 1])
            pending[i] = got - MEMBERS
        times.append(time.monotonic() - sent)
    return times


def measure(binary, listens, side, rounds, valgrind=None):
    out = None
    if valgrind:
        out = tempfile.mktemp(prefix="chat-handover.", suffix=".callgrind")
    proc, addresses = start(binary, listens, valgrind=out)
    target = address(addresses[side])
    clients = members_join(target)
    # Let the joins' events arrive and be thrown away.
    time.sleep(1.0 if valgrind else 0.1)
    for s, _ in clients:
        s.setblocking(False)
        try:
            while True:
                s.recvfrom(2048)
        except BlockingIOError:
            pass
        s.setblocking(True)
        s.settimeout(30)
    times = run_rounds(clients, target, rounds, first=1)
    proc.send_signal(2)
    _, stderr = proc.communicate(timeout=120)
    for s, _ in clients:
        s.close()
    found = counters(stderr)
    instructions = None
    if out:
        with open(out) as f:
            text = f.read()
        os.unlink(out)
        os.unlink(out + ".hellod")
        instructions = sum(int(n) for n in re.findall(r"^summary: (\d+)", text, re.M))
    return found, times, instructions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build-static", "release"))
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--callgrind-rounds", type=int, default=200)
    parser.add_argument("--baseline", help="another hellod binary, measured in the one-worker layout too")
    args = parser.parse_args()
    binary = os.path.join(args.bin, "hellod")
    two = ["chat@127.0.0.1:0", "chat@127.0.0.2:0"]
    layouts = [("one", binary, ["chat@127.0.0.1:0"], 0), ("A", binary, two, 0), ("B", binary, two, 1)]
    if args.baseline:
        layouts.insert(0, ("one, " + args.baseline, args.baseline, ["chat@127.0.0.1:0"], 0))
    print("| layout | datagrams read (per socket) | instructions in serveBatch per datagram read | round p50 us | round p99 us |")
    print("|---|---|---|---|---|")
    for name, binary, listens, side in layouts:
        found, _, instructions = measure(binary, listens, side, args.callgrind_rounds, valgrind=True)
        _, times, _ = measure(binary, listens, side, args.rounds)
        times.sort()
        print("| %s | %d (%s) | %.0f | %.1f | %.1f |" % (
            name, found["read"], "/".join(map(str, found["per_socket"])), instructions / found["read"],
            statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6))
        sys.stdout.flush()


if __name__ == "__main__":
    main()

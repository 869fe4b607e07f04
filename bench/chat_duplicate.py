#!/usr/bin/env python3
"""What a duplicate SAY costs the chat relay, against a keepalive: user-space instructions
under valgrind --tool=callgrind (PERFORMANCE.md, "A duplicate SAY").

One hellod with --chat-backlog 65536, under callgrind (a copy without debug info: valgrind
cannot read the static binary's); one Python member fills its room's backlog with its own
messages, then, the counters zeroed (callgrind_control) before each, sends N WHOs, N
KEEPALIVEs, N SAYs again of its latest message (the duplicate a client sends when its copy
was lost: the relay sends the copy again), and N SAYs again of one --chat-backlog below it
(out of the window of 64, its copy gone: dropped, chat-stale). Each request waits for its
answer (a WHO after those that get none, the WHOs' cost taken off). Prints, per request of
each kind, the instructions of ChatService.handle, inclusive: the relay's own work (reading
and sending are the worker's, alike for every request).

usage: bench/chat_duplicate.py [--hellod PATH] [--backlog N] [--requests N]"""
import argparse
import os
import re
import socket
import subprocess
import tempfile
import time

from arguments import at_least
from chat_joins import TAG, cookie_from, inclusive, join, wire
from compare import free_port, require

HERE = os.path.dirname(os.path.abspath(__file__))


def say(token, sequence, text):
    return wire.say(TAG, token, sequence, text)


def keepalive(token, highest):
    return wire.keepalive(TAG, token, highest)


def who(token):
    return wire.who(TAG, token)


def member(port):
    """A member of room "r": its socket and token, once its own "joined" has come."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cookie = cookie_from(s, port, b"r", b"ada")
    s.sendto(join(cookie, 1, b"r", b"ada"), ("127.0.0.1", port))
    token = None
    while True:
        reply = s.recv(2048)
        if wire.type_of(reply) == wire.WELCOME:
            token = wire.decode(reply).token
        elif wire.type_of(reply) == wire.EVENTS:
            return s, token


def event_count(datagram):
    """The events of an EVENTS datagram."""
    return len(wire.decode_events(datagram))


def fill(s, relay, token, messages):
    """`messages` SAYs, 32 at a time, each window's copies read before the next."""
    sequence = 1
    while sequence <= messages:
        window = range(sequence, min(sequence + 32, messages + 1))
        for k in window:
            s.sendto(say(token, k, b"m%d" % k), relay)
        copies = 0
        while copies < len(window):
            copies += event_count(s.recv(2048))
        sequence = window[-1] + 1


def control(pid, flag):
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hellod", default=os.path.join(HERE, "..", ".build-static", "release", "hellod"))
    parser.add_argument("--backlog", type=at_least(1), default=65536)
    parser.add_argument("--requests", type=at_least(1), default=200)
    args = parser.parse_args()
    require("valgrind")
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        stripped = os.path.join(tmp, "hellod")
        subprocess.run(["strip", "-g", "-o", stripped, args.hellod], check=True)
        out = os.path.join(tmp, "callgrind.out")
        port = free_port()
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, stripped,
                   "--listen", "chat@127.0.0.1:%d" % port, "--chat-backlog", str(args.backlog),
                   "--chat-history", "0", "--chat-max-message", "64",
                   "--chat-message-rate", "1000000", "--chat-message-burst", "1000000",
                   "--chat-room-delivery-rate", "1000000000", "--chat-room-delivery-burst", "1000000000",
                   "--chat-epoch-s", "3600", "--chat-evict-s", "3600", "--chat-silence-s", "3600"]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        phases = []
        try:
            s, token = member(port)
            start = time.monotonic()
            last = args.backlog + 64  # the first 64 out of the backlog, out of the window of 64
            relay = ("127.0.0.1", port)
            fill(s, relay, token, last)
            print("%d messages said in %.1f s under callgrind" % (last, time.monotonic() - start))
            # Each request waits for its answer; those that get none are followed by a WHO,
            # whose cost (the first phase) is taken off theirs.
            phases = [("WHO", [who(token)]),
                      ("KEEPALIVE", [keepalive(token, 0), who(token)]),
                      ("duplicate SAY, its copy sent again", [say(token, last, b"m%d" % last)]),
                      ("SAY 65,536 below the highest, out of the window (chat-stale)", [say(token, last - args.backlog, b"x"), who(token)])]
            for _, requests in phases:
                control(proc.pid, "--zero")
                for _ in range(n):
                    for request in requests:
                        s.sendto(request, relay)
                    s.recv(2048)
                control(proc.pid, "--dump")
        finally:
            proc.terminate()  # callgrind writes its counts at exit
            proc.wait()
        dumps = sorted((f for f in os.listdir(tmp) if re.match(r"callgrind\.out\.\d+$", f)), key=lambda f: int(f.split(".")[-1]))
        assert len(dumps) == len(phases), dumps
        base = None
        print("| request (after %d messages, --chat-backlog %d) | ChatService.handle, instructions per request |"
              % (last, args.backlog))
        print("|---|---|")
        for (name, requests), dump in zip(phases, dumps):
            calls, cost = inclusive(os.path.join(tmp, dump))
            handle = sum(c for k, c in cost.items() if "ChatServiceV6handle_" in k)
            if base is None:
                base = handle
            elif len(requests) > 1:  # its WHO's cost off
                handle -= base
            print("| %s | %.0f |" % (name, handle / n))

if __name__ == "__main__":
    main()

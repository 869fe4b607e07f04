#!/usr/bin/env python3
"""What a JOIN costs the chat relay at large tables: user-space instructions under
valgrind --tool=callgrind (PERFORMANCE.md, "Joins at large tables").

One hellod with --chat-rooms 65536 --chat-members 64, under callgrind (a stripped copy:
valgrind cannot read the static binary's debug info); one Python client gets a cookie,
then sends N JOINs with it, each for a new room, each waiting for its WELCOME. Prints the
instructions of ChatService.handle per call (the JOINs; the few cookie-less ones before
them cost a few thousand each) and of ChatService.tick per call (the eviction sweep).

usage: bench/chat_joins.py [--hellod PATH] [--joins N]"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from arguments import at_least
from compare import free_port, require

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "integration"))
import chatwire as wire  # noqa: E402

TAG = wire.new_tag()


def join(cookie, seed, room, nick):
    """This client's JOIN (its one tag), with the secret numbered `seed`."""
    return wire.join(TAG, cookie, wire.new_secret(seed), 0, room, nick)


def cookie_from(s, port, room, nick):
    """The cookie of the relay's CHALLENGE to a JOIN without one, sent until it comes
    (valgrind starts slowly), the answers to the tries before drained: `s` then waits up
    to 120 s for each answer."""
    s.settimeout(0.5)
    for _ in range(240):
        s.sendto(join(wire.NO_COOKIE, 0, room, nick), ("127.0.0.1", port))
        try:
            reply = s.recv(2048)
        except socket.timeout:
            continue
        assert wire.type_of(reply) == wire.CHALLENGE, reply[:4]
        break
    else:
        raise AssertionError("no CHALLENGE")
    s.settimeout(5)
    try:
        while True:
            assert wire.type_of(s.recv(2048)) == wire.CHALLENGE
    except socket.timeout:
        pass
    s.settimeout(120)
    return wire.decode(reply).cookie


def run(hellod, joins, out):
    port = free_port()
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, hellod,
               "--listen", "chat@127.0.0.1:%d" % port, "--chat-rooms", "65536", "--chat-members", "64",
               "--chat-memberships-per-prefix", "1000000", "--chat-max-message", "64", "--chat-history", "0",
               "--chat-backlog", "1", "--chat-epoch-s", "3600", "--chat-evict-s", "3600", "--chat-silence-s", "3600"]
    # Every JOIN from the one client makes a membership: past the join limit, where there
    # is one (an older hellod, measured for the before, has none).
    if "--chat-join-rate" in subprocess.run([hellod, "--help"], capture_output=True, text=True).stdout:
        command += ["--chat-join-rate", "1000000", "--chat-join-burst", "1000000"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            cookie = cookie_from(s, port, b"r", b"n")
            start = time.monotonic()
            for k in range(joins):
                s.sendto(join(cookie, k + 1, b"room%d" % k, b"n"), ("127.0.0.1", port))
                while True:
                    reply = s.recv(2048)
                    if wire.type_of(reply) == wire.WELCOME:
                        break
                    assert wire.type_of(reply) == wire.EVENTS, reply[:4]  # EVENTS: its own "joined"
            print("%d JOINs welcomed in %.1f s under callgrind" % (joins, time.monotonic() - start))
    finally:
        proc.terminate()  # callgrind writes its counts at exit
        proc.wait()


def inclusive(path):
    """Calls and inclusive instructions per called function, from callgrind's call lines."""
    names, calls, cost = {}, {}, {}
    lines = open(path).read().split("\n")
    callee = None
    i = 0
    while i < len(lines):
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?", lines[i])
        if m:
            kind, index, name = m.groups()
            if name:
                names[index] = name
            if kind == "cfn":
                callee = names[index]
        elif lines[i].startswith("calls="):
            calls[callee] = calls.get(callee, 0) + int(lines[i].split("=")[1].split()[0])
            cost[callee] = cost.get(callee, 0) + int(lines[i + 1].split()[1])
            i += 1
        i += 1
    return calls, cost


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hellod", default=os.path.join(HERE, "..", ".build-static", "release", "hellod"))
    parser.add_argument("--joins", type=at_least(1), default=2000)
    args = parser.parse_args()
    require("valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        stripped = os.path.join(tmp, "hellod")
        shutil.copy(args.hellod, stripped)
        subprocess.run(["strip", stripped], check=True)
        out = os.path.join(tmp, "callgrind.out")
        run(stripped, args.joins, out)
        calls, cost = inclusive(out)
    for what, pattern in [("ChatService.handle (the JOINs)", "ChatServiceV6handle_"), ("ChatService.tick", "ChatServiceV4tick")]:
        for name in calls:
            if pattern in name:
                print("%s: %d calls, %d instructions each" % (what, calls[name], cost[name] // max(calls[name], 1)))


if __name__ == "__main__":
    main()

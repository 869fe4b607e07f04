#!/usr/bin/env python3
"""Is hellod's chat relay's memory flat? A million messages (`hello bench chat`) and a
hundred thousand joins and leaves (Python clients, through the real handshake), against one
`hellod --listen chat@127.0.0.1:PORT` (pinned to CPU 0, the load to CPU 1), its anonymous RSS (/proc/PID/status RssAnon) read
after a warm-up and at the end of each part.

    bench/chat_soak.py [--messages 1000000] [--joins 100000] [--bin-dir DIR]

Prints one JSON object: the RSS readings in KiB, and the growth from each warm-up to the
end of its part. Exits 1 if a part of the load lost anything.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

from arguments import at_least
from compare import free_port, status_kb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Tests", "integration"))
import chatwire as wire  # noqa: E402
# Raised for the run: all clients are on 127.0.0.1 (one source prefix) and the bench's
# members send thousands of messages a second each.
LIMITS = ["--chat-message-rate", "1000000", "--chat-message-burst", "1000000",
          "--chat-room-delivery-rate", "1000000000", "--chat-room-delivery-burst", "1000000000",
          "--chat-memberships-per-prefix", "64", "--chat-members", "16", "--chat-rooms", "16",
          "--chat-join-rate", "1000000", "--chat-join-burst", "1000000"]


def messages(hello, port, count, rate):
    """`count` messages from 4 members in one room, at `rate` a second."""
    result = subprocess.run(["taskset", "-c", "1", hello, "bench", "chat", "--port", str(port), "--members", "4", "--rate", str(rate),
                             "--duration", str(count / rate), "--json"], capture_output=True, text=True,
                            timeout=count / rate + 60)
    if not result.stdout.strip():
        sys.exit("hello bench chat failed: %s" % result.stderr.strip())
    return json.loads(result.stdout)


class Churner:
    """8 clients that join and leave, in turn, rooms of their own and one they share. Each
    gets its cookie once (CHALLENGE), then joins with it until the epoch turns."""

    def __init__(self, port):
        self.address = ("127.0.0.1", port)
        self.clients = []
        for i in range(8):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            self.clients.append([s, wire.NO_COOKIE])
        self.tags = [wire.new_tag() for _ in range(8)]
        self.secrets = [wire.new_secret() for _ in range(8)]
        self.joins = 0

    def join_and_leave(self, i):
        s, cookie = self.clients[i]
        room = b"churn-%d" % (i % 3)
        nick = b"c%d" % i
        for _attempt in range(5):
            s.sendto(wire.join(self.tags[i], cookie, self.secrets[i], 0, room, nick), self.address)
            while True:
                reply, _ = s.recvfrom(2048)
                answer = wire.decode(reply)
                if isinstance(answer, wire.Challenge):  # a (new) cookie
                    cookie = self.clients[i][1] = answer.cookie
                    break
                if isinstance(answer, wire.Welcome):
                    s.sendto(wire.leave(self.tags[i], answer.token), self.address)
                    self.joins += 1
                    return
                # EVENTS of an earlier join: history, joined, left
            continue
        raise RuntimeError("client %d could not join" % i)

    def run(self, count):
        for s, _ in self.clients:
            s.settimeout(2)
        for n in range(count):
            self.join_and_leave(n % len(self.clients))
        for s, _ in self.clients:  # what the relay sent since: not read, let it go
            s.setblocking(False)
            try:
                while True:
                    s.recv(2048)
            except BlockingIOError:
                pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=at_least(10), default=1_000_000)
    parser.add_argument("--joins", type=at_least(10), default=100_000)
    parser.add_argument("--rate", type=at_least(1), default=40_000, help="messages per second")
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, ".build-static", "release"))
    args = parser.parse_args()
    hello, hellod = os.path.join(args.bin_dir, "hello"), os.path.join(args.bin_dir, "hellod")
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", "0", hellod, "--listen", "chat@127.0.0.1:%d" % port, *LIMITS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        rss = {"idle": status_kb(proc.pid, "RssAnon")}
        started = time.monotonic()
        warm = messages(hello, port, args.messages // 10, args.rate)
        rss["after_%d_messages" % (args.messages // 10)] = status_kb(proc.pid, "RssAnon")
        rest = messages(hello, port, args.messages - args.messages // 10, args.rate)
        rss["after_%d_messages" % args.messages] = status_kb(proc.pid, "RssAnon")
        churner = Churner(port)
        churner.run(args.joins // 10)
        rss["after_%d_joins" % (args.joins // 10)] = status_kb(proc.pid, "RssAnon")
        churner.run(args.joins - args.joins // 10)
        rss["after_%d_joins" % args.joins] = status_kb(proc.pid, "RssAnon")
        values = list(rss.values())
        report = {
            "rss_anon_kb": rss,
            "messages": warm["sent"] + rest["sent"],
            "deliveries": warm["deliveries"] + rest["deliveries"],
            "lost": warm["lost"] + rest["lost"] + warm["duplicated"] + rest["duplicated"]
                    + warm["reordered"] + rest["reordered"],
            "joins_and_leaves": churner.joins,
            "growth_over_messages_kb": values[2] - values[1],
            "growth_over_joins_kb": values[4] - values[3],
            "seconds": round(time.monotonic() - started, 1),
        }
    finally:
        proc.terminate()
        proc.wait()
    print(json.dumps(report))
    sys.exit(1 if report["lost"] else 0)


if __name__ == "__main__":
    main()

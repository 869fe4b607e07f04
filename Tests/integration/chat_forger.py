"""A forger for the chat tests, run as its own process (so that it keeps its pace whatever
the test's own Python does): every kind of request from a source the relay has not proven,
from many ports of one address, at a set rate, until it is stopped (SIGTERM) or its time is
up. It prints "ready" once its sockets are bound, and on exit how many datagrams it sent
and over how many seconds.

    python3 chat_forger.py RELAY_PORT RATE SECONDS [ADDRESS [SOCKETS]]

On loopback the address is 127.0.0.1, the victim's own: no raw socket is needed to forge
"another port of the victim's address", only sockets of one's own on other ports."""
import os
import signal
import socket
import struct
import sys
import time


def requests():
    """What a forger can send that an unproven source is answered: a JOIN without a cookie,
    a JOIN with a made-up one, and every request that carries a (made-up) token."""
    def join(cookie):
        return (struct.pack(">BB", 1, 1) + cookie + struct.pack(">QQ", 7, 0) + b"\x05lobby\x03eve").ljust(64, b"\0")
    made_up = struct.unpack(">Q", os.urandom(8))[0] | 1
    return [
        join(bytes(16)),
        join(struct.pack(">IQI", 1, 0x1234_5678, 0)),
        struct.pack(">BBQIH", 1, 2, made_up, 1, 4) + b"spam",  # SAY
        struct.pack(">BBQI", 1, 3, made_up, 0),                # KEEPALIVE
        struct.pack(">BBQ", 1, 4, made_up),                    # LEAVE
        struct.pack(">BBQIH", 1, 5, made_up, 1, 64),           # RESEND
        struct.pack(">BBQ", 1, 6, made_up),                    # WHO
        struct.pack(">BBQ", 1, 7, made_up) + b"\x03eve",       # NICK
    ]


def main(relay_port, rate, seconds, address="127.0.0.1", sockets=256):
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    ports = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, 0))
        s.setblocking(False)
        ports.append(s)
    kinds = requests()
    print("ready", flush=True)
    relay = ("127.0.0.1", relay_port)
    sent, start = 0, time.monotonic()
    tick = 0.005  # paced in slices, each what the rate allows so far
    while not stopped and time.monotonic() - start < seconds:
        due = int(rate * (time.monotonic() - start + tick))
        while sent < due:
            try:
                ports[sent % len(ports)].sendto(kinds[sent % len(kinds)], relay)
            except OSError:
                pass  # a full buffer, or nothing listening (a restart): sent all the same
            sent += 1
        time.sleep(tick)  # what the relay answers is never read: the kernel drops it
    print(sent, time.monotonic() - start, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:5], *map(int, sys.argv[5:6]))

"""A forger for the chat tests, run as its own process (so that it keeps its pace whatever
the test's own Python does): every kind of request from a source the relay has not proven,
from many ports of one address, at a set rate, until it is stopped (SIGTERM) or its time is
up. It reads what the relay answers each source. It prints "ready" once its sockets are
bound, and on exit how many datagrams it sent, over how many seconds, how many bytes the
relay sent back in all, and to how many of its sources more bytes than each sent.

    python3 chat_forger.py RELAY_PORT RATE SECONDS [ADDRESS [SOCKETS]]

On loopback the address is 127.0.0.1, the victim's own: no raw socket is needed to forge
"another port of the victim's address", only sockets of one's own on other ports."""
import selectors
import signal
import socket
import sys
import time

import chatwire as wire


def requests():
    """What a forger can send that an unproven source is answered, by name: v2 JOINs without a
    cookie, with a made-up one, and with a made-up one and a random token (a rebinding's
    JOIN); every v2 request that carries a (random) token, as from a member that moved; and
    hellod 1.x's JOIN and requests with a token. Each call: new random tags and tokens."""
    tag, made_up, secret = wire.new_tag(), wire.new_tag(), wire.new_secret()
    guessed = wire.cookie(1, 0x1234_5678)
    return {
        "join": wire.join(tag, wire.NO_COOKIE, secret, 0, b"lobby", b"eve"),
        "join with a made-up cookie": wire.join(tag, guessed, secret, 0, b"lobby", b"eve"),
        "rejoin with a random token": wire.join(tag, guessed, secret, made_up, b"lobby", b"eve"),
        "say": wire.say(tag, made_up, 1, b"spam"),
        "keepalive": wire.keepalive(tag, made_up, 0),
        "leave": wire.leave(tag, made_up),
        "resend": wire.resend(tag, made_up, 1, 64),
        "who": wire.who(tag, made_up),
        "nick": wire.nick(tag, made_up, b"eve"),
        "v1 join": wire.v1_join(bytes(16), 7, 0, b"lobby", b"eve"),
        "v1 say": wire.v1_say(made_up, 1, b"spam"),
        "v1 keepalive": wire.v1_keepalive(made_up, 0),
        "v1 leave": wire.v1_request(wire.LEAVE, made_up),
    }


def main(relay_port, rate, seconds, address="127.0.0.1", sockets=256):
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    ports = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, 0))
        s.setblocking(False)
        ports.append(s)
    kinds = [d for _ in range(64) for d in requests().values()]  # 64 tags and tokens of each
    selector = selectors.DefaultSelector()
    for i, s in enumerate(ports):
        selector.register(s, selectors.EVENT_READ, i)
    sent_bytes, received_bytes = [0] * len(ports), [0] * len(ports)
    print("ready", flush=True)
    relay = ("127.0.0.1", relay_port)
    sent, start = 0, time.monotonic()
    tick = 0.005  # paced in slices, each what the rate allows so far
    while not stopped and time.monotonic() - start < seconds:
        due = int(rate * (time.monotonic() - start + tick))
        while sent < due:
            i = sent % len(ports)
            datagram = kinds[sent % len(kinds)]
            try:
                ports[i].sendto(datagram, relay)
                sent_bytes[i] += len(datagram)
            except OSError:
                pass  # a full buffer, or nothing listening (a restart): sent all the same
            sent += 1
        # What the relay answered, counted per source (bytes), so that no source is seen
        # to receive more than it sent; then the rest of the slice.
        for key, _ in selector.select(timeout=tick):
            try:
                while True:
                    received_bytes[key.data] += len(key.fileobj.recv(2048))
            except OSError:
                pass
    over = sum(r > s for r, s in zip(received_bytes, sent_bytes))
    # datagrams sent, seconds, bytes received in all, sources that received more than they sent
    print(sent, time.monotonic() - start, sum(received_bytes), over, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:5], *map(int, sys.argv[5:6]))

#!/usr/bin/env python3
"""Traffic the safety tests need that ordinary clients cannot send, runnable inside a
test's network namespace (`ip netns exec NS python3 udptool.py ...`).

  spoof SRC SPORT DST DPORT PAYLOAD [--count N] [--rate R]
      IPv4 UDP datagrams with a forged source (raw socket, root): source port 0, a
      privileged port, or another server's address and port.
  flood DST DPORT --sources A.B.C.D --count N [--per-source K]
      K datagrams from each of N consecutive source addresses (bound, so replies come
      back), sent in rounds; prints JSON: replies per source, sent, elapsed (sending),
      last_reply (seconds from the first datagram sent to the last reply seen: every
      reply counted was sent by the server within that window). First a warm-up
      datagram from each source (so the server has resolved every neighbour), then a
      pause long enough for a rate limiter's buckets to refill. Replies are told apart by
      their text, so a late reply to a warm-up never counts as one to the flood.
Tests also import it for what they forge and watch: `fragmentation_needed` (an ICMP a
router or a forger sends), `capture` and `captured` (IPv4 packets on a device, fragments
as they travel).
Every loop is bounded in count and time.
"""
import argparse
import ipaddress
import json
import selectors
import socket
import struct
import sys
import time

# Linux's, which Python's socket module does not name.
ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
UDP_SEGMENT = 103  # level SOL_UDP
UDP_GRO = 104  # level SOL_UDP
IP_MTU_DISCOVER = 10  # level IPPROTO_IP
IP_PMTUDISC_PROBE = 3


def ipv4_header(src, dst, protocol, length, dont_fragment=False):
    """An IPv4 header without options, of a packet of `length` bytes (a raw socket fills
    in the checksum)."""
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 0, 0x4000 if dont_fragment else 0, 64, protocol, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))


def udp_packet(src, sport, dst, dport, payload):
    """An IPv4 header (checksum and length filled by the kernel) and a UDP header (checksum
    0: none, allowed over IPv4)."""
    ip = ipv4_header(src, dst, socket.IPPROTO_UDP, 20 + 8 + len(payload))
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return ip + udp + payload


def spoof(src, sport, dst, dport, payload, count=1, rate=None):
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        packet = udp_packet(src, sport, dst, dport, payload)
        start = time.monotonic()
        for i in range(count):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            s.sendto(packet, (dst, 0))


def capture(device):
    """A socket that sees every packet crossing `device`, either way, as it travels (a
    fragment as a fragment), for `captured`; it does not block (AF_PACKET; root). Every
    protocol: a socket for IPv4 alone sees only what arrives."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    s.bind((device, ETH_P_ALL))
    s.setblocking(False)
    return s


def captured(sock):
    """The IPv4 UDP packets `sock` (from `capture`) saw since the last call, each a dict:
    source, length, id, df, mf, offset, and sport (None in a fragment past the first). On
    loopback each is seen twice, leaving and arriving."""
    packets = []
    for _ in range(100000):
        try:
            p, (_, protocol, *_) = sock.recvfrom(70000)
        except BlockingIOError:
            break
        if protocol != ETH_P_IP or p[9] != socket.IPPROTO_UDP:
            continue
        length, ident, fragment = struct.unpack("!HHH", p[2:8])
        offset, header = fragment & 0x1fff, (p[0] & 0x0f) * 4
        packets.append({"source": socket.inet_ntoa(p[12:16]), "length": length, "id": ident,
                        "df": bool(fragment & 0x4000), "mf": bool(fragment & 0x2000), "offset": offset,
                        "sport": struct.unpack("!H", p[header:header + 2])[0] if offset == 0 else None})
    return packets


def checksum(data):
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def fragmentation_needed(src, dst, quoted_source, quoted_destination, mtu):
    """An ICMP "fragmentation needed" from `src` to `dst` (raw socket, root), saying that
    a 1000-byte UDP datagram from `quoted_source` to `quoted_destination` (address, port)
    met a next hop of MTU `mtu`: what a router sends, or a forger."""
    quoted = ipv4_header(quoted_source[0], quoted_destination[0], socket.IPPROTO_UDP, 1000, dont_fragment=True)
    quoted += struct.pack("!HHHH", quoted_source[1], quoted_destination[1], 980, 0)
    icmp = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quoted
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    ip = ipv4_header(src, dst, socket.IPPROTO_ICMP, 20 + len(icmp))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.sendto(ip + icmp, (dst, 0))


def collect(sockets, until, counts, quiet=None):
    """Reads replies until `until` (monotonic time), counting them per socket by their
    text in `counts` ({reply: [count per socket]}; other replies are ignored); with
    `quiet`, also stops once that many seconds pass without a reply (a server that a busy
    machine holds up answers late, not never). Returns when the last reply counted was
    seen (None if none was)."""
    last = None
    started = time.monotonic()
    with selectors.DefaultSelector() as selector:
        for i, s in enumerate(sockets):
            selector.register(s, selectors.EVENT_READ, i)
        while True:
            now = time.monotonic()
            left = until - now
            if quiet is not None:
                left = min(left, (last or started) + quiet - now)
            if left <= 0:
                return last
            for key, _ in selector.select(timeout=left):
                for _ in range(100000):
                    try:
                        reply = key.fileobj.recv(2048)
                    except BlockingIOError:
                        break
                    if reply in counts:
                        counts[reply][key.data] += 1
                        last = time.monotonic()


def flood(dst, dport, first_source, count, per_source, rounds_gap=0.0, timeout=10.0, quiet=2.0, settle=1.0):
    base = ipaddress.IPv4Address(first_source)
    sockets = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((str(base + i), 0))
        s.setblocking(False)
        sockets.append(s)
    counts = {b"Hello, warm-up!": [0] * count, b"Hello, flood!": [0] * count}
    for s in sockets:
        s.sendto(b"warm-up", (dst, dport))
    collect(sockets, time.monotonic() + settle, counts)
    start = time.monotonic()
    sent = 0
    for _ in range(per_source):
        for s in sockets:
            try:
                s.sendto(b"flood", (dst, dport))
                sent += 1
            except BlockingIOError:
                pass
        if rounds_gap:
            time.sleep(rounds_gap)
    elapsed = time.monotonic() - start
    last = collect(sockets, time.monotonic() + timeout, counts, quiet=quiet)  # let the replies arrive
    for s in sockets:
        s.close()
    json.dump({"sent": sent, "elapsed": elapsed, "replies": counts[b"Hello, flood!"],
               "last_reply": None if last is None else last - start,
               "warmup_sent": count, "warmup_replies": sum(counts[b"Hello, warm-up!"])}, sys.stdout)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("spoof")
    p.add_argument("src"); p.add_argument("sport", type=int); p.add_argument("dst"); p.add_argument("dport", type=int)
    p.add_argument("payload")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--rate", type=float)
    f = sub.add_parser("flood")
    f.add_argument("dst"); f.add_argument("dport", type=int)
    f.add_argument("--sources", required=True)
    f.add_argument("--count", type=int, required=True)
    f.add_argument("--per-source", type=int, default=1)
    f.add_argument("--gap", type=float, default=0.0)
    args = parser.parse_args()
    if args.command == "spoof":
        spoof(args.src, args.sport, args.dst, args.dport, args.payload.encode(), args.count, args.rate)
    else:
        flood(args.dst, args.dport, args.sources, args.count, args.per_source, args.gap)


if __name__ == "__main__":
    main()

"""The two programs test_anycast.py runs inside its namespaces, each in a process of its own
(so that neither shares the test's interpreter lock), each until its standard input closes
or its time runs out, then printing one JSON document on standard output. Times are
CLOCK_MONOTONIC, one clock for every process on the machine, so the test compares them
with its own.

  anycast_flows.py flows PORT INTERVAL FLOWS SECONDS ADDRESS...
      In the client's namespace: FLOWS UDP sockets per service ADDRESS, each its own
      source port (a flow), each sending a numbered request every INTERVAL seconds
      ("ADDRESS/<flow>-<seq>") to ADDRESS:PORT. Prints {"ADDRESS/<flow>": {"family",
      "address", "port" (its source port), "sent": [[seq, time], ...], "answered": {seq:
      time}, "peers": [[address, port], ...], "wrong"}}: peers are every distinct source a
      right reply ("Hello, <request>!") to that flow came from; "wrong" counts the others.

  anycast_flows.py sniff PORT SECONDS INTERFACE...
      In the router's namespace: a packet socket on each INTERFACE (one per server link),
      recording each UDP datagram the router forwards out of it to PORT. Prints {"source
      address source port": [[interface index, first time, last time, datagrams], ...]},
      the runs of consecutive datagrams of that flow through one interface.
"""
import json
import os
import selectors
import socket
import struct
import sys
import time

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # SO_RCVBUF past net.core.rmem_max (root)


def flows(port, interval, count, seconds, addresses):
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    state = {}
    sockets = []
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        for i in range(count):
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 20)
            s.bind(("", 0))
            s.setblocking(False)
            name = "%s/%d" % (address, i)
            state[name] = {"family": 6 if family == socket.AF_INET6 else 4, "address": address,
                           "port": s.getsockname()[1], "sent": [], "answered": {}, "peers": set(), "wrong": 0}
            sel.register(s, selectors.EVENT_READ, name)
            sockets.append((name, s, address))
    deadline = time.monotonic() + seconds
    next_send = time.monotonic()
    seq = 0
    running = True
    stop_at = None
    while True:
        now = time.monotonic()
        if running and now >= next_send:
            for name, s, address in sockets:
                request = b"%s-%d" % (name.encode(), seq)
                try:
                    s.sendto(request, (address, port))
                except OSError:
                    pass  # no route for a moment: counted as unanswered like any loss
                state[name]["sent"].append([seq, time.monotonic()])
            seq += 1
            next_send += interval
            if next_send < now:  # a stall (a busy machine): no burst to catch up
                next_send = now + interval
        if running and now >= deadline:
            running = False
        if not running:
            if stop_at is None:
                stop_at = now + 2.0  # the last replies' grace
            elif now >= stop_at:
                break
        timeout = max(0.0, (next_send if running else stop_at) - time.monotonic())
        for key, _ in sel.select(timeout):
            if key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    sel.unregister(sys.stdin)
                    running = False
                continue
            s = key.fileobj
            while True:
                try:
                    data, peer = s.recvfrom(2048)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                flow = state[key.data]
                text = data.decode(errors="replace")
                if not (text.startswith("Hello, %s-" % key.data) and text.endswith("!")):
                    flow["wrong"] += 1
                    continue
                flow["answered"].setdefault(int(text[len("Hello, %s-" % key.data):-1]), time.monotonic())
                flow["peers"].add((peer[0], peer[1]))
    for flow in state.values():
        flow["peers"] = sorted(flow["peers"])
    json.dump(state, sys.stdout)


ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def sniff(port, seconds, interfaces):
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    for index, interface in enumerate(interfaces):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        # 4 MiB past net.core.rmem_max (root may): seconds of a busy machine's stall.
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 22)
        s.bind((interface, ETH_P_ALL))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, index)
    runs = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events = sel.select(deadline - time.monotonic())
        if any(key.data is None and not os.read(sys.stdin.fileno(), 4096) for key, _ in events):
            break
        for key, _ in events:
            if key.data is None:
                continue
            while True:
                try:
                    packet, address = key.fileobj.recvfrom(2048)
                except BlockingIOError:
                    break
                now = time.monotonic()
                if address[2] != PACKET_OUTGOING:
                    continue
                version = packet[0] >> 4
                if version == 4 and packet[9] == 17:
                    header = (packet[0] & 15) * 4
                    source = socket.inet_ntop(socket.AF_INET, packet[12:16])
                elif version == 6 and packet[6] == 17:
                    header = 40
                    source = socket.inet_ntop(socket.AF_INET6, packet[8:24])
                else:
                    continue
                sport, dport = struct.unpack("!HH", packet[header:header + 4])
                if dport != port:
                    continue
                flow = runs.setdefault("%s %d" % (source, sport), [])
                if flow and flow[-1][0] == key.data:
                    flow[-1][2] = now
                    flow[-1][3] += 1
                else:
                    flow.append([key.data, now, now, 1])
    json.dump(runs, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "flows":
        flows(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6:])
    elif sys.argv[1] == "sniff":
        sniff(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit("usage: anycast_flows.py flows|sniff ...")

"""Networks of a test's own, deleted when the test ends; nothing on the host's network
changes, and traffic never leaves them.

TestNetwork: two network namespaces joined by a veth pair. The server side is
10.77.0.1/16; the client side 10.77.0.2/16 and as many more addresses as a test asks for
(10.77.1.0 onwards).

Loopback: one namespace with only its loopback up, where every port is free (no port
picked on the host and released, no race with anything else on the machine).
"""
import ctypes
import ipaddress
import json
import itertools
import os
import socket
import subprocess
import threading

_names = itertools.count()
SERVER = "10.77.0.1"
CLIENT = "10.77.0.2"
EXTRA_BASE = ipaddress.IPv4Address("10.77.1.0")


def ip(*args, input=None):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, input=input, timeout=60)


class TestNetwork:
    def __init__(self, client_addresses=0):
        tag = "%d-%d" % (os.getpid() % 100000, next(_names))
        self.server_ns, self.client_ns = "hd-s%s" % tag, "hd-c%s" % tag
        ip("netns", "add", self.server_ns)
        try:
            ip("netns", "add", self.client_ns)
            ip("-n", self.server_ns, "link", "add", "v-srv", "type", "veth", "peer", "name", "v-cli",
               "netns", self.client_ns)
            ip("-n", self.server_ns, "addr", "add", SERVER + "/16", "dev", "v-srv")
            ip("-n", self.client_ns, "addr", "add", CLIENT + "/16", "dev", "v-cli")
            if client_addresses:
                lines = ["addr add %s/16 dev v-cli" % (EXTRA_BASE + i) for i in range(client_addresses)]
                ip("-n", self.client_ns, "-batch", "-", input="\n".join(lines) + "\n")
            for ns, dev in ((self.server_ns, "v-srv"), (self.client_ns, "v-cli")):
                ip("-n", ns, "link", "set", "lo", "up")
                ip("-n", ns, "link", "set", dev, "up")
            # Some tests route replies to a client address elsewhere on purpose: no
            # reverse-path filter may drop its requests.
            self.server(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.v-srv.rp_filter=0"])
            if client_addresses:
                # The neighbour table is shared by every namespace and holds 1024 resolved
                # entries by default: give the server permanent ones for the client's
                # addresses instead (they do not count against that limit).
                mac = json.loads(self.client(["ip", "-j", "link", "show", "v-cli"]).stdout)[0]["address"]
                lines = ["neigh replace %s lladdr %s dev v-srv nud permanent" % (EXTRA_BASE + i, mac)
                         for i in range(client_addresses)]
                ip("-n", self.server_ns, "-batch", "-", input="\n".join(lines) + "\n")
        except BaseException:
            self.close()
            raise

    def server(self, command, **kwargs):
        """Runs `command` in the server's namespace (check=True by default)."""
        kwargs.setdefault("check", True)
        return subprocess.run(["ip", "netns", "exec", self.server_ns, *command], capture_output=True, text=True,
                              timeout=kwargs.pop("timeout", 60), **kwargs)

    def client(self, command, **kwargs):
        kwargs.setdefault("check", True)
        return subprocess.run(["ip", "netns", "exec", self.client_ns, *command], capture_output=True, text=True,
                              timeout=kwargs.pop("timeout", 60), **kwargs)

    def coalesce_on_server(self):
        """Plain trains coalesce at the server's end, in its device's GRO: GRO on, its UDP
        packets eligible for it (rx-udp-gro-forwarding: a veth hands TSO-capable senders'
        packets to GRO only then) and threaded NAPI, so that its poll runs beside the sender
        and finds several packets queued."""
        self.server(["ethtool", "-K", "v-srv", "gro", "on", "rx-udp-gro-forwarding", "on"])
        self.server(["sh", "-c", "echo 1 > /sys/class/net/v-srv/threaded"])

    def server_prefix(self):
        return ["ip", "netns", "exec", self.server_ns]

    def close(self):
        for ns in (self.server_ns, self.client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


CLONE_NEWNET = 0x40000000


class Loopback:
    def __init__(self):
        self.name = "hd-l%d-%d" % (os.getpid() % 100000, next(_names))
        ip("netns", "add", self.name)
        try:
            ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def prefix(self):
        """Runs a command inside: [*net.prefix(), command...]."""
        return ["ip", "netns", "exec", self.name]

    def socket(self, family=socket.AF_INET, type=socket.SOCK_DGRAM):
        """A socket of this test process, in the namespace's network: made by a thread
        that enters the namespace (setns affects that thread only) and then ends."""
        made = []

        def make():
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open("/run/netns/%s" % self.name, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    made.append(OSError(ctypes.get_errno(), "setns %s" % self.name))
                    return
            finally:
                os.close(fd)
            made.append(socket.socket(family, type))

        thread = threading.Thread(target=make)
        thread.start()
        thread.join(timeout=10)
        if not made:
            raise AssertionError("no socket made in %s within 10 s" % self.name)
        if isinstance(made[0], Exception):
            raise made[0]
        return made[0]

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""hellod past one machine, as docs/SCALING.md tells an operator to run it: three servers
carry one service address (anycast), each announces it over BGP while `hello check` says
it answers (ExaBGP's healthcheck), and a router (BIRD 2) spreads the flows over them by
equal-cost multipath, hashing on ports as well as addresses. IPv4 and IPv6 throughout.

The network is the test's own: network namespaces for a client, a router and three
servers, on documentation prefixes, deleted at the end whatever happens:

    client 192.0.2.2, 2001:db8:c::2
      |
    router 192.0.2.1, 2001:db8:c::1; AS 64496; BIRD 2, `merge paths yes` into the kernel,
      |    fib_multipath_hash_policy 1 (v4 and v6), rp_filter 2
      +-- server i (i = 1, 2, 3) 198.51.100.(4i+2)/30, 2001:db8:i::2/64; AS 64496+i
            the service address 203.0.113.53 and 2001:db8:53::53 on its loopback;
            hellod socket-activated (`systemd-socket-activate --datagram`, [::]:9999,
            replying from the address asked, PKTINFO); ExaBGP with one healthcheck per
            family calling `hello check`, --withdraw-on-down

What an operator relies on, each asserted from what the client sees (its replies, and
which server link the router sent each datagram out of):

- many flows (source ports) spread over all three servers, each answered from the service
  address, never a server's own;
- a server that fails (its hellod, which holds the activated socket, killed: the socket
  and the service gone at once, no draining) is withdrawn within the stated detection
  time and its flows move to the others; the flows on the other servers lose nothing;
  the loss window of the failed server's flows is measured;
- that server back is announced again and takes flows, losing nothing;
- a drained server (the healthcheck's disable file, the withdrawal seen at the router,
  then its hellod stopped) loses nothing;
- a server whose link goes down is withdrawn within the same bound (BIRD ends the
  session as soon as the router's end of the link loses its carrier), its flows moving to
  the server left, whose flows lose nothing.

BIRD and ExaBGP come out of Debian's packages without installing them
(scripts/anycast-tools.sh) and run only inside the namespaces; the test checks at the end
that none of their processes is left and that neither package is installed on the host.

Under `systemd-socket-activate`, hellod is the process that holds the socket (it execs
hellod at the first datagram), so killing it is the failure of socket and service
together, what `systemctl stop hellod.socket hellod.service` without a drain, or a crash of
the service's machine short of its link, is. (Under systemd, a killed hellod alone is
restarted at once with the socket kept, and nothing is withdrawn: test_service covers it.)
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))
from harness import HELLO, HELLOD, ROOT  # noqa: E402  (the binaries under test: HELLOD_BIN_DIR)

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"  # Debian's: python3-exabgp is written for it
PORT = 9999  # inside the servers' namespaces only
SERVICE4, SERVICE6 = "203.0.113.53", "2001:db8:53::53"
SERVERS = 3
ROUTER_AS = 64496

# The healthcheck's timing (docs/SCALING.md): a check every INTERVAL s while steady, every
# FAST s while rising or falling; RISE successes to announce, FALL failures to withdraw;
# each check waits CHECK_TIMEOUT s for the answer (a stopped server refuses at once).
INTERVAL, FAST, RISE, FALL, CHECK_TIMEOUT = 1, 0.5, 2, 2, 0.5
# The longest a failure may go unwithdrawn: up to INTERVAL to the next check, FALL checks
# FAST apart each taking up to CHECK_TIMEOUT, plus BGP, BIRD and the kernel (milliseconds),
# doubled for a busy machine (ExaBGP and the healthcheck are Python processes).
DETECTION_BOUND = 2 * (INTERVAL + (FALL - 1) * FAST + FALL * CHECK_TIMEOUT)

# The client's load: FLOWS sockets per family, each a request every SEND_INTERVAL s.
FLOWS, SEND_INTERVAL = 40, 0.05


def report(what, value):
    """Figures for docs/SCALING.md, printed with the test output."""
    print("\n    measured: %s: %s" % (what, value), file=sys.stderr, flush=True)


def anycast_tools():
    """(bird's directory, ExaBGP's PYTHONPATH), fetched once into .build-anycast."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "anycast-tools.sh")], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise AssertionError("scripts/anycast-tools.sh failed: %s" % out.stderr)
    tools = out.stdout.strip()
    return os.path.join(tools, "sbin"), os.path.join(tools, "dist-packages")


def host_state():
    """What must not change on the host: whether bird2, exabgp or python3-exabgp is
    installed, and whether a bird or exabgp unit is enabled (its link in /etc/systemd)."""
    installed = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n", "bird2", "exabgp",
                                "python3-exabgp"], capture_output=True, text=True, timeout=60).stdout
    installed = sorted(line.split()[0] for line in installed.splitlines() if "install ok installed" in line)
    enabled = []
    for top, _, files in os.walk("/etc/systemd/system"):
        enabled += [os.path.join(top, f) for f in files if f.startswith(("bird", "exabgp"))]
    return {"installed": installed, "enabled": sorted(enabled)}


def bgp_processes():
    """Every process on the machine that is a bird, a birdc, or Python running ExaBGP
    (`-m exabgp`, the healthcheck included) or a script of its (exabgp, exabgp-healthcheck)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        words = [os.path.basename(word) for word in command.split()[:3]]
        if words and (words[0] in ("bird", "birdc") or "-m exabgp" in command
                      or any(word.startswith(("exabgp", "python3-exabgp")) for word in words)):
            found.append("%s %s" % (pid, command.strip()))
    return found


class Namespaces:
    """The client, the router and the servers, each a network namespace; run() runs a
    command in one; close() ends every process in them and deletes them."""

    def __init__(self):
        tag = "hd-a%d" % (os.getpid() % 100000)
        self.names = {role: "%s-%s" % (tag, role) for role in ["c", "r"] + ["s%d" % i for i in range(1, SERVERS + 1)]}
        self.made = []
        try:
            for name in self.names.values():
                subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=60)
                self.made.append(name)
                # Addresses usable at once (no duplicate address detection) and no reverse
                # path filter dropping a reply whose source is the shared address.
                self.sysctl(name, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                            "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.default.rp_filter=2")
                self.ip(name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def ns(self, role):
        return self.names[role]

    def run(self, role, *command, check=True, timeout=60):
        result = subprocess.run(["ip", "netns", "exec", self.names[role], *command], capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError("%s in %s: %s" % (" ".join(command), role, result.stderr))
        return result

    def ip(self, name, *args):
        subprocess.run(["ip", "-n", name, *args], check=True, capture_output=True, timeout=60)

    def sysctl(self, name, *settings):
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", *settings], check=True, capture_output=True,
                       timeout=60)

    def link(self, a, a_dev, b, b_dev):
        """A veth pair, a_dev in namespace role a and b_dev in b, both up."""
        self.ip(self.names[a], "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", self.names[b])
        self.ip(self.names[a], "link", "set", a_dev, "up")
        self.ip(self.names[b], "link", "set", b_dev, "up")

    def pids(self):
        pids = set()
        for name in self.made:
            out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=60).stdout
            pids.update(int(p) for p in out.split())
        return pids

    def close(self):
        """Every process left in the namespaces (each one this test started, or a child of
        one) is killed by its id, then the namespaces are deleted."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
        for name in self.made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=60)


def bird_config():
    """The router's BIRD: one IPv4 and one IPv6 session to each server, only the service
    prefixes imported, nothing exported to the servers, every equal path into the kernel."""
    sessions = []
    for i in range(1, SERVERS + 1):
        sessions.append("""
protocol bgp server%(i)d_v4 from server {
    neighbor 198.51.100.%(s)d as %(as)d;
    local 198.51.100.%(r)d;
    ipv4 { import filter service_v4; export none; };
}
protocol bgp server%(i)d_v6 from server {
    neighbor 2001:db8:%(i)d::2 as %(as)d;
    local 2001:db8:%(i)d::1;
    ipv6 { import filter service_v6; export none; };
}""" % {"i": i, "s": 4 * i + 2, "r": 4 * i + 1, "as": ROUTER_AS + i})
    return """
log stderr all;
router id 192.0.2.1;
protocol device { scan time 1; }
protocol kernel {
    ipv4 { import none; export all; };
    merge paths yes;
}
protocol kernel {
    ipv6 { import none; export all; };
    merge paths yes;
}
filter service_v4 { if net = %(v4)s/32 then accept; reject; }
filter service_v6 { if net = %(v6)s/128 then accept; reject; }
template bgp server {
    local as %(as)d;
    passive on;
    hold time 9;
    keepalive time 3;
}
%(sessions)s
""" % {"v4": SERVICE4, "v6": SERVICE6, "as": ROUTER_AS, "sessions": "\n".join(sessions)}


def exabgp_config(i, healthchecks):
    """Server i's ExaBGP: a session per family to the router, each fed by that family's
    healthcheck (`healthchecks`: family -> the process's command line)."""
    return """
process healthcheck_v4 {
    run %(hc4)s;
    encoder text;
}
process healthcheck_v6 {
    run %(hc6)s;
    encoder text;
}
neighbor 198.51.100.%(r)d {
    router-id 198.51.100.%(s)d;
    local-address 198.51.100.%(s)d;
    local-as %(as)d;
    peer-as %(router_as)d;
    hold-time 9;
    family { ipv4 unicast; }
    api { processes [ healthcheck_v4 ]; }
}
neighbor 2001:db8:%(i)d::1 {
    router-id 198.51.100.%(s)d;
    local-address 2001:db8:%(i)d::2;
    local-as %(as)d;
    peer-as %(router_as)d;
    hold-time 9;
    family { ipv6 unicast; }
    api { processes [ healthcheck_v6 ]; }
}
""" % {"i": i, "s": 4 * i + 2, "r": 4 * i + 1, "as": ROUTER_AS + i, "router_as": ROUTER_AS,
       "hc4": healthchecks[4], "hc6": healthchecks[6]}


def healthcheck_config(family, disable_file):
    """One family's healthcheck, as an operator's file (`--config`): what `hello check`
    probes, how often, when to announce and withdraw."""
    service = SERVICE4 if family == 4 else SERVICE6
    prefix = "/32" if family == 4 else "/128"
    return "\n".join([
        "name = hello-v%d" % family,
        "command = %s check --service hello --host %s --port %d --timeout %s" % (HELLO, service, PORT, CHECK_TIMEOUT),
        "interval = %s" % INTERVAL,
        "fast-interval = %s" % FAST,
        "rise = %d" % RISE,
        "fall = %d" % FALL,
        "timeout = 5",
        "disable = %s" % disable_file,
        "ip = %s%s" % (service, prefix),
        "no-ip-setup",
        "withdraw-on-down",
        "no-syslog",
        "",
    ])


class Anycast(unittest.TestCase):

    def setUp(self):
        self.host_before = host_state()
        self.assertEqual(self.host_before["installed"], [], "bird2 or exabgp installed on the host before the test")
        self.bird_dir, self.exabgp_path = anycast_tools()
        probe = subprocess.run([os.path.join(self.bird_dir, "bird"), "--version"], capture_output=True, text=True,
                               timeout=60)
        self.assertEqual(probe.returncode, 0, "bird does not run (libssh-gcrypt-4: scripts/deps.sh test): %s"
                         % probe.stderr)
        self.dir = tempfile.mkdtemp(prefix="hellod-anycast-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.net = Namespaces()
        self.addCleanup(self.check_host_after)
        self.addCleanup(self.net.close)
        self.processes = []
        self.addCleanup(self.stop_processes)
        self.hellods = {}
        self.build_network()

    # The network

    def build_network(self):
        net = self.net
        net.sysctl(net.ns("r"), "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                   "net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1")
        net.link("c", "c0", "r", "rc")
        for args in (["addr", "add", "192.0.2.2/24", "dev", "c0"], ["addr", "add", "2001:db8:c::2/64", "dev", "c0"],
                     ["route", "add", "default", "via", "192.0.2.1"],
                     ["-6", "route", "add", "default", "via", "2001:db8:c::1"]):
            net.ip(net.ns("c"), *args)
        net.ip(net.ns("r"), "addr", "add", "192.0.2.1/24", "dev", "rc")
        net.ip(net.ns("r"), "addr", "add", "2001:db8:c::1/64", "dev", "rc")
        for i in range(1, SERVERS + 1):
            s = net.ns("s%d" % i)
            net.link("r", "r%d" % i, "s%d" % i, "s0")
            net.ip(net.ns("r"), "addr", "add", "198.51.100.%d/30" % (4 * i + 1), "dev", "r%d" % i)
            net.ip(net.ns("r"), "addr", "add", "2001:db8:%d::1/64" % i, "dev", "r%d" % i)
            for args in (["addr", "add", "198.51.100.%d/30" % (4 * i + 2), "dev", "s0"],
                         ["addr", "add", "2001:db8:%d::2/64" % i, "dev", "s0"],
                         ["addr", "add", SERVICE4 + "/32", "dev", "lo"],
                         ["addr", "add", SERVICE6 + "/128", "dev", "lo"],
                         ["route", "add", "default", "via", "198.51.100.%d" % (4 * i + 1)],
                         ["-6", "route", "add", "default", "via", "2001:db8:%d::1" % i]):
                net.ip(s, *args)

    # Processes, each in a namespace, each ended at cleanup by its id

    def start(self, role, name, command, env=None, stdin=subprocess.DEVNULL, stdout=None):
        log = open(os.path.join(self.dir, name + ".log"), "a")
        proc = subprocess.Popen(["ip", "netns", "exec", self.net.ns(role), *command], stdin=stdin,
                                stdout=stdout or log, stderr=log, env=env, start_new_session=True,
                                text=True)
        log.close()
        self.processes.append(proc)
        return proc

    def stop_processes(self):
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log")) as f:
                return f.read()[-3000:]
        except FileNotFoundError:
            return ""

    def start_hellod(self, i):
        """hellod on server i, socket-activated on [::]:9999 (IPv4 and IPv6): started by
        the first datagram, as under systemd."""
        self.hellods[i] = self.start("s%d" % i, "hellod-s%d" % i, [
            "systemd-socket-activate", "--datagram", "--listen", str(PORT), "--fdname", "hello",
            HELLOD, "--metrics-file", os.path.join(self.dir, "s%d.prom" % i)])

    def start_bird(self):
        config = os.path.join(self.dir, "bird.conf")
        with open(config, "w") as f:
            f.write(bird_config())
        self.bird_socket = os.path.join(self.dir, "bird.ctl")
        self.bird = self.start("r", "bird", [os.path.join(self.bird_dir, "bird"), "-f", "-c", config,
                                             "-s", self.bird_socket, "-P", os.path.join(self.dir, "bird.pid")])
        deadline = time.monotonic() + 20
        while not os.path.exists(self.bird_socket):
            self.assertIsNone(self.bird.poll(), "bird exited: %s" % self.log("bird"))
            self.assertLess(time.monotonic(), deadline, "bird did not start: %s" % self.log("bird"))
            time.sleep(0.1)

    def start_exabgp(self, i):
        healthchecks = {}
        for family in (4, 6):
            path = os.path.join(self.dir, "healthcheck-s%d-v%d.conf" % (i, family))
            with open(path, "w") as f:
                f.write(healthcheck_config(family, self.disable_file(i)))
            healthchecks[family] = "%s -m exabgp healthcheck --config %s" % (PYTHON, path)
        config = os.path.join(self.dir, "exabgp-s%d.conf" % i)
        with open(config, "w") as f:
            f.write(exabgp_config(i, healthchecks))
        env = dict(os.environ, PYTHONPATH=self.exabgp_path)
        env.update({"exabgp.daemon.user": "root", "exabgp.daemon.drop": "false", "exabgp.api.cli": "false",
                    "exabgp.log.destination": "stderr", "exabgp.daemon.daemonize": "false"})
        self.start("s%d" % i, "exabgp-s%d" % i, [PYTHON, "-m", "exabgp", config], env=env)

    def disable_file(self, i):
        return os.path.join(self.dir, "s%d.disabled" % i)

    # What the router does

    def next_hops(self):
        """{family: set of servers (1..3) the router's route to the service address goes
        through}, as the kernel has it (BIRD's `merge paths` makes one multipath route)."""
        hops = {}
        for family, service in ((4, SERVICE4), (6, SERVICE6)):
            out = self.net.run("r", "ip", "-%d" % family, "-j", "route", "show", service).stdout
            servers = set()
            for route in json.loads(out or "[]"):
                for hop in route.get("nexthops", [route]):
                    dev = hop.get("dev", "")
                    if dev.startswith("r") and dev[1:].isdigit():
                        servers.add(int(dev[1:]))
            hops[family] = servers
        return hops

    def wait_for_next_hops(self, want, timeout, what):
        """Polls the router's routes every 20 ms until both families go through exactly
        `want`; returns {family: the time it first did}."""
        deadline = time.monotonic() + timeout
        seen = {}
        hops = None
        while True:
            hops = self.next_hops()
            now = time.monotonic()
            for family in (4, 6):
                if hops[family] == want and family not in seen:
                    seen[family] = now
                elif hops[family] != want:
                    seen.pop(family, None)
            if len(seen) == 2:
                return seen
            if now > deadline:
                self.fail("%s: the router's next hops were %s, not servers %s, after %s s\nbird: %s\n%s" % (
                    what, hops, sorted(want), timeout, self.log("bird"),
                    "\n".join("exabgp-s%d: %s" % (i, self.log("exabgp-s%d" % i)) for i in range(1, SERVERS + 1))))
            time.sleep(0.02)

    # The test

    def test_anycast_spreads_fails_over_drains_and_returns(self):
        started = time.monotonic()
        self.start_bird()
        for i in range(1, SERVERS + 1):
            self.start_hellod(i)
            self.start_exabgp(i)
        everyone = set(range(1, SERVERS + 1))
        self.wait_for_next_hops(everyone, 60, "all three servers announced")
        report("setup to three announced servers", "%.1f s" % (time.monotonic() - started))

        sniffer = self.start("r", "sniff", [PYTHON, os.path.join(HERE, "anycast_flows.py"), "sniff", str(PORT), "300",
                                            *["r%d" % i for i in range(1, SERVERS + 1)]],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        client = self.start("c", "flows", [PYTHON, os.path.join(HERE, "anycast_flows.py"), "flows", str(PORT),
                                           str(SEND_INTERVAL), str(FLOWS), "300", SERVICE4, SERVICE6],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        t = {"load": time.monotonic()}
        time.sleep(3)

        # A failure: server 1's hellod, holding the activated socket, killed; nothing drained.
        failed, drained = 1, 2
        t["fail"] = time.monotonic()
        os.kill(self.hellods[failed].pid, signal.SIGKILL)
        detected = self.wait_for_next_hops(everyone - {failed}, 30, "server %d withdrawn after its failure" % failed)
        t["detected"] = max(detected.values())
        time.sleep(2)

        # Back: socket-activated again; the healthcheck's probe starts hellod and, RISE
        # checks later, announces it.
        t["return"] = time.monotonic()
        self.start_hellod(failed)
        returned = self.wait_for_next_hops(everyone, 30, "server %d announced again" % failed)
        t["returned"] = max(returned.values())
        time.sleep(2)

        # A drain: the disable file, the withdrawal seen at the router, then hellod stopped.
        t["drain"] = time.monotonic()
        with open(self.disable_file(drained), "w"):
            pass
        withdrawn = self.wait_for_next_hops(everyone - {drained}, 30, "server %d drained" % drained)
        t["withdrawn"] = max(withdrawn.values())
        time.sleep(0.5)  # datagrams already on their way to it
        self.hellods[drained].send_signal(signal.SIGTERM)
        self.hellods[drained].wait(timeout=10)
        t["stopped"] = time.monotonic()
        time.sleep(2)

        # A link down: server 3's end of its link, hellod and ExaBGP still running. (A
        # failure the router's link does not show, such as the server's routes black-holed,
        # is withdrawn only when the BGP hold time runs out: 5.9 s in one such run.)
        cut = 3
        t["cut"] = time.monotonic()
        self.net.ip(self.net.ns("s%d" % cut), "link", "set", "s0", "down")
        lost_link = self.wait_for_next_hops(everyone - {drained, cut}, 30, "server %d withdrawn after its link "
                                            "went down" % cut)
        t["cut_withdrawn"] = max(lost_link.values())
        time.sleep(2)
        t["end"] = time.monotonic()

        flows = self.collect(client)
        runs = self.collect(sniffer)
        report("times (s after the load began)", ", ".join("%s %.2f" % (k, v - t["load"]) for k, v in t.items()))
        self.check(flows, runs, t, detected, failed, drained, lost_link, cut)
        report("test run time", "%.1f s" % (time.monotonic() - started))

    def collect(self, proc):
        """Closes the program's input (it stops) and returns the JSON it prints."""
        out, _ = proc.communicate(input="", timeout=30)
        self.assertEqual(proc.returncode, 0, self.log("flows") + self.log("sniff"))
        return json.loads(out)

    def check(self, flows, runs, t, detected, failed, drained, lost_link, cut):
        def servers_of(flow, start, end):
            """The servers the router sent the flow's datagrams to between start and end."""
            key = "%s %d" % ("192.0.2.2" if flow["family"] == 4 else "2001:db8:c::2", flow["port"])
            return {server + 1 for server, first, last, _ in runs.get(key, []) if last >= start and first <= end}

        def lost(flow, start, end):
            """Requests sent between start and end that were never answered."""
            return [(seq, sent) for seq, sent in flow["sent"]
                    if start <= sent < end and str(seq) not in flow["answered"]]

        def failure(family, mine, home, failed, how, start, detected, end):
            """Server `failed` failed (`how`) at `start`, and the router had withdrawn it at
            `detected`: within the bound, the flows that were on it (`home`: flow -> server)
            lost requests sent until then only, and went to the others after; the other
            flows lost nothing from `start` to `end`."""
            on_failed = [name for name in mine if home[name] == failed]
            survivors_lost = sum(len(lost(mine[name], start, end)) for name in mine if name not in on_failed)
            self.assertEqual(survivors_lost, 0, "IPv%d: flows on the servers that stayed lost %d requests "
                             "while server %d failed (%s)" % (family, survivors_lost, failed, how))
            windows = []
            failure_lost = 0
            for name in on_failed:
                gone = lost(mine[name], start, end)
                failure_lost += len(gone)
                if gone:
                    windows.append(gone[-1][1] - gone[0][1] + SEND_INTERVAL)
                moved = servers_of(mine[name], detected + 0.3, end)
                self.assertTrue(moved and failed not in moved, "IPv%d flow %s went to %s after server %d's "
                                "withdrawal" % (family, name, moved, failed))
            # Linux's multipath route is hash-threshold: a path removed moves some flows
            # between the paths that stayed too (harmless here: figures only).
            shuffled = sum(1 for name in mine if name not in on_failed
                           and servers_of(mine[name], detected + 0.3, end) != {home[name]})
            detection = detected - start
            report("IPv%d failure of server %d, %s" % (family, failed, how),
                   "withdrawn at the router %.2f s after (bound %.1f s); %d flows on it lost %d requests, "
                   "each flow for at most %.2f s; the other %d flows lost 0 (%d of them moved between the "
                   "servers that stayed)"
                   % (detection, DETECTION_BOUND, len(on_failed), failure_lost, max(windows, default=0),
                      len(mine) - len(on_failed), shuffled))
            self.assertLessEqual(detection, DETECTION_BOUND)
            self.assertLessEqual(max(windows, default=0), DETECTION_BOUND + SEND_INTERVAL)

        for family, service in ((4, SERVICE4), (6, SERVICE6)):
            mine = {name: flow for name, flow in flows.items() if flow["family"] == family}
            self.assertEqual(len(mine), FLOWS)
            self.assertEqual(sum(flow["wrong"] for flow in mine.values()), 0)

            # Spread: each flow on one server while all three are up, all three used.
            home = {}
            for name, flow in mine.items():
                servers = servers_of(flow, t["load"] + 0.2, t["fail"])
                self.assertEqual(len(servers), 1, "IPv%d flow %s went to servers %s while all were up"
                                 % (family, name, servers))
                home[name] = servers.pop()
            per_server = [sum(1 for s in home.values() if s == i) for i in range(1, SERVERS + 1)]
            report("IPv%d flows per server, all three up" % family, per_server)
            self.assertNotIn(0, per_server, "IPv%d: %d flows did not spread over all three servers: %s"
                             % (family, FLOWS, per_server))

            # Answered from the service address, never a server's own.
            peers = {tuple(peer) for flow in mine.values() for peer in flow["peers"]}
            self.assertEqual(peers, {(service, PORT)}, "IPv%d replies came from %s" % (family, peers))
            answered = sum(len(flow["answered"]) for flow in mine.values())
            sent = sum(len(flow["sent"]) for flow in mine.values())
            report("IPv%d requests answered" % family, "%d of %d" % (answered, sent))

            # The failure: the others lose nothing; the failed server's flows lose only
            # within the detection time, then move.
            failure(family, mine, home, failed, "hellod killed", t["fail"], detected[family], t["return"])

            # Back: announced again, takes flows, loses nothing.
            back = sum(1 for flow in mine.values() if failed in servers_of(flow, t["returned"] + 0.3, t["drain"]))
            returned_lost = sum(len(lost(flow, t["return"], t["drain"])) for flow in mine.values())
            report("IPv%d server %d back" % (family, failed), "%d flows on it again, lost %d" % (back, returned_lost))
            self.assertGreater(back, 0, "IPv%d: no flow went back to server %d" % (family, failed))
            self.assertEqual(returned_lost, 0)

            # The drain loses nothing, and the drained server gets nothing once withdrawn.
            drain_lost = sum(len(lost(flow, t["drain"], t["cut"])) for flow in mine.values())
            late = [name for name, flow in mine.items()
                    if drained in servers_of(flow, t["withdrawn"] + 0.3, t["end"])]
            report("IPv%d drain of server %d" % (family, drained),
                   "withdrawn at the router %.2f s after the disable file; lost %d"
                   % (t["withdrawn"] - t["drain"], drain_lost))
            self.assertEqual(drain_lost, 0, "IPv%d: the drain of server %d lost %d requests"
                             % (family, drained, drain_lost))
            self.assertEqual(late, [], "IPv%d flows still sent to server %d after its withdrawal" % (family, drained))

            # A link down: the router sees its end of the link go down, and BIRD withdraws
            # the server's path at once.
            home = {}
            for name, flow in mine.items():
                servers = servers_of(flow, t["stopped"] + 0.3, t["cut"])
                self.assertEqual(len(servers), 1, "IPv%d flow %s went to servers %s" % (family, name, servers))
                home[name] = servers.pop()
            failure(family, mine, home, cut, "its link down", t["cut"], lost_link[family], t["end"])

    def check_host_after(self):
        """Nothing of BIRD or ExaBGP left on the host: no process, no package, no unit."""
        deadline = time.monotonic() + 10
        while bgp_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(bgp_processes(), [])
        self.assertEqual(host_state(), self.host_before)


if __name__ == "__main__":
    unittest.main()

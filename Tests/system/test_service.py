"""hellod installed as a systemd service, under a real systemd (PID 1 in private
namespaces with its own network): install, socket activation, status, journal, SIGHUP,
stop, kill -9, a frozen process and the watchdog, a second socket (echo on 8899) taken
on restart, a broadcast as the activating datagram, uninstall.

Counts are read from the journal's HELLOD_* fields (the machine interface), never from
the prose of MESSAGE.

The steps run in order (their names are numbered) on one booted systemd; the private
systemd is powered off whatever happens, and no process is left behind.
"""
import json
import os
import re
import subprocess
import sys
import time

from private_systemd import InstalledCheckout, VERSION

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELLO = os.path.join(ROOT, ".build-static", "release", "hello")
UNITDIR = "/usr/local/lib/systemd/system"
SOCKET_UNITS = ("hellod.socket", "hellod-echo.socket")

# A client in the namespace's network: each request to (host, port), one attempt each (so
# the counts hellod logs are exact), and what came back, as hex (None: nothing in 10 s).
EXCHANGE = r"""
import json, socket, sys
out = []
for host, port, request in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.sendto(bytes.fromhex(request), (host, port))
    try:
        out.append(s.recv(65535).hex())
    except socket.timeout:
        out.append(None)
    s.close()
print(json.dumps(out))
"""

# Each worker thread of process argv[1], by name: whether it shares the main thread's file
# descriptor table (kcmp(2), KCMP_FILES; glibc has no wrapper).
FILE_TABLES = r"""
import ctypes, json, os, sys
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
number = {"x86_64": 312, "aarch64": 272}[os.uname().machine]
found = {}
for tid in os.listdir("/proc/%d/task" % pid):
    name = open("/proc/%d/task/%s/comm" % (pid, tid)).read().strip()
    if name.startswith("hellod-w"):
        result = libc.syscall(number, pid, int(tid), 2, 0, 0)
        assert result >= 0, os.strerror(ctypes.get_errno())
        found[name] = result == 0
print(json.dumps(found))
"""

# One datagram to a directed broadcast address with SO_BROADCAST; then every datagram that
# comes back to that socket within `wait` seconds (there should be none).
BROADCAST = r"""
import json, socket, sys, time
address, port, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(("0.0.0.0", 0))
s.sendto(b"Broadcast", (address, port))
replies = []
deadline = time.monotonic() + wait
while time.monotonic() < deadline:
    s.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        data, peer = s.recvfrom(65535)
        replies.append([data.decode(errors="replace"), peer[0], peer[1]])
    except socket.timeout:
        pass
print(json.dumps(replies))
"""


def report(what, value):
    """Figures for the README and the issue, printed with the test output."""
    print("\n    measured: %s: %s" % (what, value), file=sys.stderr, flush=True)


def counter_fields(entry):
    """A counters entry's machine-readable fields (HELLOD_READ, HELLOD_HELLO_REPLIED, ...),
    without the HELLOD_ prefix."""
    return {key[len("HELLOD_"):]: value for key, value in entry.items() if key.startswith("HELLOD_")}


def counters(read=0, replied=0, drops=None, services=None):
    """The fields a counters entry (stop, SIGHUP) must carry, exactly: the totals, then each
    service's (`services`: name -> (read, replied, drops)). Drop reasons appear only when
    non-zero."""
    def put(prefix, read, replied, drops):
        drops = drops or {}
        fields = {prefix + "READ": str(read), prefix + "REPLIED": str(replied),
                  prefix + "DROPPED": str(sum(drops.values())), prefix + "QUEUE_OVERFLOWS": "0"}
        for reason, count in drops.items():
            fields[prefix + "DROPPED_" + reason.upper().replace("-", "_")] = str(count)
        return fields
    fields = put("", read, replied, drops)
    for name, figures in (services or {"hello": (read, replied, drops)}).items():
        fields.update(put(name.upper() + "_", *figures))
    return fields


class InstalledService(InstalledCheckout):

    # Helpers

    def hello(self, *args, timeout=30):
        return self.systemd.run_in_network(HELLO, *args, timeout=timeout)

    def exchange(self, *requests):
        """(host, port, bytes) each sent once from the namespace's network: the replies."""
        wire = json.dumps([[host, port, data.hex()] for host, port, data in requests])
        result = self.systemd.run_in_network(sys.executable, "-c", EXCHANGE, wire)
        self.assertEqual(result.returncode, 0, result.stderr)
        return [None if r is None else bytes.fromhex(r) for r in json.loads(result.stdout)]

    def reset_start_limit(self):
        """These steps restart the service more often than systemd's default start limit
        (5 starts in 10 s) allows an operator; reset-failed clears the count."""
        self.systemctl("reset-failed", "hellod.service")

    def greet(self, exact=False):
        """Three names, three greetings. `exact`: one datagram each, however slow the reply
        (up to 10 s), for steps that count them in hellod's counters afterwards."""
        attempts = ("--timeout", "10", "--retries", "0") if exact else ("--timeout", "1", "--retries", "5")
        result = self.hello(*attempts, "Michael", "Tracy", "Sarah")
        self.assertEqual(result.stdout, "Hello, Michael!\nHello, Tracy!\nHello, Sarah!\n", result.stderr)
        self.assertEqual(result.returncode, 0)

    def activate_with_a_broadcast(self, wait=1.0):
        """With hellod.service stopped (its sockets listening in systemd), a datagram to the
        directed broadcast 192.0.2.255:9999 from inside the network starts it; after `wait`
        seconds a unicast "Michael" goes to 127.0.0.1:9999; then the service is stopped.
        Returns what was seen. A broadcast sent on the host it is addressed to loops back
        and is delivered locally, with ipi_spec_dst (192.0.2.1) != ipi_addr (192.0.2.255)."""
        self.reset_start_limit()
        self.systemctl("stop", "hellod.service", check=True)
        def ip(*args):
            result = self.systemd.run("ip", *args, check=False)
            self.assertEqual(result.returncode, 0, "ip %s: %s" % (" ".join(args), result.stderr))
        if self.systemd.run("ip", "link", "add", "bc0", "type", "dummy", check=False).returncode != 0:
            # A kernel without dummy interfaces (CONFIG_DUMMY unset, as on some VMs): one end
            # of a veth pair instead. Its peer has no address, so the copy of the broadcast
            # that crosses the pair is dropped there (a local source: martian); the copy
            # looped back on bc0 is the one delivered, as on a dummy.
            ip("link", "add", "bc0", "type", "veth", "peer", "name", "bc0-peer")
            ip("link", "set", "bc0-peer", "up")
        try:
            ip("addr", "add", "192.0.2.1/24", "brd", "+", "dev", "bc0")
            ip("link", "set", "bc0", "up")
            sent = self.systemd.run_in_network(sys.executable, "-c", BROADCAST, "192.0.2.255", "9999", str(wait))
            self.assertEqual(sent.returncode, 0, sent.stderr)
            seen = {"replies to the broadcast": json.loads(sent.stdout)}
            # Nothing else was sent: a hellod starting or running was started by it.
            seen["state after the broadcast"] = self.show("hellod.service", "ActiveState")["ActiveState"]
            self.wait_for(lambda: self.show("hellod.service", "ActiveState")["ActiveState"] == "active", 10, "hellod active")
            pid = self.main_pid()
            unicast = self.hello("--timeout", "5", "--retries", "0", "Michael")
            seen["unicast reply"] = unicast.stdout + unicast.stderr
            self.systemctl("stop", "hellod.service", check=True)
            seen["stop fields"] = counter_fields(self.wait_for_entry(pid, "hellod stopped on SIGTERM"))
            return seen
        finally:
            self.systemd.run("ip", "link", "del", "bc0", check=False)

    # The steps, in order

    def test_01_make_install(self):
        result = self.systemd.run("make", "-C", ROOT, "install", check=False, timeout=600)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for path in ("/usr/local/bin/hellod", "/usr/local/bin/hello", UNITDIR + "/hellod.service",
                     *(UNITDIR + "/" + unit for unit in SOCKET_UNITS)):
            self.assertEqual(self.systemd.run("test", "-f", path, check=False).returncode, 0, path)
        verify = self.systemd.run("systemd-analyze", "verify", *SOCKET_UNITS, "hellod.service", check=False)
        self.assertEqual((verify.returncode, verify.stdout + verify.stderr), (0, ""))

    def test_02_enable_now_starts_the_socket_not_the_service(self):
        self.systemctl("enable", "--now", "hellod.socket", check=True)
        self.assertEqual(self.show("hellod.socket", "ActiveState")["ActiveState"], "active")
        self.assertEqual(self.show("hellod.service", "ActiveState")["ActiveState"], "inactive")

    def test_03_the_first_datagram_starts_it_and_is_answered(self):
        started = time.monotonic()
        self.greet(exact=True)
        report("Michael/Tracy/Sarah through a cold socket activation, client's wall time", "%.0f ms" % ((time.monotonic() - started) * 1000))
        props = self.show("hellod.service", "ActiveState", "SubState", "Type")
        self.assertEqual((props["ActiveState"], props["SubState"]), ("active", "running"))

    def test_04_systemctl_status_shows_the_status_line(self):
        def status():
            out = self.systemctl("status", "hellod.service", "--no-pager").stdout
            return out if re.search(r"Status: \"replied 3 \(", out) else None
        out = self.wait_for(status, 8, "a STATUS= line counting the 3 replies")
        self.assertRegex(out, r"Status: \"replied 3 \(\d+(\.\d+k?)?/s\), dropped 0 \(none\), kernel queue drops 0, "
                              r"sockets 1; hello: replied 3, dropped 0\"")
        self.assertIn("hellod.service - hellod UDP greeting responder", out)

    def test_05_the_journal_has_the_start_line_at_priority_info(self):
        entries = self.journal()
        starts = [e for e in entries if "serving" in e.get("MESSAGE", "")]
        self.assertEqual(len(starts), 1, entries)
        start = starts[0]
        self.assertEqual(start["PRIORITY"], "6")
        self.assertRegex(start["MESSAGE"], r"^hellod " + re.escape(VERSION) + r" serving hello@\[::\]:9999 \(socket activation\): "
                                           r"services hello on 1, batch 64, sockets 1, ")
        self.assertEqual((start["HELLOD_ORIGIN"], start["HELLOD_SERVICES"], start["HELLOD_SOCKETS"]),
                         ("socket activation", "hello", "hello@[::]:9999"))
        self.assertEqual(start["SYSLOG_IDENTIFIER"], "hellod")
        text = self.systemd.run("journalctl", "-u", "hellod.service", "--no-pager", "-p", "info", check=False).stdout
        self.assertIn("serving hello@[::]:9999 (socket activation)", text)

    def test_06_sighup_logs_the_counters_and_it_goes_on_serving(self):
        pid = self.main_pid()
        self.systemctl("kill", "-s", "HUP", "hellod.service", check=True)
        entry = self.wait_for_entry(pid, "counters on SIGHUP after ")
        self.assertEqual(entry["PRIORITY"], "6")
        self.assertEqual(counter_fields(entry), counters(read=3, replied=3))
        self.greet(exact=True)  # the same process, still serving
        props = self.show("hellod.service", "ActiveState", "SubState", "MainPID", "NRestarts")
        self.assertEqual((props["ActiveState"], props["SubState"], props["MainPID"], props["NRestarts"]),
                         ("active", "running", pid, "0"))

    def test_06b_each_worker_has_a_file_table_and_a_timer_of_its_own_in_the_units_sandbox(self):
        # The unit's system call filter lets unshare(CLONE_FILES) through: no worker shares
        # the main thread's table (kcmp(2) says), and hellod said nothing of it. And
        # timer_create: each worker has a timer that signals it alone, for its wake interval.
        pid = self.main_pid()
        self.assertEqual(self.hellod_entries(pid, "worker 0 shares"), [])
        found = json.loads(self.systemd.run(sys.executable, "-c", FILE_TABLES, pid).stdout)
        self.assertGreaterEqual(len(found), 1, found)
        self.assertEqual(found, {name: False for name in found})
        timers = self.systemd.run("cat", "/proc/%s/timers" % pid).stdout
        self.assertEqual(len(re.findall(r"^notify: signal/tid\.\d+$", timers, re.M)), len(found), timers)

    def test_07_systemctl_stop_exits_cleanly_with_the_stop_line(self):
        pid = self.main_pid()
        self.systemctl("stop", "hellod.service", check=True)
        props = self.show("hellod.service", "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
        self.assertEqual((props["ActiveState"], props["Result"], props["ExecMainStatus"]), ("inactive", "success", "0"))
        stop = self.wait_for_entry(pid, "hellod stopped on ")
        self.assertRegex(stop["MESSAGE"], r"^hellod stopped on SIGTERM after \d+ s: read \d+, .*; hello: read \d+, ")
        self.assertEqual(counter_fields(stop), counters(read=6, replied=6))  # 3 before SIGHUP, 3 after
        self.assertEqual(self.show("hellod.socket", "ActiveState")["ActiveState"], "active")

    def test_08_cold_activation_latency(self):
        # One datagram to a stopped service, timed by a client in the namespace's network.
        probe = ("import socket,time;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(5);"
                 "t=time.monotonic();s.sendto(b'cold',('127.0.0.1',9999));r=s.recv(100);"
                 "print(r.decode(), round((time.monotonic()-t)*1000,1))")
        samples = []
        for _ in range(3):
            self.systemctl("stop", "hellod.service", check=True)
            reply, milliseconds = self.systemd.run_in_network(sys.executable, "-c", probe).stdout.rsplit(" ", 1)
            self.assertEqual(reply, "Hello, cold!")
            samples.append(float(milliseconds))
        report("cold activation, first datagram to its reply (3 runs)", ", ".join("%.1f ms" % s for s in samples))

    def test_09_kill_9_and_it_answers_again(self):
        self.reset_start_limit()
        self.greet()
        before = self.show("hellod.service", "MainPID", "NRestarts")
        self.systemctl("kill", "-s", "KILL", "hellod.service", check=True)
        self.wait_for(lambda: self.show("hellod.service", "MainPID")["MainPID"] not in ("0", before["MainPID"]),
                      10, "a new hellod after kill -9")
        self.greet()
        after = self.show("hellod.service", "NRestarts", "ActiveState")
        self.assertEqual(after["ActiveState"], "active")
        self.assertEqual(int(after["NRestarts"]), int(before["NRestarts"]) + 1)

    def test_10_a_frozen_hellod_is_restarted_by_the_watchdog(self):
        self.reset_start_limit()
        self.greet()
        before = self.show("hellod.service", "MainPID", "NRestarts", "WatchdogUSec")
        self.assertEqual(before["WatchdogUSec"], "5s")
        self.systemctl("kill", "-s", "STOP", "hellod.service", check=True)
        frozen = time.monotonic()
        self.wait_for(lambda: self.show("hellod.service", "MainPID")["MainPID"] not in ("0", before["MainPID"]),
                      30, "a restart after the watchdog timeout")
        report("kill -STOP to a new hellod running (WatchdogSec=5s)", "%.1f s" % (time.monotonic() - frozen))
        self.greet()
        messages = " ".join(e.get("MESSAGE", "") for e in self.journal())
        self.assertIn("Watchdog timeout", messages)
        self.assertEqual(int(self.show("hellod.service", "NRestarts")["NRestarts"]), int(before["NRestarts"]) + 1)

    def test_11_replies_per_second_through_the_installed_service(self):
        result = self.hello("bench", "--duration", "2", "--json", timeout=60)
        figures = json.loads(result.stdout)
        self.assertEqual((figures["lost"], figures["wrong"]), (0, 0))
        report("hello bench through the installed service (8 flows x 32, 2 s)",
               "%d replies/s, p50 %.1f us, p99 %.1f us" % (figures["replies_per_second"], figures["rtt_us"]["p50"], figures["rtt_us"]["p99"]))

    def bench_across(self, action, seconds=4, at=1.5):
        """An open-loop load at 20,000 requests/s; `action` runs `at` seconds in."""
        bench = subprocess.Popen(["nsenter", "-t", str(self.systemd.pid), "-n", "--", HELLO, "bench", "--rate", "20000",
                                  "--duration", str(seconds), "--timeout", "1", "--json"],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(at)
        action()
        return json.loads(bench.communicate(timeout=60)[0])

    def test_12_restart_under_load_loses_nothing(self):
        self.reset_start_limit()
        self.greet()
        before = self.show("hellod.service", "MainPID")["MainPID"]
        figures = self.bench_across(lambda: self.systemctl("restart", "hellod.service", check=True))
        self.assertNotEqual(self.show("hellod.service", "MainPID")["MainPID"], before)
        report("systemctl restart during 20,000 requests/s",
               "sent %d, answered %d, lost %d, late %d" % (figures["sent"], figures["answered"], figures["lost"], figures["late"]))
        self.assertEqual(figures["wrong"], 0)
        self.assertEqual(figures["lost"], 0)  # the queued datagrams waited in systemd's socket

    def test_13_kill_9_under_load_loses_at_most_the_batch_in_hand(self):
        self.reset_start_limit()
        self.greet()
        figures = self.bench_across(lambda: self.systemctl("kill", "-s", "KILL", "hellod.service", check=True))
        report("kill -9 during 20,000 requests/s",
               "sent %d, answered %d, lost %d" % (figures["sent"], figures["answered"], figures["lost"]))
        self.assertEqual(figures["wrong"], 0)
        self.assertLessEqual(figures["lost"], 64)  # --batch 64: what the killed process had read
        self.greet()

    def test_14_a_second_socket_echo_on_8899_is_taken_on_restart(self):
        # A running hellod takes a new socket when it restarts, as the README tells an
        # operator: `enable hellod-echo.socket`, then `restart hellod.service`. The socket is
        # WantedBy=hellod.service, so the service's start job brings the socket's, ordered
        # before it. Not `enable --now`: systemd refuses to start a socket whose service is
        # running ("Socket service hellod.service already active, refusing."). Nor `restart
        # hellod.service hellod-echo.socket`: the socket's restart job then races the start
        # that the service's Wants= brings, and when the start wins, the restart's stop half
        # closes the new socket and its start half is refused (seen under load).
        self.reset_start_limit()
        before = self.main_pid()
        self.assertNotEqual(before, "0")
        self.systemctl("enable", "hellod-echo.socket", check=True)
        self.systemctl("restart", "hellod.service", check=True)
        echo = self.show("hellod-echo.socket", "ActiveState", "Triggers", "FileDescriptorName", "PassPacketInfo", "Listen")
        self.assertEqual((echo["ActiveState"], echo["Triggers"], echo["FileDescriptorName"], echo["PassPacketInfo"], echo["Listen"]),
                         ("active", "hellod.service", "echo", "yes", "[::]:8899 (Datagram)"))
        pid = self.main_pid()
        self.assertNotIn(pid, ("0", before))
        # One process serves both ports: the only hellod there is, and the one that counts both.
        self.assertEqual(self.systemd.run("pgrep", "-x", "hellod", check=False).stdout.split(), [pid])
        self.greet(exact=True)
        request = b"echo \x00\xff\r\n bytes"
        self.assertEqual(self.exchange(("127.0.0.1", 8899, request), ("::1", 8899, request)), [request, request])

        start = self.wait_for_entry(pid, "hellod %s serving " % VERSION)
        self.assertEqual((start["HELLOD_ORIGIN"], start["HELLOD_SERVICES"]), ("socket activation", "hello echo"))
        self.assertEqual(sorted(start["HELLOD_SOCKETS"].split()), ["echo@[::]:8899", "hello@[::]:9999"])
        self.assertRegex(start["MESSAGE"], r"^hellod " + re.escape(VERSION) + r" serving (hello@\[::\]:9999 echo@\[::\]:8899|echo@\[::\]:8899 hello@\[::\]:9999)"
                                           r" \(socket activation\): services hello on 1, echo on 1, batch 64, sockets 2, ")
        report("sockets in the order systemd passed them", start["HELLOD_SOCKETS"])

        self.systemctl("kill", "-s", "HUP", "hellod.service", check=True)
        entry = self.wait_for_entry(pid, "counters on SIGHUP after ")
        self.assertEqual(counter_fields(entry), counters(read=5, replied=5, services={"hello": (3, 3, None), "echo": (2, 2, None)}))

        status = self.systemctl("status", "hellod.service", "--no-pager", "--lines", "20").stdout
        self.assertRegex(status, r"TriggeredBy: ● hellod(-echo)?\.socket\n\s+● hellod(-echo)?\.socket\n")
        self.assertIn("Main PID: %s (hellod)" % pid, status)
        self.assertRegex(status, r"Status: \"replied \d+ \(\d+(\.\d+k?)?/s\), dropped 0 \(none\), kernel queue drops 0, "
                                 r"sockets 2; hello: replied \d+, dropped 0; echo: replied \d+, dropped 0\"")
        self.assertIn("hellod[%s]: %s" % (pid, start["MESSAGE"]), status)
        self.assertEqual(self.show("hellod.service", "ActiveState", "MainPID"), {"ActiveState": "active", "MainPID": pid})

    def test_15_a_broadcast_that_activates_hellod_is_not_answered(self):
        # PassPacketInfo=yes: the activating datagram was queued with IP_PKTINFO's
        # ipi_spec_dst already filled in, which is how hellod tells a directed broadcast.
        self.assertEqual(self.show("hellod.socket", "PassPacketInfo")["PassPacketInfo"], "yes")
        seen = self.activate_with_a_broadcast()
        self.assertEqual(seen["replies to the broadcast"], [])
        self.assertIn(seen["state after the broadcast"], ("activating", "active"))
        self.assertEqual(seen["unicast reply"], "Hello, Michael!\n")
        drops = {"broadcast-or-multicast": 1}
        self.assertEqual(seen["stop fields"], counters(read=2, replied=1, drops=drops,
                                                       services={"hello": (2, 1, drops), "echo": (0, 0, None)}))
        self.assertNotEqual(self.systemd.run("ip", "link", "show", "bc0", check=False).returncode, 0)  # deleted

    def test_16_make_uninstall(self):
        result = self.systemd.run("make", "-C", ROOT, "uninstall", check=False, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for unit in ("hellod.service", *SOCKET_UNITS):
            self.assertEqual(self.show(unit, "LoadState")["LoadState"], "not-found", unit)
        for path in ("/usr/local/bin/hellod", "/usr/local/bin/hello", UNITDIR + "/hellod.service",
                     *(UNITDIR + "/" + unit for unit in SOCKET_UNITS)):
            self.assertNotEqual(self.systemd.run("test", "-e", path, check=False).returncode, 0, path)
        # Disabled: no enablement symlink left (sockets.target.wants/ or any other).
        links = self.systemd.run("find", "/etc/systemd/system", "-name", "hellod*", check=False)
        self.assertEqual((links.returncode, links.stdout), (0, ""))
        # Nothing listens any more: neither port is open in the namespace's network.
        listening = self.systemd.run_in_network("ss", "-Huln")
        self.assertEqual(listening.returncode, 0, listening.stderr)
        self.assertNotRegex(listening.stdout, r":(9999|8899)\b")

"""hellod installed as a systemd service, under a real systemd (PID 1 in private
namespaces with its own network): install, socket activation, status, journal, stop,
kill -9, a frozen process and the watchdog, uninstall.

The steps run in order (their names are numbered) on one booted systemd; the private
systemd is powered off whatever happens, and no process is left behind.
"""
import json
import os
import re
import subprocess
import sys
import time
import unittest

from private_systemd import PrivateSystemd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELLO = os.path.join(ROOT, ".build-static", "release", "hello")


def report(what, value):
    """Figures for the README and the issue, printed with the test output."""
    print("\n    measured: %s: %s" % (what, value), file=sys.stderr, flush=True)


class InstalledService(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        # Build on the host first: errors show here, and `make install` inside is quick.
        subprocess.run(["make", "-C", ROOT, "build"], check=True, capture_output=True, timeout=1200)
        cls.systemd = PrivateSystemd(ROOT)

    @classmethod
    def tearDownClass(cls):
        cls.systemd.poweroff()
        left = subprocess.run(["pgrep", "-f", "/usr/local/bin/hellod"], capture_output=True, text=True).stdout
        assert left == "", "hellod processes left behind: %s" % left

    # Helpers

    def systemctl(self, *args, check=False):
        return self.systemd.run("systemctl", *args, check=check)

    def show(self, unit, *properties):
        out = self.systemctl("show", unit, *("-p" + p for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def hello(self, *args, timeout=30):
        return self.systemd.run_in_network(HELLO, *args, timeout=timeout)

    def journal(self, unit="hellod.service"):
        out = self.systemd.run("journalctl", "-u", unit, "-o", "json", "--no-pager", check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def wait_for(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        self.fail("%s did not happen within %s s" % (what, timeout))

    def reset_start_limit(self):
        """These steps restart the service more often than systemd's default start limit
        (5 starts in 10 s) allows an operator; reset-failed clears the count."""
        self.systemctl("reset-failed", "hellod.service")

    def greet(self):
        result = self.hello("--timeout", "1", "--retries", "5", "Michael", "Tracy", "Sarah")
        self.assertEqual(result.stdout, "Hello, Michael!\nHello, Tracy!\nHello, Sarah!\n", result.stderr)
        self.assertEqual(result.returncode, 0)

    # The steps, in order

    def test_01_make_install(self):
        result = self.systemd.run("make", "-C", ROOT, "install", check=False, timeout=600)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for path in ("/usr/local/bin/hellod", "/usr/local/bin/hello",
                     "/usr/local/lib/systemd/system/hellod.service", "/usr/local/lib/systemd/system/hellod.socket"):
            self.assertEqual(self.systemd.run("test", "-f", path, check=False).returncode, 0, path)
        verify = self.systemd.run("systemd-analyze", "verify", "hellod.socket", "hellod.service", check=False)
        self.assertEqual((verify.returncode, verify.stdout + verify.stderr), (0, ""))

    def test_02_enable_now_starts_the_socket_not_the_service(self):
        self.systemctl("enable", "--now", "hellod.socket", check=True)
        self.assertEqual(self.show("hellod.socket", "ActiveState")["ActiveState"], "active")
        self.assertEqual(self.show("hellod.service", "ActiveState")["ActiveState"], "inactive")

    def test_03_the_first_datagram_starts_it_and_is_answered(self):
        started = time.monotonic()
        self.greet()
        report("Michael/Tracy/Sarah through a cold socket activation, client's wall time", "%.0f ms" % ((time.monotonic() - started) * 1000))
        props = self.show("hellod.service", "ActiveState", "SubState", "Type")
        self.assertEqual((props["ActiveState"], props["SubState"]), ("active", "running"))

    def test_04_systemctl_status_shows_the_status_line(self):
        def status():
            out = self.systemctl("status", "hellod.service", "--no-pager").stdout
            return out if re.search(r"Status: \"replied 3 \(", out) else None
        out = self.wait_for(status, 8, "a STATUS= line counting the 3 replies")
        self.assertRegex(out, r"Status: \"replied 3 \(\d+(\.\d+k?)?/s\), dropped 0 \(none\), kernel queue drops 0, sockets 1\"")
        self.assertIn("hellod.service - hellod UDP greeting responder", out)

    def test_05_the_journal_has_the_start_line_at_priority_info(self):
        entries = self.journal()
        starts = [e for e in entries if "serving" in e.get("MESSAGE", "")]
        self.assertEqual(len(starts), 1, entries)
        start = starts[0]
        self.assertEqual(start["PRIORITY"], "6")
        self.assertRegex(start["MESSAGE"], r"hellod 1\.0\.0 serving \[::\]:9999 \(socket activation\): mode hello, batch 64, sockets 1")
        self.assertEqual(start["HELLOD_ORIGIN"], "socket activation")
        self.assertEqual(start["SYSLOG_IDENTIFIER"], "hellod")
        text = self.systemd.run("journalctl", "-u", "hellod.service", "--no-pager", "-p", "info", check=False).stdout
        self.assertIn("serving [::]:9999 (socket activation)", text)

    def test_06_systemctl_stop_exits_cleanly_with_the_stop_line(self):
        self.systemctl("stop", "hellod.service", check=True)
        props = self.show("hellod.service", "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
        self.assertEqual((props["ActiveState"], props["Result"], props["ExecMainStatus"]), ("inactive", "success", "0"))
        stops = [e["MESSAGE"] for e in self.journal() if "stopped on" in e.get("MESSAGE", "")]
        self.assertEqual(len(stops), 1)
        self.assertRegex(stops[0], r"stopped on SIGTERM after \d+ s: read 3, replied 3, dropped 0 \(none\)")
        self.assertEqual(self.show("hellod.socket", "ActiveState")["ActiveState"], "active")

    def test_07_cold_activation_latency(self):
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

    def test_08_kill_9_and_it_answers_again(self):
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

    def test_09_a_frozen_hellod_is_restarted_by_the_watchdog(self):
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

    def test_10_replies_per_second_through_the_installed_service(self):
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

    def test_11_restart_under_load_loses_nothing(self):
        self.reset_start_limit()
        self.greet()
        before = self.show("hellod.service", "MainPID")["MainPID"]
        figures = self.bench_across(lambda: self.systemctl("restart", "hellod.service", check=True))
        self.assertNotEqual(self.show("hellod.service", "MainPID")["MainPID"], before)
        report("systemctl restart during 20,000 requests/s",
               "sent %d, answered %d, lost %d, late %d" % (figures["sent"], figures["answered"], figures["lost"], figures["late"]))
        self.assertEqual(figures["wrong"], 0)
        self.assertEqual(figures["lost"], 0)  # the queued datagrams waited in systemd's socket

    def test_12_kill_9_under_load_loses_at_most_the_batch_in_hand(self):
        self.reset_start_limit()
        self.greet()
        figures = self.bench_across(lambda: self.systemctl("kill", "-s", "KILL", "hellod.service", check=True))
        report("kill -9 during 20,000 requests/s",
               "sent %d, answered %d, lost %d" % (figures["sent"], figures["answered"], figures["lost"]))
        self.assertEqual(figures["wrong"], 0)
        self.assertLessEqual(figures["lost"], 64)  # --batch 64: what the killed process had read
        self.greet()

    def test_13_make_uninstall(self):
        result = self.systemd.run("make", "-C", ROOT, "uninstall", check=False, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(self.show("hellod.socket", "LoadState")["LoadState"], "not-found")
        self.assertNotEqual(self.systemd.run("test", "-e", "/usr/local/bin/hellod", check=False).returncode, 0)

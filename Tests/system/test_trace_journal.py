"""The per-datagram trace in the journal, hellod installed under a real systemd (PID 1 in
private namespaces): `systemctl kill -s USR1 hellod` switches it on in the running
service, the tutorial's client then shows a line per datagram with its HELLOD_* fields
(`journalctl -u hellod HELLOD_FATE=...` finds them), a flood is traced at --trace-rate
with the rest counted and journald suppressing nothing, and a second USR1 stops it; the
same process serves throughout.

The steps run in order (their names are numbered) on one booted systemd.
"""
import json
import os
import sys

from private_systemd import InstalledCheckout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELLO = os.path.join(ROOT, ".build-static", "release", "hello")

# One datagram from source port 80 to 127.0.0.1:9999: refused, never answered.
PRIVILEGED = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 80))
s.sendto(b"Tracy", ("127.0.0.1", 9999))
print("%s:%d" % s.getsockname())
"""


def report(what, value):
    print("\n    measured: %s: %s" % (what, value), file=sys.stderr, flush=True)


class TraceInTheJournal(InstalledCheckout):

    def hello(self, *args, timeout=30):
        return self.systemd.run_in_network(HELLO, *args, timeout=timeout)

    def greet(self):
        result = self.hello("--timeout", "10", "--retries", "0", "Michael", "Tracy", "Sarah")
        self.assertEqual(result.stdout, "Hello, Michael!\nHello, Tracy!\nHello, Sarah!\n", result.stderr)

    def entries(self, *matches):
        """hellod's journal entries, as JSON, that have every FIELD=value of `matches`."""
        out = self.systemd.run("journalctl", "-u", "hellod.service", *matches, "-o", "json", "--no-pager",
                               check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def traced(self, pid):
        return [e for e in self.entries("_PID=%s" % pid) if "HELLOD_FATE" in e]

    def counted(self, pid):
        """read, from a SIGHUP counters entry: the machine fields, not the prose."""
        before = len(self.hellod_entries(pid, "counters on SIGHUP"))
        self.systemctl("kill", "-s", "HUP", "hellod.service", check=True)
        entries = self.wait_for(lambda: self.hellod_entries(pid, "counters on SIGHUP")[before:], 5, "a SIGHUP line")
        return int(entries[0]["HELLOD_READ"])

    def wait_for_or_none(self, condition, timeout):
        try:
            return self.wait_for(condition, timeout, "")
        except AssertionError:
            return None

    def test_01_install_and_activate(self):
        result = self.systemd.run("make", "-C", ROOT, "install", check=False, timeout=600)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.systemctl("enable", "--now", "hellod.socket", check=True)
        self.greet()  # starts it; the trace is off: no line
        self.__class__.pid = self.main_pid()
        limits = self.show("hellod.service", "LogRateLimitIntervalUSec", "LogRateLimitBurst")
        self.assertEqual(limits, {"LogRateLimitIntervalUSec": "30s", "LogRateLimitBurst": "10000"})
        self.assertEqual(self.traced(self.pid), [])

    def test_02_usr1_switches_it_on_and_the_tutorial_client_is_traced(self):
        self.systemctl("kill", "-s", "USR1", "hellod.service", check=True)
        on = self.wait_for_entry(self.pid, "trace on")
        self.assertEqual(on["PRIORITY"], "5")
        self.assertEqual(on["MESSAGE"], "trace on: a line per datagram from every source, at most 200 a second (SIGUSR1)")
        self.greet()
        replied = self.wait_for(lambda: self.entries("HELLOD_FATE=replied", "_PID=%s" % self.pid), 5, "trace entries")
        self.assertEqual(len(replied), 3, replied)
        report("journalctl -u hellod after systemctl kill -s USR1 hellod and hello Michael Tracy Sarah",
               "\n      " + "\n      ".join(self.systemd.run("journalctl", "-u", "hellod", "--no-pager", "-o", "short",
                                                             "-n", "4", check=False).stdout.splitlines()))
        for entry, size in zip(replied, ("7", "5", "5")):
            self.assertRegex(entry["HELLOD_PEER"], r"^127\.0\.0\.1:\d+$")
            self.assertEqual((entry["HELLOD_SERVICE"], entry["HELLOD_LOCAL"], entry["HELLOD_BYTES"],
                              entry["HELLOD_REPLY_BYTES"], entry["HELLOD_REPLY_FROM"], entry["PRIORITY"]),
                             ("hello", "127.0.0.1:9999", size, str(int(size) + 8), "127.0.0.1", "6"))
            self.assertRegex(entry["MESSAGE"], r"^trace: hello 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:9999, %s bytes: "
                                               r"replied, %d bytes from 127\.0\.0\.1$" % (size, int(size) + 8))
        sent = self.systemd.run_in_network(sys.executable, "-c", PRIVILEGED)
        self.assertEqual(sent.returncode, 0, sent.stderr)
        refused = self.wait_for(lambda: self.entries("HELLOD_FATE=privileged-source-port"), 5, "the refused one")
        self.assertEqual([(e["HELLOD_PEER"], e["HELLOD_BYTES"]) for e in refused], [(sent.stdout.strip(), "5")])
        text = self.systemd.run("journalctl", "-u", "hellod", "--no-pager", "-o", "cat", check=False).stdout
        self.assertIn("dropped, privileged-source-port", text)

    def test_03_a_flood_is_traced_at_the_rate_the_rest_counted_and_journald_suppresses_nothing(self):
        read_before = self.counted(self.pid)
        traced_before = len(self.traced(self.pid))
        bench = self.hello("bench", "--port", "9999", "--flows", "4", "--window", "16", "--duration", "2",
                           timeout=60)
        self.assertEqual(bench.returncode, 0, bench.stderr)
        self.systemctl("kill", "-s", "USR1", "hellod.service", check=True)  # off: every record written
        read = self.counted(self.pid) - read_before

        def written():  # the writer empties the rings, then journald files the lines
            traced = len(self.traced(self.pid)) - traced_before
            not_traced = sum(int(e["HELLOD_NOT_TRACED"]) for e in self.entries("_PID=%s" % self.pid)
                             if "HELLOD_NOT_TRACED" in e)
            written.last = (traced, not_traced)
            return traced + not_traced == read
        written.last = None
        if not self.wait_for_or_none(written, 10):
            self.fail("traced and counted %r, not the %d read" % (written.last, read))
        traced, not_traced = written.last
        # journald says "Suppressed N messages" only when its 30 s window ends; lines it
        # dropped would already be missing above.
        journal = self.systemd.run("journalctl", "--no-pager", "-o", "cat", check=False).stdout
        self.assertNotIn("Suppressed", journal)
        self.wait_for_entry(self.pid, "trace off")
        report("a 2 s flood with the trace on", "%d datagrams read, %d traced, %d counted as not traced"
               % (read, traced, not_traced))
        self.assertGreater(read, 2000)
        self.assertLessEqual(traced, 200 * 4)  # 2 s of flood and the seconds around it

    def test_04_a_second_usr1_stops_it_and_the_same_process_serves_on(self):
        before = len(self.traced(self.pid))
        self.greet()
        self.assertEqual(len(self.traced(self.pid)), before)
        props = self.show("hellod.service", "ActiveState", "MainPID", "NRestarts")
        self.assertEqual((props["ActiveState"], props["MainPID"], props["NRestarts"]), ("active", self.pid, "0"))
        self.systemctl("stop", "hellod.service", "hellod.socket", check=True)

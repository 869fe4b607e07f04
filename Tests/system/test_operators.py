"""What an operator uses, installed under a real systemd (PID 1 in private namespaces):
the manual pages and completions `make install` puts where man and each shell look (and
`systemctl help` opens, from the units' Documentation=), LICENSE and NOTICE, the
options in /etc/default/hellod taking effect on restart, and a bad option there: the
service failed with the one-line reason, not restarted in a loop, and the way back; the
metrics file under /run/hellod, readable by another user, counting a known load.

The steps run in order (their names are numbered) on one booted systemd.
"""
import os
import re
import sys
import time
import unittest

from private_systemd import InstalledCheckout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELLO = os.path.join(ROOT, ".build-static", "release", "hello")
SHARE = "/usr/local/share"
DEFAULTS = "/etc/default/hellod"

# From one socket in the namespace's network, `count` datagrams to 127.0.0.1:9999 at once;
# then every reply that comes within `wait` seconds: how many.
BURST = r"""
import socket, sys, time
count, wait = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
for i in range(count):
    s.sendto(b"n%d" % i, ("127.0.0.1", 9999))
replies = 0
deadline = time.monotonic() + wait
while time.monotonic() < deadline:
    s.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        s.recv(100)
        replies += 1
    except socket.timeout:
        pass
print(replies)
"""


def report(what, value):
    print("\n    measured: %s: %s" % (what, value), file=sys.stderr, flush=True)


class OperatorInstall(InstalledCheckout):
    no_hellod_left = False  # as before: this file never checked for a hellod left behind

    def run_inside(self, *command, input=None):
        return self.systemd.run(*command, check=False, input=input)

    def set_options(self, options):
        self.assertEqual(self.run_inside("sh", "-c", "printf 'HELLOD_OPTIONS=\"%%s\"\\n' \"$1\" > %s" % DEFAULTS,
                                         "sh", options).returncode, 0)

    def hellod_lines(self):
        return self.run_inside("journalctl", "-u", "hellod.service", "-o", "cat", "--no-pager").stdout

    def test_01_make_install_puts_manuals_completions_and_the_defaults_file(self):
        result = self.run_inside("make", "-C", ROOT, "install")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("installed %s" % DEFAULTS, result.stdout)
        for path in (SHARE + "/man/man8/hellod.8", SHARE + "/man/man1/hello.1",
                     SHARE + "/doc/hellod/LICENSE", SHARE + "/doc/hellod/NOTICE",
                     SHARE + "/bash-completion/completions/hellod", SHARE + "/bash-completion/completions/hello",
                     SHARE + "/zsh/site-functions/_hellod", SHARE + "/zsh/site-functions/_hello",
                     SHARE + "/fish/vendor_completions.d/hellod.fish", SHARE + "/fish/vendor_completions.d/hello.fish",
                     DEFAULTS):
            self.assertEqual(self.run_inside("test", "-s", path).returncode, 0, path)
        with open(os.path.join(ROOT, "systemd", "hellod.default")) as shipped:
            self.assertEqual(self.run_inside("cat", DEFAULTS).stdout, shipped.read())
        verify = self.run_inside("systemd-analyze", "verify", "hellod.socket", "hellod.service")
        self.assertEqual((verify.returncode, verify.stdout + verify.stderr), (0, ""))
        # A second install keeps an operator's file.
        self.set_options("--rate-limit 7")
        again = self.run_inside("make", "-C", ROOT, "install")
        self.assertIn("kept %s (yours)" % DEFAULTS, again.stdout)
        self.assertEqual(self.run_inside("cat", DEFAULTS).stdout, 'HELLOD_OPTIONS="--rate-limit 7"\n')

    def test_02_man_finds_and_renders_both_pages(self):
        for name, section, expect in (("hellod", "8", "--check-config"), ("hello", "1", "--timeout")):
            # Debian's man finds it through /usr/local/man, a link to /usr/local/share/man.
            where = self.run_inside("sh", "-c", "realpath \"$(man -w %s)\"" % name)
            self.assertEqual(where.stdout.strip(), "%s/man/man%s/%s.%s" % (SHARE, section, name, section), where.stderr)
            page = self.run_inside("env", "MANWIDTH=100", "man", "-P", "cat", name)
            self.assertEqual(page.returncode, 0, page.stderr)
            self.assertIn(expect, page.stdout)
            lint = self.run_inside("mandoc", "-Tlint", "-Werror", "%s/man/man%s/%s.%s" % (SHARE, section, name, section))
            self.assertEqual((lint.returncode, lint.stdout), (0, ""), name)
        page = self.run_inside("env", "MANWIDTH=100", "man", "-P", "cat", "hellod").stdout
        for heading in ("SYNOPSIS", "SYSTEMD UNITS", "SIGNALS", "COUNTERS", "FILES", "EXIT STATUS"):
            self.assertIn("\n" + heading + "\n", page)

    def test_02b_systemctl_help_opens_the_manual_of_every_unit(self):
        # Documentation=man:hellod(8) in each unit: systemctl runs man on it (MANPAGER=cat:
        # no pager waiting for a key).
        for unit in ("hellod", "hellod.socket", "hellod-echo.socket", "hellod-chat.socket"):
            shown = self.run_inside("env", "MANPAGER=cat", "MANWIDTH=100", "systemctl", "help", unit)
            self.assertEqual(shown.returncode, 0, unit + ": " + shown.stderr)
            self.assertRegex(shown.stdout, r"(?m)^NAME\n +hellod \S+ A UDP daemon that answers every datagram", unit)

    def test_03_bash_finds_the_completion(self):
        for name in ("hellod", "hello"):
            result = self.run_inside("bash", "-c", "source %s/bash-completion/completions/%s && complete -p %s"
                                     % (SHARE, name, name))
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertRegex(result.stdout, r"^complete (-o \w+ )*-F \S+ %s\n$" % name)
        # The options are the binary's: completing "hellod --check" offers --check-config.
        words = self.run_inside("bash", "-c", "source %s/bash-completion/completions/hellod; "
                                "COMP_WORDS=(hellod --check); COMP_CWORD=1; COMP_LINE='hellod --check'; COMP_POINT=14; "
                                "$(complete -p hellod | sed 's/.*-F \\([^ ]*\\) .*/\\1/') hellod --check hellod; "
                                "printf '%%s\\n' \"${COMPREPLY[@]}\"" % SHARE)
        self.assertIn("--check-config", words.stdout.split(), words.stderr)

    def test_04_options_from_etc_default_take_effect_on_restart(self):
        self.assertEqual(self.run_inside("systemctl", "enable", "--now", "hellod.socket").returncode, 0)
        self.set_options("--rate-limit 5 --rate-burst 5 --rate-limit-loopback")
        restart = self.run_inside("systemctl", "restart", "hellod.service")
        self.assertEqual(restart.returncode, 0, restart.stderr)
        pid = self.show("hellod.service", "MainPID")["MainPID"]
        burst = self.systemd.run_in_network(sys.executable, "-c", BURST, "20", "1")
        self.assertEqual(burst.returncode, 0, burst.stderr)
        report("20 datagrams at once from one client with --rate-limit 5 --rate-burst 5 from %s" % DEFAULTS,
               "%s replies" % burst.stdout.strip())
        self.assertEqual(burst.stdout.strip(), "5")
        start = self.run_inside("journalctl", "_PID=" + pid, "-o", "cat", "--no-pager").stdout
        self.assertIn("rate limit 5/s, burst 5, per IPv4 /32 and IPv6 /64", start)
        self.assertNotIn("loopback exempt", start)

    def test_05_a_bad_option_fails_once_with_one_line_and_is_not_restarted(self):
        self.set_options("--batch 0")
        restart = self.run_inside("systemctl", "restart", "hellod.service")
        self.assertNotEqual(restart.returncode, 0)
        props = self.show("hellod.service", "ActiveState", "Result", "ExecMainStatus", "NRestarts")
        self.assertEqual(props, {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "64", "NRestarts": "0"})
        line = "hellod: --batch must be between 1 and 1024, not 0. (see 'hellod --help')"
        status = self.run_inside("systemctl", "status", "hellod.service", "--no-pager", "--lines", "10").stdout
        report("systemctl restart, then systemctl status, with --batch 0", "\n" + restart.stderr + status)
        self.assertIn("Active: failed (Result: exit-code)", status)
        self.assertIn(line, status)
        self.assertIn(line, self.hellod_lines().splitlines())
        time.sleep(1)  # RestartSec=100ms: a restart would have come by now
        self.assertEqual(self.show("hellod.service", "NRestarts", "ActiveState"), {"NRestarts": "0", "ActiveState": "failed"})
        socket = self.show("hellod.socket", "ActiveState", "SubState")
        report("hellod.socket after the failed start", "%s (%s)" % (socket["ActiveState"], socket["SubState"]))
        self.assertEqual((socket["ActiveState"], socket["SubState"]), ("active", "listening"))
        listening = self.systemd.run_in_network("ss", "-Huln")
        self.assertRegex(listening.stdout, r":9999\b")

    def test_06_a_datagram_while_the_option_is_bad(self):
        # The socket starts hellod again for each datagram that arrives; each start fails the
        # same way, until the start limit (5 in 10 s) fails the socket too.
        burst = self.systemd.run_in_network(sys.executable, "-c", BURST, "1", "3")
        self.assertEqual(burst.stdout.strip(), "0")
        self.wait_for(lambda: self.show("hellod.socket", "ActiveState")["ActiveState"] != "active"
                      or None, 15, "the socket to stop listening")
        service = self.show("hellod.service", "ActiveState", "Result", "NRestarts")
        socket = self.show("hellod.socket", "ActiveState", "Result")
        starts = self.hellod_lines().count("hellod: --batch must be between 1 and 1024, not 0.")
        report("after one datagram with --batch 0", "hellod.service %s (%s), NRestarts %s; hellod.socket %s (%s); %d failed starts"
               % (service["ActiveState"], service["Result"], service["NRestarts"], socket["ActiveState"], socket["Result"], starts))
        self.assertEqual(service["NRestarts"], "0")
        self.assertEqual((socket["ActiveState"], socket["Result"]), ("failed", "service-start-limit-hit"))

    def test_07_recovery_fix_the_option_reset_failed_start_the_socket(self):
        self.set_options("--rate-limit 5 --rate-burst 5")
        check = self.run_inside("sh", "-c", ". %s; /usr/local/bin/hellod --check-config $HELLOD_OPTIONS" % DEFAULTS)
        self.assertEqual((check.returncode, check.stdout, check.stderr), (0, "hellod: configuration OK\n", ""))
        self.assertEqual(self.run_inside("systemctl", "reset-failed", "hellod.service", "hellod.socket").returncode, 0)
        self.assertEqual(self.run_inside("systemctl", "start", "hellod.socket").returncode, 0)
        result = self.systemd.run_in_network(HELLO, "--timeout", "5", "Michael")
        self.assertEqual(result.stdout, "Hello, Michael!\n", result.stderr)
        self.assertEqual(self.show("hellod.service", "ActiveState")["ActiveState"], "active")

    def test_07b_the_metrics_file_under_run_hellod_counts_a_known_load(self):
        path = "/run/hellod/hellod.prom"

        def hello_counts():
            text = self.run_inside("cat", path).stdout
            found = {}
            for name in ("read", "replied"):
                match = re.search(r'^hellod_datagrams_%s_total\{service="hello"\} (\d+)$' % name, text, re.M)
                found[name] = int(match.group(1)) if match else None
            return found

        def written_now():  # SIGHUP writes the file before it logs the counters
            self.assertEqual(self.run_inside("systemctl", "kill", "-s", "HUP", "hellod.service").returncode, 0)
            time.sleep(0.2)
            return hello_counts()

        listing = self.run_inside("ls", "-ld", "/run/hellod", path).stdout
        modes = self.run_inside("stat", "-L", "-c", "%a %n", "/run/hellod", path).stdout
        report("the metrics file", "\n" + listing + self.run_inside("grep", "hellod_up", path).stdout)
        self.assertEqual(modes, "755 /run/hellod\n644 %s\n" % path)
        as_nobody = self.run_inside("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", path)
        self.assertEqual(as_nobody.returncode, 0, as_nobody.stderr)
        self.assertIn("hellod_up 1", as_nobody.stdout)
        before = written_now()
        burst = self.systemd.run_in_network(sys.executable, "-c", BURST, "3", "1")
        self.assertEqual(burst.stdout.strip(), "3")  # loopback is exempt from the limit of test 07
        after = self.wait_for(lambda: (lambda now: now if now["read"] == before["read"] + 3 else None)(written_now()),
                              10, "the file to count 3 more datagrams")
        self.assertEqual(after["replied"], before["replied"] + 3)

    def test_08_make_uninstall_removes_them_and_keeps_a_changed_defaults_file(self):
        result = self.run_inside("make", "-C", ROOT, "uninstall")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("kept %s (changed; remove it yourself)" % DEFAULTS, result.stdout)
        left = self.run_inside("find", SHARE, "-name", "*hello*").stdout
        self.assertEqual(left, "")


if __name__ == "__main__":
    unittest.main()

"""The Debian package (`make deb`), installed with dpkg under a real systemd (PID 1 in
private namespaces) whose /usr, /etc, /var/lib and /var/cache are overlays with a tmpfs
upper layer, so that nothing dpkg writes reaches the host: lintian's verdict, install
(hellod.socket enabled and listening, the echo and chat sockets not enabled, the tutorial
client answered through activation, `man hellod` and `systemctl help hellod`, the copyright
file and the NOTICE), an upgrade to a newer build under 20,000 requests/s (nothing lost,
the sockets never restarted, the service try-restarted, an operator's /etc/default/hellod
kept), an idle one (the running service restarted), purge (no file, no unit left), and the
host's package database unchanged.

The newer build is the same package at version VERSION+test1 (unpacked and packed again
with dpkg-deb), as a rebuild would be. The steps run in order (their names are numbered) on
one booted systemd.
"""
import hashlib
import json
import os
import subprocess
import sys
import time
import unittest

from private_systemd import PACKAGE_OVERLAYS, PrivateSystemd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELLO = os.path.join(ROOT, ".build-static", "release", "hello")
DEBDIR = os.path.join(ROOT, ".build-static", "deb")  # inside the checkout: the namespace sees it
UPGRADE_SUFFIX = "+test1"
HOST_STATUS = "/var/lib/dpkg/status"
# One datagram to the echo port from the namespace's network; what came back, as hex.
ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(bytes.fromhex(sys.argv[1]), ("127.0.0.1", 8899))
print(s.recv(100).hex())
"""
DEFAULTS = "/etc/default/hellod"
# An option that changes nothing for loopback clients (exempt by default), seen in the start line.
OPTIONS = 'HELLOD_OPTIONS="--rate-limit 900"'
SOCKETS = ("hellod.socket", "hellod-echo.socket", "hellod-chat.socket")


def report(what, value):
    print("\n    measured: %s: %s" % (what, value), file=sys.stderr, flush=True)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make(*args, env=None, timeout=1200):
    result = subprocess.run(["make", "-C", ROOT, "--no-print-directory", *args], capture_output=True, text=True,
                            env=dict(os.environ, **(env or {})), timeout=timeout)
    assert result.returncode == 0, "make %s: %s" % (" ".join(args), result.stdout[-3000:] + result.stderr[-3000:])
    return result.stdout


class DebianPackage(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.host_status = sha256(HOST_STATUS)
        cls.host_has_hellod = os.path.exists("/usr/bin/hellod")
        cls.version = make("-s", "version").strip()
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
        # The release build ./test.sh made is reused (nothing is compiled again). For time,
        # gzip -1 rather than xz -6 and no -dbgsym package (together 37 s less here): neither
        # changes what is installed.
        started = time.monotonic()
        make("deb", env={"DPKG_DEB_COMPRESSOR_TYPE": "gzip", "DPKG_DEB_COMPRESSOR_LEVEL": "1",
                         "DEB_BUILD_OPTIONS": "noautodbgsym"})
        cls.deb = os.path.join(DEBDIR, "hellod_%s_%s.deb" % (cls.version, arch))
        # The upgrade: the same package at a higher version, as a rebuild would be.
        cls.newer_deb = os.path.join(DEBDIR, "hellod_%s%s_%s.deb" % (cls.version, UPGRADE_SUFFIX, arch))
        tree = os.path.join(DEBDIR, "newer")
        subprocess.run(["rm", "-rf", tree], check=True)
        subprocess.run(["dpkg-deb", "-R", cls.deb, tree], check=True)
        subprocess.run(["sed", "-i", "s/^Version: .*/Version: %s%s/" % (cls.version, UPGRADE_SUFFIX),
                        os.path.join(tree, "DEBIAN", "control")], check=True)
        subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "-b", tree, cls.newer_deb], check=True, capture_output=True)
        subprocess.run(["rm", "-rf", tree], check=True)
        report("make deb, and the same at %s%s (dpkg-deb -R, -b)" % (cls.version, UPGRADE_SUFFIX),
               "%.1f s" % (time.monotonic() - started))
        cls.systemd = PrivateSystemd(ROOT, overlays=PACKAGE_OVERLAYS)
        # A container image's policy-rc.d (exit 101: "no service actions") would stop dpkg's
        # scripts from starting or stopping units, unlike on a machine; removed in the overlay.
        cls.systemd.run("rm", "-f", "/usr/sbin/policy-rc.d")
        # man-db's dpkg trigger re-indexes every manual page (3.5 s a dpkg run here); man
        # finds hellod.8 without its index. Its switch, in the overlay too.
        cls.systemd.run("rm", "-f", "/var/lib/man-db/auto-update")

    @classmethod
    def tearDownClass(cls):
        cls.systemd.poweroff()

    # Helpers

    def run_inside(self, *command, timeout=120):
        return self.systemd.run(*command, check=False, timeout=timeout)

    def dpkg(self, *args):
        """dpkg inside, its log under the namespace's /run (not the host's /var/log)."""
        result = self.run_inside("dpkg", "--log=/run/dpkg.log", *args)
        self.assertEqual(result.returncode, 0, "dpkg %s: %s" % (" ".join(args), result.stdout + result.stderr))
        return result

    def show(self, unit, *properties):
        out = self.run_inside("systemctl", "show", unit, *("-p" + p for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def unit_states(self):
        return {unit: (self.run_inside("systemctl", "is-enabled", unit).stdout.strip(),
                       self.run_inside("systemctl", "is-active", unit).stdout.strip()) for unit in SOCKETS}

    def greet(self):
        result = self.systemd.run_in_network(HELLO, "--timeout", "1", "--retries", "5", "Michael", "Tracy", "Sarah")
        self.assertEqual(result.stdout, "Hello, Michael!\nHello, Tracy!\nHello, Sarah!\n", result.stderr)

    def echo(self, data):
        result = self.systemd.run_in_network(sys.executable, "-c", ECHO, data.hex())
        self.assertEqual(result.returncode, 0, result.stderr)
        return bytes.fromhex(result.stdout.strip())

    def installed_version(self):
        return self.run_inside("dpkg-query", "-W", "-f", "${Version}", "hellod").stdout

    # Steps

    def test_01_lintian_finds_no_error_and_no_warning(self):
        result = subprocess.run(["lintian", "--fail-on", "error,warning", self.deb], capture_output=True, text=True,
                                timeout=300)
        report("lintian --fail-on error,warning " + os.path.relpath(self.deb, ROOT),
               "exit %d\n%s" % (result.returncode, result.stdout + result.stderr))
        self.assertEqual(result.returncode, 0)
        self.assertNotRegex(result.stdout, r"(?m)^[EW]: ")

    def test_01b_the_package_asks_for_the_glibc_its_binaries_need(self):
        # make build packs the binaries' relocations (DT_RELR), which glibc reads from 2.36 on.
        # dpkg-shlibdeps does not see that need (debian/control states it): without it an
        # older system would install hellod and fail to start it.
        depends = subprocess.run(["dpkg-deb", "-f", self.deb, "Depends"], capture_output=True, text=True,
                                 check=True).stdout
        report("dpkg-deb -f %s Depends" % os.path.basename(self.deb), depends)
        self.assertRegex(depends, r"(^|, )libc6 \(>= 2\.36\)(,|$)")

    def test_02_install_enables_and_starts_the_socket_only(self):
        result = self.dpkg("-i", self.deb)
        report("dpkg -i " + os.path.basename(self.deb), "\n" + result.stdout + result.stderr)
        self.assertEqual(self.installed_version(), self.version)
        self.assertEqual(self.unit_states(), {"hellod.socket": ("enabled", "active"),
                                              "hellod-echo.socket": ("disabled", "inactive"),
                                              "hellod-chat.socket": ("disabled", "inactive")})
        self.assertEqual(self.show("hellod.service", "ActiveState")["ActiveState"], "inactive")
        conffiles = self.run_inside("dpkg-query", "-W", "-f", "${Conffiles}", "hellod").stdout.split()
        self.assertIn(DEFAULTS, conffiles)
        # dpkg wrote its database, in the overlay only.
        self.assertNotEqual(self.run_inside("sha256sum", HOST_STATUS).stdout.split()[0], self.host_status)
        self.assertEqual(sha256(HOST_STATUS), self.host_status)

    def test_03_the_first_datagram_starts_it_and_is_answered(self):
        self.greet()
        self.assertEqual(self.show("hellod.service", "ActiveState")["ActiveState"], "active")
        version = self.run_inside("hellod", "--version")
        self.assertEqual(version.stdout, self.version + "\n", version.stderr)

    def test_04_man_hellod(self):
        where = self.run_inside("man", "-w", "hellod")
        self.assertEqual(where.stdout, "/usr/share/man/man8/hellod.8.gz\n", where.stderr)
        page = self.run_inside("env", "MANWIDTH=100", "man", "-P", "cat", "hellod")
        self.assertEqual(page.returncode, 0, page.stderr)
        self.assertIn("--check-config", page.stdout)
        # The units' Documentation=man:hellod(8).
        shown = self.run_inside("env", "MANPAGER=cat", "MANWIDTH=100", "systemctl", "help", "hellod")
        self.assertRegex(shown.stdout, r"(?m)^NAME\n +hellod \S+ A UDP daemon that answers every datagram", shown.stderr)

    def test_04b_the_licence_and_the_notices(self):
        docs = self.run_inside("ls", "/usr/share/doc/hellod").stdout.split()
        self.assertEqual(sorted(docs), ["NOTICE", "changelog.gz", "copyright"])
        copyright = self.run_inside("cat", "/usr/share/doc/hellod/copyright").stdout
        self.assertRegex(copyright, r"(?m)^Files: \*\nCopyright: .*\nLicense: Apache-2\.0$")
        self.assertIn("/usr/share/common-licenses/Apache-2.0", copyright)
        notice = self.run_inside("cat", "/usr/share/doc/hellod/NOTICE").stdout
        for project in ("The SwiftLog Project", "The SwiftMetrics Project"):  # their NOTICE files
            self.assertIn(project, notice)

    def test_05_an_operator_sets_an_option_and_enables_the_echo_socket(self):
        self.assertEqual(self.run_inside("sh", "-c", "echo '%s' > %s" % (OPTIONS, DEFAULTS)).returncode, 0)
        # As the unit's comment says: enable (which links it into hellod.service's wants), then
        # restart the service, which starts the socket first and takes it.
        for command in (("enable", "hellod-echo.socket"), ("restart", "hellod.service")):
            result = self.run_inside("systemctl", *command)
            self.assertEqual(result.returncode, 0, result.stderr + self.run_inside("journalctl", "--no-pager", "-n", "30").stdout)
        self.assertEqual(self.echo(b"ping"), b"ping")

    def test_06_upgrade_under_load_restarts_the_service_not_the_sockets(self):
        sockets_before = [self.show(unit, "ActiveEnterTimestampMonotonic", "InvocationID")
                          for unit in ("hellod.socket", "hellod-echo.socket")]
        pid_before = self.show("hellod.service", "MainPID")["MainPID"]
        self.assertNotEqual(pid_before, "0")
        seconds, at = 9, 1.0
        bench = subprocess.Popen(["nsenter", "-t", str(self.systemd.pid), "-n", "--", HELLO, "bench", "--rate", "20000",
                                  "--duration", str(seconds), "--timeout", "1", "--json"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(at)
            started = time.monotonic()
            upgrade = self.dpkg("-i", self.newer_deb)
            took = time.monotonic() - started
        finally:
            figures = json.loads(bench.communicate(timeout=60)[0])
        service = self.show("hellod.service", "MainPID", "ActiveState", "ActiveExitTimestampMonotonic",
                            "ActiveEnterTimestampMonotonic")
        gap_ms = (int(service["ActiveEnterTimestampMonotonic"]) - int(service["ActiveExitTimestampMonotonic"])) / 1000
        report("dpkg -i %s during hello bench --rate 20000 --duration %d (dpkg started at %.0f s, took %.1f s)"
               % (os.path.basename(self.newer_deb), seconds, at, took),
               "sent %d, answered %d, lost %d, late %d, wrong %d; rtt p99 %.0f us, p999 %.0f us; hellod.service "
               "pid %s -> %s, %.0f ms from the old one's stop to the new one's READY\n%s"
               % (figures["sent"], figures["answered"], figures["lost"], figures["late"], figures["wrong"],
                  figures["rtt_us"]["p99"], figures["rtt_us"]["p999"], pid_before, service["MainPID"], gap_ms,
                  upgrade.stdout + upgrade.stderr))
        self.assertLess(at + took, seconds, "the upgrade outlasted the load: nothing measured")
        self.assertEqual(self.installed_version(), self.version + UPGRADE_SUFFIX)
        self.assertEqual((figures["lost"], figures["wrong"]), (0, 0))  # queued in systemd's socket meanwhile
        self.assertEqual([self.show(unit, "ActiveEnterTimestampMonotonic", "InvocationID")
                          for unit in ("hellod.socket", "hellod-echo.socket")], sockets_before)
        self.assertEqual(service["ActiveState"], "active")
        self.assertNotIn(service["MainPID"], ("0", pid_before))  # try-restarted: it was running
        self.greet()
        self.assertEqual(self.echo(b"pong"), b"pong")
        # The operator's conffile survived, and the new hellod started with its option.
        self.assertEqual(self.run_inside("cat", DEFAULTS).stdout, OPTIONS + "\n")
        start = self.run_inside("journalctl", "_PID=" + service["MainPID"], "-o", "cat", "--no-pager").stdout
        self.assertIn("rate limit 900/s", start)

    def test_07_an_idle_upgrade_also_restarts_the_running_service(self):
        # No datagram meanwhile, so no socket activation could be what started a new one.
        pid_before = self.show("hellod.service", "MainPID")["MainPID"]
        self.assertNotEqual(pid_before, "0")
        self.dpkg("-i", self.newer_deb)  # a reinstall runs the upgrade's scripts
        service = self.show("hellod.service", "MainPID", "ActiveState")
        self.assertEqual(service["ActiveState"], "active")
        self.assertNotIn(service["MainPID"], ("0", pid_before))

    def test_08_purge_leaves_no_file_and_no_unit(self):
        listed = self.run_inside("dpkg", "-L", "hellod").stdout.split("\n")
        files = [path for path in listed if path and self.run_inside("test", "-d", path).returncode != 0]
        self.assertIn(DEFAULTS, files)
        self.assertIn("/usr/bin/hellod", files)
        self.assertIn("/lib/systemd/system/hellod.socket", files)
        self.assertIn("/usr/share/hellod/prometheus/hellod.rules.yml", files)
        result = self.dpkg("--purge", "hellod")
        report("dpkg --purge hellod", "\n" + result.stdout + result.stderr)
        left = [path for path in files + ["/usr/share/doc/hellod"] if self.run_inside("test", "-e", path, "-o", "-L", path).returncode == 0]
        self.assertEqual(left, [])
        self.assertEqual(self.run_inside("systemctl", "daemon-reload").returncode, 0)
        unit_files = self.run_inside("systemctl", "list-unit-files", "--no-legend", "hellod*").stdout
        # What systemd still lists is a name without a file, inactive: nothing of it runs.
        units = self.run_inside("systemctl", "list-units", "--all", "--no-legend", "--plain", "hellod*").stdout
        self.assertEqual(unit_files, "")
        self.assertEqual([line for line in units.splitlines() if "not-found inactive dead" not in line], [], units)
        links = self.run_inside("find", "/etc/systemd", "-name", "hellod*").stdout
        self.assertEqual(links, "")
        self.assertNotRegex(self.systemd.run_in_network("ss", "-Huln").stdout, r":9999\b")
        self.assertEqual(self.run_inside("pgrep", "-x", "hellod").stdout, "")

    def test_09_the_hosts_package_database_is_unchanged(self):
        self.assertEqual(sha256(HOST_STATUS), self.host_status)
        self.assertEqual(os.path.exists("/usr/bin/hellod"), self.host_has_hellod)


if __name__ == "__main__":
    unittest.main()

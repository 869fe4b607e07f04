"""A real systemd as PID 1 in private namespaces, for end-to-end tests.

PID, mount, UTS, IPC, cgroup and network namespaces of its own; tmpfs over every
directory it (or the install step) writes, so nothing on the host changes: /run, /tmp,
/var/tmp, /var/lib/systemd, /var/log/journal, /etc/systemd/system (which also hides the
host's enabled services), /usr/local/bin and /usr/local/lib. Services that would start for
nothing are masked, among them systemd-tmpfiles-setup, which would otherwise empty /tmp.

Warning, seen on this kind of machine: booted WITHOUT these private mounts and masks,
systemd empties the host's /tmp (which may hold the checkout under test) and writes the
host's journal and wtmp. The boot script stops at the first failed mount (set -e), before
systemd starts.

`overlays` (PACKAGE_OVERLAYS for a test that runs dpkg) puts an overlay with a tmpfs upper
layer over each directory before anything else, so that systemd boots on them and every
write there (a package's files, dpkg's database, enablement links) stays in the namespace.
"""
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))  # after Tests/system: both folders have a test_operators
from harness import LineReader, VERSION  # noqa: E402  (reads a pipe with a deadline on every wait; the version)

PRIVATE_TMPFS = ["/tmp", "/var/tmp", "/var/lib/systemd", "/var/log/journal", "/etc/systemd/system",
                 "/etc/default", "/usr/local/bin", "/usr/local/lib", "/usr/local/share"]

# What dpkg -i writes: files, conffiles, its database (/var/lib/dpkg), caches (man-db).
# dpkg's log is /var/log/dpkg.log unless told (dpkg --log=/run/...).
PACKAGE_OVERLAYS = ["/usr", "/etc", "/var/lib", "/var/cache"]

MASKED = [
    "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service", "systemd-tmpfiles-clean.timer",
    "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service", "systemd-logind.service",
    "getty.target", "console-getty.service", "systemd-firstboot.service", "systemd-random-seed.service",
    "systemd-journal-flush.service", "systemd-machine-id-commit.service", "systemd-sysusers.service",
    "systemd-timesyncd.service", "systemd-pstore.service", "systemd-binfmt.service", "systemd-repart.service",
    "systemd-modules-load.service", "systemd-sysctl.service", "systemd-pcrphase-sysinit.service",
    "systemd-pcrphase.service", "systemd-ask-password-wall.path", "systemd-ask-password-console.path",
    "proc-sys-fs-binfmt_misc.automount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "sys-kernel-config.mount", "sys-fs-fuse-connections.mount", "dev-hugepages.mount", "dev-mqueue.mount",
    "kmod-static-nodes.service", "postgresql.service", "cron.service", "ssh.service", "dbus.service",
    "dbus.socket", "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer",
    "e2scrub_reap.service", "fstrim.timer", "dpkg-db-backup.timer", "logrotate.timer",
]

# Before the tmpfs mounts, which go on top of the overlays (/etc/systemd/system, ...).
OVERLAY_SCRIPT = r"""
for d in $OVERLAYS; do                      # the host's files below, writes to /run/overlay
    layer=/run/overlay/$(echo "$d" | tr / _)
    mkdir -p "$layer/upper" "$layer/work"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$layer/upper,workdir=$layer/work" "$d"
done
"""

BOOT_SCRIPT = r"""
set -eu
mount -t tmpfs tmpfs /run
mkdir -p /run/checkout
mount --bind "$CHECKOUT" /run/checkout      # before /tmp is covered: CI may clone under /tmp
%(overlays)sfor d in $PRIVATE_TMPFS; do
    if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi
done
mkdir -p "$CHECKOUT"                        # the checkout at its own path again, inside
mount --bind /run/checkout "$CHECKOUT"
ip link set lo up
mkdir -p /run/systemd/system
for u in $MASKED; do ln -s /dev/null /run/systemd/system/$u; done
echo booting >&2
exec env container=other /lib/systemd/systemd --system --unit=multi-user.target
"""


class PrivateSystemd:
    """Boots on construction; `poweroff()` (or leaving the `with` block) ends it, whatever
    happened. The checkout is visible inside at its own path."""

    def __init__(self, checkout, boot_timeout=60, overlays=()):
        env = dict(os.environ, CHECKOUT=checkout, PRIVATE_TMPFS=" ".join(PRIVATE_TMPFS), MASKED=" ".join(MASKED))
        if overlays:
            env["OVERLAYS"] = " ".join(overlays)
        self.unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private", "--mount-proc",
             "--uts", "--ipc", "--cgroup", "--net", "sh", "-c",
             BOOT_SCRIPT % {"overlays": OVERLAY_SCRIPT.lstrip("\n") if overlays else ""}],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Read all along (the console would otherwise fill the pipe and block systemd).
        self.console = LineReader(self.unshare.stdout)
        self.pid = None
        try:
            self._wait_for_boot(boot_timeout)
        except BaseException:
            self.poweroff()
            raise

    def _wait_for_boot(self, timeout):
        deadline = time.monotonic() + timeout
        try:
            line = self.console.next(timeout=timeout) or ""  # "booting", or why not
        except AssertionError:
            raise AssertionError("the boot script said nothing in %s s" % timeout) from None
        if "booting" not in line:
            raise AssertionError("the private systemd did not boot: %s%s" % (line, self.console.rest(timeout=5)))
        while self.pid is None and time.monotonic() < deadline:
            children = subprocess.run(["pgrep", "-P", str(self.unshare.pid)], capture_output=True, text=True).stdout.split()
            self.pid = int(children[0]) if children else None
            time.sleep(0.05)
        if self.pid is None:
            raise AssertionError("no systemd process under unshare")
        while time.monotonic() < deadline:
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                self.state = state
                return
            time.sleep(0.2)
        raise AssertionError("the private systemd did not finish booting in %s s (%s)" % (timeout, state))

    def run(self, *command, check=True, timeout=60, input=None):
        """Runs `command` inside (its mounts, PIDs and network)."""
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", "-n", "--", *command],
                              capture_output=True, text=True, check=check, timeout=timeout, input=input)

    def run_in_network(self, *command, check=False, timeout=30):
        """Runs `command` from the host's files, inside the namespace's network only."""
        return subprocess.run(["nsenter", "-t", str(self.pid), "-n", "--", *command],
                              capture_output=True, text=True, check=check, timeout=timeout)

    def poweroff(self, timeout=30):
        if self.unshare.poll() is None and self.pid:
            subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", "--", "systemctl", "poweroff"],
                           capture_output=True, timeout=timeout)
        try:
            self.unshare.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.unshare.kill()  # --kill-child: the namespace's init dies too, and every process in it
            self.unshare.wait(timeout=10)
        self.console.rest(timeout=5)
        if self.console.finished:
            self.unshare.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.poweroff()


class InstalledCheckout(unittest.TestCase):
    """Tests that share one private systemd, booted once for the class on this checkout,
    with the release binaries, manuals and completions built on the host first (errors show
    here, and `make install` inside is quick). Powered off at the end, pass or fail; with
    `no_hellod_left`, no hellod process may outlive it."""

    maxDiff = None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    no_hellod_left = True

    @classmethod
    def setUpClass(cls):
        subprocess.run(["make", "-C", cls.root, "build", "man", "completions"], check=True, capture_output=True,
                       timeout=1200)
        cls.systemd = PrivateSystemd(cls.root)

    @classmethod
    def tearDownClass(cls):
        cls.systemd.poweroff()
        if cls.no_hellod_left:
            left = subprocess.run(["pgrep", "-f", "/usr/local/bin/hellod"], capture_output=True, text=True).stdout
            assert left == "", "hellod processes left behind: %s" % left

    # What the tests of every such class ask their systemd.

    def systemctl(self, *args, check=False):
        result = self.systemd.run("systemctl", *args, check=False)
        if check and result.returncode != 0:
            # What systemd said of it: a failed job's reason is in the journal, not the output.
            said = self.systemd.run("journalctl", "--no-pager", "-n", "40", "-o", "short-precise", check=False).stdout
            self.fail("systemctl %s: %s\nthe journal's last lines:\n%s" % (" ".join(args), result.stdout + result.stderr, said))
        return result

    def show(self, unit, *properties):
        out = self.systemctl("show", unit, *("-p" + p for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self):
        return self.show("hellod.service", "MainPID")["MainPID"]

    def journal(self, unit="hellod.service"):
        out = self.systemd.run("journalctl", "-u", unit, "-o", "json", "--no-pager", check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def hellod_entries(self, pid, starting):
        """hellod's journal entries from process `pid` whose MESSAGE starts with `starting`."""
        return [e for e in self.journal()
                if e.get("_PID") == str(pid) and str(e.get("MESSAGE", "")).startswith(starting)]

    def wait_for_entry(self, pid, starting, timeout=5):
        """The one such entry (journald files it a moment after it is sent)."""
        entries = self.wait_for(lambda: self.hellod_entries(pid, starting), timeout,
                                "%r in the journal from hellod %s" % (starting, pid))
        self.assertEqual(len(entries), 1, entries)
        return entries[0]

    def wait_for(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        self.fail("%s did not happen within %s s" % (what, timeout))

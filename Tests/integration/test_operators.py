"""What operators use without a server running: `hellod --check-config`, one version
from one place, the manual pages `make man` generates (lint-clean, every option of
--help in them) and the completions `make completions` generates."""
import os
import re
import socket
import subprocess
import unittest

from harness import HELLO, HELLOD, ROOT

SCRATCH = os.path.join(ROOT, ".build-static")


def run(*command, timeout=30):
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


class CheckConfig(unittest.TestCase):
    def test_good_options_exit_0_with_one_line_and_bind_nothing(self):
        # The port is held by another socket: a start would fail (exit 1, "Address already
        # in use"); --check-config does not bind, so it says OK.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
            held.bind(("127.0.0.1", 0))
            port = held.getsockname()[1]
            listen = "--listen", "hello@127.0.0.1:%d" % port
            checked = run(HELLOD, "--check-config", *listen, "--rate-limit", "5", "--rate-burst", "5")
            self.assertEqual((checked.returncode, checked.stdout, checked.stderr), (0, "hellod: configuration OK\n", ""))
            started = run(HELLOD, *listen, "--log-level", "error")
            self.assertEqual(started.returncode, 1, started.stderr)
            self.assertIn("Address already in use", started.stderr)

    def test_bad_options_exit_64_with_the_line_a_start_gives(self):
        for bad, line in ((["--batch", "0"], "hellod: --batch must be between 1 and 1024, not 0. (see 'hellod --help')\n"),
                          (["--listen", "chargen@9999"], None), (["--no-such-option"], None)):
            checked = run(HELLOD, "--check-config", *bad)
            started = run(HELLOD, *bad)
            self.assertEqual((checked.returncode, checked.stdout), (64, ""), bad)
            self.assertEqual(checked.stderr.count("\n"), 1, checked.stderr)
            self.assertEqual(checked.stderr, started.stderr)  # exactly what a real start says
            self.assertEqual(started.returncode, 64)
            if line:
                self.assertEqual(checked.stderr, line)


class Version(unittest.TestCase):
    def test_hellod_hello_and_make_agree(self):
        made = run("make", "-s", "-C", ROOT, "version").stdout.strip()
        self.assertRegex(made, r"^\d+\.\d+\.\d+")
        self.assertEqual(run(HELLOD, "--version").stdout.strip(), made)
        self.assertEqual(run(HELLO, "--version").stdout.strip(), made)


class Manuals(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        made = run("make", "-C", ROOT, "man", "completions", timeout=1200)
        assert made.returncode == 0, made.stdout + made.stderr

    def test_mandoc_lint_finds_no_errors(self):
        for page in ("hellod.8", "hello.1"):
            lint = run("mandoc", "-Tlint", "-Werror", os.path.join(SCRATCH, "man", page))
            self.assertEqual((lint.returncode, lint.stdout + lint.stderr), (0, ""), page)

    def test_every_option_of_help_is_in_the_page_and_the_hand_written_sections_follow(self):
        for binary, page in ((HELLOD, "hellod.8"), (HELLO, "hello.1")):
            options = set(re.findall(r"(?m)^\s+(?:-\w, )?--([a-z][a-z0-9-]*)", run(binary, "--help").stdout))
            self.assertIn("help", options)
            with open(os.path.join(SCRATCH, "man", page)) as f:
                text = f.read()
            documented = set(re.findall(r"Fl -([a-z][a-z0-9-]*)", text))
            self.assertEqual(options - documented, set(), page)
            self.assertEqual(text.count(".Sh EXIT STATUS"), 1, page)
            # groff warns on each blank line in mdoc (lintian's groff-message): .Pp instead.
            self.assertNotIn("\n\n", text, page)
        with open(os.path.join(SCRATCH, "man", "hellod.8")) as f:
            headings = re.findall(r"(?m)^\.Sh (.+)$", f.read())
        self.assertEqual(headings, ["NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SYSTEMD UNITS", "SIGNALS", "TRACING",
                                    "COUNTERS", "EXIT STATUS", "EXAMPLES", "SEE ALSO", "LICENSE"])

    def test_completions_offer_the_options(self):
        for name, option in (("hellod", "check-config"), ("hello", "timeout")):
            for path in (name + ".bash", "_" + name, name + ".fish"):
                with open(os.path.join(SCRATCH, "completions", path)) as f:
                    self.assertIn(option, f.read(), path)


if __name__ == "__main__":
    unittest.main()

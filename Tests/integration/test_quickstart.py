"""The README's quick start, run as written: `./run.sh` (which builds hellod and its
client), then the client command the README shows next, whose output must be what the
README shows. hellod serves port 9999 as a user's would, in a network of the test's own
(so a hellod already on the host's 9999 is no matter)."""
import os
import re
import subprocess
import unittest

from harness import Hellod, ROOT, TestCase
from netns import Loopback


def quick_start():
    """The quick start's command that runs hellod, and its first console example: the
    command and the lines it prints."""
    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    commands = re.search(r"```sh\n(.*?)```", section, re.S).group(1).splitlines()
    run = next(line for line in commands if line.startswith("./run.sh")).split("#")[0].split()
    console = re.search(r"```console\n(.*?)```", section, re.S).group(1).splitlines()
    assert console[0].startswith("$ "), console
    return run, console[0][2:].split(), console[1:]


class QuickStart(TestCase):
    def test_run_sh_then_the_client_as_the_readme_shows(self):
        run, client, shown = quick_start()
        with Loopback() as net:
            # run.sh builds first (a release build: minutes on a fresh checkout).
            with Hellod(command=[*net.prefix(), os.path.join(ROOT, run[0]), *run[1:]],
                        start_timeout=900) as hellod:
                self.assertEqual(hellod.addresses, ["hello@[::]:9999"])
                result = subprocess.run([*net.prefix(), *client], cwd=ROOT, capture_output=True,
                                        text=True, timeout=30)
                self.assertEqual((result.returncode, result.stdout.splitlines()), (0, shown), result.stderr)
                code, _ = hellod.stop()
                self.assertEqual(code, 0)


if __name__ == "__main__":
    unittest.main()

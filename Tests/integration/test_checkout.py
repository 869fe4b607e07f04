"""A clone stands on its own: no tracked file reaches outside the checkout through `..`.

A user's clone has nothing beside it, so a path that climbs out of the repository (a
benchmark's source in a sibling directory, say) works on the machine it was written on
and nowhere else. Every relative path that goes up, spelled with slashes or as the
parts of a join (the examples are at the end of this file), is resolved against its
file's own directory, and must land inside the repository on something the repository
has (a tracked path, or a build directory that a build makes: `.build*`). Absolute
system paths (/etc/default/hellod) are not relative and are not checked. This file is
read too: its examples are put together from `UP`, so none of them is a path in it.
"""
import os
import re
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# `..` as a whole path part: not the `...` of prose or variadics, not Swift's `0..<n`.
UP = re.compile(r"(?<![\w.])\.\.(?![\w.<])")
# The characters of a path around it (a `$(dirname "$0")` before it ends at its `)`).
PATH_CHARS = r"[\w.+@%~*/-]"
# The quoted parts of a join whose first part goes up, each part a quoted string.
JOIN = re.compile(r"""(["'])\.\.\1((?:\s*,\s*["'][^"'\n]*["'])*)""")


def tracked_files():
    if os.path.isdir(os.path.join(ROOT, ".git")):
        listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True, check=True).stdout
        return [name for name in listed.decode().split("\0") if name]
    found = []  # an export without .git: the tree as it is, less what a build made
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if not d.startswith((".build", ".git", "__pycache__"))]
        found += [os.path.relpath(os.path.join(directory, f), ROOT) for f in files]
    return found


def paths_going_up(text):
    """(line number, the path as written, the path as parts) for each `..` in `text`."""
    for match in JOIN.finditer(text):
        parts = [".."] + re.findall(r"""["']([^"'\n]*)["']""", match.group(2))
        yield text.count("\n", 0, match.start()) + 1, match.group(0), parts
    read_to = 0  # where the last path read ends: its other `..` parts are read with it
    for match in UP.finditer(text):
        if match.start() < read_to or JOIN.match(text, match.start() - 1):
            continue  # read already, with the rest of its path or its join
        start, end = match.start(), match.end()
        while start > 0 and re.match(PATH_CHARS, text[start - 1]):
            start -= 1
        while end < len(text) and re.match(PATH_CHARS, text[end]):
            end += 1
        read_to = end
        written = text[start:end].rstrip(".")
        # A path after `$(dirname "$0")` or `${HERE}` starts with `/`: the rest is relative.
        parts = written.lstrip("/").split("/") if written.startswith("/..") else written.split("/")
        yield text.count("\n", 0, start) + 1, written, parts


def leaves_checkout(name, parts, known):
    """Why the path is not in the checkout, or None."""
    if parts and parts[0] == "":
        return None  # absolute: a system path, not this test's concern
    resolved = os.path.normpath(os.path.join(os.path.dirname(name), *[p for p in parts if p]))
    if resolved == os.pardir or resolved.startswith(os.pardir + os.sep):
        return "leaves the repository (%s)" % resolved
    if resolved == "." or resolved in known or resolved.split("/")[0].startswith(".build"):
        return None
    return "names %s, which the repository does not have" % resolved


class CheckoutStandsAlone(unittest.TestCase):
    def test_no_path_climbs_out_of_the_checkout(self):
        files = tracked_files()
        known = set(files)
        for name in files:  # and every directory that holds one
            while "/" in name:
                name = name.rsplit("/", 1)[0]
                known.add(name)
        found = []
        for name in files:
            try:
                with open(os.path.join(ROOT, name), encoding="utf-8") as f:
                    text = f.read()
            except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
                continue  # binary, a submodule, or deleted in the work tree
            for line, written, parts in paths_going_up(text):
                why = leaves_checkout(name, parts, known)
                if why:
                    found.append("%s:%d: %s %s" % (name, line, written, why))
        self.assertEqual(found, [], "\n" + "\n".join(found))

    def test_the_check_reads_every_spelling(self):
        """The reader itself, on lines written to fail and to pass."""
        def verdicts(name, text):
            return [leaves_checkout(name, parts, {"Tests", "Tests/integration"}) is not None
                    for _, _, parts in paths_going_up(text)]
        up = "." * 2  # written so, this file names no path that goes up
        self.assertEqual(verdicts("bench/x.py", 'os.path.join(ROOT, "%s", "sibling", "bench", "a.c")' % up), [True])
        self.assertEqual(verdicts("bench/x.py", 'os.path.join(HERE, "%s", "Tests", "integration")' % up), [False])
        self.assertEqual(verdicts("Makefile", "# writes to %s/ by default" % up), [True])
        self.assertEqual(verdicts("README.md", "see `%s/sibling/bench/relay.c`" % up), [True])
        self.assertEqual(verdicts("bench/run.sh", '"$(dirname "$0")/%s/.build-static/release/hello"' % up), [False])
        self.assertEqual(verdicts("Benchmarks/Package.swift", '.package(name: "hellod", path: "%s")' % up), [False])
        self.assertEqual(verdicts("a/b.txt", "a/{0}/{0}/{0}/etc/passwd and /usr/share/x".format(up)), [True])
        self.assertEqual(verdicts("x.swift", "for i in 0..<n { f(a...) } // and so on..."), [])


if __name__ == "__main__":
    unittest.main()

"""A clone stands on its own: no tracked file reaches outside the checkout through `..`.

A user's clone has nothing beside it, so a path that climbs out of the repository (a
benchmark's source in a sibling directory, say) works on the machine it was written on
and nowhere else. Every relative path that goes up, spelled with slashes (`../x`,
`a/../../b`) or as the parts of a join (`os.path.join(HERE, "..", "x")`), is resolved
against its file's own directory, and must land inside the repository on something the
repository has (a tracked path, or a build directory that a build makes: `.build*`).
Absolute system paths (/etc/default/hellod) are not relative and are not checked.
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
# The quoted parts of a join that starts with "..": `"..", "shared", "bench"`.
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
    if resolved == ".." or resolved.startswith("../"):
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
        itself = os.path.relpath(os.path.abspath(__file__), ROOT)  # its examples are written to fail
        for name in files:
            if name == itself:
                continue
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
        self.assertEqual(verdicts("bench/x.py", 'os.path.join(ROOT, "..", "shared", "bench", "a.c")'), [True])
        self.assertEqual(verdicts("bench/x.py", 'os.path.join(HERE, "..", "Tests", "integration")'), [False])
        self.assertEqual(verdicts("Makefile", "# writes to ../ by default"), [True])
        self.assertEqual(verdicts("README.md", "see `../shared/bench/refrelay.c`"), [True])
        self.assertEqual(verdicts("bench/run.sh", '"$(dirname "$0")/../.build-static/release/hello"'), [False])
        self.assertEqual(verdicts("Benchmarks/Package.swift", '.package(name: "hellod", path: "..")'), [False])
        self.assertEqual(verdicts("a/b.txt", "a/../../../etc/passwd and /usr/share/x"), [True])
        self.assertEqual(verdicts("x.swift", "for i in 0..<n { f(a...) } // and so on..."), [])


if __name__ == "__main__":
    unittest.main()

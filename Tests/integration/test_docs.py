"""The documentation agrees with the tree: pure text, no build, no process.

- Every unit file in systemd/ (each *.socket and *.service, and hellod.default, which is
  installed as /etc/default/hellod) is named in man/hellod.8.tail's SYSTEMD UNITS and
  FILES sections: a new socket unit that the manual leaves out fails here.
- Every relative Markdown link in README.md and docs/*.md points at a file or directory
  the checkout has, and a link to a heading (`file.md#heading`, `#heading`) at a heading
  that file has, as GitHub spells its anchors. Links inside code (fenced blocks, `spans`)
  are not links, and web addresses are not checked.
"""
import glob
import os
import re
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAN_TAIL = os.path.join(ROOT, "man", "hellod.8.tail")
UNIT_DIR = os.path.join(ROOT, "systemd")

# The name a unit file has in the manual: its own, but hellod.default's is where it goes.
INSTALLED_AS = {"hellod.default": "/etc/default/hellod"}

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def man_sections(text):
    """{section name: its text} of an mdoc page (or a page's tail): `.Sh NAME` to the next."""
    sections, name, lines = {}, None, []
    for line in text.splitlines():
        match = re.match(r'^\.Sh\s+"?([^"]+?)"?\s*$', line)
        if match:
            if name is not None:
                sections[name] = "\n".join(lines)
            name, lines = match.group(1), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = "\n".join(lines)
    return sections


def names(text, name):
    """Whether `name` (a file name, or a path) stands in `text` as a word of its own: after a
    space, a slash or the line's start, and not followed by more of a name."""
    return re.search(r"(?:^|(?<=[\s/]))%s(?![\w-])" % re.escape(name), text, re.M) is not None


def unit_files():
    found = sorted(glob.glob(os.path.join(UNIT_DIR, "*.socket")) + glob.glob(os.path.join(UNIT_DIR, "*.service")))
    default = os.path.join(UNIT_DIR, "hellod.default")
    if os.path.exists(default):
        found.append(default)
    return [os.path.basename(path) for path in found]


def missing_units(tail_text, units):
    """(unit, section) for each unit a section leaves out."""
    sections = man_sections(tail_text)
    found = []
    for section in ("SYSTEMD UNITS", "FILES"):
        text = sections.get(section)
        if text is None:
            found.append(("(the whole section)", section))
            continue
        for unit in units:
            if not names(text, INSTALLED_AS.get(unit, unit)):
                found.append((unit, section))
    return found


def slug(heading):
    """The anchor GitHub gives a heading: lower case, inline markup and punctuation gone
    (letters, digits, `_`, `-` and spaces kept), each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").lower()
    text = "".join(c for c in text if c.isalnum() or c in "_- ")
    return text.replace(" ", "-")


def prose_lines(text):
    """(line number, line) outside fenced code blocks, inline code spans blanked."""
    fenced = None
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fenced:
            if fence and fence.group(1) == fenced:
                fenced = None
            continue
        if fence:
            fenced = fence.group(1)
            continue
        yield number, INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)


def anchors(text):
    """The anchors of a Markdown file's headings (a repeated one gets -1, -2, ...)."""
    seen, found = {}, set()
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else "%s-%d" % (base, count))
    return found


def links(text):
    """(line number, target) of each link in the prose."""
    for number, line in prose_lines(text):
        for match in LINK.finditer(line):
            yield number, match.group(1)
        reference = REFERENCE.match(line)
        if reference:
            yield number, reference.group(1)


def broken_links(path, root=ROOT):
    """'file:line: target: why' for each relative link of a Markdown file that leads
    nowhere."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found = []
    for number, target in links(text):
        if not target or SCHEME.match(target):
            continue  # a web address (or mailto:): not this test's
        where, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), where)) if where else path
        why = None
        if where.startswith("/"):
            why = "an absolute path: links in the repository are relative"
        elif not os.path.exists(resolved):
            why = "no such file"
        elif os.path.relpath(resolved, root).startswith(os.pardir):
            why = "outside the repository"
        elif anchor and resolved.endswith(".md") and os.path.isfile(resolved):
            with open(resolved, encoding="utf-8") as f:
                if anchor not in anchors(f.read()):
                    why = "no heading with the anchor #%s" % anchor
        if why:
            found.append("%s:%d: %s: %s" % (os.path.relpath(path, root), number, target, why))
    return found


def markdown_files(root=ROOT):
    return [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))


class ManualNamesEveryUnit(unittest.TestCase):
    def test_systemd_units_and_files_name_every_unit(self):
        units = unit_files()
        # A glob that found nothing would pass: the units the project has today, at least.
        for unit in ("hellod.socket", "hellod-echo.socket", "hellod-chat.socket", "hellod.service",
                     "hellod.default"):
            self.assertIn(unit, units)
        with open(MAN_TAIL, encoding="utf-8") as f:
            found = missing_units(f.read(), units)
        self.assertEqual(found, [], "\n" + "\n".join(
            "man/hellod.8.tail: %s is not in %s" % (unit, section) for unit, section in found))

    def test_the_check_reads_the_manual(self):
        tail = (".Sh FILES\n.It Pa /usr/lib/systemd/system/a.socket\n.It Pa /etc/default/hellod\n"
                ".Sh SYSTEMD UNITS\n.Pa a.socket\nand\n.Pa b-a.socket ;\n.Pa /etc/default/hellod .\n"
                ".Sh SIGNALS\nb.socket\n")
        self.assertEqual(missing_units(tail, ["a.socket", "hellod.default"]), [])
        # b.socket only in another section; a-less names do not count for a.socket.
        self.assertEqual(missing_units(tail, ["b.socket"]), [("b.socket", "SYSTEMD UNITS"), ("b.socket", "FILES")])
        self.assertFalse(names(".Pa xhellod.socket", "hellod.socket"))
        self.assertFalse(names(".Pa hellod.socket-old", "hellod.socket"))
        self.assertEqual(missing_units(".Sh FILES\na.socket\n", ["a.socket"]),
                         [("(the whole section)", "SYSTEMD UNITS")])


class MarkdownLinksLeadSomewhere(unittest.TestCase):
    def test_every_relative_link_leads_to_a_file(self):
        files = markdown_files()
        self.assertIn(os.path.join(ROOT, "docs", "OPERATIONS.md"), files)
        found = [line for path in files for line in broken_links(path)]
        self.assertEqual(found, [], "\n" + "\n".join(found))

    def test_the_check_reads_markdown(self):
        self.assertEqual(slug("By hand: services, logs, signals, exit codes"),
                         "by-hand-services-logs-signals-exit-codes")
        self.assertEqual(slug("Configuration: /etc/default/hellod"), "configuration-etcdefaulthellod")
        self.assertEqual(slug("2.0.0 (2026-12-06)"), "200-2026-12-06")
        self.assertEqual(slug("hello chat: the `chat` client"), "hello-chat-the-chat-client")
        text = ("# A\n\n## A\n\nSee [b](b.md#x \"title\"), ![i](img.png), [w](https://x.invalid/y).\n"
                "`[not](a-link.md)` and\n```\n[not](either.md)\n```\n[ref]: c/d.md\n")
        self.assertEqual(list(links(text)), [(5, "b.md#x"), (5, "img.png"), (5, "https://x.invalid/y"),
                                             (10, "c/d.md")])
        self.assertEqual(anchors(text), {"a", "a-1"})


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""Writes Sources/HelloChatWire/UnicodeTables.swift, the tables behind the chat's name policy
(Sources/HelloChatWire/NamePolicy.swift, docs/PROTOCOL.md "Names"), from the Unicode Character
Database as Debian's unicode-data package installs it:

    apt-get install unicode-data
    scripts/unicode-tables.py [UCD directory, default /usr/share/unicode] > Sources/HelloChatWire/UnicodeTables.swift

The build never needs the package: the output is checked in. It reads UnicodeData.txt
(general category, canonical decompositions, combining classes), DerivedCoreProperties.txt
(Default_Ignorable_Code_Point), DerivedNormalizationProps.txt (NFKC_Casefold) and
Scripts.txt, and writes three tables of integers, binary-searched at run time:

  classes          what each scalar is to a name: refused, the space, or its script
                   (Common and Inherited apart); one entry where the class changes
  keyMap, keyPool  each scalar's part of a name's key, where it is not the scalar itself:
                   its canonical decomposition, the look-alike map below, NFKC_Casefold,
                   and the canonical decomposition again, until nothing changes
  combiningClasses the canonical combining class, one entry where it changes: a key's
                   marks are put in canonical order, so that e + U+0301 and U+00E9 are one

Refused: unassigned (Cn, noncharacters included), Cc, Cf, Cs, Co, Zl, Zp, every Zs but
U+0020, every Default_Ignorable_Code_Point, and U+2800 BRAILLE PATTERN BLANK (blank, and
not ignorable).

LOOK_ALIKES is curated by hand, not taken from UTS #39's confusables.txt (not available
here: Debian 12 ships no package with it). It maps the Cyrillic and Greek letters whose
capital or small form reads as a Latin letter to that Latin letter, so that a one-script
Cyrillic or Greek nick that reads as a Latin one has the Latin one's key. Mixed-script
look-alikes are refused outright (NamePolicy's script rule) and need no table.
"""
import sys
from pathlib import Path

UCD = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/unicode")

# Letter -> the Latin letter it reads as (capital to capital, small to small; folding then
# makes both small). Only letters that a reader takes for the Latin one at a glance.
LOOK_ALIKES = {
    # Cyrillic capitals
    0x0405: "S", 0x0406: "I", 0x0408: "J", 0x0410: "A", 0x0412: "B", 0x0415: "E", 0x041A: "K",
    0x041C: "M", 0x041D: "H", 0x041E: "O", 0x0420: "P", 0x0421: "C", 0x0422: "T", 0x0423: "Y",
    0x0425: "X", 0x04AE: "Y", 0x04C0: "I", 0x0500: "D", 0x051A: "Q", 0x051C: "W", 0x04BA: "H",
    # Cyrillic small
    0x0430: "a", 0x0435: "e", 0x043E: "o", 0x0440: "p", 0x0441: "c", 0x0443: "y", 0x0445: "x",
    0x0455: "s", 0x0456: "i", 0x0458: "j", 0x04BB: "h", 0x04CF: "l", 0x0501: "d", 0x051B: "q",
    0x051D: "w", 0x0475: "v", 0x0474: "V",
    # Greek capitals
    0x0391: "A", 0x0392: "B", 0x0395: "E", 0x0396: "Z", 0x0397: "H", 0x0399: "I", 0x039A: "K",
    0x039C: "M", 0x039D: "N", 0x039F: "O", 0x03A1: "P", 0x03A4: "T", 0x03A5: "Y", 0x03A7: "X",
    0x037F: "J", 0x03F9: "C",
    # Greek small
    0x03BF: "o", 0x03BD: "v", 0x03B9: "i", 0x03F3: "j", 0x03F2: "c", 0x03BA: "k", 0x03C1: "p",
}

def ranges(path, value_field=1):
    """(first, last, value) of each data line of a UCD file."""
    for line in (UCD / path).open(encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(";")]
        first, _, last = fields[0].partition("..")
        yield int(first, 16), int(last or first, 16), fields[value_field:]

def version():
    first = (UCD / "DerivedNormalizationProps.txt").open(encoding="utf-8").readline()
    return first.split("-")[1].rsplit(".", 1)[0]  # "# DerivedNormalizationProps-15.0.0.txt"

# UnicodeData.txt: category, combining class, canonical decomposition.
category, ccc, decomposition = {}, {}, {}
pending = None
for line in (UCD / "UnicodeData.txt").open(encoding="utf-8"):
    f = line.rstrip("\n").split(";")
    cp = int(f[0], 16)
    if f[1].endswith(", First>"):
        pending = cp
        continue
    start = pending if f[1].endswith(", Last>") else cp
    pending = None
    for c in range(start, cp + 1):
        category[c] = f[2]
    if int(f[3]):
        ccc[cp] = int(f[3])
    if f[5] and not f[5].startswith("<"):
        decomposition[cp] = [int(x, 16) for x in f[5].split()]

ignorable = set()
for first, last, (prop, *_) in ranges("DerivedCoreProperties.txt"):
    if prop == "Default_Ignorable_Code_Point":
        ignorable.update(range(first, last + 1))

nfkc_cf = {}
for first, last, fields in ranges("DerivedNormalizationProps.txt"):
    if fields[0] == "NFKC_CF":
        mapped = [int(x, 16) for x in fields[1].split()] if len(fields) > 1 else []
        for c in range(first, last + 1):
            nfkc_cf[c] = mapped

script_of = {}
for first, last, (name, *_) in ranges("Scripts.txt"):
    for c in range(first, last + 1):
        script_of[c] = name

REFUSED_CATEGORIES = {"Cn", "Cc", "Cf", "Cs", "Co", "Zl", "Zp", "Zs"}
SPACE = 0x20

def refused(c):
    return (category.get(c, "Cn") in REFUSED_CATEGORIES and c != SPACE) or c in ignorable or c == 0x2800

def is_hangul_syllable(c):
    return 0xAC00 <= c <= 0xD7A3

def decompose(c):
    return [x for d in decomposition.get(c, [c]) for x in (decompose(d) if d != c else [d])] if c in decomposition else [c]

def step(seq):
    out = []
    for c in seq:
        for d in decompose(c):
            for e in (ord(ch) for ch in LOOK_ALIKES[d]) if d in LOOK_ALIKES else [d]:
                for g in nfkc_cf.get(e, [e]):
                    out += decompose(g)
    return out

def canonical_order(seq):
    seq = list(seq)
    for i in range(1, len(seq)):  # a stable insertion sort of each run of marks
        j = i
        while j > 0 and ccc.get(seq[j], 0) and ccc.get(seq[j - 1], 0) > ccc[seq[j]]:
            seq[j - 1], seq[j] = seq[j], seq[j - 1]
            j -= 1
    return seq

def key(c):
    seq = [c]
    for _ in range(8):
        nxt = step(seq)
        if nxt == seq:
            return canonical_order(seq)
        seq = nxt
    raise SystemExit("U+%04X: the key does not settle" % c)

# Classes: 0 refused, 1 the space, 2 Common, 3 Inherited, 4... the other scripts.
scripts = sorted({s for s in script_of.values()} - {"Common", "Inherited"})
script_number = {"Common": 2, "Inherited": 3, **{s: 4 + i for i, s in enumerate(scripts)}}
assert 4 + len(scripts) <= 255

def klass(c):
    if refused(c):
        return 0
    if c == SPACE:
        return 1
    return script_number[script_of.get(c, "Common")]

classes = []
last = None
for c in range(0x110000):
    k = klass(c)
    if k != last:
        classes.append((c, k))
        last = k

key_map, pool = [], []
longest = 1
for c in range(0x110000):
    if refused(c) or is_hangul_syllable(c):
        continue
    k = key(c)
    for d in k:
        assert not refused(d) or d in (SPACE,), "U+%04X keys to refused U+%04X" % (c, d)
    if k == [c]:
        continue
    longest = max(longest, len(k))
    assert len(k) < 256
    if len(k) == 1:
        key_map.append(c << 32 | 1 << 24 | k[0])
    else:
        key_map.append(c << 32 | len(k) << 24 | len(pool))
        pool += k
assert len(pool) < 1 << 24

combining = []
last = 0
for c in range(0x110000):
    v = ccc.get(c, 0)
    if v != last or not combining:
        combining.append((c, v))
        last = v

# The most key scalars a name of 32 bytes can have: each scalar's key per UTF-8 byte of it.
def utf8_length(c):
    return 1 if c < 0x80 else 2 if c < 0x800 else 3 if c < 0x10000 else 4
worst = max(len(key(c)) / utf8_length(c) for c in range(0x110000) if not refused(c) and not is_hangul_syllable(c))
worst = max(worst, 3 / 3)  # a Hangul syllable: 3 jamo for 3 bytes
max_key = int(32 * worst + 0.999)

def rows(values, per_line, fmt):
    items = [fmt(v) for v in values]
    return "\n".join("        " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))

out = []
out.append("""// Generated by scripts/unicode-tables.py from the Unicode Character Database %s
// (Debian's unicode-data, /usr/share/unicode): do not edit. To make it again:
//
//     apt-get install unicode-data
//     scripts/unicode-tables.py > Sources/HelloChatWire/UnicodeTables.swift
//
// What the tables hold, and the look-alike map in the key, are explained in that script.

/// The Unicode tables of the name policy (`NamePolicy`): static arrays of integers, each
/// binary-searched; nothing is allocated at lookup.
enum UnicodeTables {
    static let version = "%s"

    /// `classes` values: refused, the space, Common, Inherited; the other scripts from 4.
    static let refused: UInt8 = 0
    static let space: UInt8 = 1
    static let common: UInt8 = 2
    static let inherited: UInt8 = 3""" % (version(), version()))
for name in ("Latin", "Han", "Hiragana", "Katakana", "Bopomofo", "Hangul"):
    out.append("    static let %s: UInt8 = %d" % (name[0].lower() + name[1:], script_number[name]))
out.append("""
    /// The most scalars a key of a name of 32 bytes can have.
    static let longestKey = %d

    /// Where each class starts: first scalar << 8 | class, ascending; a class runs to the
    /// next entry's first scalar.
    static let classes: [UInt32] = [
%s
    ]

    /// The scalars whose key is not themselves: scalar << 32 | key length << 24 | the key's
    /// one scalar (length 1) or its offset in `keyPool`.
    static let keyMap: [UInt64] = [
%s
    ]

    static let keyPool: [UInt32] = [
%s
    ]

    /// Where each canonical combining class starts: first scalar << 8 | class, ascending.
    static let combiningClasses: [UInt32] = [
%s
    ]
}
""" % (max_key,
       rows([c << 8 | k for c, k in classes], 8, lambda v: "0x%08x" % v),
       rows(key_map, 6, lambda v: "0x%012x" % v),
       rows(pool, 10, lambda v: "0x%05x" % v),
       rows([c << 8 | v for c, v in combining], 8, lambda v: "0x%08x" % v)))
sys.stdout.write("\n".join(out))
print("scripts/unicode-tables.py: Unicode %s: %d classes, %d key entries, %d pool scalars, %d combining classes; longest key %d"
      % (version(), len(classes), len(key_map), len(pool), len(combining), max_key), file=sys.stderr)

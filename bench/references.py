#!/usr/bin/env python3
"""Builds the project's C yardsticks, bench/reference/*.c, with the system C compiler
(cc, or $CC) into .build-bench/, or into the directory given; prints what it built.

    make references                 # or: bench/references.py [DIR]

bench/compare.py, bench/chat.py and the integration tests build them through build(), so
each is built one way: `cc -O2 -Wall -Wextra`, rebuilt when its source is newer.
"""
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = os.path.join(ROOT, "bench", "reference")
BUILT = os.path.join(ROOT, ".build-bench")
FLAGS = ["-O2", "-Wall", "-Wextra"]


def compiler():
    return shlex.split(os.environ.get("CC") or "cc")


def build(directory=BUILT, strict=False):
    """{name: path of the binary} for every bench/reference/NAME.c, built into `directory`
    if missing or older than its source. The compiler's warnings go to stderr, and with
    `strict` (-Werror, as the tests build) fail the build; a failed build raises
    CalledProcessError."""
    os.makedirs(directory, exist_ok=True)
    built = {}
    for source in sorted(os.listdir(SOURCES)):
        if not source.endswith(".c"):
            continue
        name = source[:-2]
        binary = os.path.join(directory, name)
        source = os.path.join(SOURCES, source)
        if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(source):
            subprocess.run([*compiler(), *FLAGS, *(["-Werror"] if strict else []), "-o", binary, source],
                           check=True, timeout=120)
        built[name] = binary
    return built


if __name__ == "__main__":
    for path in build(*sys.argv[1:2]).values():
        print(path)

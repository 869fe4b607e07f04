#!/bin/sh
# Quick start, command 1: installs what is missing, builds hellod and its client hello (the
# README's next step runs .build/release/hello), and runs hellod in the foreground on UDP
# port 9999 (IPv4 and IPv6). Ctrl-C stops it. Extra arguments go to hellod.
set -eu
cd "$(dirname "$0")"
# The Swift driver leaves an empty TemporaryDirectory.* in $TMPDIR at every run
# (swiftlang/swift-driver#2049): swift gets a TMPDIR of the checkout's own (as in Makefile).
swift() { mkdir -p .build-tmp && TMPDIR="$PWD/.build-tmp" command swift "$@"; }
scripts/deps.sh build
swift build -c release --product hellod >&2
swift build -c release --product hello >&2
exec .build/release/hellod "$@"

#!/bin/sh
# Quick start, command 2: installs what is missing and runs every test. Uses ephemeral
# ports, so it passes while ./run.sh serves port 9999.
set -eu
cd "$(dirname "$0")"
# The Swift driver leaves an empty TemporaryDirectory.* in $TMPDIR at every run
# (swiftlang/swift-driver#2049): swift gets a TMPDIR of the checkout's own (as in Makefile).
swift() { mkdir -p .build-tmp && TMPDIR="$PWD/.build-tmp" command swift "$@"; }
scripts/deps.sh test

echo "== formatting: swift format lint --strict (.swift-format), Sources, Tests and Benchmarks" >&2
swift format lint --strict --recursive --parallel Sources Tests Benchmarks

echo "== build: the unit tests (debug) and the release binaries users install (make build)" >&2
swift build --build-tests >&2
make build >&2
export HELLOD_BIN_DIR="$PWD/.build-static/release"

echo "== unit tests (swift test)" >&2
swift test --skip-build

echo "== integration tests (the release binaries, real sockets, real clients)" >&2
python3 -m unittest discover -s Tests/integration -v

echo "== end-to-end tests (make install under a real systemd in private namespaces)" >&2
python3 -m unittest discover -s Tests/system -v

echo "== heap allocations per datagram (Benchmarks/, package-benchmark): must be zero" >&2
make bench-malloc

echo "== the same gate on deliberately broken benchmarks: must fail on each" >&2
make bench-malloc-proof

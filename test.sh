#!/bin/sh
# Quick start, command 2: installs what is missing and runs every test. Uses ephemeral
# ports, so it passes while ./run.sh serves port 9999.
set -eu
cd "$(dirname "$0")"
scripts/deps.sh test

echo "== build" >&2
swift build --build-tests >&2
export HELLOD_BIN_DIR="$(swift build --show-bin-path)"

echo "== unit tests (swift test)" >&2
swift test --skip-build

echo "== integration tests (real sockets, real clients)" >&2
python3 -m unittest discover -s Tests/integration -v

echo "== end-to-end tests (make install under a real systemd in private namespaces)" >&2
python3 -m unittest discover -s Tests/system -v

#!/bin/sh
# Proves that the malloc gate (`make bench-malloc`) fails when it should: runs
# `swift package benchmark thresholds check` on deliberately broken benchmarks, which
# DatagramPath registers only when HELLOD_BENCH_BROKEN is set, and requires each run to
# fail, for the reason it was broken (a failure for any other reason, a build error say,
# proves nothing and fails this script).
#
#   HELLOD_BENCH_BROKEN=malloc    one benchmark that allocates once per iteration and is
#                                 otherwise correct: the threshold check must fail on it.
#   HELLOD_BENCH_BROKEN=failure   six that fail without a malloc in their gated results
#                                 (setup, a measured round, the counters, the teardown, no
#                                 thresholds file): each must end its process with its
#                                 "hellod-bench: FAIL <name>:" line, and the check must fail.
#
# Reuses the build `make bench-malloc` made (the broken benchmarks are chosen at run time).
set -u
cd "$(dirname "$0")"
log=$(mktemp)
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$log" "$out" "$err"' EXIT
failed=0

# stdout and stderr go to files of their own: the tool's stdout is block-buffered, so
# sharing one file with stderr can cut a line in two (CI saw "Fai" + an error line +
# "led to run ..."). Each stream alone keeps its lines whole; $log is both, one after
# the other.
gate() {
    HELLOD_BENCH_BROKEN=$1 swift package benchmark thresholds check --no-progress --target DatagramPath --filter '^Broken-.*' >"$out" 2>"$err"
    status=$?
    cat "$out" "$err" >"$log"
    return $status
}

# Reports a failed proof and shows the run's output.
disprove() {
    echo "prove-gate: FAILED: $1 (output follows)" >&2
    sed 's/^/    /' "$log" >&2
    failed=1
}

echo "prove-gate: HELLOD_BENCH_BROKEN=malloc" >&2
if gate malloc; then
    disprove "the gate passed a benchmark that allocates once per iteration"
elif ! grep -q 'is WORSE than the defined thresholds' "$log" \
    || ! grep -q 'Broken-malloc-per-iteration-1024-datagrams' "$log"; then
    disprove "the gate failed, but not on the allocating benchmark's thresholds"
elif grep -q 'hellod-bench: FAIL' "$log"; then
    disprove "the allocating benchmark failed otherwise too: it proves nothing about the thresholds"
else
    echo "prove-gate: ok, the thresholds caught the malloc" >&2
fi

echo "prove-gate: HELLOD_BENCH_BROKEN=failure" >&2
broken="Broken-malloc-then-teardown-fails-1024-datagrams
Broken-setup-fails-1024-datagrams
Broken-wrong-drop-reason-1024-datagrams
Broken-claims-all-answered-1024-datagrams
Broken-rate-limited-after-setup-128-datagrams
Broken-no-thresholds-file-1024-datagrams"
if gate failure; then
    disprove "the gate passed failing benchmarks"
else
    ok=1
    for name in $broken; do
        if ! grep -q "^hellod-bench: FAIL $name: " "$log"; then
            disprove "$name did not fail with its own line"
            ok=0
        fi
    done
    # One "Failed to run" line per benchmark process that exited non-zero.
    crashed=$(grep -c "^Failed to run 'thresholds' for " "$log")
    if [ "$crashed" -ne 6 ]; then
        disprove "$crashed benchmark processes failed, expected 6"
        ok=0
    fi
    if ! grep -q 'benchmark job(s) failed during runtime' "$log"; then
        disprove "the gate failed, but not because benchmark processes failed"
        ok=0
    fi
    if [ $ok = 1 ]; then
        echo "prove-gate: ok, each failing benchmark failed the gate:" >&2
        grep '^hellod-bench: FAIL' "$log" | cut -c1-200 | sed 's/^/    /' >&2
    fi
fi

exit $failed

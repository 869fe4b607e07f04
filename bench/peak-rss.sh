#!/bin/sh
# Peak RSS (VmHWM) and anonymous RSS of one hellod after 4 s of `hello bench` load (8 flows
# x 32 in flight) on 127.0.0.1, and a second and more for a metrics write or two.
#   bench/peak-rss.sh BIN_DIR [hellod options...]
# e.g. bench/peak-rss.sh .build-static/release --metrics-file /tmp/hellod.prom --metrics-interval 1
set -eu
bin=$1
shift
port=$((20000 + $$ % 10000))
"$bin/hellod" --listen "127.0.0.1:$port" "$@" 2>/dev/null &
pid=$!
sleep 0.5
"$(dirname "$0")/../.build-static/release/hello" bench --port "$port" --flows 8 --window 32 --duration 4 --json >/dev/null
sleep 1.2
echo "$(grep -E 'VmHWM' /proc/$pid/status | tr -s ' \t' ' ') $(grep RssAnon /proc/$pid/status | tr -s ' \t' ' ')  $bin $*"
kill $pid
wait $pid

#!/bin/sh
# Fetches promtool and node_exporter for the metrics tests, without installing Debian's
# prometheus packages: installing them starts daemons on the host's ports 9090 and 9100.
# `apt-get download` fetches the .debs into a cache directory and `dpkg-deb -x` takes the
# binaries out, so the host's package database and services are untouched.
#
#   scripts/prometheus-tools.sh [DIR]   prints DIR, holding bin/promtool and bin/node_exporter
#                                       (DIR: .build-prometheus in the checkout)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.build-prometheus}
if [ -x "$dir/bin/promtool" ] && [ -x "$dir/bin/node_exporter" ]; then
    echo "$dir"
    exit 0
fi

mkdir -p "$dir/debs" "$dir/bin"
cd "$dir/debs"
# apt-get download needs the package lists; an empty list is a fresh machine's.
if ! apt-cache show prometheus prometheus-node-exporter >/dev/null 2>&1; then
    apt-get update -qq >&2
fi
apt-get download -qq prometheus prometheus-node-exporter >&2
for deb in prometheus_*.deb prometheus-node-exporter_*.deb; do
    rm -rf tree && dpkg-deb -x "$deb" tree
    for tool in promtool prometheus-node-exporter; do
        [ -x tree/usr/bin/$tool ] && cp tree/usr/bin/$tool "$dir/bin/"
    done
done
cd "$dir" && rm -rf debs  # the binaries are all the tests need
mv "$dir/bin/prometheus-node-exporter" "$dir/bin/node_exporter"
echo "$dir"

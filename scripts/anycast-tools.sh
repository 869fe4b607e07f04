#!/bin/sh
# Fetches BIRD 2 and ExaBGP for the anycast test (Tests/system/test_anycast.py), without
# installing Debian's bird2 and exabgp packages: installing bird2 starts and enables
# bird.service on the host, and the exabgp package ships a service too. `apt-get download`
# fetches the .debs and `dpkg-deb -x` takes the files out, so the host's package database
# and services are untouched; the test runs them inside network namespaces of its own.
#
#   scripts/anycast-tools.sh [DIR]   prints DIR, holding sbin/bird, sbin/birdc and
#                                    dist-packages/exabgp (python3-exabgp's tree: run
#                                    `PYTHONPATH=DIR/dist-packages /usr/bin/python3 -m exabgp`,
#                                    and `... -m exabgp.application.healthcheck`)
#                                    (DIR: .build-anycast in the checkout)
#
# bird needs libssh-gcrypt-4, a library (no daemon), which `scripts/deps.sh test` installs.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.build-anycast}
if [ -x "$dir/sbin/bird" ] && [ -x "$dir/sbin/birdc" ] && [ -f "$dir/dist-packages/exabgp/__init__.py" ]; then
    echo "$dir"
    exit 0
fi

rm -rf "$dir"
mkdir -p "$dir/debs" "$dir/sbin"
cd "$dir/debs"
# apt-get download needs the package lists; an empty list is a fresh machine's.
if ! apt-cache show bird2 python3-exabgp >/dev/null 2>&1; then
    apt-get update -qq >&2
fi
apt-get download -qq bird2 python3-exabgp >&2
for deb in bird2_*.deb python3-exabgp_*.deb; do
    dpkg-deb -x "$deb" tree
done
cp tree/usr/sbin/bird tree/usr/sbin/birdc "$dir/sbin/"
# The module and its egg-info (the entry points' metadata), as Debian's python3 would find them.
mv tree/usr/lib/python3/dist-packages "$dir/dist-packages"
cd "$dir" && rm -rf debs  # the binaries and the module are all the test needs
echo "$dir"

#!/bin/sh
# Installs the Debian packages hellod needs that are missing, and nothing else.
#   scripts/deps.sh build   what building needs (libsystemd-dev, pkg-config, make)
#   scripts/deps.sh test    that, and what the tests drive (socat, netcat, python3, iproute2;
#                           ethtool, which turns GRO on in the tests' veth pairs;
#                           tmux, a real terminal for `hello chat`; gcc for bench/reference/;
#                           mandoc, which lints the manual pages; libssh-gcrypt-4, a library
#                           that BIRD needs: the anycast test takes bird out of Debian's
#                           package without installing it, scripts/anycast-tools.sh)
#   scripts/deps.sh bench   that, and a C compiler for bench/reference/ (make references, make bench);
#                           iproute2 and ethtool for bench/compare.py --gro --veth
#   scripts/deps.sh deb     that, and what building the Debian package needs (make deb:
#                           debhelper, dpkg-dev, fakeroot) and checks it (lintian, man-db)
set -eu

packages="libsystemd-dev pkg-config make"
deb="debhelper dpkg-dev fakeroot lintian man-db"
case "${1:-build}" in
    test) packages="$packages socat netcat-openbsd python3 iproute2 ethtool util-linux procps systemd binutils mandoc tmux gcc libc6-dev libssh-gcrypt-4 $deb" ;;
    deb) packages="$packages $deb" ;;
    bench) packages="$packages gcc libc6-dev python3 util-linux iproute2 ethtool" ;;
esac

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "installing:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null; then
    sudo="sudo"
else
    echo "missing Debian packages:$missing (run as root, or install them)" >&2
    exit 1
fi
$sudo apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null

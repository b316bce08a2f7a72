#!/bin/sh
# Sets up a build of stgrad on Debian 12: installs the Debian packages that
# are missing (when run as root; otherwise prints the command to run), then
# generates and runs configure.  Extra arguments go to configure.
set -eu

packages="gcc make autoconf automake libtool pkg-config libblis-dev libcmocka-dev zlib1g-dev
          dataset-fashion-mnist fortunes libopenmpi-dev openmpi-bin"

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    else
        echo "setup: missing Debian packages:$missing" >&2
        echo "setup: run as root, or: sudo apt-get install$missing" >&2
        exit 1
    fi
fi

cd "$(dirname "$0")/.."
autoreconf -fi
./configure "$@"

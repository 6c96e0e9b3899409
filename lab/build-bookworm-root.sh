#!/usr/bin/env bash
# Build (or reuse) a clean Debian 12 (bookworm) root that boots with systemd as
# PID 1 under `systemd-nspawn --boot`: the machine the Debian package is
# installed into by tests/test_debian_package.py.
#
# It holds what a minimal Debian 12 server has plus the package's dependencies
# (python3.11, adduser), so `apt install ./textback_*.deb` inside it needs no
# network. Cached by recipe like the lab's sid root (lab/cached-root.sh).
# Tests boot a copy, never the cached root itself.
#
# Also installs the host tools it needs (mmdebstrap, systemd-container) when missing.
# Prints the root's path on the last line of stdout.
set -euo pipefail

NAME=build-bookworm-root.sh
source "$(dirname "$0")/cached-root.sh"

[[ $EUID -eq 0 ]] || die "must run as root (mmdebstrap and systemd-nspawn need it)"

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
PACKAGES=systemd,systemd-sysv,dbus,python3,python3.11,adduser,libstdc++6,ca-certificates
MMDEBSTRAP_OPTS=(
    --variant=minbase
    --include="$PACKAGES"
)
RECIPE_VERSION=1
PREFIX=bookworm
LOCK=.bookworm.lock
MARKER=lib/systemd/systemd

prepare_root() {
    [[ -x "$1/usr/bin/python3.11" ]] || die "built root has no python3.11"
    # A machine of its own: no inherited identity, and nothing apt could fetch at test time.
    rm -f "$1/etc/machine-id" "$1/var/lib/dbus/machine-id"
    : >"$1/etc/machine-id"
    rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin
}

install_host_tools mmdebstrap:mmdebstrap systemd-nspawn:systemd-container
build_cached_root

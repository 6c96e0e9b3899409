#!/usr/bin/env bash
# Build (or reuse) the Debian sid root that the lab PBX runs Asterisk from.
#
# Debian 12 ships no asterisk package, so the lab chroots into a minimal sid
# root, cached by recipe (lab/cached-root.sh says how).
#
# Also installs the host tools the lab needs (mmdebstrap, sipp) when missing.
# Prints the root's path on the last line of stdout.
set -euo pipefail

NAME=build-root.sh
source "$(dirname "$0")/cached-root.sh"

[[ $EUID -eq 0 ]] || die "must run as root (mmdebstrap and chroot need it)"

SUITE=sid
MIRROR=http://deb.debian.org/debian
PACKAGES=asterisk,asterisk-modules,python3
# The sid Release file may read as expired through the mirror; without this apt refuses it.
MMDEBSTRAP_OPTS=(
    --variant=minbase
    --aptopt='Acquire::Check-Valid-Until "false"'
    --include="$PACKAGES"
)
RECIPE_VERSION=1
PREFIX=root
LOCK=.lock
MARKER=usr/sbin/asterisk

prepare_root() {
    [[ -x "$1/usr/bin/python3" ]] || die "built root has no /usr/bin/python3"
}

install_host_tools mmdebstrap:mmdebstrap sipp:sip-tester
build_cached_root

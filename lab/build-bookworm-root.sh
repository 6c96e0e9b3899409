#!/usr/bin/env bash
# Build (or reuse) a clean Debian 12 (bookworm) root that boots with systemd as
# PID 1 under `systemd-nspawn --boot`: the machine the Debian package is
# installed into by tests/test_debian_package.py.
#
# It holds what a minimal Debian 12 server has plus the package's dependencies
# (python3.11, adduser), so `apt install ./textback_*.deb` inside it needs no
# network. Cached like the lab's sid root (lab/build-root.sh): under
# $TEXTBACK_LAB_CACHE (default /var/cache/textback-lab), keyed by a hash of the
# recipe, built in a temporary directory renamed into place when complete.
# Tests boot a copy, never the cached root itself.
#
# Also installs the host tools it needs (mmdebstrap, systemd-container) when missing.
# Prints the root's path on the last line of stdout.
set -euo pipefail

die() { echo "build-bookworm-root.sh: error: $*" >&2; exit 1; }
log() { echo "build-bookworm-root.sh: $*" >&2; }

[[ $EUID -eq 0 ]] || die "must run as root (mmdebstrap and systemd-nspawn need it)"

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
PACKAGES=systemd,systemd-sysv,dbus,python3,python3.11,adduser,libstdc++6,ca-certificates
MMDEBSTRAP_OPTS=(
    --variant=minbase
    --include="$PACKAGES"
)
# Bump when the way the root is prepared changes without the inputs above changing.
RECIPE_VERSION=1

CACHE_DIR=${TEXTBACK_LAB_CACHE:-/var/cache/textback-lab}

install_host_tools() {
    local missing=()
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing host tools: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -q >&2 || die "apt-get update failed"
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

install_host_tools

recipe="v$RECIPE_VERSION|$SUITE|$MIRROR|${MMDEBSTRAP_OPTS[*]}"
key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
root="$CACHE_DIR/bookworm-$key"

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.bookworm.lock"
flock 9

if [[ ! -x "$root/lib/systemd/systemd" ]]; then
    log "building root $root (recipe: $recipe)"
    tmp=$(mktemp -d "$CACHE_DIR/.building-bookworm-$key.XXXXXX")
    trap 'rm -rf --one-file-system "$tmp"' EXIT
    rmdir "$tmp"
    mmdebstrap "${MMDEBSTRAP_OPTS[@]}" "$SUITE" "$tmp" "$MIRROR" >&2 \
        || die "mmdebstrap failed (see output above)"
    [[ -x "$tmp/lib/systemd/systemd" ]] || die "built root has no systemd"
    [[ -x "$tmp/usr/bin/python3.11" ]] || die "built root has no python3.11"
    # A machine of its own: no inherited identity, and nothing apt could fetch at test time.
    rm -f "$tmp/etc/machine-id" "$tmp/var/lib/dbus/machine-id"
    : >"$tmp/etc/machine-id"
    rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin
    printf '%s\n' "$recipe" >"$tmp/.textback-lab-recipe"
    rm -rf --one-file-system "$root"
    mv -T "$tmp" "$root"
    trap - EXIT
    log "root ready: $(du -sh "$root" | cut -f1)"
fi

echo "$root"

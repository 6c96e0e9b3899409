#!/usr/bin/env bash
# Build (or reuse) the Debian sid root that the lab PBX runs Asterisk from.
#
# Debian 12 ships no asterisk package, so the lab chroots into a minimal sid
# root.  The root is cached under $TEXTBACK_LAB_CACHE (default
# /var/cache/textback-lab), keyed by a hash of everything it is built from, so
# changing the package list or options below builds a fresh root.  The build
# goes into a temporary directory that is renamed into place only when
# complete, so a cached root is never half-built.
#
# Also installs the host tools the lab needs (mmdebstrap, sipp) when missing.
# Prints the root's path on the last line of stdout.
set -euo pipefail

die() { echo "build-root.sh: error: $*" >&2; exit 1; }
log() { echo "build-root.sh: $*" >&2; }

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
# Bump when the way the root is prepared changes without the inputs above changing.
RECIPE_VERSION=1

CACHE_DIR=${TEXTBACK_LAB_CACHE:-/var/cache/textback-lab}

install_host_tools() {
    local missing=()
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v sipp >/dev/null || missing+=(sip-tester)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing host tools: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

install_host_tools

recipe="v$RECIPE_VERSION|$SUITE|$MIRROR|${MMDEBSTRAP_OPTS[*]}"
key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
root="$CACHE_DIR/root-$key"

mkdir -p "$CACHE_DIR"
# Serialise concurrent builds of the same cache (e.g. two test runs at once).
exec 9>"$CACHE_DIR/.lock"
flock 9

if [[ ! -x "$root/usr/sbin/asterisk" ]]; then
    log "building root $root (recipe: $recipe)"
    tmp=$(mktemp -d "$CACHE_DIR/.building-$key.XXXXXX")
    trap 'rm -rf --one-file-system "$tmp"' EXIT
    # mmdebstrap wants a target that does not exist or is empty.
    rmdir "$tmp"
    mmdebstrap "${MMDEBSTRAP_OPTS[@]}" "$SUITE" "$tmp" "$MIRROR" >&2 \
        || die "mmdebstrap failed (see output above)"
    [[ -x "$tmp/usr/sbin/asterisk" ]] || die "built root has no /usr/sbin/asterisk"
    [[ -x "$tmp/usr/bin/python3" ]] || die "built root has no /usr/bin/python3"
    printf '%s\n' "$recipe" >"$tmp/.textback-lab-recipe"
    rm -rf --one-file-system "$root"
    mv -T "$tmp" "$root"
    trap - EXIT
    log "root ready: $(du -sh "$root" | cut -f1)"
fi

echo "$root"

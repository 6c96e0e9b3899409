# Sourced by lab/build-root.sh (the lab PBX's sid root) and lab/build-bookworm-root.sh (the
# clean Debian 12 the package is installed into): the host tools a root needs, and one root
# per recipe, built by mmdebstrap once and reused.
#
# The root is cached under $TEXTBACK_LAB_CACHE (default /var/cache/textback-lab), keyed by a
# hash of everything it is built from, so changing the package list or options builds a
# fresh root. The build goes into a temporary directory renamed into place only when
# complete, so a cached root is never half-built; a lock serialises two runs building the
# same kind of root at once.
#
# The sourcing script sets NAME (its name, for messages), SUITE, MIRROR, MMDEBSTRAP_OPTS,
# RECIPE_VERSION (bumped when the preparation changes without the inputs changing), PREFIX
# (the cached directory's name before the key), LOCK (the lock file's name) and MARKER (an
# executable every finished root has), and defines prepare_root DIR: its checks and changes
# to a new root before it is put in place.

die() { echo "$NAME: error: $*" >&2; exit 1; }
log() { echo "$NAME: $*" >&2; }
# shellcheck source=tools/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tools/apt.sh"

# install_host_tools COMMAND:PACKAGE ...: apt-get installs the package of each missing command.
install_host_tools() {
    local missing=() wanted
    for wanted in "$@"; do
        command -v "${wanted%%:*}" >/dev/null || missing+=("${wanted#*:}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing host tools: ${missing[*]}"
    apt_install "${missing[@]}"
}

# build_cached_root: prints the root's path, building it first when the cache lacks it.
build_cached_root() {
    local cache_dir=${TEXTBACK_LAB_CACHE:-/var/cache/textback-lab}
    local recipe="v$RECIPE_VERSION|$SUITE|$MIRROR|${MMDEBSTRAP_OPTS[*]}"
    local key root
    key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
    root="$cache_dir/$PREFIX-$key"
    mkdir -p "$cache_dir"
    exec 9>"$cache_dir/$LOCK"
    flock 9
    if [[ ! -x "$root/$MARKER" ]]; then
        log "building root $root (recipe: $recipe)"
        building=$(mktemp -d "$cache_dir/.building-$PREFIX-$key.XXXXXX")
        trap 'rm -rf --one-file-system "$building"' EXIT
        # mmdebstrap wants a target that does not exist or is empty.
        rmdir "$building"
        mmdebstrap "${MMDEBSTRAP_OPTS[@]}" "$SUITE" "$building" "$MIRROR" >&2 \
            || die "mmdebstrap failed (see output above)"
        [[ -x "$building/$MARKER" ]] || die "built root has no /$MARKER"
        prepare_root "$building"
        printf '%s\n' "$recipe" >"$building/.textback-lab-recipe"
        rm -rf --one-file-system "$root"
        mv -T "$building" "$root"
        trap - EXIT
        log "root ready: $(du -sh "$root" | cut -f1)"
    fi
    echo "$root"
}

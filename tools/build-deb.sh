#!/usr/bin/env bash
# Build textback_<version>_<arch>.deb (dh-virtualenv) from this checkout, or from
# another revision with this checkout's packaging: tools/build-deb.sh [REV].
#
# The source is what git would commit (the working tree, .gitignore respected),
# exported to a temporary directory; nothing is written into the checkout but
# the result in $TEXTBACK_DEB_OUT (default dist/). The built package is cached
# under $TEXTBACK_DEB_CACHE (default /var/cache/textback-deb) by the source's
# git tree hash and the packaging's, so an unchanged tree is never built twice.
# The version is the tag (vX.Y.Z) on the commit, else pyproject's version with
# +git<commit count>.g<hash> (and .dirty<tree> for uncommitted changes): later
# commits sort later, as apt needs for an upgrade. lintian must report no errors.
# Prints the .deb's path on the last line of stdout.
set -euo pipefail

die() { echo "build-deb.sh: error: $*" >&2; exit 1; }
log() { echo "build-deb.sh: $*" >&2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source=tools/apt.sh
source "$repo/tools/apt.sh"
rev=${1:-}
OUT=${TEXTBACK_DEB_OUT:-$repo/dist}
CACHE=${TEXTBACK_DEB_CACHE:-/var/cache/textback-deb}
# What the package is built from: a change elsewhere (tests, lab, bench) needs no new build.
PACKAGED=(pyproject.toml README.md config.example.yaml docs debian textback ami_listener
          sms_gateway agi_scripts dialplan)
# Bump when the way the package is built changes without the inputs in the cache key changing.
RECIPE_VERSION=2
BUILD_DEPS=(dh-virtualenv debhelper lintian python3-venv build-essential fakeroot git)

install_build_deps() {
    local missing=()
    for package in "${BUILD_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    [[ $EUID -eq 0 ]] || die "missing ${missing[*]}; install them or run as root"
    log "installing build dependencies: ${missing[*]}"
    apt_install "${missing[@]}"
}

# The tree git would commit now, without touching the real index.
working_tree() {
    local index
    index=$(mktemp)
    cp "$(git rev-parse --git-dir)/index" "$index" 2>/dev/null || true
    GIT_INDEX_FILE=$index git add -A . >/dev/null
    GIT_INDEX_FILE=$index git write-tree
    rm -f "$index"
}

install_build_deps

if [[ -n $rev ]]; then
    commit=$(git rev-parse --verify "$rev^{commit}") || die "unknown revision $rev"
    tree=$(git rev-parse "$commit^{tree}")
    dirty=""
else
    commit=$(git rev-parse HEAD)
    tree=$(working_tree)
    dirty=""
fi
source_id() { git ls-tree -r "$1" -- "${PACKAGED[@]}" | sha256sum | cut -c1-16; }
source=$(source_id "$tree")
if [[ -z $rev && $source != "$(source_id "$commit^{tree}")" ]]; then
    dirty=".dirty${source:0:8}"
fi
packaging=$(working_tree)  # this checkout's debian/ and textback/unit.py
packaging_debian=$(git rev-parse "$packaging:debian")
packaging_unit=$(git rev-parse "$packaging:textback/unit.py")

# The version names the last commit that changed what is packaged: a commit to the tests alone
# keeps the version, and so the cached build.
changed=$(git rev-list -1 "$commit" -- "${PACKAGED[@]}")
base=$(git show "$changed:pyproject.toml" | sed -n 's/^version = "\(.*\)"$/\1/p' | head -1)
[[ -n $base ]] || die "no version in pyproject.toml at $changed"
if tag=$(git describe --tags --exact-match "$commit" 2>/dev/null) && [[ -z $dirty ]]; then
    version=${tag#v}
else
    version="$base+git$(git rev-list --count "$changed").g${changed:0:7}$dirty"
fi
arch=$(dpkg --print-architecture)
name="textback_${version}_${arch}.deb"
key=$(printf '%s\n' "v$RECIPE_VERSION" "$source" "$packaging_debian" "$packaging_unit" "$version" \
      | sha256sum | cut -c1-16)
cached="$CACHE/$key/$name"

mkdir -p "$CACHE" "$OUT"
# A cached package is complete (renamed into place): no need to wait for another build.
if [[ ! -e $cached ]]; then
    exec 9>"$CACHE/.lock"
    flock 9
fi

if [[ ! -e $cached ]]; then
    log "building $name from ${rev:-the working tree} (source $source)"
    work=$(mktemp -d)
    trap 'rm -rf --one-file-system "$work"' EXIT
    mkdir "$work/textback"
    mapfile -t present < <(git ls-tree --name-only "$tree" -- "${PACKAGED[@]}")
    git archive "$tree" -- "${present[@]}" | tar -x -C "$work/textback"
    rm -rf "$work/textback/debian"
    git archive "$packaging" debian | tar -x -C "$work/textback"
    PYTHONPATH=$repo python3 -m textback.unit >"$work/textback/debian/textback.service"
    PYTHONPATH=$repo python3 -m textback.unit --company >"$work/textback/debian/textback@.service"
    # The Python package carries the same version (a valid PEP 440 local version), so
    # `textback --version`, `textback status` and the store's written_by name the build.
    sed -i "s/^version = \".*\"$/version = \"$version\"/" "$work/textback/pyproject.toml"
    # The commit's author maintains the package built from it.
    maintainer=$(git log -1 --format='%an <%ae>' "$changed")
    sed -i "s|@MAINTAINER@|$maintainer|" "$work/textback/debian/control"
    subject=$(git log -1 --format=%s "$changed")
    date=$(git log -1 --format=%aD "$changed")
    cat >"$work/textback/debian/changelog" <<CHANGELOG
textback ($version) unstable; urgency=medium

  * Built from git commit ${changed:0:12}${dirty:+ with uncommitted changes}:
    ${subject:0:66}

 -- $maintainer  $date
CHANGELOG
    (cd "$work/textback" && dpkg-buildpackage -b -us -uc --no-sign >"$work/build.log" 2>&1) \
        || { tail -40 "$work/build.log" >&2; die "dpkg-buildpackage failed (log above)"; }
    [[ -e $work/$name ]] || die "dpkg-buildpackage made no $name"
    # No errors; the warnings that remain are explained in README ("The Debian package").
    lintian --fail-on error \
        "$work/$name" >"$work/lintian.txt" 2>&1 \
        || { cp "$work/lintian.txt" "$OUT/lintian-failed.txt"; grep "^E:" "$work/lintian.txt" >&2; die "lintian reports errors (all: $OUT/lintian-failed.txt)"; }
    mkdir -p "$CACHE/$key.tmp"
    cp "$work/$name" "$work/lintian.txt" "$CACHE/$key.tmp/"
    rm -rf "$CACHE/$key"
    mv -T "$CACHE/$key.tmp" "$CACHE/$key"
    log "built $name: $(du -h "$cached" | cut -f1); lintian: $(grep -c '^[EW]:' "$CACHE/$key/lintian.txt" || true) error/warning line(s)"
fi
cp "$cached" "$OUT/$name"
cp "$CACHE/$key/lintian.txt" "$OUT/${name%.deb}.lintian"
echo "$OUT/$name"

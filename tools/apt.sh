# Sourced by the scripts that install Debian packages (tools/install-test-deps.sh,
# tools/build-deb.sh, lab/cached-root.sh): one way to call apt, waiting for another apt
# that holds the lock (make test runs several of them) instead of failing.

# apt_install PACKAGE...: apt-get update, then install the packages without recommends.
# Its output goes to stderr (the callers print a path on stdout); dies naming the packages.
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || die "apt-get update failed"
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >&2 \
        || die "apt-get install $* failed"
}

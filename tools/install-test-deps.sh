#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real, when missing:
# Kannel (bearerbox, smsbox, fakesmsc) for the kannel gateway tests, and
# MariaDB's server for the FreePBX CDR tests, systemd-analyze (package systemd)
# to verify the unit `textback install --systemd` writes, mmdebstrap, systemd-container
# and pipx for the Debian package's tests, PostgreSQL 15 with pg_trgm for the store's
# PostgreSQL backend, and Chromium, the browser the
# inbox's browser tests drive (Playwright uses it; it never downloads one). The tests start their own
# instances, so the packaged services are stopped and disabled. And axe-core, the accessibility
# engine the browser tests run over every page: from the npm registry, at a pinned version, into
# a cache directory the tests read it from (they serve it from the page's own origin).
# The lab PBX's own packages are installed by lab/build-root.sh.
set -euo pipefail

die() { echo "install-test-deps.sh: error: $*" >&2; exit 1; }
# shellcheck source=tools/apt.sh
source "$(dirname "$0")/apt.sh"
[[ $EUID -eq 0 ]] || die "must run as root (apt-get)"

export DEBIAN_FRONTEND=noninteractive
need=()
command -v make >/dev/null || need+=(make)
# tools/run-tests.sh brings up the lab half's own loopback with ip.
command -v ip >/dev/null || need+=(iproute2)
[[ -x /usr/sbin/bearerbox && -x /usr/lib/kannel/test/fakesmsc ]] || need+=(kannel kannel-extras)
command -v mariadbd >/dev/null || need+=(mariadb-server)
command -v systemd-analyze >/dev/null || need+=(systemd)
[[ -x /usr/bin/chromium ]] || need+=(chromium fonts-dejavu-core)
command -v npm >/dev/null || need+=(npm)
# The Debian package's tests: a clean Debian 12 root booted with systemd-nspawn, and pipx.
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
[[ -x /usr/bin/pipx ]] || need+=(pipx)
# PostgreSQL 15 (and pg_trgm, in contrib) for the store's second backend: the tests run
# initdb and pg_ctl into a temporary directory themselves (lab/postgres.py).
[[ -x /usr/lib/postgresql/15/bin/pg_ctl ]] || need+=(postgresql postgresql-contrib)
[[ -e /usr/share/postgresql/15/extension/pg_trgm.control ]] || need+=(postgresql-contrib)
if ((${#need[@]})); then
    echo "install-test-deps.sh: installing ${need[*]}" >&2
    # policy-rc.d 101: the packages' own services must not start during the install.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt_install "${need[@]}"
fi
for service in kannel mariadb postgresql; do
    if [[ -e /etc/init.d/$service ]]; then
        update-rc.d "$service" disable >/dev/null 2>&1 || true
        service "$service" stop >/dev/null 2>&1 || true
    fi
done

# Keep AXE_CORE_VERSION and the default directory in step with tests/browser.py.
AXE_CORE_VERSION=4.10.3
AXE_DIR=${TEXTBACK_AXE_DIR:-/var/cache/textback-tests/axe-core-$AXE_CORE_VERSION}
if [[ ! -s $AXE_DIR/node_modules/axe-core/axe.min.js ]]; then
    echo "install-test-deps.sh: installing axe-core $AXE_CORE_VERSION into $AXE_DIR" >&2
    mkdir -p "$AXE_DIR"
    npm install --silent --no-save --no-audit --no-fund --prefix "$AXE_DIR" "axe-core@$AXE_CORE_VERSION" \
        || die "npm install axe-core@$AXE_CORE_VERSION failed"
    chmod -R a+rX "$AXE_DIR"
fi

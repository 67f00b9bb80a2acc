#!/usr/bin/env bash
# Install the system programs the test suite and benchmarks run for real, if missing:
#   - redis-server
#   - PostgreSQL server binaries (initdb, postgres, pg_ctl), on PATH or in
#     /usr/lib/postgresql/<version>/bin (Debian does not put initdb on PATH)
#   - Chromium and its WebDriver (Debian's chromium, chromium-driver): the pages' browser tests
#   - axe-core (the accessibility checker the desk's browser tests run in Chromium): npm
#     (Debian's npm, for its client) packs the pinned version from the configured registry
#     into .cache/axe-core/ of this checkout, which keeps only axe.min.js (git-ignored)
#   - the `postgres` system user (PostgreSQL refuses to run as root, so the tests run it
#     as this user when they are root)
#   - Postfix (the relay tests run a private instance on loopback, tests/servers.py) with
#     Cyrus SASL's saslpasswd2 (sasl2-bin) and its PLAIN/LOGIN mechanisms
#     (libsasl2-modules) for SMTP AUTH; the system-wide Postfix is left unconfigured
#     ("No configuration") and never started
#   - Prometheus (Debian's prometheus): one test scrapes the workers with a real Prometheus
#     and compares its query answers with the delivery rows; the packaged service is
#     never started (policy-rc.d below)
#   - with --bootstrap, also what `make test` needs before it can create the venv: make and a
#     Python >= 3.11 with the venv module (Debian ships that as python3-venv)
#
# Idempotent and silent when everything is present. As root it installs with apt-get (one
# `apt-get update`, only when something is missing); as another user it prints what to
# install and exits 1. Tests find the binaries the same way (tests/servers.py).
set -euo pipefail

bootstrap=false
for arg in "$@"; do
    case "$arg" in
        --bootstrap) bootstrap=true ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "ensure-system-deps: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

have_postgres_binaries() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1 \
        && command -v pg_ctl >/dev/null 2>&1; then
        return 0
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && [ -x "$dir/pg_ctl" ] && return 0
    done
    return 1
}

# The first Python >= 3.11, in the Makefile's order, that can create a venv with pip.
have_python_with_venv() {
    local p
    for p in python3.13 python3.12 python3.11 python3; do
        command -v "$p" >/dev/null 2>&1 || continue
        "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || continue
        "$p" -c 'import ensurepip, venv' 2>/dev/null && return 0
        return 1  # the Makefile would pick this one, and it cannot make a venv
    done
    return 1
}

# Pinned: a new axe-core release adds rules, and a page that passed must not start failing
# on its own. Bump it on purpose (docs/desk.md, "Accessibility and browser tests").
AXE_CORE_VERSION=4.10.3
# The SHA-256 of that release's axe.min.js: the file runs inside pages under test, so it
# must be exactly the one reviewed, whatever registry or mirror npm is configured with.
AXE_CORE_SHA256=880970c081707360e64f34cea25ff91892f5bc95675b0776925b9709dd8a68bb
checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
axe_dir="$checkout/.cache/axe-core"

have_axe_core() {
    [ -s "$axe_dir/$AXE_CORE_VERSION/axe.min.js" ]
}

# `npm pack` fetches the package tarball through npm's own configuration (registry, proxy,
# cache); only axe.min.js is kept, in a folder named for the version.
fetch_axe_core() {
    have_axe_core && return 0
    local work
    work="$(mktemp -d)"
    (cd "$work" && npm pack --silent "axe-core@$AXE_CORE_VERSION" >/dev/null) \
        || { rm -rf "$work"; echo "ensure-system-deps: npm pack axe-core@$AXE_CORE_VERSION failed" >&2; return 1; }
    tar -xzf "$work/axe-core-$AXE_CORE_VERSION.tgz" -C "$work" package/axe.min.js
    if [ "$(sha256sum "$work/package/axe.min.js" | cut -d' ' -f1)" != "$AXE_CORE_SHA256" ]; then
        rm -rf "$work"
        echo "ensure-system-deps: axe-core $AXE_CORE_VERSION's axe.min.js does not have the pinned SHA-256" >&2
        return 1
    fi
    mkdir -p "$axe_dir/$AXE_CORE_VERSION"
    mv "$work/package/axe.min.js" "$axe_dir/$AXE_CORE_VERSION/axe.min.js"
    rm -rf "$work"
}

packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
have_postgres_binaries || packages+=(postgresql)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
have_axe_core || command -v npm >/dev/null 2>&1 || packages+=(npm)
[ -x /usr/sbin/postfix ] && [ -x /usr/sbin/postmap ] || packages+=(postfix)
command -v saslpasswd2 >/dev/null 2>&1 || packages+=(sasl2-bin)
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
[ -e /usr/lib/x86_64-linux-gnu/sasl2/libplain.so.2 ] || ls /usr/lib/*/sasl2/libplain.so* >/dev/null 2>&1 \
    || packages+=(libsasl2-modules)
if $bootstrap; then
    command -v make >/dev/null 2>&1 || packages+=(make)
    have_python_with_venv || packages+=(python3 python3-venv)
fi
need_user=false
id -u postgres >/dev/null 2>&1 || need_user=true

if [ ${#packages[@]} -eq 0 ] && ! $need_user; then
    fetch_axe_core
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if [ ${#packages[@]} -gt 0 ]; then
        echo "ensure-system-deps: missing: ${packages[*]}" >&2
        if command -v apt-get >/dev/null 2>&1; then
            echo "  install with: sudo apt-get install -y ${packages[*]}" >&2
        else
            echo "  install them with your system's package manager" >&2
        fi
        echo "  or run: sudo bash scripts/ensure-system-deps.sh" >&2
        exit 1
    fi
    # Not root: the tests run PostgreSQL as the current user, so no `postgres` user is needed.
    fetch_axe_core
    exit 0
fi

if [ ${#packages[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-system-deps: missing: ${packages[*]}, and apt-get is not available;" \
            "install them with your system's package manager" >&2
        exit 1
    fi
    echo "ensure-system-deps: installing ${packages[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # The tests start their own servers on free ports; keep apt from starting the packaged
    # services (a PostgreSQL on 5432 and a Redis on 6379 that nothing uses). policy-rc.d is
    # Debian's switch for that; only ours is removed afterwards.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    # Postfix asks which kind of mail system this is; the tests bring their own
    # configuration, so the system-wide one stays empty and unstarted.
    if command -v debconf-set-selections >/dev/null 2>&1; then
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# The `postgresql` package creates this user; a PostgreSQL built or installed another way
# may not have. Same home and shell as the Debian package uses.
if ! id -u postgres >/dev/null 2>&1; then
    echo "ensure-system-deps: creating the postgres system user" >&2
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
        --shell /bin/bash --comment "PostgreSQL administrator" postgres
fi

# Check the result rather than trusting apt's exit status alone.
command -v redis-server >/dev/null 2>&1 || { echo "ensure-system-deps: redis-server still missing" >&2; exit 1; }
have_postgres_binaries || { echo "ensure-system-deps: PostgreSQL binaries still missing" >&2; exit 1; }
command -v chromedriver >/dev/null 2>&1 || { echo "ensure-system-deps: chromedriver still missing" >&2; exit 1; }
[ -x /usr/sbin/postfix ] || { echo "ensure-system-deps: postfix still missing" >&2; exit 1; }
command -v saslpasswd2 >/dev/null 2>&1 || { echo "ensure-system-deps: saslpasswd2 (sasl2-bin) still missing" >&2; exit 1; }
fetch_axe_core || exit 1
command -v prometheus >/dev/null 2>&1 || { echo "ensure-system-deps: prometheus still missing" >&2; exit 1; }

#!/bin/bash
# Install what the VM test tier (tests/vm/runvm.py) needs, as root.
#
#   Debian: qemu-system-x86 linux-image-amd64 (6.1) busybox-static cpio,
#           and the newest linux-image-6.12.*+deb12-amd64 that apt offers
#   PyPI:   virtme-ng (provides `vng`), for the python3 that runs the tests
#
# Idempotent: what is already there is skipped, and `apt-get update` runs only
# when apt does not know a package it has to install (or an install fails on
# stale lists). Exits non-zero, naming exactly what to install, when it
# cannot install something.
#
# Environment: PYTHON (default python3) is the interpreter that gets
# virtme-ng; it must be the one that runs the tests.

set -u

PYTHON=${PYTHON:-python3}
DEB_PKGS="qemu-system-x86 linux-image-amd64 busybox-static cpio"
K612_RE='^linux-image-6\.12\.[0-9.]*[+]deb12-amd64$'

say() { echo "vm install: $*"; }
die() { echo "vm install: ERROR: $*" >&2; exit 1; }

installed() {   # installed PKG -> 0 when dpkg has it fully installed
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

has_candidate() {
    local c
    c=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    [ -n "$c" ] && [ "$c" != "(none)" ]
}

newest_612() {  # newest linux-image-6.12.N+deb12-amd64 apt knows, or nothing
    apt-cache search --names-only "$K612_RE" 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1
}

installed_612() {  # newest installed 6.12 Debian kernel package, or nothing
    dpkg-query -W -f='${Package} ${Status}\n' 'linux-image-6.12.*+deb12-amd64' 2>/dev/null |
        awk '$NF == "installed" && $(NF-1) == "ok" {print $1}' |
        grep -E "$K612_RE" | sort -V | tail -n 1
}

UPDATED=0
apt_update() {
    [ "$UPDATED" = 1 ] && return 0
    UPDATED=1
    say "apt-get update"
    # Partial failures (unreachable extra sources) are judged afterwards by
    # whether the packages have candidates, not by this exit status.
    apt-get update -q >/tmp/vm-install-update.log 2>&1 || tail -n 5 /tmp/vm-install-update.log >&2
}

if [ "$(id -u)" != 0 ]; then
    die "must run as root. As root, run: apt-get update && apt-get install -y --no-install-recommends $DEB_PKGS linux-image-6.12.<newest>+deb12-amd64 && $PYTHON -m pip install virtme-ng"
fi
command -v apt-get >/dev/null 2>&1 || die "no apt-get (not Debian?). Install by hand: QEMU (qemu-system-x86_64), busybox (static), cpio, a Debian 12 6.1 and 6.12 kernel in /boot, and '$PYTHON -m pip install virtme-ng'"

# --- Debian packages --------------------------------------------------------
missing=""
for p in $DEB_PKGS; do
    installed "$p" || missing="$missing $p"
done
k612=$(installed_612)
if [ -z "$k612" ]; then
    k612=$(newest_612)
    if [ -z "$k612" ]; then
        apt_update
        k612=$(newest_612)
    fi
    [ -n "$k612" ] || die "apt offers no package matching $K612_RE (is bookworm-security/bookworm-updates in the apt sources?). Install one by hand: apt-get install -y --no-install-recommends linux-image-6.12.<N>+deb12-amd64"
    missing="$missing $k612"
else
    say "6.12 kernel already installed: $k612"
fi

if [ -n "$missing" ]; then
    for p in $missing; do
        if ! has_candidate "$p"; then apt_update; break; fi
    done
    for p in $missing; do
        has_candidate "$p" || die "apt has no installation candidate for $p. Install by hand: apt-get install -y --no-install-recommends$missing"
    done
    say "apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends $missing >/tmp/vm-install-apt.log 2>&1; then
        if [ "$UPDATED" = 0 ]; then
            apt_update     # stale lists give 404s: refresh once and retry
            apt-get install -y -q --no-install-recommends $missing >/tmp/vm-install-apt.log 2>&1
        else
            false
        fi || { tail -n 20 /tmp/vm-install-apt.log >&2
                die "apt-get install failed. Install by hand: apt-get update && apt-get install -y --no-install-recommends$missing"; }
    fi
    for p in $missing; do
        installed "$p" || die "$p is still not installed after apt-get install (see /tmp/vm-install-apt.log)"
    done
else
    say "Debian packages already installed: $DEB_PKGS"
fi

# --- virtme-ng ----------------------------------------------------------------
if "$PYTHON" -c 'import virtme_ng' >/dev/null 2>&1; then
    say "virtme-ng already installed for $("$PYTHON" -c 'import sys; print(sys.executable)')"
else
    say "$PYTHON -m pip install virtme-ng"
    "$PYTHON" -m pip install -q virtme-ng >/tmp/vm-install-pip.log 2>&1 || {
        tail -n 20 /tmp/vm-install-pip.log >&2
        die "pip install failed. Install by hand: $PYTHON -m pip install virtme-ng"; }
    "$PYTHON" -c 'import virtme_ng' >/dev/null 2>&1 || die "virtme-ng installed but not importable by $PYTHON. Install by hand: $PYTHON -m pip install virtme-ng"
fi

# --- final check ------------------------------------------------------------
ls /boot/vmlinuz-6.1.*-amd64 >/dev/null 2>&1 || die "no /boot/vmlinuz-6.1.*-amd64 after install. Install by hand: apt-get install -y linux-image-amd64"
ls /boot/vmlinuz-6.12.*+deb12-amd64 >/dev/null 2>&1 || die "no /boot/vmlinuz-6.12.*+deb12-amd64 after install. Install by hand: apt-get install -y linux-image-6.12.<N>+deb12-amd64"
command -v qemu-system-x86_64 >/dev/null 2>&1 || die "no qemu-system-x86_64 after install. Install by hand: apt-get install -y qemu-system-x86"
say "ok"
exit 0

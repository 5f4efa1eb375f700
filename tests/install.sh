#!/usr/bin/env bash
# What the test suite needs on a fresh machine of this kind (root; idempotent).
# The VM tier installs its own (tests/vm/install.sh).
set -euo pipefail
need_apt=()
for pair in "losetup:mount" "fio:fio" "dmsetup:dmsetup" "strace:strace" "man:man-db" \
            "perf:linux-perf" "trace-cmd:trace-cmd" "iolatency-perf:perf-tools-unstable"; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Prometheus and node_exporter for tests/live/test_prometheus.py, which
# runs its own servers (127.0.0.1, a temporary directory each) and stops
# them. Without systemd, Debian's packages start their services from the
# postinst (invoke-rc.d, listening on every address): a policy-rc.d that
# says no keeps them stopped, and their init scripts are disabled.
need_prom=()
command -v prometheus >/dev/null 2>&1 || need_prom+=(prometheus)
command -v prometheus-node-exporter >/dev/null 2>&1 || need_prom+=(prometheus-node-exporter)
if [ ${#need_prom[@]} -gt 0 ]; then
    echo "apt-get install ${need_prom[*]} (services not started)"
    policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# tests/install.sh: no service starts while it installs\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    trap '[ -z "$made_policy" ] || rm -f "$policy"' EXIT
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_prom[@]}" >/dev/null
    for svc in "${need_prom[@]}"; do
        if [ -d /run/systemd/system ]; then
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        elif [ -x "/etc/init.d/$svc" ]; then
            update-rc.d "$svc" disable >/dev/null 2>&1 || true
            "/etc/init.d/$svc" status >/dev/null 2>&1 && "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
        fi
    done
    [ -z "$made_policy" ] || rm -f "$policy"
    trap - EXIT
fi
py_need=()
python3 -c 'import docopt' 2>/dev/null || py_need+=("docopt-ng>=0.9")
python3 -c 'import pytest' 2>/dev/null || py_need+=("pytest")
python3 -c 'import hypothesis' 2>/dev/null || py_need+=("hypothesis")
python3 -c 'import numpy' 2>/dev/null || py_need+=("numpy>=1.22")
python3 -c 'import prometheus_client' 2>/dev/null || py_need+=("prometheus_client")
if [ ${#py_need[@]} -gt 0 ]; then
    echo "pip install ${py_need[*]}"
    python3 -m pip install -q --root-user-action=ignore "${py_need[@]}"
fi

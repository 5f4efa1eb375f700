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
py_need=()
python3 -c 'import docopt' 2>/dev/null || py_need+=("docopt-ng>=0.9")
python3 -c 'import pytest' 2>/dev/null || py_need+=("pytest")
python3 -c 'import hypothesis' 2>/dev/null || py_need+=("hypothesis")
python3 -c 'import numpy' 2>/dev/null || py_need+=("numpy>=1.22")
if [ ${#py_need[@]} -gt 0 ]; then
    echo "pip install ${py_need[*]}"
    python3 -m pip install -q --root-user-action=ignore "${py_need[@]}"
fi

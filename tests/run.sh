#!/usr/bin/env bash
# The whole test suite, from a fresh Debian/Ubuntu machine: installs what the tests need
# (Debian packages when run as root, Python packages into .venv), then lints, type-checks
# and runs pytest; then, without arguments, the platform matrix (tests/platforms/README.md:
# the same suites inside Debian 13, unstable and 11 roots; EC2NET_PLATFORMS=0 skips it).
# Usage: tests/run.sh [pytest args...]   (arguments: a targeted host run, no matrix)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: python3-venv for the virtual environment; git for the install-list check;
# pkg-config, systemd and udev for meson's directories, `systemd-analyze verify` and
# `udevadm test`; iproute2, dnsmasq-base and dbus for the network-namespace lab.
DEB_PACKAGES=(python3-venv git pkg-config systemd udev iproute2 dnsmasq-base dbus man-db build-essential debhelper dh-python meson ninja-build python3-all python3-jinja2 rpm debootstrap lintian shellcheck systemd-container iputils-ping)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "tests/run.sh: missing Debian packages: ${missing[*]} (run as root to install)" >&2
    fi
fi

VENV=${EC2NET_TEST_VENV:-.venv}
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[test]'

"$VENV/bin/ruff" check ec2net tests
"$VENV/bin/ruff" format --check ec2net tests
"$VENV/bin/mypy" ec2net
"$VENV/bin/python" -m pytest "$@"

# The platform matrix, last: it needs root (debootstrap, mount namespaces) and the network the
# first time (the roots are cached under /var/cache/ec2net-roots afterwards).
if [[ $# -eq 0 && ${EC2NET_PLATFORMS:-1} != 0 ]]; then
    if [[ $EUID -ne 0 ]]; then
        echo "tests/run.sh: the platform matrix needs root (EC2NET_PLATFORMS=0 skips it)" >&2
        exit 1
    fi
    tests/platforms/run
fi

#!/usr/bin/env bash
# One suite of the project inside a platform root (run by platforms.py through enter.sh, with
# the checkout's snapshot at /src). Usage: inside.sh unit|lab|pid1|packaging
# The root's own Python runs the tests, from a venv in the root (the project installed
# editable with its test extras from PyPI, once per pyproject.toml). Results go to
# /src/.platform-results/SUITE.xml (JUnit) for the summary.
set -euo pipefail
suite=$1
cd /src

# The system CA bundle (enter.sh binds the host's over it, e.g. with a proxy's CA): pip's own
# copy of certifi knows no such CA, and only newer pips on newer Pythons use the system store.
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
fi

VENV=/opt/ec2net-venv
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [[ "$(cat "$VENV/.ec2net-stamp" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    echo "$stamp" >"$VENV/.ec2net-stamp"
fi
# The editable install points at /src/ec2net: each run's new snapshot is found there.

# The test files that use the PID-1 lab, and the other lab files.
pid1=() lab=()
for f in tests/lab/test_*.py; do
    if grep -q pid1lab "$f"; then pid1+=("$f"); else lab+=("$f"); fi
done
case $suite in
# The host's run kills 200 times; the crash-safety property does not depend on the platform,
# the Python version's part of it is covered by fewer (CI's time budget).
unit)
    export EC2NET_KILL_RUNS=${EC2NET_KILL_RUNS:-12}
    args=(tests --ignore=tests/lab --ignore=tests/test_packaging.py)
    ;;
lab) args=("${lab[@]}") ;;
pid1) args=("${pid1[@]}") ;;
packaging) args=(tests/test_packaging.py) ;;
*)
    echo "inside.sh: unknown suite $suite" >&2
    exit 2
    ;;
esac
mkdir -p .platform-results
echo "== $(. /etc/os-release && echo "$PRETTY_NAME"), $(python3 --version)," \
    "$(systemctl --version | head -n1): $suite"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -rfEs \
    --junitxml=".platform-results/$suite.xml" "${args[@]}"

#!/bin/sh
# `python -X importtime` summary (top 15 cumulative imports, median of 5 runs, plus self time
# per top-level package) for `setup IF` (hotplug), `refresh IF` (no-op) and
# `render --example dual-stack`. The set-up (fake root, IMDS mock, warm bytecode cache) is the
# benchmark's, so this only forwards to its --importtime mode.
#   tests/benchmarks/importtime.sh [--json OUT.json]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-"$here/../../.venv/bin/python"}
exec "$python" "$here/bench.py" --importtime "$@"

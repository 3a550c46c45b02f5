#!/usr/bin/env bash
# Set up the CPU environment if needed, then run every test in parallel (pytest-xdist). Extra arguments go to
# pytest and come last, so they win: `bash tools/test.sh -m "not slow"` is the quick loop, `-n 0` runs serially.
# TEST_WORKERS sets the number of processes (default: the CPU count, at least 2, at most 8).
# docs/development.md has the commands and their timings.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
bash tools/install_cpu.sh
CPUS=$(nproc 2>/dev/null || echo 2)
WORKERS=${TEST_WORKERS:-$(( CPUS < 2 ? 2 : (CPUS > 8 ? 8 : CPUS) ))}
"$VENV/bin/python" -m pytest tests -q -p no:cacheprovider -n "$WORKERS" --dist loadfile --no-loadscope-reorder "$@"

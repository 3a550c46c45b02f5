#!/usr/bin/env bash
# Set up the CPU environment if needed, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
bash tools/install_cpu.sh
"$VENV/bin/python" -m pytest tests -q -p no:cacheprovider "$@"

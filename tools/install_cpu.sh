#!/usr/bin/env bash
# Create a virtualenv (default .venv, or $VENV) with the pinned CPU stack and also-pcdet (editable).
# Safe to re-run: an existing venv is reused and pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements/cpu.txt
"$VENV/bin/python" -c "import also_pcdet, torch, spconv; print('also_pcdet', also_pcdet.__version__, '| torch', torch.__version__, '| spconv', spconv.__version__)"

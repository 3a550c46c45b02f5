#!/usr/bin/env bash
# Create a virtualenv (default .venv, or $VENV) with the pinned CPU stack and also-pcdet (editable).
# Safe to re-run: an existing venv is reused, and pip runs again only when requirements/cpu.txt or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
# what was installed: skip pip (4 s) while the pins and pyproject.toml are unchanged
STAMP="$VENV/.also_pcdet_cpu_install"
WANT=$(cat requirements/cpu.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
    echo "$VENV: up to date with requirements/cpu.txt and pyproject.toml"
    exit 0
fi
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements/cpu.txt
"$VENV/bin/python" -c "import also_pcdet, torch, spconv; print('also_pcdet', also_pcdet.__version__, '| torch', torch.__version__, '| spconv', spconv.__version__)"
echo "$WANT" > "$STAMP"

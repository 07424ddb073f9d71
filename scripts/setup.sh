#!/usr/bin/env bash
# Idempotent set-up: virtual environment, this package (editable, with test extras), NLTK data,
# torchvision's ImageNet MobileNetV2 weights (in torch's hub cache).
# Re-runs only when pyproject.toml, the set-up scripts or the project folder changed, or when the
# NLTK data or the weights are missing.
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.mango-setup"
key="$(cat pyproject.toml scripts/setup.sh scripts/install_nltk_data.py scripts/install_weights.py | sha256sum | cut -c1-16) $(pwd)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]] && "$VENV/bin/python" scripts/install_nltk_data.py --check >/dev/null 2>&1 \
        && "$VENV/bin/python" scripts/install_weights.py --check >/dev/null 2>&1; then
    echo "set-up: $VENV is up to date, nothing to do"
    exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "set-up: $PYTHON is missing or older than Python 3.10; set PYTHON=/path/to/python3.10+"
    exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "set-up: creating virtual environment $VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! "$PYTHON" -m venv "$VENV"; then
        echo "set-up: '$PYTHON -m venv' failed. On Debian/Ubuntu install the venv module first:"
        echo "        apt-get install python3-venv   (or set PYTHON=/path/to/python3.10+)"
        exit 1
    fi
fi
echo "set-up: installing mangonet and its dependencies into $VENV (the first time takes a few minutes)"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e ".[test]" > "$VENV/pip-install.log" 2>&1; then
    grep -v "is ignored: it is neither" "$VENV/pip-install.log" | tail -40
    echo "set-up: pip install failed (full log: $VENV/pip-install.log)"
    exit 1
fi
"$VENV/bin/python" scripts/install_nltk_data.py
"$VENV/bin/python" scripts/install_weights.py
echo "$key" > "$stamp"
echo "set-up: done"

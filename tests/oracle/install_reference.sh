#!/usr/bin/env bash
# Install the reference OFA package (PyPI `ofa`, whose top-level package is also named
# `ofa`) into its own folder DEST, so it can only be imported by tests/oracle/run_reference.py
# in a subprocess. Idempotent: DEST/.installed marks a finished install.
set -euo pipefail
DEST="${1:?usage: install_reference.sh DEST}"
PYTHON="${PYTHON:-.venv/bin/python}"
[ -f "$DEST/.installed" ] && exit 0
mkdir -p "$DEST"
"$PYTHON" -m pip install --quiet --no-deps --target "$DEST" ofa==0.1.0.post202307202001 pyyaml tqdm pillow
touch "$DEST/.installed"

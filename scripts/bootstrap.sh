#!/usr/bin/env bash
# Creates .venv (if missing) and installs the server, the Python client and the
# development tools into it, pinned by constraints.txt. Safe to run again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt \
  -e client/python -e ".[dev,fast]"

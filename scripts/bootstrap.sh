#!/usr/bin/env bash
# Creates .venv (if missing) and installs the server, the Python client and the
# development tools into it, pinned by constraints.txt. Safe to run again: when
# nothing that decides the install changed since the last one (a stamp in .venv
# holds their hashes), it installs nothing and needs no package index.
# BOOTSTRAP_FORCE=1 installs anyway. It says what it does, one line per step, on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${PYTHON:-python3}
UV_VERSION=0.13.10
started=$SECONDS
step() { echo "bootstrap: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $("$python" -c 'import sys; print("Python", sys.version.split()[0])')"
  "$python" -m venv .venv
fi
# What the install depends on: the dependency lists, this script, the interpreter.
# (The packages are installed editable: source changes need no reinstall.)
stamp=.venv/.pdsidecar-bootstrap
wanted=$(
  {
    sha256sum pyproject.toml constraints.txt client/python/pyproject.toml scripts/bootstrap.sh
    .venv/bin/python -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
)
if [ "${BOOTSTRAP_FORCE:-}" != 1 ] && [ -x .venv/bin/pdsidecar ] \
  && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
  echo "bootstrap: .venv is up to date (BOOTSTRAP_FORCE=1 reinstalls)" >&2
  exit 0
fi
rm -f "$stamp"
# uv installs the same pins as pip would, in a fraction of pip's time and CPU (it
# matters on a 2-core CI machine that installs the other toolchains meanwhile).
step "installing uv $UV_VERSION (the installer) into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
step "installing pdsidecar, its Python client and the development tools into .venv" \
  "(pinned by constraints.txt; about 20 s on a fresh machine, more when uv downloads)"
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is
# set (this machine, CI) every process would compile grpc, httpx and redis from source
# at each start: about 2 s more for each sidecar process a test starts.
.venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python \
  -c constraints.txt -e client/python -e ".[dev,fast]"
echo "$wanted" >"$stamp"
step ".venv is ready ($((SECONDS - started)) s)"

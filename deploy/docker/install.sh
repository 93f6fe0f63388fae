#!/bin/sh
# Installs pdsidecar and its runtime dependencies (no development tools) into a new
# virtual environment, pinned by constraints.txt.
#
#   deploy/docker/install.sh VENV [SOURCE_DIR]     (extras: $PDSIDECAR_EXTRAS, default "fast")
#
# The Dockerfile's build stage runs exactly this script, and scripts/check_deploy.sh
# runs it in a fresh venv on every CI run, so the image's install step cannot rot
# unnoticed even though no Docker engine runs in CI.
set -eu
venv=${1:?usage: install.sh VENV [SOURCE_DIR]}
src=${2:-.}
extras=${PDSIDECAR_EXTRAS:-fast}
python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --no-input \
  -c "$src/constraints.txt" "$src/client/python" "$src[$extras]"
"$venv/bin/pdsidecar" --version

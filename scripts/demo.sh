#!/usr/bin/env bash
# Sets up the project (once: bootstrap.sh installs nothing when nothing changed) and
# runs the sidecar against the built-in Pipedream emulator on 127.0.0.1:50051
# (Ctrl-C stops it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/bootstrap.sh"
exec "$root/.venv/bin/pdsidecar" serve --emulator "$@"

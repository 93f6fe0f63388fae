#!/usr/bin/env bash
# Sets up the project (once: bootstrap.sh installs nothing when nothing changed) and
# runs the sidecar against the built-in Pipedream emulator on 127.0.0.1:50051
# (Ctrl-C stops it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
echo "demo: setting up .venv (scripts/bootstrap.sh; installs only the first time)" >&2
"$root/scripts/bootstrap.sh"
echo "demo: starting pdsidecar serve --emulator $* (Ctrl-C stops it)" >&2
exec "$root/.venv/bin/pdsidecar" serve --emulator "$@"

#!/usr/bin/env bash
# A fleet on one machine (needs redis-server): the Pipedream emulator, a redis-server and
# three sidecars, first each on its own, then sharing through Redis. Prints how many
# Pipedream token requests and account reads each way cost. Sets up .venv first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/bootstrap.sh"
# harness/ (the Redis the tests use) is imported from the checkout.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$root/.venv/bin/python" "$root/scripts/fleet_demo.py" "$@"

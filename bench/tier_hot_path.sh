#!/usr/bin/env bash
# The hot path with and without the shared tier: GetCredentials on one cached account
# against the Health/Check floor, one sidecar, ghz by reflection over loopback TCP,
# three interleaved rounds. The shared tier must not slow the hot path (the issue's
# target: GetCredentials >= 0.95 x Health/Check RPS with [fleet] on).
#   bench/tier_hot_path.sh            (needs redis-server, Go for ghz, and .venv)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH=$root/.venv/bin:$PATH
ghz=$(python -c "from pathlib import Path; from bench.ghz import ensure_ghz; print(ensure_ghz(Path('.tools/bin')))" | tail -n 1)
d=$(mktemp -d /tmp/pd-tier-XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$d"' EXIT
port=$(python -c "from harness.ports import free_port; print(free_port())")
emu=$(python -c "from harness.ports import free_port; print(free_port())")
redis-server --port 0 --unixsocket "$d/redis.sock" --save "" --appendonly no >"$d/redis.log" 2>&1 &
pdsidecar emulator --port "$emu" >"$d/emulator.log" 2>&1 &
sleep 2
head -c 32 /dev/urandom | base64 >"$d/key"
python -c "from pdsidecar_emulator import DEMO_CLIENT_SECRET as s; print(s)" >"$d/secret"
client_id=$(python -c "from pdsidecar_emulator import DEMO_CLIENT_ID as s; print(s)")
printf 'pipedream_url = "http://127.0.0.1:%s"\n[connections.default]\nclient_id = "%s"\nclient_secret_file = "%s/secret"\n' \
  "$emu" "$client_id" "$d" >"$d/plain.toml"
cp "$d/plain.toml" "$d/tier.toml"
printf '[fleet]\nurl = "unix://%s/redis.sock"\nkey_files = ["%s/key"]\n' "$d" "$d" >>"$d/tier.toml"
data='{"account": {"project_id": "proj_demo", "account_id": "apn_demoNotion1"}, "source": "notion"}'
rps() { # <call> <data>
  "$ghz" --insecure --call "$1" -d "$2" -z 8s -c 50 --connections 5 --duration-stop wait \
    --format json "127.0.0.1:$port" | python -c "import json,sys; print(round(json.load(sys.stdin)['rps']))"
}
for round in 1 2 3; do
  for config in plain tier; do
    pdsidecar serve --config "$d/$config.toml" --listen "127.0.0.1:$port" >"$d/sidecar.log" 2>&1 &
    sidecar=$!
    sleep 2
    "$ghz" --insecure --call pdsidecar.v1.CredentialsService/GetCredentials -d "$data" -z 3s \
      -c 50 "127.0.0.1:$port" >/dev/null  # warm: token, account, memo
    health=$(rps grpc.health.v1.Health/Check '{}')
    get=$(rps pdsidecar.v1.CredentialsService/GetCredentials "$data")
    python -c "print(f'round $round {\"$config\":5}: Health/Check $health RPS, GetCredentials $get RPS, ratio {$get / $health:.3f}')"
    kill "$sidecar"
    wait "$sidecar" 2>/dev/null || true
  done
done

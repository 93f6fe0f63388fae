#!/usr/bin/env bash
# The client libraries' own checks, as CI runs them (scripts/test.sh):
#   Go:         go vet, go test -race (client/go; the build cache makes reruns quick)
#   TypeScript: tsc --strict (tsconfig.json), node --test on the compiled tests
# A language whose toolchain is missing is skipped with a warning, except under
# CI=true, where that is an error (scripts/install_toolchain.sh installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[test_clients] %s\n' "$*" >&2; }
missing() {
  if [[ "${CI:-}" == "true" ]]; then
    log "ERROR: $1; CI needs every language"
    exit 1
  fi
  log "WARNING: skipping $1"
}
elapsed() { echo "$(($(date +%s) - $1))s"; }

if command -v go >/dev/null 2>&1; then
  t=$(date +%s)
  (cd "$root/client/go" && go vet ./... && go test -race -count=1 ./...)
  log "Go: vet and test -race in $(elapsed "$t")"
else
  missing "Go: 'go' is not on PATH"
fi

if command -v node >/dev/null 2>&1 && [[ -x "$root/client/ts/node_modules/.bin/tsc" ]]; then
  t=$(date +%s)
  (cd "$root/client/ts" && node_modules/.bin/tsc -p . && node --test --test-reporter=dot dist/test/*.test.js)
  log "TypeScript: tsc --strict and node --test in $(elapsed "$t")"
else
  missing "TypeScript: node or client/ts/node_modules (scripts/install_toolchain.sh)"
fi

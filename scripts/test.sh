#!/usr/bin/env bash
# The whole check, as CI runs it: set up, lint, type-check, verify the generated
# code and the contract, then run the test suite.
#
# Steps that do not depend on each other overlap, so a fresh clone on two cores is
# done in minutes: the Python environment and the other languages' toolchains are
# installed side by side, and the deployment check and mypy run in the background
# while the client libraries and pytest run; their output follows pytest's.
# pytest runs on two workers (pytest-xdist); PYTEST_WORKERS=0 runs it in one process.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
step() { printf '\n== %s\n' "$*"; }

logs=$(mktemp -d)
jobs_started=()
cleanup() {
  for pid in "${jobs_started[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$logs"
}
trap cleanup EXIT
# start NAME COMMAND...: runs COMMAND in the background, its output kept for `finish`.
start() {
  local name=$1
  shift
  ("$@" >"$logs/$name.log" 2>&1 && echo 0 >"$logs/$name.rc" || echo $? >"$logs/$name.rc") &
  jobs_started+=("$!")
  echo "$!" >"$logs/$name.pid"
}
# finish NAME TITLE: waits for a started command and prints its output under TITLE;
# returns its exit status.
finish() {
  wait "$(cat "$logs/$1.pid")" || true
  step "$2"
  cat "$logs/$1.log"
  local rc
  rc=$(cat "$logs/$1.rc")
  [ "$rc" = 0 ] || echo "FAILED: $2 (exit $rc)" >&2
  return "$rc"
}

step "setting up the python environment and the other languages' toolchains, side by side"
start bootstrap scripts/bootstrap.sh
if [ -x scripts/install_toolchain.sh ]; then
  start toolchain scripts/install_toolchain.sh
fi
finish bootstrap "python environment"
export PATH="$root/.venv/bin:$PATH"
# After the bootstrap: it builds the project in its tree (egg-info).
start deploy scripts/check_deploy.sh
if [ -x scripts/install_toolchain.sh ]; then
  finish toolchain "toolchains for the other languages (buf plugins, Go, Node, Java)"
fi
[ -f .tools/env.sh ] && . .tools/env.sh

step "contract: buf lint"
buf lint

if [ -x scripts/check_generated.sh ]; then
  step "generated code is up to date; no breaking change against main"
  scripts/check_generated.sh
fi

# After the generated-code check, which regenerates the code mypy reads in place.
start mypy mypy

step "ruff"
ruff check .
ruff format --check .

step "layers: import-linter contracts (pyproject.toml)"
lint-imports

step "client libraries: Go vet and test -race, TypeScript tsc --strict and node --test, Java mvn package"
scripts/test_clients.sh

step "pytest (on ${PYTEST_WORKERS:-2} workers)"
status=0
pytest -n "${PYTEST_WORKERS:-2}" "$@" || status=$?

finish mypy "mypy --strict (ran beside the steps above)" || status=1
finish deploy "deployment files: hadolint, Kubernetes schemas, the image's install script (ran beside the steps above)" || status=1
exit "$status"

#!/usr/bin/env bash
# The whole check, as CI runs it: set up, lint, type-check, verify the generated
# code and the contract, then run the test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
step() { printf '\n== %s\n' "$*"; }

step "python environment"
scripts/bootstrap.sh
export PATH="$root/.venv/bin:$PATH"

if [ -x scripts/install_toolchain.sh ]; then
  step "toolchains for the other languages (buf plugins, Go, Node, Java)"
  scripts/install_toolchain.sh
fi
[ -f .tools/env.sh ] && . .tools/env.sh

step "contract: buf lint"
buf lint

if [ -x scripts/check_generated.sh ]; then
  step "generated code is up to date; no breaking change against main"
  scripts/check_generated.sh
fi

step "deployment files: hadolint, Kubernetes schemas, the image's install script"
scripts/check_deploy.sh

step "ruff"
ruff check .
ruff format --check .

step "client libraries: Go vet and test -race, TypeScript tsc --strict and node --test"
scripts/test_clients.sh

step "layers: import-linter contracts (pyproject.toml)"
lint-imports

step "mypy --strict"
mypy

step "pytest"
pytest "$@"

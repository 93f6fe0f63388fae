#!/usr/bin/env bash
# Installs, into the project-local .tools/ (gitignored), every pinned tool that
# `scripts/generate`, `scripts/check_generated.sh` and the cross-language tests
# need, and prefetches the client libraries' dependencies:
#
#   .tools/py/        a venv with buf, grpcio-tools and mypy-protobuf (Python codegen)
#   .tools/bin/       buf (link), protoc-gen-go, protoc-gen-go-grpc, protoc and
#                     protoc-gen-grpc-java (Maven Central executables)
#   client/ts/node_modules   from package-lock.json (protoc-gen-es, Connect, tsc)
#   Go module cache and Maven local repository: client/go and client/java deps
#
# Needs go, node/npm, java/mvn and python3 on PATH. Idempotent: each step is
# skipped when the pinned version is already in place. The pins below are the
# only place generator versions are chosen; the runtime libraries they must
# match are pinned in client/go/go.mod, client/ts/package.json and
# client/java/pom.xml.
set -euo pipefail

# --- pins -------------------------------------------------------------------
BUF_VERSION=1.75.0
GRPCIO_TOOLS_VERSION=1.85.0     # same grpcio-tools as the server's dev environment
MYPY_PROTOBUF_VERSION=5.1.0
PROTOC_GEN_GO_VERSION=v1.36.12  # = google.golang.org/protobuf in client/go/go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
PROTOC_VERSION=4.36.2           # Maven's protoc; = protobuf-java in client/java/pom.xml
GRPC_JAVA_VERSION=1.83.1        # = grpc-java in client/java/pom.xml; 1.84+ publish no
                                # protoc-gen-grpc-java executables on Maven Central
MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.11.0
# ----------------------------------------------------------------------------

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
bin="$tools/bin"
stamps="$tools/stamps"
mkdir -p "$bin" "$stamps"

log() { printf '[install_toolchain] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { log "missing '$1' on PATH: $2"; exit 1; }; }
stamped() { [[ -f "$stamps/$1" ]]; }
quiet() { # run a chatty command; show its output only when it fails
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [[ $rc -ne 0 ]]; then printf '%s\n' "$out" >&2; log "failed ($rc): $*"; exit "$rc"; fi
}
stamp() { touch "$stamps/$1"; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

started=$(date +%s)

# --- Python codegen venv (buf, grpc_tools.protoc, mypy-protobuf) -------------
need python3 "install Python 3.11+"
py_stamp="py-buf$BUF_VERSION-grpcio-tools$GRPCIO_TOOLS_VERSION-mypy-protobuf$MYPY_PROTOBUF_VERSION"
if ! stamped "$py_stamp" || [[ ! -x "$tools/py/bin/buf" ]]; then
  t=$(date +%s)
  log "creating .tools/py (buf $BUF_VERSION, grpcio-tools $GRPCIO_TOOLS_VERSION, mypy-protobuf $MYPY_PROTOBUF_VERSION)"
  rm -rf "$tools/py"
  python3 -m venv "$tools/py"
  "$tools/py/bin/pip" install --quiet --disable-pip-version-check --no-input \
    "buf-bin==$BUF_VERSION" \
    "grpcio-tools==$GRPCIO_TOOLS_VERSION" "grpcio==$GRPCIO_TOOLS_VERSION" \
    "mypy-protobuf==$MYPY_PROTOBUF_VERSION" \
    "protobuf==7.36.2" "types-protobuf==7.35.1.20260906" "typing_extensions==4.16.0"
  stamp "$py_stamp"
  log "  done in $(elapsed "$t")"
fi
ln -sf ../py/bin/buf "$bin/buf"
"$bin/buf" --version | grep -qx "$BUF_VERSION" || { log "buf is not $BUF_VERSION"; exit 1; }

# --- Go plugins ------------------------------------------------------------------
need go "install Go 1.24+"
go_stamp="go-protoc-gen-go$PROTOC_GEN_GO_VERSION-grpc$PROTOC_GEN_GO_GRPC_VERSION"
if ! stamped "$go_stamp" || [[ ! -x "$bin/protoc-gen-go" || ! -x "$bin/protoc-gen-go-grpc" ]]; then
  t=$(date +%s)
  log "go install protoc-gen-go@$PROTOC_GEN_GO_VERSION protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  GOBIN="$bin" GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  stamp "$go_stamp"
  log "  done in $(elapsed "$t")"
fi
# The client module's dependencies, and a warm build cache for the example.
if [[ -f "$root/client/go/go.mod" ]]; then
  t=$(date +%s)
  (cd "$root/client/go" && go mod download && go build ./...)
  log "client/go: modules downloaded and built in $(elapsed "$t")"
fi

# --- Node: protoc-gen-es, Connect, TypeScript (exact versions, package-lock) --
need npm "install Node.js 20+ with npm"
if [[ -f "$root/client/ts/package-lock.json" ]]; then
  lock_sum=$(sha256sum "$root/client/ts/package-lock.json" | cut -c1-16)
  if ! stamped "npm-$lock_sum" || [[ ! -x "$root/client/ts/node_modules/.bin/protoc-gen-es" ]]; then
    t=$(date +%s)
    log "npm ci in client/ts"
    (cd "$root/client/ts" && npm ci --no-audit --no-fund --loglevel=error)
    rm -f "$stamps"/npm-*
    stamp "npm-$lock_sum"
    log "  done in $(elapsed "$t")"
  fi
fi

# --- Java: protoc and protoc-gen-grpc-java from Maven Central ----------------
need mvn "install Maven 3.8+ and a JDK 17+"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) classifier=linux-x86_64 ;;
  Linux-aarch64) classifier=linux-aarch_64 ;;
  Darwin-x86_64) classifier=osx-x86_64 ;;
  Darwin-arm64) classifier=osx-aarch_64 ;;
  *) log "no protoc executable on Maven Central for $(uname -sm)"; exit 1 ;;
esac
mvn_exe() { # groupId artifactId version -> .tools/bin/<name>
  local group=$1 artifact=$2 version=$3 name=$4 tmp
  tmp=$(mktemp -d)
  quiet mvn -B -q "$MAVEN_DEPENDENCY_PLUGIN:copy" \
    -Dartifact="$group:$artifact:$version:exe:$classifier" -DoutputDirectory="$tmp"
  install -m 0755 "$tmp"/*.exe "$bin/$name"
  rm -rf "$tmp"
}
java_stamp="java-protoc$PROTOC_VERSION-grpc-java$GRPC_JAVA_VERSION-$classifier"
if ! stamped "$java_stamp" || [[ ! -x "$bin/protoc" || ! -x "$bin/protoc-gen-grpc-java" ]]; then
  t=$(date +%s)
  log "Maven Central: protoc $PROTOC_VERSION, protoc-gen-grpc-java $GRPC_JAVA_VERSION ($classifier)"
  mvn_exe com.google.protobuf protoc "$PROTOC_VERSION" protoc
  mvn_exe io.grpc protoc-gen-grpc-java "$GRPC_JAVA_VERSION" protoc-gen-grpc-java
  stamp "$java_stamp"
  log "  done in $(elapsed "$t")"
fi
"$bin/protoc" --version | grep -q "${PROTOC_VERSION#4.}" || { log "protoc is not $PROTOC_VERSION"; exit 1; }
# The client's and the example's dependencies and build plugins, so later
# builds need no resolution (go-offline misses a few plugin deps; a quiet
# package build fetches them all).
if [[ -f "$root/client/java/pom.xml" ]]; then
  t=$(date +%s)
  quiet mvn -B -q -f "$root/client/java/pom.xml" package -DskipTests
  log "client/java: dependencies fetched and built in $(elapsed "$t")"
fi

# For shells and scripts/test.sh: `. .tools/env.sh` puts .tools/bin (buf, protoc,
# the plugins) on PATH.
cat >"$tools/env.sh" <<'ENV'
# Generated by scripts/install_toolchain.sh; source it from bash.
PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bin:$PATH"
export PATH
ENV

log "toolchain ready in $(elapsed "$started"): $(ls "$bin" | tr '\n' ' ')"

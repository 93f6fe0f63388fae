#!/usr/bin/env bash
# Generates the Python messages, gRPC stubs and .pyi types from proto/ into the
# pdsidecar-client package. protoc names Python modules after the proto path
# (pdsidecar/v1/...), which would collide with the server's `pdsidecar`
# package, so the output moves under `pdsidecar_client/` and its absolute
# imports are rewritten to match.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/client/python/src/pdsidecar_client/v1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$tmp" --grpc_python_out="$tmp" \
  --mypy_out="$tmp" --mypy_grpc_out="$tmp" \
  "$root"/proto/pdsidecar/v1/*.proto

mkdir -p "$out"
find "$out" -name '*_pb2*' -delete
for f in "$tmp"/pdsidecar/v1/*; do
  sed -e 's/^from pdsidecar\.v1 import/from pdsidecar_client.v1 import/' \
      -e 's/^import pdsidecar\.v1\./import pdsidecar_client.v1./' \
      -e 's/\bpdsidecar\.v1\.credentials_pb2\b/pdsidecar_client.v1.credentials_pb2/g' \
      "$f" > "$out/$(basename "$f")"
done

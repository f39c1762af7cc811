#!/usr/bin/env bash
# Regenerate the Python code for proto/tasktide/v1 into clients/python/tasktide/v1, and for KEDA's
# external scaler contract (proto/keda) into services/externalscaler (served by the registry).
# With --check, regenerate into a scratch folder and fail when the committed code differs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/clients/python"
scaler="$root/services/externalscaler"
if [ "${1:-}" = "--check" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  out="$scratch/client"
  scaler="$scratch/externalscaler"
fi
mkdir -p "$out/tasktide/v1" "$scaler"
python -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$root"/proto/tasktide/v1/*.proto
printf '"""Generated from proto/tasktide/v1 by scripts/gen_proto.sh. Do not edit."""\n' \
  > "$out/tasktide/v1/__init__.py"
# Messages only: the registry serves the service from its descriptor (common/rpc.py), and clients
# such as KEDA bring their own stubs.
python -m grpc_tools.protoc -I "$root/proto/keda" \
  --python_out="$scaler" --pyi_out="$scaler" \
  "$root"/proto/keda/externalscaler.proto
printf '"""Generated from proto/keda (KEDA'"'"'s external scaler) by scripts/gen_proto.sh. Do not edit."""\n' \
  > "$scaler/__init__.py"
if [ "${1:-}" = "--check" ]; then
  stale=0
  diff -r -q "$out/tasktide/v1" "$root/clients/python/tasktide/v1" -x __pycache__ || stale=1
  diff -r -q "$scaler" "$root/services/externalscaler" -x __pycache__ || stale=1
  if [ "$stale" = 1 ]; then
    echo "generated code is stale: run scripts/gen_proto.sh and commit the result" >&2
    exit 1
  fi
  echo "generated code is up to date"
fi

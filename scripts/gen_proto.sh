#!/usr/bin/env bash
# Regenerate the Python code for proto/tasktide/v1 into clients/python/tasktide/v1.
# With --check, regenerate into a scratch folder and fail when the committed code differs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/clients/python"
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out/tasktide/v1"
python -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$root"/proto/tasktide/v1/*.proto
printf '"""Generated from proto/tasktide/v1 by scripts/gen_proto.sh. Do not edit."""\n' \
  > "$out/tasktide/v1/__init__.py"
if [ "${1:-}" = "--check" ]; then
  if ! diff -r -q "$out/tasktide/v1" "$root/clients/python/tasktide/v1" -x __pycache__; then
    echo "generated code is stale: run scripts/gen_proto.sh and commit the result" >&2
    exit 1
  fi
  echo "generated code is up to date"
fi

#!/usr/bin/env bash
# Regenerate the Go code for proto/tasktide/v1 into clients/go/tasktidepb.
# Uses protoc from grpcio-tools in the project's .venv (make install) and the Go plugins at the
# versions below (protoc-gen-go matches go.mod's google.golang.org/protobuf), installed into clients/go/.bin from the Go module proxy on first use.
# With --check, generate into a scratch folder and fail when the committed code differs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python="${PYTHON:-$root/.venv/bin/python}"
protoc_gen_go_version=$(cd "$here" && go list -m -f '{{.Version}}' google.golang.org/protobuf)  # as in go.mod
protoc_gen_go_grpc_version=v1.6.1

export GOBIN="$here/.bin"
if [ ! -x "$GOBIN/protoc-gen-go" ] || ! "$GOBIN/protoc-gen-go" --version | grep -q "$protoc_gen_go_version"; then
  go install "google.golang.org/protobuf/cmd/protoc-gen-go@$protoc_gen_go_version"
fi
if [ ! -x "$GOBIN/protoc-gen-go-grpc" ] || ! "$GOBIN/protoc-gen-go-grpc" --version | grep -q "${protoc_gen_go_grpc_version#v}"; then
  go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$protoc_gen_go_grpc_version"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
PATH="$GOBIN:$PATH" "$python" -m grpc_tools.protoc -I "$root/proto" \
  --go_out="$out" --go_opt=module=github.com/tasktide/tasktide/clients/go \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/tasktide/tasktide/clients/go \
  "$root"/proto/tasktide/v1/*.proto

if [ "${1:-}" = "--check" ]; then
  if ! diff -r -q "$out/tasktidepb" "$here/tasktidepb"; then
    echo "generated Go code is stale: run clients/go/gen.sh and commit the result" >&2
    exit 1
  fi
  echo "generated Go code is up to date"
  exit 0
fi
rm -f "$here"/tasktidepb/*.pb.go
cp "$out"/tasktidepb/*.pb.go "$here/tasktidepb/"

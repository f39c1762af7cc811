#!/usr/bin/env bash
# Build the pinned grpcurl into scripts/.bin/grpcurl (used by tests/test_grpcurl.py), from the Go
# module proxy with go.sum checking; nothing is built when that binary, at that version, is already
# there. Prints the binary's path. Callers at the same time wait for one build (a lock beside it).
set -euo pipefail
GRPCURL=github.com/fullstorydev/grpcurl/cmd/grpcurl
GRPCURL_VERSION=v1.9.4
bin="$(cd "$(dirname "$0")" && pwd)/.bin"
mkdir -p "$bin"
exec 9>"$bin/.grpcurl.lock"
flock 9
if [ -x "$bin/grpcurl" ] && go version -m "$bin/grpcurl" \
  | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/fullstorydev/grpcurl[[:space:]]+$GRPCURL_VERSION[[:space:]]"; then
  echo "$bin/grpcurl"
  exit 0
fi
GOBIN="$bin" GOFLAGS=-mod=mod go install "$GRPCURL@$GRPCURL_VERSION" >&2
echo "$bin/grpcurl"

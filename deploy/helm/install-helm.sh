#!/usr/bin/env bash
# Build the pinned helm into deploy/helm/.bin/helm (used by tests/test_helm.py), from the Go module
# proxy with go.sum checking; nothing is built when the pinned version is already there.
# Prints the binary's path. A cold build takes minutes (8 on a busy 2-core machine); then seconds.
set -euo pipefail
HELM_VERSION=v3.19.0
bin="$(cd "$(dirname "$0")" && pwd)/.bin"
if [ -x "$bin/helm" ] && go version -m "$bin/helm" | grep -Eq "^[[:space:]]+mod[[:space:]]+helm.sh/helm/v3[[:space:]]+$HELM_VERSION[[:space:]]"; then
  echo "$bin/helm"
  exit 0
fi
mkdir -p "$bin"
# helm's own release builds set its version string the same way (`helm version` shows it).
GOBIN="$bin" go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
echo "$bin/helm"

#!/usr/bin/env bash
# Build the pinned helm into deploy/helm/.bin/helm (used by tests/test_helm.py), from the Go module
# proxy with go.sum checking; nothing is built when that binary, built this way, is already there.
# Prints the binary's path. A cold build takes minutes (8 on a busy 2-core machine); then seconds.
# Callers at the same time wait for one build (a lock beside the binary).
set -euo pipefail
HELM_VERSION=v3.19.0
KUBE_MINOR=34  # the Kubernetes release of helm's client-go (v0.34): its default for --kube-version
bin="$(cd "$(dirname "$0")" && pwd)/.bin"
# Set as helm's own release builds set them: its version string and its default Kubernetes version.
ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/chartutil pkg/lint/rules; do
  ldflags="$ldflags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$KUBE_MINOR"
done
mkdir -p "$bin"
exec 9>"$bin/.helm.lock"
flock 9
if [ -x "$bin/helm" ] && info=$(go version -m "$bin/helm") \
  && grep -Eq "^[[:space:]]+mod[[:space:]]+helm.sh/helm/v3[[:space:]]+$HELM_VERSION[[:space:]]" <<<"$info" \
  && grep -qF -- "$ldflags" <<<"$info"; then
  echo "$bin/helm"
  exit 0
fi
GOBIN="$bin" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
echo "$bin/helm"

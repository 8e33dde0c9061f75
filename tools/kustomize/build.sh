#!/usr/bin/env bash
# Builds the kustomize CLI from its Go module into the aiconn cache, the same way
# tools/k8s/build.sh builds the control plane: these machines cannot download release
# binaries, but they reach the Go module proxy. The manifests test renders manifests/ with it.
# 5.8.1 is the newest release that builds with the Go toolchain here (5.8.3 needs Go 1.27).
# Prints the binary's path on stdout; skips the build when it exists.
set -euo pipefail
KUSTOMIZE_VERSION=5.8.1
dir=${AICONN_CACHE:-$HOME/.cache/aiconn}/kustomize/${KUSTOMIZE_VERSION}
if [[ -x $dir/kustomize ]]; then
  echo "$dir/kustomize"
  exit 0
fi
mkdir -p "$dir"
start=$(date +%s)
echo "building kustomize v${KUSTOMIZE_VERSION} into $dir (first time: a minute or two)" >&2
CGO_ENABLED=0 GOBIN=$dir go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/kustomize/api/provenance.version=v${KUSTOMIZE_VERSION}" \
  "sigs.k8s.io/kustomize/kustomize/v5@v${KUSTOMIZE_VERSION}" >&2
echo "kustomize built in $(( $(date +%s) - start )) s" >&2
echo "$dir/kustomize"

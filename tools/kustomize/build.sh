#!/usr/bin/env bash
# Builds the kustomize CLI from its Go module into the aiconn cache, the same way
# tools/k8s/build.sh builds the control plane: these machines cannot download release
# binaries, but they reach the Go module proxy. The manifests test renders manifests/ with it.
# 5.8.1 is the newest release that builds with the Go toolchain here (5.8.3 needs Go 1.27).
# Prints the binary's path on stdout; skips the build when it exists.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
KUSTOMIZE_VERSION=5.8.1
dir=$(cache_dir "kustomize/${KUSTOMIZE_VERSION}")
go_install kustomize "$KUSTOMIZE_VERSION" "$dir" "a minute or two" \
  "sigs.k8s.io/kustomize/kustomize/v5@v${KUSTOMIZE_VERSION}" \
  -ldflags "-s -w -X sigs.k8s.io/kustomize/api/provenance.version=v${KUSTOMIZE_VERSION}"
echo "$dir/kustomize"

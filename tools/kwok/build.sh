#!/usr/bin/env bash
# Builds KWOK (Kubernetes WithOut Kubelet) from its Go module into the aiconn cache and writes
# the stage definitions it needs next to it: v0.8.0 exits with "no stages found" unless
# `--config` names them. The stages (node initialize, node heartbeat with a Lease, pod
# ready/complete/delete) come from the module's own kustomize/stage directory, so they match
# the binary. KWOK plays the kubelet of simulated GPU nodes: the tiers' sites at scale.
# Prints the directory holding `kwok` and `stages.yaml`; skips the build when both exist.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
KWOK_VERSION=0.8.0
dir=$(cache_dir "kwok/${KWOK_VERSION}")
go_install kwok "$KWOK_VERSION" "$dir" "a few minutes" "sigs.k8s.io/kwok/cmd/kwok@v${KWOK_VERSION}" \
  -ldflags "-s -w"
if [[ ! -s $dir/stages.yaml ]]; then
  src=$(go mod download -json "sigs.k8s.io/kwok@v${KWOK_VERSION}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  stages=$src/kustomize/stage
  tmp=$(mktemp "$dir/stages.XXXXXX")
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    printf -- '---\n' >>"$tmp"
    cat "$stages/$f" >>"$tmp"
  done
  mv "$tmp" "$dir/stages.yaml"
fi
echo "$dir"

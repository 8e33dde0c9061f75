#!/usr/bin/env bash
# Builds the Kubernetes binaries the dev cluster runs from Go modules into the envtest-style
# asset directory (KUBEBUILDER_ASSETS): etcd, kube-apiserver and kube-controller-manager (the
# control plane), kube-scheduler, kubelet, kube-proxy and kubectl (the cluster). The machines this
# runs on cannot download release binaries, but they reach the Go module proxy.
# Prints the asset directory on stdout; builds only the binaries that are missing, in one
# `go build` so shared packages compile once.
set -euo pipefail
K8S_VERSION=1.37.2
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
assets=${KUBEBUILDER_ASSETS:-$(cache_dir "k8s/${K8S_VERSION}-linux-amd64")}
missing=()
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  [[ -x $assets/$cmd ]] || missing+=("k8s.io/kubernetes/cmd/$cmd")
done
if [[ ${#missing[@]} -eq 0 && -x $assets/etcd ]]; then
  echo "$assets"
  exit 0
fi
mkdir -p "$assets"
cd "$here"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION}"
minor=$(cut -d. -f2 <<<"$K8S_VERSION")
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
start=$(date +%s)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "building ${missing[*]##*/} v${K8S_VERSION} into $assets (first time: many minutes)" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$assets/" "${missing[@]}" >&2
fi
if [[ ! -x $assets/etcd ]]; then
  echo "building etcd into $assets" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$assets/etcd" go.etcd.io/etcd/server/v3 >&2
fi
echo "Kubernetes binaries built in $(( $(date +%s) - start )) s" >&2
echo "$assets"

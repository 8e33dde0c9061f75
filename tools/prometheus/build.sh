#!/usr/bin/env bash
# Builds Prometheus 3 from its Go module into the aiconn cache, so the SLA engine's tests run
# against both Debian's Prometheus 2.x and 3.x (3.x changed range selection, name quoting and
# scrape negotiation). The machines this runs on reach the Go module proxy but no release
# downloads; the module github.com/prometheus/prometheus v0.316.0 is Prometheus 3.16.0.
# `remove_all_sd` leaves out every service-discovery plugin but file and HTTP, and
# `enable_kubernetes_sd` adds Kubernetes' back: the dev cluster's Prometheus discovers the SLAs'
# pods as the manifests' PodMonitor selects them (Debian's build has no Kubernetes discovery).
# Without `builtinassets` the web UI's assets are not embedded: the binary is smaller and quicker
# to build, and the HTTP API the engine queries is all there.
# Prints the directory holding `prometheus`; skips the build when it exists.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
PROM_MODULE_VERSION=0.316.0
PROM_VERSION=3.16.0
PROM_SD=k8s
dir=$(cache_dir "prometheus-${PROM_VERSION}-${PROM_SD}")
v=github.com/prometheus/common/version
go_install prometheus "$PROM_VERSION" "$dir" "many minutes" \
  "github.com/prometheus/prometheus/cmd/prometheus@v${PROM_MODULE_VERSION}" -tags remove_all_sd,enable_kubernetes_sd \
  -ldflags "-s -w -X $v.Version=${PROM_VERSION} -X $v.Branch=module -X $v.Revision=v${PROM_MODULE_VERSION}"
echo "$dir"

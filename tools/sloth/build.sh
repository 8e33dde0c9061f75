#!/usr/bin/env bash
# Builds Sloth (the Prometheus SLO rule generator, github.com/slok/sloth) from its Go module into
# the aiconn cache. The tests check aiconn's SLO export with Sloth itself: `sloth validate` and
# `sloth generate` on the export of every sample SLA, and the rules it generates are loaded into a
# real Prometheus beside aiconn's own PrometheusRule. The machines this runs on reach the Go
# module proxy but no release downloads.
# Prints the directory holding `sloth`; skips the build when it exists.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
SLOTH_VERSION=0.16.0
dir=$(cache_dir "sloth-${SLOTH_VERSION}")
go_install sloth "$SLOTH_VERSION" "$dir" "a few minutes" \
  "github.com/slok/sloth/cmd/sloth@v${SLOTH_VERSION}" \
  -ldflags "-s -w -X github.com/slok/sloth/internal/info.Version=v${SLOTH_VERSION}"
echo "$dir"

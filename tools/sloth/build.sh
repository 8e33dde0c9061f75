#!/usr/bin/env bash
# Builds Sloth (the Prometheus SLO rule generator, github.com/slok/sloth) from its Go module into
# the aiconn cache. The tests check aiconn's SLO export with Sloth itself: `sloth validate` and
# `sloth generate` on the export of every sample SLA, and the rules it generates are loaded into a
# real Prometheus beside aiconn's own PrometheusRule. The machines this runs on reach the Go
# module proxy but no release downloads.
# Prints the directory holding `sloth`; skips the build when it exists.
set -euo pipefail
SLOTH_VERSION=0.16.0
dir=${AICONN_CACHE:-$HOME/.cache/aiconn}/sloth-${SLOTH_VERSION}
if [[ -x $dir/sloth ]]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"
start=$(date +%s)
echo "building sloth v${SLOTH_VERSION} into $dir (first time: a few minutes)" >&2
tmp=$(mktemp -d "$dir/bin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOBIN=$tmp go install -trimpath \
  -ldflags "-s -w -X github.com/slok/sloth/internal/info.Version=v${SLOTH_VERSION}" \
  "github.com/slok/sloth/cmd/sloth@v${SLOTH_VERSION}" >&2
mv "$tmp/sloth" "$dir/sloth"
echo "sloth built in $(( $(date +%s) - start )) s" >&2
echo "$dir"

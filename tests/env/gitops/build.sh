#!/usr/bin/env bash
# Builds the health checker (main.go: kstatus and Argo CD's Lua engine) from the Go module proxy.
# Idempotent: the binary is cached under the hash of the module and its sources, so a second run
# returns at once. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(cd "$here" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
cache_root=${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}
out="$cache_root/health-check-$key"
if [ -x "$out/health-check" ]; then
  echo "$out/health-check"
  exit 0
fi
mkdir -p "$cache_root"
partial=$(mktemp -d "$out.XXXXXX")
chmod 755 "$partial"
echo "[health-check] building kstatus (sigs.k8s.io/cli-utils) and gopher-lua" >&2
(cd "$here" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
  go build -trimpath -ldflags "-s -w" -o "$partial/health-check" .)
# A concurrent build may have finished first: keep whichever landed.
mv -T "$partial" "$out" 2>/dev/null || rm -rf "$partial"
echo "$out/health-check"

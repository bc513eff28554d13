#!/usr/bin/env bash
# Builds the local test cluster's binaries from the published Go modules:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm.
# Idempotent: the output directory is keyed by the hash of the pinned versions and the
# wrapper modules, so a second run returns at once. Prints the directory holding bin/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

key=$(cd "$here" && cat versions.env k8s/go.mod k8s/go.sum etcd/go.mod etcd/go.sum \
      etcd/main.go k8s/cmd/*/main.go | sha256sum | cut -c1-16)
cache_root=${LOCKSTEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockstep}
out="$cache_root/controlplane-$key"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

log() { echo "[controlplane] $*" >&2; }
rm -rf "$out.tmp" && mkdir -p "$out.tmp/bin"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
minor=${K8S#*.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S -X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"

start=$(date +%s)
log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl v$K8S"
(cd "$here/k8s" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp/bin/" ./cmd/...)
log "building etcd v$ETCD"
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out.tmp/bin/etcd" .)
log "installing kwok v$KWOK and helm v$HELM"
GOBIN="$out.tmp/bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK"
GOBIN="$out.tmp/bin" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM" "helm.sh/helm/v3/cmd/helm@v$HELM"

# kwok >= 0.8 ships no built-in stages: take the standard ones from its module.
stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@v$KWOK/kustomize/stage"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  cat "$stages/$f"
  echo "---"
done > "$out.tmp/kwok-stages.yaml"

echo "$(( $(date +%s) - start ))" > "$out.tmp/build-seconds"
touch "$out.tmp/.complete"
rm -rf "$out" && mv "$out.tmp" "$out"
log "done in $(cat "$out/build-seconds")s: $out"
echo "$out"

#!/usr/bin/env bash
# Regenerates k8s/go.mod, etcd/go.mod and their go.sum from versions.env.
# Run after changing a version; the results are committed so builds are reproducible.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
minor_patch=${K8S#*.}   # 36.3

# k8s.io/kubernetes pins its staging modules to v0.0.0 with local replace lines, which a
# consumer ignores; replace each one with its published v0.<minor>.<patch> tag instead.
upstream_mod=$(go mod download -json "k8s.io/kubernetes@v$K8S" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
go_line=$(grep -m1 '^go ' "$upstream_mod")
godebug_line=$(grep -m1 '^godebug ' "$upstream_mod" || true)

cd "$here/k8s"
{
  echo "module lockstep.dev/testenv/k8s"
  echo
  echo "$go_line"
  [ -n "$godebug_line" ] && echo && echo "$godebug_line"
} > go.mod
rm -f go.sum
replaces=()
while read -r mod; do
  replaces+=("-replace=$mod=$mod@v0.$minor_patch")
done < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$upstream_mod")
go mod edit "${replaces[@]}" -replace="k8s.io/kubernetes=k8s.io/kubernetes@v$K8S"
go mod edit -require="k8s.io/kubernetes@v$K8S" -require="k8s.io/kubectl@v0.$minor_patch"
go mod tidy

cd "$here/etcd"
printf 'module lockstep.dev/testenv/etcd\n\n%s\n' "$go_line" > go.mod
rm -f go.sum
go mod edit -require="go.etcd.io/etcd/server/v3@v$ETCD"
go mod tidy

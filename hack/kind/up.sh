#!/usr/bin/env bash
# lockstep on kind: creates a cluster, builds and loads the operator image, installs the chart
# with Prometheus, Grafana, PostgreSQL and the sample app, then releases it three times:
#   v1 (schema 001)                  -> Ready
#   v2 (schema 002, expand)          -> analysed on its error ratio, promoted
#   v3 (answers 1 request in 3 with an error) -> rolled back automatically
# Needs docker, kind, kubectl and helm. See docs/kind.md.
#
#   hack/kind/up.sh                   everything above (idempotent: run it again to resume)
#   hack/kind/up.sh manifests         only print the sample's DatabaseMigration and releases
#
# Environment: CLUSTER (default lockstep), IMAGE (default lockstep/operator:dev).
set -euo pipefail

CLUSTER=${CLUSTER:-lockstep}
IMAGE=${IMAGE:-lockstep/operator:dev}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
context="kind-$CLUSTER" # the kubeconfig context kind creates for a cluster
prometheus=http://prometheus-operated.monitoring.svc:9090

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
kc() { kubectl --context "$context" "$@"; }
hm() { helm --kube-context "$context" "$@"; }

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "up.sh: $1 is needed: $2" >&2
    exit 1
  fi
}

# The DatabaseMigration shop-db with the migrations up to $1 (001 or 002).
migration() {
  cat <<EOF
apiVersion: lockstep.dev/v1alpha1
kind: DatabaseMigration
metadata:
  name: shop-db
  namespace: shop
spec:
  database:
    urlFrom:
      secretKeyRef: {name: shop-db, key: url}
  policy:
    backup: always
  backup:
    destination:
      persistentVolumeClaim: {claimName: backups}
  source:
    migrations:
      - version: "001"
        name: create_users
        up: CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);
        down: DROP TABLE users;
EOF
  if [ "$1" = 002 ]; then
    cat <<EOF
      - version: "002"
        name: add_email
        up: ALTER TABLE users ADD COLUMN email text;
        down: ALTER TABLE users DROP COLUMN email;
EOF
  fi
}

# The FeatureRelease web: release $1 of podinfo $2, needing schema $3; $4 (true or false) makes
# one request in three fail.
release() {
  cat <<EOF
apiVersion: lockstep.dev/v1alpha1
kind: FeatureRelease
metadata:
  name: web
  namespace: shop
spec:
  release: $1
  replicas: 2
  selector:
    matchLabels: {app: web}
  service: web
  template:
    metadata:
      labels: {app: web, app.kubernetes.io/version: "$2"}
    spec:
      containers:
        - name: web
          image: ghcr.io/stefanprodan/podinfo:$2
          env:
            - {name: PODINFO_RANDOM_ERROR, value: "$4"}
          ports:
            - {name: http, containerPort: 9898}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
  migration:
    ref: shop-db
    targetVersion: "$3"
  strategy:
    blueGreen:
      scaleDownDelaySeconds: 30
  analysis:
    prometheus:
      address: $prometheus
    interval: 15s
    duration: 90s
    failureLimit: 2
    metrics:
      - name: error-ratio
        max: 0.05
        query: >-
          (sum(rate(http_requests_total{namespace="shop",lockstep_dev_color="{{color}}",status=~"5.."}[1m]))
          or vector(0))
          / sum(rate(http_requests_total{namespace="shop",lockstep_dev_color="{{color}}"}[1m]))
  rollback:
    automatic: true
    database: none
EOF
}

if [ "${1:-}" = manifests ]; then
  migration 001
  echo ---
  migration 002
  echo ---
  release v1 6.7.0 001 false
  echo ---
  release v2 6.7.1 002 false
  echo ---
  release v3 6.7.1 002 true
  exit 0
fi

need docker "https://docs.docker.com/get-docker/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need helm "https://helm.sh/docs/intro/install/"

step "kind cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 5m
fi

step "operator image $IMAGE"
docker build --tag "$IMAGE" "$repo"
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "Prometheus and Grafana (kube-prometheus-stack)"
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
helm repo update prometheus-community
hm upgrade --install monitoring prometheus-community/kube-prometheus-stack \
  --namespace monitoring --create-namespace --wait --timeout 10m \
  --set alertmanager.enabled=false \
  --set prometheus.prometheusSpec.scrapeInterval=10s \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --set grafana.sidecar.dashboards.searchNamespace=ALL

step "lockstep (the chart, with its ServiceMonitor, alerts and dashboard)"
repository=${IMAGE%:*}
tag=${IMAGE##*:}
hm upgrade --install lockstep "$repo/helm/lockstep" \
  --namespace lockstep-system --create-namespace --wait --timeout 5m \
  --set image.repository="$repository" --set image.tag="$tag" --set image.pullPolicy=Never \
  --set metrics.serviceMonitor.enabled=true \
  --set metrics.prometheusRule.enabled=true \
  --set metrics.grafanaDashboard.enabled=true

step "PostgreSQL"
kc create namespace shop --dry-run=client --output yaml | kc apply --filename -
if ! kc --namespace shop get secret postgres >/dev/null 2>&1; then
  password=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24)
  kc --namespace shop create secret generic postgres --from-literal=password="$password"
  kc --namespace shop create secret generic shop-db \
    --from-literal=url="postgresql://postgres:$password@postgres.shop.svc:5432/shop"
fi
kc apply --filename "$here/postgres.yaml"
kc --namespace shop rollout status statefulset/postgres --timeout 5m

step "the sample app: its Service, clients, scraping and backup volume"
kc apply --filename "$here/shop.yaml"

step "release v1 (schema 001)"
{ migration 001; echo ---; release v1 6.7.0 001 false; } | kc apply --filename -
kc --namespace shop wait --for=condition=Ready dbm/shop-db fr/web --timeout 10m

step "release v2 (schema 002): backup, expand, green, switch, analysis, promotion"
{ migration 002; echo ---; release v2 6.7.1 002 false; } | kc apply --filename -
kc --namespace shop wait --for=jsonpath='{.status.stableRelease}'=v2 fr/web --timeout 15m

step "release v3, failing one request in three: rolled back"
release v3 6.7.1 002 true | kc apply --filename -
kc --namespace shop wait --for=jsonpath='{.status.phase}'=RolledBack fr/web --timeout 15m

step "done"
kc --namespace shop get featurereleases,databasemigrations
kc --namespace shop get fr web \
  --output jsonpath='{range .status.history[*]}{.release}{"\t"}{.outcome}{"\t"}{.reason}{"\n"}{end}'
cat <<EOF

Grafana (admin / prom-operator), dashboard "lockstep":
  kubectl --context $context --namespace monitoring port-forward svc/monitoring-grafana 3000:80
Prometheus (alerts: Lockstep*):
  kubectl --context $context --namespace monitoring port-forward svc/prometheus-operated 9090
Remove everything:
  kind delete cluster --name $CLUSTER
EOF

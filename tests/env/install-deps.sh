#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine, idempotently:
# PostgreSQL and Prometheus from Debian, uv, and the locked Python environment in .venv.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v busybox >/dev/null 2>&1 || missing+=(busybox)  # the backup scripts are also tested under busybox sh (alpine)
# The operator image is built with buildah on a base made by mmdebstrap; shell scripts are linted.
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[deps] installing ${missing[*]} from Debian" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Where an init system runs, the packages start their own services; the tests start their
  # own servers on free ports, so stop those (only the ones just installed).
  for service in postgresql prometheus; do
    case " ${missing[*]} " in *" $service "*) $sudo service "$service" stop >/dev/null 2>&1 || true ;; esac
  done
fi

if ! python3 -m uv --version >/dev/null 2>&1; then
  echo "[deps] installing uv" >&2
  python3 -m pip install --quiet --disable-pip-version-check "uv==0.13.9" 2>/dev/null \
    || python3 -m pip install --quiet --user --disable-pip-version-check "uv==0.13.9"
fi
UV_PYTHON_DOWNLOADS=never python3 -m uv sync --frozen --quiet

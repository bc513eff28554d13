# lockstep: the two commands that matter are `make demo` and `make test` (see README.md).
PY := .venv/bin/python
PYTEST := $(PY) -m pytest
export UV_PYTHON_DOWNLOADS := never

.PHONY: deps controlplane test unit integration e2e lint demo bench campaign crds clean

deps:                 ## PostgreSQL, Prometheus (Debian), uv and the locked Python environment
	tests/env/install-deps.sh

controlplane: deps    ## etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok, helm (cached)
	tests/env/controlplane/build.sh

test: controlplane    ## everything: unit, integration (PostgreSQL) and end-to-end (cluster) tests
	$(PYTEST) -v -ra --durations=15 tests/unit tests/integration tests/e2e

unit: deps            ## the fast tests of pure logic, no servers
	$(PYTEST) -q tests/unit

integration: deps
	$(PYTEST) -ra tests/integration

e2e: controlplane
	$(PYTEST) -ra tests/e2e

lint: deps            ## ruff and mypy
	$(PY) -m ruff check operator tests examples
	$(PY) -m ruff format --check operator tests examples
	$(PY) -m mypy

demo: controlplane    ## a whole release of the sample app on the local cluster, with an automatic rollback
	$(PY) -m tests.env.demo

RELEASES ?= 100
SEED ?= 1
campaign: controlplane ## RELEASES seeded, randomised releases of the sample app, judged (docs/benchmarks.md)
	$(PY) -m tests.campaign --releases $(RELEASES) --seed $(SEED) --out campaign.json

bench: controlplane   ## the benchmarks of tests/bench (figures in docs/benchmarks.md)
	$(PY) tests/bench/bench_lint.py
	$(PY) tests/bench/bench_write_stall.py
	$(PY) tests/bench/bench_release.py
	$(PY) tests/bench/bench_dataplane.py

crds: deps            ## regenerate crds/ and helm/lockstep/crds/ from the models
	$(PY) -m lockstep crds

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache

# lockstep: the two commands that matter are `make demo` and `make test` (see README.md).
PY := .venv/bin/python
PYTEST := $(PY) -m pytest
export UV_PYTHON_DOWNLOADS := never
# Where `make up` keeps the environment (state, data, logs); one environment per directory.
LOCKSTEP_ENV ?= /tmp/lockstep-env
export LOCKSTEP_ENV

.PHONY: deps controlplane test unit integration e2e lint demo up down env bench bench-scale campaign crds image monitoring gitops-fixtures clean fuzz coverage

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

fuzz: deps            ## the model of both reconcilers, searched much longer than in `make test`
	LOCKSTEP_MODEL_EXAMPLES=$${LOCKSTEP_MODEL_EXAMPLES:-20000} LOCKSTEP_MODEL_STEPS=$${LOCKSTEP_MODEL_STEPS:-50} \
		$(PYTEST) -q -p no:cacheprovider tests/unit/test_model_based.py

coverage: controlplane  ## the whole suite under coverage, operator processes included, combined
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest -q tests/unit tests/integration tests/e2e
	$(PY) -m coverage combine -q
	$(PY) -m coverage json -q -o coverage.json
	$(PY) -m coverage report --fail-under=90

lint: deps            ## ruff and mypy
	$(PY) -m ruff check operator tests examples
	$(PY) -m ruff format --check operator tests examples
	$(PY) -m mypy

demo: controlplane    ## a whole release of the sample app on the local cluster, with an automatic rollback
	$(PY) -m tests.env.demo

up: deps              ## start the local environment in the background, print what to export
	@tests/env/controlplane/build.sh >/dev/null
	@$(PY) -m tests.env up

down:                 ## stop everything `make up` started, remove its directory
	@$(PY) -m tests.env down

env:                  ## the export lines of the running environment: eval "$$(make -s env)"
	@$(PY) -m tests.env env

RELEASES ?= 100
SEED ?= 1
campaign: controlplane ## RELEASES seeded, randomised releases of the sample app, judged (docs/benchmarks.md)
	$(PY) -m tests.campaign --releases $(RELEASES) --seed $(SEED) --out campaign.json

bench: controlplane   ## the benchmarks of tests/bench (figures in docs/benchmarks.md)
	$(PY) tests/bench/bench_lint.py
	$(PY) tests/bench/bench_write_stall.py
	$(PY) tests/bench/bench_release.py
	$(PY) tests/bench/bench_diff.py
	$(PY) tests/bench/bench_dataplane.py
	$(PY) tests/bench/bench_scale_failover.py

bench-scale: controlplane  ## one operator, 2,000 releases and 2,000 migrations, an idle hour (~1.5 h)
	$(PY) tests/bench/bench_scale.py --releases 2000 --namespaces 10 --idle-minutes 60

crds: deps            ## regenerate crds/ and helm/lockstep/crds/ from the models
	$(PY) -m lockstep crds

image: deps           ## build the operator image with buildah (cached; make test runs it too)
	$(PY) -m tests.env.image

monitoring: deps      ## copy monitoring/ (alerts, dashboard) into the chart and manifests/monitoring
	$(PY) -m tests.env.monitoring

gitops-fixtures: controlplane  ## capture the objects of docs/gitops.md again from the e2e tests
	LOCKSTEP_UPDATE_GITOPS_FIXTURES=1 $(PYTEST) -ra tests/e2e/test_gitops_health.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache

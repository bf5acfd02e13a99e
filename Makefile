# Thin task runner: every recipe is a few commands; longer ones live in scripts/.
UV_VERSION := 0.13.8
# An absolute path: recipes that cd elsewhere (buf in protos/) still find it.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --no-sync
BUF := $(RUN) buf
SVC ?=
TEST_PATHS := $(if $(SVC),services/$(SVC),)

.DEFAULT_GOAL := help
.PHONY: help install run test test-scale test-containers images bench soak lint fmt protos protos-check breaking dist release-api cov pins

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

.tools/bin/uv: # uv itself, when the machine has none
	python3 -m venv .tools && .tools/bin/pip install --quiet uv==$(UV_VERSION)

install: $(if $(shell command -v uv 2>/dev/null),,.tools/bin/uv) ## install every package (uv workspace)
	$(UV) sync --all-packages --quiet --compile-bytecode
	$(RUN) python -m compileall -q libs services scripts > /dev/null

run: install ## run the whole stack in the foreground (Ctrl-C stops it)
	$(RUN) python scripts/run_stack.py

test: install ## run the tests (SVC=users: one service only)
	$(RUN) pytest $(TEST_PATHS)

test-scale: install ## every service's suite through PgBouncer (transaction pooling, 2 server connections) on a Redis Cluster (3 masters, 3 replicas)
	TEST_PGBOUNCER_POOL=2 TEST_REDIS_CLUSTER=1 $(RUN) pytest -p no:cacheprovider services libs/meshplate-core/tests

test-containers: install ## build the images (local stand-ins) and run compose.yaml under Podman: the README walk, a restart, each image checked
	$(RUN) pytest -p no:cacheprovider e2e/containers_stack.py

images: ## build every service's image (LOCAL_IMAGES=1: on local stand-ins, no registry), sizes reported
	LOCAL_IMAGES=$(LOCAL_IMAGES) bash scripts/images.sh

bench: install ## measure the speed targets (e2e/bench_*.py; MONOLITH_KIT=<kit> beside the monolith)
	$(RUN) pytest -p no:cacheprovider -s -q e2e/bench_*.py

soak: install ## five minutes of mixed traffic through Envoy: no 5xx, memory settles (SOAK_S=300)
	$(RUN) pytest -p no:cacheprovider -s -q e2e/soak_mixed.py

lint: install ## ruff, mypy --strict, buf lint/format, stale generated code
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy
	cd protos && $(BUF) lint && $(BUF) format -d --exit-code
	$(RUN) bash scripts/protos_check.sh
	$(RUN) bash scripts/api_breaking.sh

fmt: install ## format and autofix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .
	cd protos && $(BUF) format -w

protos: install ## regenerate libs/meshplate-api from protos/
	$(RUN) bash scripts/protos.sh

protos-check: install ## fail when libs/meshplate-api is stale
	$(RUN) bash scripts/protos_check.sh

breaking: install ## compare the protos with main's (buf breaking, FILE rules)
	cd protos && $(BUF) breaking --against '../.git#branch=main,subdir=protos'

dist: install ## build meshplate-api's wheel and sdist (protos, typed stubs, client) into dist/
	$(UV) build --package meshplate-api --out-dir dist --quiet
	@ls dist

release-api: install ## record the contracts of meshplate-api's version (what buf breaking compares with)
	$(RUN) bash scripts/release_api.sh

cov: install ## tests with coverage (fails under 90 %)
	$(RUN) coverage run -m pytest $(TEST_PATHS)
	$(RUN) coverage report --fail-under=90

pins: install ## copy the resolved versions into constraint-dependencies
	$(UV) lock --quiet && $(RUN) python scripts/pin_constraints.py

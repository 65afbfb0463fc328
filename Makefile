# The developer's entry points. On a fresh machine: `make demo`, then `make test`.
# Every target that needs the virtualenv runs `setup` first (fast when nothing changed).

PYTHON := .venv/bin/python
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k process_backend -x"`.
PYTEST_ARGS ?=
# The runner image scripts/build-images.sh builds and the docker backend and its tests run.
RUNNER_IMAGE ?= pacta-runner:local
export RUNNER_IMAGE

.DEFAULT_GOAL := help
.PHONY: help setup images demo up down test lint bench bench-all clean infra-check

help:
	@echo "make setup   create .venv, install requirements-dev.txt and Azurite (scripts/bootstrap.sh)"
	@echo "make images  start a Docker engine if none answers, build the runner image $(RUNNER_IMAGE) (and its base)"
	@echo "make demo    upload a sample portfolio and follow its run through every phase"
	@echo "make up      start Azurite and the in-process Functions host in the background"
	@echo "make down    stop what 'make up' started"
	@echo "make test    run every test against real local services (REQUIRE_SERVICES=1)"
	@echo "make lint    ruff and mypy"
	@echo "make infra-check  the infra/ templates offline: parse, checkov, and their agreement with the app (tests/infra)"
	@echo "make bench   the performance figures of docs/performance.md (make bench-all: every bench/*.py)"
	@echo "make clean   remove the process backend's run directories (.local/process-runs)"

setup:
	@bash scripts/bootstrap.sh

images:
	@bash scripts/docker-engine.sh
	@bash scripts/build-images.sh

# $(call docker_images,required|optional,what happens without them): the engine and the runner image for demo,
# up and test. Where they cannot be had (no root, no apt-get) it says so and goes on, unless required.
define docker_images
	@if bash scripts/docker-engine.sh && bash scripts/build-images.sh; then :; \
	elif [ "$(1)" = required ]; then echo "make: CI=true requires the Docker engine and $(RUNNER_IMAGE): see above" >&2; exit 1; \
	else echo "make: no Docker engine or no $(RUNNER_IMAGE) (see above): $(2)" >&2; fi
endef

demo: setup
	$(call docker_images,optional,the demo runs on the process backend)
	$(PYTHON) -m local_runner demo

up: setup
	$(call docker_images,optional,runs use the process backend)
	$(PYTHON) -m local_runner up

down:
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m local_runner down; else echo "nothing to stop: no .venv"; fi

# pytest exits 5 when it collected no tests: say so, rather than leave a bare make error.
test: setup
	$(call docker_images,$(if $(filter true,$(CI)),required,optional),the Docker tests fail under REQUIRE_SERVICES=1)
	@bash scripts/browser.sh || { [ "$(CI)" != true ] && echo "make: no Chromium (see above): the runs pages' browser tests fail under REQUIRE_SERVICES=1" >&2; }
	@REQUIRE_SERVICES=1 $(PYTHON) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy function_app orchestrations runner local_runner

# Figures, never assertions. `bench`: the figures of docs/performance.md's table (issue 14's goals), each bench
# printing both sides and the ratio, and the time the whole took; `bench-all` adds the others (image builds,
# the concurrency cap), e.g. `.venv/bin/python bench/image_build.py --cold` for a base image build too.
PERFORMANCE_BENCHES = parser large_upload upload_concurrency burst backend_latency history list_runs
bench: setup images
	@start=$$(date +%s); for name in $(PERFORMANCE_BENCHES); do echo "== bench/$$name.py"; began=$$(date +%s); \
	$(PYTHON) "bench/$$name.py" || exit 1; echo "(bench/$$name.py: $$(( $$(date +%s) - began )) s)"; done; \
	echo "make bench: $$(( $$(date +%s) - start )) s in all"

bench-all: setup images
	@for script in bench/[!_]*.py; do [ -e "$$script" ] || continue; echo "== $$script"; $(PYTHON) "$$script" || exit 1; done

clean:
	rm -rf .local/process-runs

# The Bicep templates, offline (no Azure, no Bicep compiler): tree-sitter-bicep, checkov and the agreement tests,
# with the tools in their own venv (.local/infra-venv, scripts/infra-venv.sh). `make test` runs them too.
infra-check: setup
	@bash scripts/infra-venv.sh >/dev/null
	@REQUIRE_SERVICES=1 $(PYTHON) -m pytest tests/infra $(PYTEST_ARGS)

# The developer's entry points. On a fresh machine: `make demo`, then `make test`.
# Every target that needs the virtualenv runs `setup` first (fast when nothing changed).

PYTHON := .venv/bin/python
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k process_backend -x"`.
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup demo up down test lint clean

help:
	@echo "make setup   create .venv, install requirements-dev.txt and Azurite (scripts/bootstrap.sh)"
	@echo "make demo    upload a sample portfolio and follow its run through every phase"
	@echo "make up      start Azurite and the in-process Functions host in the background"
	@echo "make down    stop what 'make up' started"
	@echo "make test    run every test against real local services (REQUIRE_SERVICES=1)"
	@echo "make lint    ruff and mypy"
	@echo "make clean   remove the process backend's run directories (.local/process-runs)"

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(PYTHON) -m local_runner demo

up: setup
	$(PYTHON) -m local_runner up

down:
	@if [ -x $(PYTHON) ]; then $(PYTHON) -m local_runner down; else echo "nothing to stop: no .venv"; fi

# pytest exits 5 when it collected no tests: say so, rather than leave a bare make error.
test: setup
	@REQUIRE_SERVICES=1 $(PYTHON) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy function_app orchestrations runner local_runner

clean:
	rm -rf .local/process-runs

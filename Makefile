# The README's two set-up commands: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/cidadao-trio serve

# Three workers on two cores: much of a worker's time is spent waiting on the servers,
# browsers and Redis its tests start (46.7 s with three, 53-57 s with two, here). A file's
# tests stay on one worker, so a server shared by a module starts once. Files are handed out in collection order, the slowest first
# (tests/conftest.py), not by test count: no slow file left for the end on one worker. A
# missing Chromium or redis-server stops it with one line.
# Bytecode is written (PYTHONDONTWRITEBYTECODE may be set here): otherwise every worker
# rewrites the assertions of hypothesis's modules, and every server a test starts compiles src.
# Servers and terminal commands are forked from a preloaded interpreter (tests/forkserver.py).
test: $(STAMP)
	@$(BIN)/python -m tests.tools
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder

# ruff (rules in pyproject.toml) over the code and its tests and benchmarks, then mypy on src
# (strict on protocol, session, broker, store and records). .ci/run runs it before the suite.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Benchmarks (issue 6): their own venv and node modules, never the project's dependencies.
BENCH_VENV := benchmarks/.venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
LOADGEN_STAMP := benchmarks/loadgen/node_modules/.installed

$(BENCH_STAMP): pyproject.toml benchmarks/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e . -r benchmarks/requirements.txt
	touch $(BENCH_STAMP)

$(LOADGEN_STAMP): benchmarks/loadgen/package.json benchmarks/loadgen/package-lock.json
	npm ci --prefix benchmarks/loadgen --no-audit --no-fund
	touch $(LOADGEN_STAMP)

bench: $(BENCH_STAMP) $(LOADGEN_STAMP)
	$(BENCH_VENV)/bin/python -m benchmarks all

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache

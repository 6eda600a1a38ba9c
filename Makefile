# Two-command setup: `make test` and `make train` build .venv from nothing when it is missing.
PYTHON ?= python3
VENV ?= .venv
# CPU torch by default; GPU users override, e.g. `make TORCH_SPEC="torch==2.13.0 --index-url ..." test`.
TORCH_SPEC ?= torch==2.13.0
TRAIN_CONFIG ?= configs/qm9_quick.yaml

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# MACE in an environment of its own, for scripts/compare_mace.py (never a dependency of segnn)
MACE_VENV ?= .venv-mace
MACE_SPEC ?= mace-torch==0.3.16

.PHONY: venv test test-all train lint clean mace-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

train: $(STAMP)
	$(BIN)/segnn train --config $(TRAIN_CONFIG)

mace-venv: $(MACE_VENV)/.installed

$(MACE_VENV)/.installed:
	test -x $(MACE_VENV)/bin/python || $(PYTHON) -m venv $(MACE_VENV)
	$(MACE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MACE_VENV)/bin/python -m pip install --quiet $(TORCH_SPEC)
	$(MACE_VENV)/bin/python -m pip install --quiet $(MACE_SPEC)
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check segnn tests scripts

clean:
	rm -rf $(VENV) $(MACE_VENV) runs .pytest_cache

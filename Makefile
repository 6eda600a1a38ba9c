# Two-command setup: `make test` and `make train` build .venv from nothing when it is missing.
PYTHON ?= python3
VENV ?= .venv
# CPU torch by default; GPU users override, e.g. `make TORCH_SPEC="torch==2.13.0 --index-url ..." test`.
TORCH_SPEC ?= torch==2.13.0
TRAIN_CONFIG ?= configs/qm9_quick.yaml

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-all train lint clean

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

lint: $(STAMP)
	$(BIN)/ruff check segnn tests scripts

clean:
	rm -rf $(VENV) runs .pytest_cache

# Two entry points for a newcomer: `make run` (the pipeline) and `make test` (every test).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Stage commands in dvc.yaml call `python`: make it the project's.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test setup clean-venv

run: setup
	$(BIN)/dvc repro

test: setup test-deps
	$(BIN)/python -m pytest

# The virtual environment, rebuilt when the pinned requirements change.
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# What only the tests need beyond the Python environment.
.PHONY: test-deps
test-deps:

clean-venv:
	rm -rf $(VENV)

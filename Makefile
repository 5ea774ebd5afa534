# Two commands for a fresh machine (see README):  make demo  |  make test
# Each creates or reuses .venv; stamps make a second run reinstall nothing unless pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU wheel; later ranges in pyproject.toml are satisfied by it.
$(VENV)/.stamp-torch: | $(BIN)/python
	$(PIP) install torch==2.13.0
	touch $@

$(VENV)/.stamp-core: pyproject.toml $(VENV)/.stamp-torch
	$(PIP) install -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-core
	$(PIP) install -e ".[dev,web,ray]"
	touch $@

demo: $(VENV)/.stamp-core
	$(BIN)/genrekit demo

test: $(VENV)/.stamp-dev
	$(BIN)/python -m pytest

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)

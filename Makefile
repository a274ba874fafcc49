# Two commands do everything on a fresh machine: `make run` and `make test`.
# Each creates .venv at the repo root when it is missing and installs the pinned stack.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline
export RAY_DEDUP_LOGS ?= 0

.PHONY: run test lint setup
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/autocurriculum run configs/default.yaml

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

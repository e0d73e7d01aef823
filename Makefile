# Everything runs inside .venv, created from the first python3.11+ found.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench start-api clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required ($(PYTHON) is older); run: make PYTHON=python3.12 ..."; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/cfn-lint template.yaml
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -n auto --dist loadfile

demo: install
	$(BIN)/segctl demo

bench: install
	$(BIN)/python bench/bench.py

start-api: install
	$(BIN)/segctl local start-api

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .aws-sam

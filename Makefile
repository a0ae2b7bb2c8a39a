# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install the project into it; system tools (SIPp, age,
# espeak-ng, sox) are installed by scripts/system-deps.sh when running as root.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

system-deps:
	sh scripts/system-deps.sh

demo: system-deps $(STAMP)
	$(BIN)/b2bua demo

lint: $(STAMP)
	$(BIN)/ruff check b2bua rtp media tests bench examples
	$(BIN)/ruff format --check b2bua rtp media

typecheck: $(STAMP)
	$(BIN)/mypy --strict

unit: $(STAMP)
	$(BIN)/pytest -q

test: system-deps lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

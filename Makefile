# The two quick-start commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m sklearn_task2vec.demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The docs extra goes into the same .venv, with its own stamp: `make test` does not need it.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_fisher_speed.py
	$(BIN)/python benchmarks/bench_distances.py

clean:
	rm -rf $(VENV) build *.egg-info docs/_build docs/auto_examples docs/sg_execution_times.rst

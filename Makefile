# The two quick-start commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m sklearn_task2vec.demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_fisher_speed.py
	$(BIN)/python benchmarks/bench_distances.py

clean:
	rm -rf $(VENV) build *.egg-info

# The two quick-start commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench docs clean

# Without an NVIDIA GPU (no nvidia-smi), torch and torchvision come from PyTorch's CPU index,
# a few hundred MB instead of several GB of CUDA libraries, when that index is reachable (else
# PyPI's default build). `make test TORCH_INDEX=` forces PyPI's; any other URL, that index.
TORCH_INDEX ?= $(shell command -v nvidia-smi >/dev/null 2>&1 || \
	! curl -sfI --max-time 5 https://download.pytorch.org/whl/cpu/ >/dev/null 2>&1 || \
	echo https://download.pytorch.org/whl/cpu)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install torch torchvision --index-url $(TORCH_INDEX))
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

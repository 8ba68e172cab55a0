# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both build .venv first; it is rebuilt when pyproject.toml changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/deepscaler: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/deepscaler
	$(BIN)/deepscaler demo

test: $(BIN)/deepscaler
	$(BIN)/ruff check --quiet src tests bench
	$(BIN)/pytest

bench: $(BIN)/deepscaler
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info

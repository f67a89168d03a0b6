# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,torch,equinox,haiku,keras]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m experiments run configs/default.toml --out runs/default

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup jaxrnn experiments tests README.md

lint: $(STAMP)
	$(PY) -m ruff check jaxrnn tests experiments benchmarks
	$(PY) -m ruff format --check jaxrnn tests experiments benchmarks
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) runs .pytest_cache

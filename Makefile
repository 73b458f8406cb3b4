# Two commands set everything up on a fresh machine:
#   make demo   runs the main job on the built-in default (no downloads)
#   make test   installs the test dependencies and runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# A machine without an NVIDIA GPU takes the CPU build of torch first, so that the
# package's `torch>=2.4` requirement does not pull a multi-GB CUDA build.
TORCH_CPU := torch==2.13.0

.PHONY: setup demo test lint mutation clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install --quiet $(TORCH_CPU); fi
	$(PY) -m pip install --quiet -e ".[dev,plot,export,app]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/selfdetr demo --output-dir demo_output --overwrite

test: setup
	$(PY) -m pytest -q

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml) as a fresh clone
# sees them: without the reference fixture in ../shared/data. Too slow for CI; resumable
# (mutants/ keeps the results). MUTANTS="selfdetr_hf.nms.*" restricts it to some mutants.
MUTANTS ?=
mutation: setup
	-SELFDETR_SHARED_DATA=$(CURDIR)/mutants/no-shared-data OMP_NUM_THREADS=1 \
		nice -n 19 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS)
	$(PY) benchmarks/mutation_score.py

lint: setup
	$(VENV)/bin/ruff check selfdetr_hf tests examples benchmarks

clean:
	rm -rf $(VENV) demo_output mutants

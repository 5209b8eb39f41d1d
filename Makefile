# The README's two commands: `make demo` and `make test`. Both set up .venv first if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU wheel of torch that tests and the demo use; pyproject keeps a range for GPU users.
TORCH_PIN := torch==2.13.0
EXTRAS := local,ray,dev

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/imggen demo --output demo-output

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/engine_scale.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache

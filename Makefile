# The README's two commands: `make demo` and `make test`. Both set up .venv first if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU wheel of torch that tests and the demo use; pyproject keeps a range for GPU users.
TORCH_PIN := torch==2.13.0
EXTRAS := local,ray,dev

.PHONY: setup demo test test-quick lab bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile tests/readers/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	# sd-prompt-reader, a reader the tests run on images, pins an old Pillow for its GUI; its reader
	# needs only piexif (a dependency of imggen), so it comes without its own requirements.
	$(PY) -m pip install --quiet --no-deps sd-prompt-reader==1.3.5
	@if command -v npm > /dev/null; then npm ci --prefix tests/readers --silent --no-audit --no-fund; \
	else echo "note: npm is missing; the tests that read images with exifr and ExifReader need Node.js and npm"; fi
	touch $(STAMP)
	@test -x /usr/bin/chromium || echo "note: /usr/bin/chromium is missing; the browser test needs it: sudo apt-get install chromium"

demo: setup
	$(VENV)/bin/imggen demo --output demo-output

# Most tests wait on emulators and child processes, so they run on TEST_WORKERS processes at once; the
# ones marked serial (a Ray cluster, what a stop lets finish, a rate held to the clock) run after, on
# two processes; then those marked clock, which mostly sleep, on four processes with nothing else running.
TEST_WORKERS ?= 4
# Every test process and the commands they start read compiled modules, also where the machine asks
# Python not to write them (PYTHONDONTWRITEBYTECODE): pytest rewrites and compiles each test module
# once, not once per process.
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest

test: setup
	$(PYTEST) -n $(TEST_WORKERS) -m "not serial" --durations=10
	$(PYTEST) -n 2 -m "serial and not clock" --durations=10
	$(PYTEST) -n 4 -m clock --durations=5

test-quick: setup
	$(PYTEST) -n $(TEST_WORKERS) -m "not slow and not serial"
	$(PYTEST) -m "serial and not slow"

lab: setup
	$(VENV)/bin/jupyter lab notebooks

bench: setup
	$(PY) benchmarks/engine_scale.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache

# make train: set up .venv and train configs/3v8.yaml.  make test: set up .venv and run the tests.
# make check: ruff and the tests not marked slow (setup.cfg), for the edit-test loop; CI runs make test.
# Needs only Python 3.10+ and pip; everything else is installed into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TESTS  := $(VENV)/.installed-test

.PHONY: train test check lint install clean

train: $(STAMP)
	$(BIN)/digitlab train configs/3v8.yaml

# One test process per core (pytest-xdist; a worker takes the next test when it is free, so one long test does not
# hold the other core idle), each with one BLAS thread: the tests' timings then hold on a busy 2-core machine (two
# threads fighting for a busy core make small products many times slower), and runs trained in the test process
# and in the processes it starts sum in the same order.
PYTEST := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist worksteal

test: lint
	$(PYTEST)

# Leaves out the tests marked slow (setup.cfg): those that kill processes, start a Dask cluster or a browser, or
# train for seconds.
check: lint
	$(PYTEST) -m "not slow"

# ruff: pyflakes, pycodestyle, import order and a few bug patterns (pyproject.toml).
lint: $(TESTS)
	$(BIN)/ruff check digitlab tests

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package metadata changes.
$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TESTS): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info

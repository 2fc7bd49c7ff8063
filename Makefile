# Two entry points: `make demo` (install, then detect changes on the sample pair) and
# `make test`. Both create their own virtual environment in $(VENV); `make test` also runs
# the QGIS tests in $(QGIS_VENV) (Debian's Python, which has QGIS) where QGIS is installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pair known to work together (PyPI's torchvision fails beside
# other builds on some machines); override with e.g. TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
OUT ?= examples/output
# pip extras installed with rs-sam; CI adds `fastsam` (ultralytics, AGPL-3.0) to test FastSAM.
EXTRAS ?= test
# QGIS's Python bindings import only in Debian's own Python: its venv sees the system packages.
# The pins keep Debian's compiled packages working beside numpy 2 (see the README's QGIS part).
QGIS_PYTHON ?= /usr/bin/python3
QGIS_VENV ?= .venv-qgis
QGIS_PINS ?= 'attrs>=23.2' 'matplotlib>=3.9' 'scipy>=1.13'

.PHONY: install demo test test-fast test-qgis bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

# Downloads the official MobileSAM weights and the public NAIP sample pair on first use.
# Offline: set RS_SAM_DATA_DIR to a folder holding rasters/naip, and RS_SAM_WEIGHTS=random
# to run with untrained weights (a loud warning; the result is meaningless).
demo: install
	mkdir -p $(OUT)
	pair="$$($(BIN)/rs-sam sample-data naip)" && \
	$(BIN)/rs-sam detect-change $$pair -o $(OUT)/naip_changes.gpkg \
		--save-probability $(OUT)/naip_change_score.tif --overwrite

# `make test` runs everything in random order (pytest-randomly); the seed is printed first,
# and `make test SEED=N` repeats an order. `make test-fast` leaves out the slow tier.
ifndef SEED
SEED := $(shell $(PYTHON) -c 'import random; print(random.randrange(10**6))')
endif
PYTEST_RANDOM = -p randomly --randomly-seed=$(SEED)

test: install
	@echo "random test order: SEED=$(SEED)"
	$(BIN)/python -m pytest -q $(PYTEST_RANDOM)
	@if $(QGIS_PYTHON) -c 'import qgis.core' 2>/dev/null; then $(MAKE) --no-print-directory test-qgis; \
	else echo "QGIS tests skipped: $(QGIS_PYTHON) cannot import qgis.core (Debian: apt install python3-qgis)"; fi

test-fast: install
	@echo "random test order: SEED=$(SEED)"
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_RANDOM)

$(QGIS_VENV)/.installed: pyproject.toml Makefile
	$(QGIS_PYTHON) -m venv --system-site-packages $(QGIS_VENV)
	$(QGIS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(QGIS_VENV)/bin/python -m pip install --quiet $(TORCH)
	$(QGIS_VENV)/bin/python -m pip install --quiet -e '.[test]' $(QGIS_PINS)
	touch $@

# The Processing provider inside real headless QGIS.
test-qgis: $(QGIS_VENV)/.installed
	$(QGIS_VENV)/bin/python -m pytest -q tests/qgis_provider

bench: install
	$(BIN)/python benchmarks/detect_change.py

clean:
	rm -rf $(VENV) $(QGIS_VENV) $(OUT)

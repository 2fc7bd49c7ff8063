# Two entry points: `make demo` (install, then detect changes on the sample pair) and
# `make test`. Both create their own virtual environment in $(VENV).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pair known to work together (PyPI's torchvision fails beside
# other builds on some machines); override with e.g. TORCH="torch torchvision".
TORCH ?= torch==2.14.1 torchvision==0.29.1
OUT ?= examples/output
# pip extras installed with rs-sam; CI adds `fastsam` (ultralytics, AGPL-3.0) to test FastSAM.
EXTRAS ?= test

.PHONY: install demo test bench clean

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

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/detect_change.py

clean:
	rm -rf $(VENV) $(OUT)

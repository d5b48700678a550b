# lolip_nb: every target installs what it needs first (idempotently, into .venv).
# The virtual environment lives in a cache keyed by the hash of requirements.txt, outside the clone,
# so a fresh clone with unchanged requirements reuses it; .venv is a link to it.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
CACHE ?= $(HOME)/.cache/lolip_nb
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-16)
# Another package index for torch and torchvision, e.g. PyTorch's CPU-only wheels (no CUDA libraries to download):
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
# It installs the versions pinned in requirements.txt from that index and leaves out the CUDA build's own libraries
# (nvidia-*, cuda-*, triton); such an environment gets its own cache folder. Unset (the default), everything comes from
# requirements.txt as pinned, exactly as without this variable.
TORCH_INDEX ?=
VENV_DIR := $(CACHE)/venv-$(REQ_HASH)$(if $(TORCH_INDEX),-$(shell printf '%s' '$(TORCH_INDEX)' | sha256sum | cut -c1-8))
VENV := .venv
BIN := $(VENV)/bin
JOBS ?= 2

.PHONY: help install system-packages venv test test-notebooks test-integration check-sync reproduce quick table book bench clean

help:
	@echo "make reproduce   quick real reproduction on Fashion-MNIST (CPU), its table, then the book"
	@echo "make test        notebook tests (nbdev_test), sync/clean checks, integration tests (pytest)"
	@echo "make install     system packages (apt, when available) + the pinned .venv"
	@echo "                 (TORCH_INDEX=https://download.pytorch.org/whl/cpu: CPU-only torch wheels, same versions)"
	@echo "make book        build book/_build/html offline"

install: system-packages venv

# Debian packages: the offline Fashion-MNIST files and Chromium for the book's browser test.
system-packages:
	@missing=""; \
	[ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: no apt-get; install$$missing by hand (see README)"; fi; \
	fi

venv: $(VENV_DIR)/.complete
	@if [ "$$(readlink $(VENV) 2>/dev/null)" != "$(VENV_DIR)" ]; then rm -rf $(VENV); ln -s $(VENV_DIR) $(VENV); fi
	@# the venv may be shared by several clones: point its editable install (and the lolip script) at this one
	@$(BIN)/pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v -i -E 'warning|editable|!!|\*\*\*|folders in your|name as your|with strategy|^ *$$' || true
	@cd /tmp && $(abspath $(BIN))/python -c "import lolip_nb; print('lolip_nb', lolip_nb.__version__, 'from', lolip_nb.__file__)"

# No prerequisite: the hash of requirements.txt in the folder name is the key (a fresh clone has new mtimes).
$(VENV_DIR)/.complete:
	@echo "creating $(VENV_DIR) (first time only: torch is large)"
	rm -rf $(VENV_DIR)
	$(PYTHON) -m venv $(VENV_DIR)
	$(VENV_DIR)/bin/pip install -q --upgrade pip
ifeq ($(strip $(TORCH_INDEX)),)
	$(VENV_DIR)/bin/pip install -q -r requirements.txt
else
	$(VENV_DIR)/bin/pip install -q --no-deps --index-url $(TORCH_INDEX) $$(grep -E '^(torch|torchvision)==' requirements.txt)
	grep -v -E '^(torch|torchvision|triton|nvidia-[^=]*|cuda-[^=]*)==' requirements.txt > $(VENV_DIR)/requirements-other.txt
	$(VENV_DIR)/bin/pip install -q -r $(VENV_DIR)/requirements-other.txt
endif
	touch $@

# CI's job: the library agrees with the notebooks, notebooks are clean, notebook tests, then pytest (last line: its summary).
test: install check-sync test-notebooks test-integration

check-sync: venv
	@bash .ci/check_sync.sh $(BIN)

test-notebooks: venv
	$(BIN)/nbdev_test --n_workers $(JOBS) --timing

test-integration: venv
	$(BIN)/python -m pytest -q -ra tests

# The main job: a quick real reproduction (ten methods, CNN001, Fashion-MNIST subset), its table, then the book.
reproduce: install quick table book
	@cat results/quick/TABLE.md

# A reproduction recomputes: the committed results/quick are overwritten (git diff shows what changed).
# `make reproduce FORCE=` keeps finished runs instead, e.g. to resume after an interruption.
FORCE ?= --force
quick: venv
	$(BIN)/lolip grid quick --jobs $(JOBS) $(FORCE)

table: venv
	$(BIN)/lolip table quick --out results/quick/TABLE

book: venv
	PATH=$(abspath $(BIN)):$$PATH bash book/build.sh

bench: venv
	$(BIN)/python bench/bench.py

clean:
	rm -rf book/_build book/api _proc _docs .pytest_cache tests/artifacts

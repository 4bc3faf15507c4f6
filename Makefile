# rnnlab from a fresh clone, in two commands:
#
#   make study    every claim measured; the report is runs/study/report.html
#   make test     the whole test suite
#
# Each sets itself up first: a virtual environment in .venv with the CPU build of PyTorch
# (pinned, so pip never fetches a multi-gigabyte CUDA build) and rnnlab, installed once and again
# only when pyproject.toml changes. With a CUDA build of torch already installed, keep it:
#
#   make test TORCH_SPEC=        (the venv then sees the system's packages, torch included)

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
STUDY_OUT  ?= runs/study
BIN        := $(VENV)/bin
LOG        := .setup.log
# the venv sees the system's site-packages only when the user keeps their own torch
VENV_FLAGS := $(if $(strip $(TORCH_SPEC)),,--system-site-packages)

# run one set-up step quietly; on failure, one line naming it (details in .setup.log)
step = { $(2) ; } >>$(LOG) 2>&1 || { echo "error: set-up failed at: $(1) (details in $(LOG))" >&2; exit 1; }

.PHONY: study test report-quick lint setup clean

study: $(VENV)/.installed-core
	$(BIN)/rnnlab study all --out $(STUDY_OUT)
	@echo "open $(STUDY_OUT)/report.html"

report-quick: $(VENV)/.installed-core
	$(BIN)/rnnlab study all --quick --out runs/study-quick
	@echo "open runs/study-quick/report.html (quick: tiny sizes, verdicts not meaningful)"

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n 2

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

setup: $(VENV)/.installed-dev

$(BIN)/python:
	@: >$(LOG)
	@$(call step,creating $(VENV) with $(PYTHON) -m venv,$(PYTHON) -m venv $(VENV_FLAGS) $(VENV))
	@$(call step,upgrading pip in $(VENV),$(BIN)/python -m pip install -q --upgrade pip)

# core: what `rnnlab study` needs; dev: + the test tools (a dev install satisfies core too)
$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	@if [ -f $(VENV)/.installed-dev ] && [ ! pyproject.toml -nt $(VENV)/.installed-dev ]; then \
	  touch $@; else \
	  echo "setting up $(VENV): rnnlab and $(or $(strip $(TORCH_SPEC)),your own torch) (once)"; \
	  $(call step,installing rnnlab into $(VENV),\
	    $(BIN)/python -m pip install -q $(TORCH_SPEC) -e .); touch $@; fi

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "setting up $(VENV): rnnlab[dev] and $(or $(strip $(TORCH_SPEC)),your own torch) (once)"
	@$(call step,installing rnnlab[dev] into $(VENV),\
	  $(BIN)/python -m pip install -q $(TORCH_SPEC) -e ".[dev]")
	@touch $@ $(VENV)/.installed-core

clean:
	rm -rf $(VENV) $(LOG)

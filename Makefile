# videodiff: every target installs what it needs first, so `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# The torch requirement every install is constrained by. The default is the CPU build this project is
# developed on; on a GPU machine override it, e.g. `make install TORCH="torch==2.5.1"` or TORCH=torch.
TORCH ?= torch==2.13.0
EXTRAS ?= dev,reference,text
DEMO_DIR ?= runs/demo
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.videodiff-installed
CONSTRAINTS := $(VENV)/constraints.txt

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: VENV=$(VENV) TORCH='$(TORCH)' EXTRAS=$(EXTRAS) DEMO_DIR=$(DEMO_DIR)"

# Re-runs when the dependencies or the torch pin change; otherwise a no-op, so `make install` is idempotent.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "$(TORCH)" > $(CONSTRAINTS)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP) ## create $(VENV) and install videodiff with its dev and reference extras (idempotent)

test: install ## run the default test tier (CPU, no network)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: install ## run every tier, slow included (gpu tests skip without CUDA)
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

lint: install ## ruff
	$(BIN)/ruff check videodiff tests bench

demo: install $(DEMO_DIR)/data/manifest.clean.jsonl ## the main job on the built-in dataset (data stages until the models land)
	$(BIN)/videodiff data inspect --config configs/data/synthetic.yaml \
		--data.init_args.synthetic=null --data.init_args.manifest=$(DEMO_DIR)/data/manifest.clean.jsonl

# Demo stages are file targets: a re-run skips what exists (FORCE=1 redoes them).
ifeq ($(FORCE),1)
.PHONY: $(DEMO_DIR)/data/manifest.jsonl $(DEMO_DIR)/data/manifest.clean.jsonl
endif
$(DEMO_DIR)/data/manifest.jsonl: | install
	$(BIN)/videodiff data synth --out $(DEMO_DIR)/data --num 200 --seed 0

$(DEMO_DIR)/data/manifest.clean.jsonl: $(DEMO_DIR)/data/manifest.jsonl
	$(BIN)/videodiff data scan $< --out $@

bench: install ## run the benchmarks; writes bench/results.json and bench/results.md
	$(BIN)/python bench/run.py --out bench

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache

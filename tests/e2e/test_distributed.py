"""DDP on two CPU processes (gloo), from YAML through `videodiff fit`: sharding, metric sync, rank-zero writes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from videodiff.cli import VideoDiffCLI
from videodiff.models.dit.model import DiTBlock

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ROOT / "configs/presets"


def test_ddp_preset_parses_and_instantiates(tmp_path, tiny_autoencoder_ckpt):
    args = ["--config", str(ROOT / "configs/dit/tiny_joint.yaml"), "--config", str(PRESETS / "ddp.yaml"),
            "--config", str(PRESETS / "debug.yaml"), f"--model.init_args.autoencoder={tiny_autoencoder_ckpt}",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.devices=2"]  # fmt: skip
    trainer = VideoDiffCLI(args=args, run=False).trainer
    assert type(trainer.strategy).__name__ == "DDPStrategy" and trainer.strategy._ddp_kwargs["find_unused_parameters"]
    assert trainer.num_devices == 2 and type(trainer.strategy.checkpoint_io).__name__ == "SafeCheckpointIO"


def test_fsdp_preset_parses_and_instantiates():
    # A Trainer with FSDP needs CUDA; the strategy object itself is what the preset configures.
    config = yaml.safe_load((PRESETS / "fsdp.yaml").read_text())["trainer"]
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=FSDPStrategy)
    strategy = parser.instantiate_classes(parser.parse_object({"strategy": config["strategy"]})).strategy
    assert isinstance(strategy, FSDPStrategy) and strategy._state_dict_type == "full"
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy) and policy._module_classes == {DiTBlock}
    assert config["precision"] == "bf16-mixed"


@pytest.mark.slow
def test_ddp_fit_on_two_cpu_processes(tmp_path, tiny_autoencoder_ckpt):
    record = tmp_path / "batches"
    record.mkdir()
    overlay = {
        "trainer": {
            "accelerator": "cpu", "devices": 2, "max_steps": 4, "val_check_interval": 2, "limit_val_batches": 2,
            "num_sanity_val_steps": 0, "log_every_n_steps": 1, "default_root_dir": str(tmp_path / "run"),
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(tmp_path / "run")}},
            "callbacks": [
                {"class_path": "tests.helpers.RecordBatches", "init_args": {"out": str(record)}},
                {"class_path": "videodiff.callbacks.SampleVideos",
                 "init_args": {"prompts": ["a red circle moving right on a black background"], "sizes": ["5x16x16"],
                               "every_n_steps": 2, "steps": 2}},
                {"class_path": "videodiff.callbacks.FVDCallback",
                 "init_args": {"feature_network": {"class_path": "tests.metrics.test_fvd.MeanPool"}, "feature_dim": 9,
                               "num_videos": 4, "frames": 3, "resolution": 16, "steps": 2}},
            ],
        },
        "model": {"init_args": {"autoencoder": tiny_autoencoder_ckpt}},
        "data": {"init_args": {"synthetic": {"num": 24}, "val_fraction": 0.25,
                               "sampling": {"token_budget": 96},
                               "batching": {"init_args": {"max_tokens": 128}}}},
    }  # fmt: skip
    (tmp_path / "ddp-test.yaml").write_text(yaml.safe_dump(overlay))
    exe = Path(sys.executable).parent / "videodiff"
    command = [str(exe), "fit", "--config", str(ROOT / "configs/dit/tiny_joint.yaml"),
               "--config", str(PRESETS / "ddp.yaml"), "--config", str(tmp_path / "ddp-test.yaml")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    (tmp_path / "stderr.txt").write_text(result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]

    # Each rank trained 4 steps (two epochs) on its own shard: per epoch every training sample (18 of 24) is
    # seen once, split between the ranks; at most one batch repeats, to give both ranks the same step count.
    ranks = [[json.loads(line) for line in (record / f"rank{r}.jsonl").read_text().splitlines()] for r in range(2)]
    assert [len(r) for r in ranks] == [4, 4]
    for epoch in (0, 1):
        batches = [tuple(row["indices"]) for r in ranks for row in r if row["epoch"] == epoch]
        distinct = set(batches)
        assert len(batches) - len(distinct) <= 1 and sorted(i for b in distinct for i in b) == list(range(18))
    # FVD over both ranks' generated videos, logged once; samples and checkpoints written by rank zero only.
    metrics = list(csv.DictReader(open(next((tmp_path / "run").glob("**/metrics.csv")))))
    fvd = [float(row["val/fvd"]) for row in metrics if row.get("val/fvd")]
    assert len(fvd) == 2 and all(torch.isfinite(torch.tensor(fvd)))
    assert len(list((tmp_path / "run").glob("**/metrics.csv"))) == 1
    samples = sorted(p.relative_to(tmp_path / "run") for p in (tmp_path / "run").glob("**/samples/step*/*.mp4"))
    assert [p.parent.name for p in samples] == ["step0000002", "step0000004"]
    (checkpoint,) = (tmp_path / "run").glob("**/*.ckpt")
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["global_step"] == 4  # rank 0's loader position: epoch 1 done (the next run starts epoch 2)
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_done": 2}]

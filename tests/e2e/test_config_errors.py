"""A run that cannot work says so in one line, before any training step, and exits with code 2."""

from pathlib import Path

import pytest
import torch

from tests.helpers import make_dit_module, save_module
from videodiff.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _fit(tmp_path, autoencoder: str, *extra: str) -> list[str]:
    return ["fit", "--config", str(ROOT / "configs/dit/tiny_joint.yaml"), "--config",
            str(ROOT / "configs/presets/debug.yaml"), f"--model.init_args.autoencoder={autoencoder}",
            f"--trainer.default_root_dir={tmp_path}", "--data.init_args.synthetic.num=8", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def dit_checkpoint(tmp_path_factory, autoencoder_ckpt) -> str:
    return save_module(make_dit_module(autoencoder_ckpt), tmp_path_factory.mktemp("dit") / "dit.ckpt")


def _one_line_error(capsys, argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exit_:  # parse errors exit from inside the parser
        code = exit_.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--model.init_args.backbone.init_args.attention=spacetime"],
         "model.init_args.backbone.init_args.attention: expected one of 'joint', 'factorised', got 'spacetime'"),
        (["--data.init_args.sampling.token_budget=1024"],
         "token_budget=1024 is more than a packed row holds (data.init_args.batching.init_args.max_tokens=512)"),
        (["--data.init_args.sampling.token_budget=0"], "data.init_args.sampling.token_budget must be >= 1 token"),
        (["--model.init_args.backbone.init_args.patch_size=[3, 4, 4]"],
         "SampleVideos sizes (trainer.callbacks): cannot generate 9x32x48 (frames x height x width): 9 frames make 5 "
         "latent frames, not a multiple of the temporal patch 3. Use frames = 1 or 5, 11, 17, 23, ..."),
        (["--data.init_args.grid.temporal_compression=4", "--data.init_args.grid.spatial_compression=2"],
         "data.init_args.grid"),
    ],
    ids=["attention", "budget-over-row", "budget-zero", "temporal-patch", "grid"],
)  # fmt: skip
def test_config_errors_are_one_line_before_training(tmp_path, capsys, tiny_autoencoder_ckpt, extra, expected):
    line = _one_line_error(capsys, _fit(tmp_path, tiny_autoencoder_ckpt, *extra))
    assert expected in line
    assert not list(tmp_path.glob("**/*.ckpt"))  # nothing trained


def test_wrong_checkpoint_kinds_are_named(tmp_path, capsys, dit_checkpoint, tiny_autoencoder_ckpt):
    line = _one_line_error(capsys, _fit(tmp_path, dit_checkpoint))
    assert f"{dit_checkpoint}: a DiT checkpoint, not an autoencoder checkpoint" in line
    line = _one_line_error(capsys, _fit(tmp_path, str(tmp_path / "missing.ckpt")))
    assert "model.init_args.autoencoder:" in line and "not found" in line


def test_a_checkpoint_whose_weights_do_not_match_names_the_keys(tmp_path, capsys, dit_checkpoint):
    checkpoint = torch.load(dit_checkpoint, weights_only=False)
    del checkpoint["state_dict"]["backbone.final.linear.bias"]
    checkpoint["state_dict"]["backbone.extra"] = torch.zeros(1)
    path = tmp_path / "damaged.ckpt"
    torch.save(checkpoint, path)
    code = main(["sample", "--ckpt", str(path), "--prompt", "x", "--size", "1x16x16", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err
    assert "missing keys: backbone.final.linear.bias" in err and "unexpected keys: backbone.extra" in err

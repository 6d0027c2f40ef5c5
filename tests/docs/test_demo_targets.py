"""The demo's variants are Makefile variables; ``make -n`` shows the commands each would run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


# Settings of the tiny configs' recipe (tiny_joint.yaml) that a demo variant could override on the command line.
RECIPE_OVERRIDES = ("hidden_size", "depth", "prediction=", "rows=", "rope_theta", "snr_shift")


def dry_run(tmp_path: Path, *variables: str) -> str:
    """What ``make demo`` would run into an empty run directory (every stage, none skipped)."""
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "demo", f"DEMO_DIR={tmp_path}", *variables], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def fit_line(output: str, stage: str) -> str:
    [line] = [line for line in output.replace("\\\n", " ").splitlines() if f"--name {stage} -- " in line]
    return line


def test_default_demo_trains_the_tiny_dit(tmp_path):
    output = dry_run(tmp_path)
    dit = fit_line(output, "dit-joint")
    assert "--trainer.max_steps=4000" in dit
    for override in RECIPE_OVERRIDES:
        assert override not in dit
    assert f"--out {tmp_path}/samples-joint" in output
    assert "-long" not in output


def test_long_demo_trains_the_same_dit_four_times_as_long_beside_the_default(tmp_path):
    output = dry_run(tmp_path, "DEMO=long")
    dit = fit_line(output, "dit-joint-long")
    for override in ("--trainer.max_steps=16000", "filename=dit-joint-long", "every_n_steps=4000"):
        assert override in dit
    # The tiny configs' own recipe, as the default run trains it: only the length differs.
    for override in RECIPE_OVERRIDES:
        assert override not in dit
    # Same data, VAE and latents as the default run, so the report compares the two DiTs on one first stage.
    assert fit_line(output, "autoencoder").count("--trainer.max_steps=4000") == 1
    assert f"--ckpt {tmp_path}/dit-joint-long.ckpt" in output
    assert f"--out {tmp_path}/samples-joint-long" in output


def test_quick_demo_is_short_and_variables_still_override(tmp_path):
    quick = dry_run(tmp_path, "DEMO=quick")
    assert "--trainer.max_steps=200" in fit_line(quick, "autoencoder")
    assert "--trainer.max_steps=300" in fit_line(quick, "dit-joint")
    long_factorised = dry_run(tmp_path, "DEMO=long", "DIT_STEPS=20000", "DIT_ATTENTION=factorised")
    assert "--trainer.max_steps=20000" in fit_line(long_factorised, "dit-factorised-long")


def test_shapes_demo_trains_the_wider_dit_on_finer_tokens_beside_the_default(tmp_path):
    output = dry_run(tmp_path, "DEMO=shapes")
    dit = fit_line(output, "dit-joint-shapes")
    # docs/dit.md, "Session 25": the recipe whose samples draw the captioned shape on video.
    for override in (
        "--trainer.max_steps=16000", "patch_size=[1,2,2]", "hidden_size=128", "depth=6", "num_heads=8",
        "max_tokens=2048", "rows=2", "filename=dit-joint-shapes", "every_n_steps=4000",
    ):  # fmt: skip
        assert override in dit
    # It reuses the default run's VAE and latents, so the report sets it beside the tiny DiT.
    assert fit_line(output, "autoencoder").count("--trainer.max_steps=4000") == 1
    assert f"--data.init_args.latents={tmp_path}/latents" in dit
    assert f"--out {tmp_path}/samples-joint-shapes" in output
    assert "-long" not in output

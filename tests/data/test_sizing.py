import math

import numpy as np
import pytest

from videodiff.data.sizing import LatentGrid, SizingError, plan_size

GRIDS = [
    LatentGrid(),
    LatentGrid(temporal_compression=2, spatial_compression=4, patch_size=(1, 2, 2)),
    LatentGrid(temporal_compression=4, spatial_compression=8, patch_size=(2, 2, 2)),
    LatentGrid(temporal_compression=4, spatial_compression=8, patch_size=(1, 1, 2), causal=False),
]


def test_causal_frames_and_tokens():
    grid = LatentGrid(temporal_compression=4, spatial_compression=8, patch_size=(1, 2, 2))
    assert grid.latent_frames(1) == 1 and grid.latent_frames(17) == 5
    assert grid.is_valid_frames(1) and grid.is_valid_frames(9) and not grid.is_valid_frames(8)
    assert grid.valid_frames_at_most(16) == 13
    assert grid.tokens(17, 64, 96) == 5 * 4 * 6
    with pytest.raises(SizingError, match="not a multiple of the token stride 16x16"):
        grid.tokens(17, 60, 96)
    tubelet = LatentGrid(temporal_compression=4, patch_size=(2, 1, 1))
    assert [n for n in range(1, 30) if tubelet.is_valid_frames(n)] == [1, 5, 13, 21, 29]


@pytest.mark.parametrize("grid", GRIDS, ids=str)
def test_invariants_over_random_sizes(grid):
    rng = np.random.default_rng(0)
    sh, sw = grid.spatial_stride
    for _ in range(400):
        frames, height, width = int(rng.integers(1, 80)), int(rng.integers(8, 700)), int(rng.integers(8, 700))
        budget = int(rng.integers(16, 5000))
        max_frames = int(rng.integers(1, 64))
        try:
            plan = plan_size(frames, height, width, grid, budget, max_frames=max_frames)
        except SizingError:
            assert not grid.causal  # only a non-causal grid can lack a valid clip length
            continue
        assert plan.height % sh == 0 and plan.width % sw == 0
        assert grid.is_valid_frames(plan.frames) and plan.frames <= min(frames, max_frames)
        assert grid.tokens(*plan.shape) <= budget
        assert plan.crop_height <= height and plan.crop_width <= width
        # Aspect kept: one scale s puts both sides within one stride of the (cropped) source.
        low = max((plan.height - sh) / plan.crop_height, (plan.width - sw) / plan.crop_width)
        high = min((plan.height + sh) / plan.crop_height, (plan.width + sw) / plan.crop_width)
        assert low <= high + 1e-9, (frames, height, width, budget, plan)
        # Upsampled only where a source side is below one stride.
        if height >= sh and width >= sw:
            assert plan.height <= height and plan.width <= width


def test_native_size_is_kept_when_it_fits():
    grid = LatentGrid(spatial_compression=4, patch_size=(1, 2, 2))
    plan = plan_size(9, 64, 40, grid, token_budget=10_000)
    assert (plan.frames, plan.height, plan.width, plan.crop_height, plan.crop_width) == (9, 64, 40, 64, 40)


def test_budget_shrinks_space_before_time_and_uses_most_of_it():
    grid = LatentGrid(temporal_compression=2, spatial_compression=8, patch_size=(1, 2, 2))
    plan = plan_size(33, 720, 1280, grid, token_budget=1024)
    assert plan.frames == 33  # 17 latent frames
    tokens = grid.tokens(*plan.shape)
    assert tokens <= 1024 and tokens > 0.6 * 1024
    assert math.isclose(plan.width / plan.height, 1280 / 720, rel_tol=0.2)


def test_budget_too_small_for_the_clip_shortens_it():
    grid = LatentGrid(temporal_compression=4, spatial_compression=8)
    plan = plan_size(33, 64, 64, grid, token_budget=4)
    assert grid.token_frames(plan.frames) <= 4 and plan.frames == 13


def test_extreme_aspect_is_cropped_not_stretched():
    grid = LatentGrid(spatial_compression=8)
    plan = plan_size(1, 16, 4000, grid, token_budget=20)
    assert (plan.height, plan.width) == (8, 160)
    assert plan.crop_height == 16 and plan.crop_width == 320  # same 1:20 aspect as the output


def test_random_sizes_vary_and_respect_the_budget():
    grid = LatentGrid(temporal_compression=2, spatial_compression=4, patch_size=(1, 2, 2))
    rng = np.random.default_rng(0)
    plans = {
        plan_size(33, 128, 96, grid, 900, rng=rng, scale_range=(0.3, 1.0), duration_range=(0.2, 1.0)) for _ in range(50)
    }
    assert len({p.frames for p in plans}) > 3 and len({p.height for p in plans}) > 3
    assert all(grid.tokens(*p.shape) <= 900 and grid.is_valid_frames(p.frames) for p in plans)


def test_errors():
    with pytest.raises(SizingError, match="token_budget"):
        plan_size(9, 32, 32, LatentGrid(), 0)
    with pytest.raises(SizingError, match="no valid clip length"):
        plan_size(3, 32, 32, LatentGrid(temporal_compression=4, causal=False), 100)
    with pytest.raises(ValueError, match="positive integers"):
        LatentGrid(patch_size=(0, 1, 1))


def test_parse_size_reads_frames_height_width():
    from videodiff.data.sizing import parse_size

    assert parse_size("9x32x48") == (9, 32, 48) and parse_size(" 1x40x56 ") == (1, 40, 56)
    for bad in ("9x32", "9x32x48x2", "ax32x48", "9 x 32 x 48", ""):
        with pytest.raises(ValueError, match="is not FRAMESxHEIGHTxWIDTH"):
            parse_size(bad)

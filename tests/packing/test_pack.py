import pytest
import torch

from videodiff.packing.pack import TokenDropping, first_fit, kept_masks, pack, unpack, unpack_videos
from videodiff.packing.patchify import grid_coords, patchify, token_grid, unpatchify


@pytest.mark.parametrize("patch", [(1, 1, 1), (1, 2, 2), (2, 2, 4)])
@pytest.mark.parametrize("shape", [(4, 4, 8, 12), (3, 1, 6, 4), (2, 8, 4, 8)])
def test_unpatchify_inverts_patchify(patch, shape):
    if shape[2] % patch[1] or shape[3] % patch[2]:
        pytest.skip("size not divisible")
    x = torch.randn(shape)
    tokens = patchify(x, patch)
    grid = token_grid(shape, patch)
    assert tokens.shape == (grid[0] * grid[1] * grid[2], shape[0] * patch[0] * patch[1] * patch[2])
    assert torch.equal(unpatchify(tokens, grid, patch, frames=shape[1]), x)


def test_patch_layout_is_raster_order_with_coords():
    x = torch.arange(2 * 2 * 4 * 6).reshape(1, 2 * 2, 4, 6).float()  # C=1, T=4, H=4, W=6
    tokens = patchify(x, (2, 2, 3))
    coords = grid_coords((2, 2, 2))
    for (t, h, w), token in zip(coords.tolist(), tokens, strict=True):
        expected = x[0, 2 * t : 2 * t + 2, 2 * h : 2 * h + 2, 3 * w : 3 * w + 3].reshape(-1)
        assert torch.equal(token, expected)


def test_grid_errors():
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        token_grid((4, 2, 5, 4), (1, 2, 2))
    with pytest.raises(ValueError, match="temporal patch"):
        token_grid((4, 3, 4, 4), (2, 1, 1))


def _videos():
    torch.manual_seed(0)
    return [torch.randn(4, 3, 4, 6), torch.randn(4, 1, 8, 4), torch.randn(4, 5, 2, 2), torch.randn(4, 2, 6, 6)]


def test_pack_unpack_exact_inverse_and_layout():
    videos = _videos()
    batch = pack(videos, (1, 2, 2), max_tokens=24)
    assert batch.tokens.shape[1:] == (24, 16)
    assert torch.equal(batch.lengths, torch.tensor([18, 8, 5, 18]))
    for video, back in zip(videos, unpack_videos(batch.tokens, batch, (1, 2, 2)), strict=True):
        assert torch.equal(video, back)
    # Every token sits in exactly one place; segments never overlap; padding is marked.
    assert int(batch.mask.sum()) == sum(batch.lengths.tolist())
    for r in range(batch.tokens.shape[0]):
        ids = batch.video_ids[r][batch.mask[r]]
        segs = batch.segment_ids[r][batch.mask[r]]
        assert (segs >= 1).all() and len(set(zip(ids.tolist(), segs.tolist(), strict=True))) == len(set(ids.tolist()))
    assert (batch.segment_ids[~batch.mask] == 0).all() and (batch.token_index[~batch.mask] == -1).all()
    for i in range(4):
        r, o, n = int(batch.rows[i]), int(batch.offsets[i]), int(batch.lengths[i])
        assert torch.equal(batch.coords[r, o : o + n], grid_coords(tuple(batch.grids[i].tolist())))


def test_image_with_tubelets_round_trips():
    image = torch.randn(4, 1, 4, 4)
    batch = pack([image], (2, 2, 2), max_tokens=8)
    assert int(batch.lengths[0]) == 4 and int(batch.frames[0]) == 1
    assert torch.equal(unpack_videos(batch.tokens, batch, (2, 2, 2))[0], image)


def test_first_fit_packs_tightly_and_rejects_overlong():
    lengths = [7, 5, 4, 3, 3, 2, 1, 1]
    bins = first_fit(lengths, 9)
    assert sorted(sum(bins, [])) == list(range(8))
    assert all(sum(lengths[i] for i in b) <= 9 for b in bins) and len(bins) == 3  # 26 tokens in 27
    with pytest.raises(ValueError, match="video 1 has 12 tokens, more than a row's max_tokens=10"):
        first_fit([3, 12], 10)
    with pytest.raises(ValueError, match="need 2 rows"):
        pack([torch.zeros(1, 1, 4, 4)] * 2, (1, 1, 1), max_tokens=20, num_rows=1)


def test_gather_and_padding_fraction():
    batch = pack(_videos(), (1, 2, 2), max_tokens=24, num_rows=3)
    per_video = torch.tensor([10.0, 20.0, 30.0, 40.0])
    gathered = batch.gather(per_video)
    assert torch.equal(gathered[batch.mask], per_video[batch.video_ids[batch.mask]])
    assert (gathered[~batch.mask] == 0).all()
    assert batch.padding_fraction() == pytest.approx(1 - 49 / 72)


@pytest.mark.parametrize("mode", ["random", "similar"])
def test_dropping_keeps_the_right_tokens_and_unpacks_in_place(mode):
    videos = _videos()
    dropping = TokenDropping(rate=0.5, mode=mode)
    batch = pack(videos, (1, 2, 2), max_tokens=24, dropping=dropping, generator=torch.Generator().manual_seed(0))
    full = [patchify(v, (1, 2, 2)) for v in videos]
    for i, (tokens, mask) in enumerate(zip(unpack(batch.tokens, batch), kept_masks(batch), strict=True)):
        n = full[i].shape[0]
        assert int(mask.sum()) == max(1, n - min(n - 1, round(0.5 * n))) or mode == "similar"
        assert torch.equal(tokens[mask], full[i][mask]) and (tokens[~mask] == 0).all()


def test_similar_mode_drops_static_patches_first():
    video = torch.zeros(1, 3, 2, 4)
    video[:, :, :, 2:] = torch.randn(1, 3, 2, 2)  # right half changes every frame, left half is static
    keep = TokenDropping(rate=0.3, mode="similar").keep_indices(patchify(video, (1, 2, 2)), (3, 1, 2))
    assert keep.tolist() == [0, 1, 3, 5]  # frame 0 kept whole; static left patches of frames 1, 2 dropped


def test_dropping_rate_range_and_validation():
    d = TokenDropping(rate=(0.2, 0.6))
    g = torch.Generator().manual_seed(0)
    rates = [d.draw_rate(g) for _ in range(200)]
    assert 0.2 <= min(rates) < 0.3 and 0.5 < max(rates) <= 0.6
    with pytest.raises(ValueError, match=r"rate must lie in \[0, 1\)"):
        TokenDropping(rate=1.0)


def test_per_token_broadcasts_only_when_every_row_holds_one_video_from_its_start():
    per_video = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    shared = pack(_videos(), (1, 2, 2), max_tokens=24, num_rows=3)
    assert not shared.one_video_per_row()
    assert torch.equal(shared.per_token(per_video), shared.gather(per_video))
    alone = pack(_videos(), (1, 2, 2), max_tokens=24, one_per_row=True)
    assert alone.one_video_per_row() and alone.per_token(per_video).shape == (4, 1, 1)
    # Row i holds video i, so at every real token the broadcast value is the gathered one.
    expanded = alone.per_token(per_video).expand(*alone.video_ids.shape, 1)
    assert torch.equal(expanded[alone.mask], alone.gather(per_video)[alone.mask])

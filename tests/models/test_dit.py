import pytest
import torch

from videodiff.models.attention import GroupPlan, attention_groups
from videodiff.models.dit.embeddings import LabelEmbedder, MixedRope3D, Rope3D
from videodiff.models.dit.model import DiT, DiTBlock, parameter_counts
from videodiff.packing.pack import TokenDropping, kept_masks, pack, unpack

PATCH = (1, 2, 2)


def videos():
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 4, 6), (4, 1, 6, 4), (4, 5, 2, 2), (4, 2, 4, 4)]
    return [torch.randn(s, generator=g) for s in shapes]


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (the zero-initialised ones too) random values, so outputs are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def run(model, vids, max_tokens=24, keep=None, dropping=None, captions=None, labels=None, generator=None):
    batch = pack(vids, PATCH, max_tokens, keep=keep, dropping=dropping, generator=generator)
    timesteps = torch.arange(len(vids)) * 97 + 5
    out = model(batch.tokens, timesteps, batch, captions=captions, labels=labels)
    return batch, unpack(out, batch)


CONFIGS = [
    dict(attention="joint"),
    dict(attention="factorised", factorised="interleaved"),
    dict(attention="factorised", factorised="sequential"),
    dict(attention="joint", positions="sincos"),
    dict(attention="joint", positions="rope_mixed"),
    dict(attention="factorised", factorised="interleaved", positions="rope_mixed", rope_theta=100.0),
    dict(attention="factorised", factorised="sequential", text_dim=8, num_classes=5),
    dict(attention="joint", text_dim=8, pooled_captions=True),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("drop", [False, True], ids=["all-tokens", "dropped"])
def test_packed_equals_each_video_alone(config, drop):
    model = randomize(DiT(in_channels=4, patch_size=PATCH, depth=3, **config)).eval()
    vids = videos()
    g = torch.Generator().manual_seed(1)
    captions = [torch.randn(n, 8, generator=g) for n in (3, 1, 5)] + [None] if "text_dim" in config else None
    labels = torch.tensor([0, 4, 5, 2]) if "num_classes" in config else None
    dropping = TokenDropping(rate=0.4) if drop else None
    batch, packed = run(model, vids, dropping=dropping, captions=captions, labels=labels, generator=g)
    assert batch.tokens.shape[0] < len(vids)  # several videos really share rows
    keep = [m.nonzero().squeeze(1) for m in kept_masks(batch)]
    for i, video in enumerate(vids):
        alone = pack([video], PATCH, 24, keep=[keep[i]])
        t = (torch.arange(len(vids)) * 97 + 5)[i : i + 1]
        out = model(
            alone.tokens,
            t,
            alone,
            captions=None if captions is None else [captions[i]],
            labels=None if labels is None else labels[i : i + 1],
        )
        torch.testing.assert_close(unpack(out, alone)[0], packed[i], rtol=1e-5, atol=1e-5)


def test_pooled_captions_condition_adaln_per_video():
    """Pooling puts the caption into every token's modulation: with the cross-attention's output projection
    zeroed the caption still changes the output (and only its own video's), without pooling it cannot."""
    g = torch.Generator().manual_seed(2)
    captions = [torch.randn(3, 8, generator=g), torch.randn(2, 8, generator=g), None, torch.randn(4, 8, generator=g)]
    other = [captions[0], torch.randn(5, 8, generator=g), None, captions[3]]  # only video 1's caption differs
    for pooled in (True, False):
        model = randomize(DiT(in_channels=4, patch_size=PATCH, depth=2, text_dim=8, pooled_captions=pooled)).eval()
        with torch.no_grad():
            for block in model.blocks:
                block.cross.proj.weight.zero_()
                block.cross.proj.bias.zero_()
            _, a = run(model, videos(), captions=captions)
            _, b = run(model, videos(), captions=other)
        for i in (0, 2, 3):
            torch.testing.assert_close(a[i], b[i], rtol=1e-5, atol=1e-5)
        assert (a[1] - b[1]).abs().max() > 1e-3 if pooled else torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="pooled_captions needs caption conditioning"):
        DiT(in_channels=4, pooled_captions=True)


def test_pack_order_does_not_change_outputs():
    model = randomize(DiT(in_channels=4, patch_size=PATCH, attention="factorised")).eval()
    vids = videos()
    _, forward = run(model, vids)
    order = [2, 0, 3, 1]
    batch = pack([vids[i] for i in order], PATCH, 24)
    out = unpack(model(batch.tokens, (torch.arange(4) * 97 + 5)[order], batch), batch)
    for position, i in enumerate(order):
        torch.testing.assert_close(out[position], forward[i], rtol=1e-5, atol=1e-5)


def test_adaln_zero_output_is_exactly_zero_at_init():
    model = DiT(in_channels=4, patch_size=PATCH, text_dim=8)
    batch = pack(videos(), PATCH, 24)
    out = model(batch.tokens, torch.arange(4), batch, captions=[None] * 4)
    assert out.shape == (*batch.tokens.shape[:2], 2 * 16) and torch.count_nonzero(out) == 0


def test_factorised_spatial_attention_on_one_frame_is_joint_attention():
    torch.manual_seed(0)
    joint = randomize(DiTBlock(32, 2, ("joint",), 4.0, cross=False))
    spatial = DiTBlock(32, 2, ("spatial",), 4.0, cross=False)
    spatial.load_state_dict(joint.state_dict())
    cond = torch.randn(2, 32)

    def outputs(vids):
        batch = pack(vids, (1, 1, 1), max_tokens=64)
        plans = {
            k: GroupPlan(attention_groups(batch.video_ids, batch.coords, k), backend="loop")
            for k in ("joint", "spatial")
        }
        h = torch.randn(*batch.tokens.shape[:2], 32, generator=torch.Generator().manual_seed(3))
        rope = Rope3D(16).angles(batch.coords)
        return (block(h, cond, batch, plans, rope) for block in (joint, spatial))

    a, b = outputs([torch.zeros(1, 1, 4, 5), torch.zeros(1, 1, 3, 3)])  # images: T = 1
    torch.testing.assert_close(a, b)
    a, b = outputs([torch.zeros(1, 3, 4, 5), torch.zeros(1, 2, 3, 3)])  # videos: they must differ
    assert not torch.allclose(a, b)


def rope_scores(rope, q: torch.Tensor, k: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    cos, sin = rope.angles(coords)
    return Rope3D.rotate(q, cos, sin) @ Rope3D.rotate(k, cos, sin).transpose(-1, -2)


@pytest.mark.parametrize("rope", [Rope3D(24), MixedRope3D(24, num_heads=2)], ids=["axial", "mixed"])
def test_rope_scores_depend_only_on_relative_position(rope):
    q, k = torch.randn(1, 2, 10, 24), torch.randn(1, 2, 10, 24)
    coords = torch.randint(0, 20, (1, 10, 3))
    scores = rope_scores(rope, q, k, coords)
    torch.testing.assert_close(scores, rope_scores(rope, q, k, coords + torch.tensor([7, 3, 11])), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(scores, rope_scores(rope, q, k, coords * 2), rtol=1e-3, atol=1e-3)


def test_rope_theta_sets_each_axis_frequencies():
    # head_dim 12: two pairs per axis, turning 1 and theta^(-2/4) radians per token.
    model = DiT(in_channels=4, hidden_size=24, num_heads=2, depth=1, rope_theta=100.0)
    torch.testing.assert_close(model.rope.freqs, torch.tensor([1.0, 0.1] * 3))


def test_mixed_rope_turns_every_pair_with_time_and_learns_its_frequencies():
    torch.manual_seed(0)
    mixed = MixedRope3D(24, num_heads=2)
    # One frame later: axial RoPE turns only its time pairs (4 of 12), the mixed one every pair of every head.
    later = torch.tensor([[[0, 0, 0], [1, 0, 0]]])
    _, axial_sin = Rope3D(24).angles(later)  # sin, not cos: the slowest pairs turn by less than cos can show
    _, mixed_sin = mixed.angles(later)
    assert int((axial_sin[0, 0, 1] != 0).sum()) == 4 and bool((mixed_sin[0, :, 1] != 0).all())
    q, k = torch.randn(1, 2, 10, 24), torch.randn(1, 2, 10, 24)
    rope_scores(mixed, q, k, torch.randint(0, 20, (1, 10, 3))).square().sum().backward()
    assert mixed.freqs.grad is not None and mixed.freqs.grad.abs().min() > 0


@pytest.mark.parametrize("backend", ["sdpa", "varlen"])
def test_dit_backends_agree_with_the_loop(backend):
    vids = videos()
    outs = {}
    for name in ("loop", backend):
        # float64: the whole-model comparison then isolates the backends from fp32 rounding.
        model = randomize(
            DiT(
                in_channels=4, patch_size=PATCH, attention="factorised", factorised="sequential", attention_backend=name
            )
        ).double()
        batch = pack([v.double() for v in vids], PATCH, 24)
        out = model(batch.tokens, torch.arange(4) * 10, batch)
        grads = torch.autograd.grad(out.pow(2).sum(), list(model.parameters()))
        outs[name] = (out, grads)
    torch.testing.assert_close(outs[backend][0], outs["loop"][0], rtol=1e-10, atol=1e-10)
    for a, b in zip(outs[backend][1], outs["loop"][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_gradient_checkpointing_gives_the_same_gradients():
    vids = videos()
    grads = []
    for checkpointing in (False, True):
        model = randomize(DiT(in_channels=4, patch_size=PATCH, gradient_checkpointing=checkpointing)).train()
        batch = pack(vids, PATCH, 24)
        loss = model(batch.tokens, torch.arange(4), batch).pow(2).sum()
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_parameter_counts_and_presets():
    counts = parameter_counts(in_channels=4, patch_size=PATCH, size="tiny", depth=4)
    assert counts["joint"] == counts["factorised-interleaved"] < counts["factorised-sequential"]
    s = DiT(in_channels=4, size="S")
    assert (s.hidden_size, s.depth, s.num_heads) == (384, 12, 6)
    with pytest.raises(ValueError, match="unknown DiT size"):
        DiT(size="XXL")
    with pytest.raises(ValueError, match="cross-attends to captions"):
        m = DiT(text_dim=8)
        b = pack(videos(), PATCH, 24)
        m(b.tokens, torch.arange(4), b)


def test_label_sets_add_up_and_one_set_is_a_plain_class_table():
    single = LabelEmbedder(5, 8)
    labels = torch.tensor([0, 4, 5, 2])
    torch.testing.assert_close(single(labels), single.table.weight[labels])  # DiT's class embedding (5 = null)
    assert single.table.weight.shape == (6, 8)  # the same parameter as before several sets existed
    sets = LabelEmbedder([3, 2], 8)
    e = lambda a, b: sets(torch.tensor([[a, b]]))  # noqa: E731
    # Additive: changing one set's label moves the vector by the same amount whatever the other set holds,
    # so a combination never seen in training still gets its attributes' vectors.
    torch.testing.assert_close(e(0, 1) - e(0, 0), e(2, 1) - e(2, 0))
    torch.testing.assert_close(e(1, 2) - e(0, 2), e(1, 0) - e(0, 0))
    assert not torch.allclose(e(0, 0), e(1, 0)) and not torch.allclose(e(0, 0), e(0, 1))
    with pytest.raises(ValueError, match="out of range"):
        sets(torch.tensor([[0, 3]]))  # the second set has 2 classes + null: 3 would read another set's row
    with pytest.raises(ValueError, match="2 label sets"):
        sets(torch.tensor([0, 1]))


def test_one_video_per_row_modulation_equals_the_gathered_one():
    """Padded rows broadcast adaLN values over the row; outputs and gradients equal the per-token gather."""
    model = randomize(DiT(in_channels=4, patch_size=PATCH, depth=2, num_classes=5))
    vids, timesteps, labels = videos(), torch.tensor([5, 300, 600, 900]), torch.tensor([0, 1, 5, 3])
    results = []
    for broadcast in (True, False):
        batch = pack(vids, PATCH, 18, one_per_row=True)
        assert batch.one_video_per_row()
        batch._one_per_row = broadcast  # False: take the general gather path on the same batch
        tokens = batch.tokens.clone().requires_grad_(True)
        out = model(tokens, timesteps, batch, labels=labels)
        out.pow(2).sum().backward()
        results.append((out.detach(), tokens.grad, batch.mask))
        model.zero_grad()
    (fast, fast_grad, mask), (slow, slow_grad, _) = results
    assert mask.logical_not().any()  # some rows are padded
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-5, atol=1e-5)
    assert (fast[~mask] == 0).all()

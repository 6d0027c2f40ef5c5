import pytest
import torch

from videodiff.models.attention import attention_groups, group_attention, resolve_backend
from videodiff.packing.pack import pack


def _case(seed=0, rows=3, length=40, heads=2, dim=8, kv_length=None):
    """Rows with groups of assorted sizes, single-token groups and padding."""
    g = torch.Generator().manual_seed(seed)
    q_groups = torch.full((rows, length), -1)
    next_id = 0
    for r in range(rows):
        pos = 0
        while pos < length - 3:
            n = int(torch.randint(1, 9, (), generator=g))
            n = min(n, length - 3 - pos)
            q_groups[r, pos : pos + n] = next_id
            next_id += 1
            pos += n
    q = torch.randn(rows, heads, length, dim, generator=g, dtype=torch.float64)
    if kv_length is None:
        k = torch.randn(rows, heads, length, dim, generator=g, dtype=torch.float64)
        v = torch.randn(rows, heads, length, dim, generator=g, dtype=torch.float64)
        return q, k, v, q_groups, None
    kv_groups = torch.full((rows, kv_length), -1)
    for r in range(rows):
        ids = q_groups[r][q_groups[r] >= 0].unique()
        slots = torch.randint(0, len(ids), (kv_length - 2,), generator=g)
        kv_groups[r, : kv_length - 2] = ids[slots]
    k = torch.randn(rows, heads, kv_length, dim, generator=g, dtype=torch.float64)
    v = torch.randn(rows, heads, kv_length, dim, generator=g, dtype=torch.float64)
    return q, k, v, q_groups, kv_groups


def _brute(q, k, v, q_groups, kv_groups):
    kv_groups = q_groups if kv_groups is None else kv_groups
    out = torch.zeros_like(q)
    for r in range(q.shape[0]):
        for i in range(q.shape[2]):
            keys = (kv_groups[r] == q_groups[r, i]).nonzero(as_tuple=True)[0]
            if q_groups[r, i] < 0 or len(keys) == 0:
                continue
            scores = torch.einsum("hd,hnd->hn", q[r, :, i], k[r][:, keys]) / q.shape[-1] ** 0.5
            out[r, :, i] = torch.einsum("hn,hnd->hd", torch.softmax(scores, -1), v[r][:, keys])
    return out


@pytest.mark.parametrize("kv_length", [None, 17])
def test_loop_reference_equals_explicit_softmax(kv_length):
    q, k, v, qg, kg = _case(kv_length=kv_length)
    torch.testing.assert_close(group_attention(q, k, v, qg, kg, backend="loop"), _brute(q, k, v, qg, kg))


@pytest.mark.parametrize("backend", ["sdpa", "varlen"])
@pytest.mark.parametrize("kv_length", [None, 17])
def test_backends_equal_the_loop_forward_and_backward(backend, kv_length):
    q, k, v, qg, kg = _case(seed=1, kv_length=kv_length)
    q, k, v = (x.float().requires_grad_() for x in (q, k, v))
    grad = torch.randn_like(q)
    ref = group_attention(q, k, v, qg, kg, backend="loop")
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad)
    out = group_attention(q, k, v, qg, kg, backend=backend)
    grads = torch.autograd.grad(out, (q, k, v), grad)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert (out[:, :, -3:] == 0).all()  # padding queries


def test_flex_forward_equals_the_loop_on_cpu_and_refuses_backward():
    q, k, v, qg, _ = _case(seed=2, length=64)
    q, k, v = (x.float() for x in (q, k, v))
    with torch.no_grad():
        torch.testing.assert_close(
            group_attention(q, k, v, qg, backend="flex"),
            group_attention(q, k, v, qg, backend="loop"),
            rtol=1e-5,
            atol=1e-5,
        )
    with pytest.raises(RuntimeError, match="no backward pass on CPU"):
        group_attention(q.requires_grad_(), k, v, qg, backend="flex")


def test_groups_for_each_layout():
    videos = [torch.zeros(1, 2, 2, 3), torch.zeros(1, 3, 1, 2)]
    batch = pack(videos, (1, 1, 1), max_tokens=20)
    joint = attention_groups(batch.video_ids, batch.coords, "joint")
    spatial = attention_groups(batch.video_ids, batch.coords, "spatial")
    temporal = attention_groups(batch.video_ids, batch.coords, "temporal")
    count = lambda g: len(g[g >= 0].unique())
    assert count(joint) == 2 and count(spatial) == 2 + 3 and count(temporal) == 6 + 2
    for groups in (joint, spatial, temporal):
        assert (groups[~batch.mask] == -1).all()
        # a group never spans two videos
        for gid in groups[groups >= 0].unique():
            assert len(batch.video_ids[groups == gid].unique()) == 1
    with pytest.raises(ValueError, match="unknown attention layout"):
        attention_groups(batch.video_ids, batch.coords, "diagonal")


def test_backend_resolution():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu, 64, 64) == "sdpa"
    assert resolve_backend("auto", cpu, 4096, 4096) == "varlen"
    assert resolve_backend("loop", cpu, 1, 1) == "loop"
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("xformers", cpu, 1, 1)


@pytest.mark.parametrize("backend", ["sdpa", "varlen"])
def test_one_unpadded_group_per_row_needs_no_mask_and_equals_the_loop(backend):
    from videodiff.models.attention import GroupPlan

    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, 2, 16, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    groups = torch.arange(3)[:, None].expand(3, 16)  # row r is group r, every token real
    plan = GroupPlan(groups, backend=backend)
    assert plan.all_have_keys and (backend != "sdpa" or plan.dense_mask is None)
    out = plan(q, k, v)
    expected = group_attention(q, k, v, groups, backend="loop")
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    torch.testing.assert_close(grads, torch.autograd.grad(expected.sum(), (q, k, v)))
    # With one padded token the mask (and the zeroing) come back.
    padded = groups.clone()
    padded[0, -1] = -1
    plan = GroupPlan(padded, backend=backend)
    assert not plan.all_have_keys and (backend != "sdpa" or plan.dense_mask is not None)
    assert (plan(q, k, v)[0, :, -1] == 0).all()

"""GPU-only paths: compiled FlexAttention and flash-attn varlen on CUDA, the DiT on GPU, bf16."""

import pytest
import torch

from videodiff.models.attention import flash_attn_available, group_attention, resolve_backend
from videodiff.models.dit.model import DiT
from videodiff.packing.pack import pack, unpack

from .test_attention import _case
from .test_dit import PATCH, randomize, videos

pytestmark = pytest.mark.gpu
cuda = torch.device("cuda")


@pytest.mark.parametrize("backend", ["sdpa", "varlen", "flex"])
@pytest.mark.parametrize("length", [40, 300])
def test_cuda_backends_equal_the_loop_forward_and_backward(backend, length):
    q, k, v, qg, _ = _case(seed=4, length=length, heads=4, dim=64)
    q, k, v = (x.float().to(cuda).requires_grad_() for x in (q, k, v))
    qg = qg.to(cuda)
    grad = torch.randn_like(q)
    ref = group_attention(q, k, v, qg, backend="loop")
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad)
    out = group_attention(q, k, v, qg, backend=backend)
    grads = torch.autograd.grad(out, (q, k, v), grad)
    # TF32 / fused kernels: fp32 inputs, but kernels may accumulate differently.
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def test_auto_picks_a_fused_backend_on_cuda():
    assert resolve_backend("auto", cuda, 1024, 1024) == ("varlen" if flash_attn_available() else "flex")


@pytest.mark.parametrize("backend", ["flex", "varlen"])
def test_packed_equals_alone_on_cuda(backend):
    model = (
        randomize(
            DiT(
                in_channels=4,
                patch_size=PATCH,
                attention="factorised",
                factorised="sequential",
                attention_backend=backend,
            )
        )
        .to(cuda)
        .eval()
    )
    vids = [v.to(cuda) for v in videos()]
    batch = pack(vids, PATCH, 24)
    packed = unpack(model(batch.tokens, torch.arange(4, device=cuda), batch), batch)
    for i, v in enumerate(vids):
        alone = pack([v], PATCH, 24)
        out = unpack(model(alone.tokens, torch.arange(4, device=cuda)[i : i + 1], alone), alone)[0]
        torch.testing.assert_close(out, packed[i], rtol=1e-4, atol=1e-4)


def test_bf16_autocast_stays_close_to_fp32():
    model = randomize(DiT(in_channels=4, patch_size=PATCH, attention_backend="flex"), seed=1).to(cuda)
    batch = pack([v.to(cuda) for v in videos()], PATCH, 24)
    reference = model(batch.tokens, torch.arange(4, device=cuda), batch)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = model(batch.tokens, torch.arange(4, device=cuda), batch)
    assert torch.isfinite(low).all()
    error = (low.float() - reference).norm() / reference.norm()
    assert error < 0.05, error

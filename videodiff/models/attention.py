"""Attention restricted to groups: one primitive for joint, factorised and cross attention over packed rows.

Every token carries a group id; a query attends only to keys of its own group. Packed rows hold several
videos, so the groups are: joint space-time = the video; factorised spatial = (video, t); factorised
temporal = (video, h, w); cross-attention = the video (its caption's tokens). Ids are unique across the
whole batch and -1 marks padding. Padding queries, and queries whose group has no key, return zeros.

Backends (all equal to ``loop``, the per-group reference, forward and backward):
- ``loop``: one SDPA call per group. Simple and exact; slow with many groups.
- ``sdpa``: one SDPA call per row with a dense boolean block mask. Its cost is quadratic in the *row*,
  not in the groups, so it only pays for short rows.
- ``varlen``: tokens sorted by group; with flash-attn on CUDA, its variable-length kernel; otherwise groups
  of equal (query, key) length are stacked into one batched SDPA call each (cost follows the real groups).
- ``flex``: FlexAttention with a block mask (compiled on CUDA; forward only on CPU, a PyTorch limit).
``auto`` picks flash varlen or flex on CUDA, and on CPU the dense mask for short rows, else ``varlen``.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Literal

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

Backend = Literal["auto", "loop", "sdpa", "varlen", "flex"]
Layout = Literal["joint", "spatial", "temporal"]
BACKENDS = ("auto", "loop", "sdpa", "varlen", "flex")
# Rows up to this many query x key pairs run faster as one dense masked call than sorted into groups (CPU).
DENSE_PAIRS_LIMIT = 256 * 256
_announced: set[tuple[str, str]] = set()


def attention_groups(video_ids: torch.Tensor, coords: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Group id of every token for a layout: (R, L) long, unique across the batch, -1 for padding."""
    if layout == "joint":
        groups = video_ids.clone()
    else:
        size = int(coords.max()) + 1 if coords.numel() else 1
        t, h, w = coords.unbind(-1)
        if layout == "spatial":
            groups = video_ids * size + t
        elif layout == "temporal":
            groups = (video_ids * size + h) * size + w
        else:
            raise ValueError(f"unknown attention layout {layout!r}; expected 'joint', 'spatial' or 'temporal'")
    return torch.where(video_ids >= 0, groups, torch.full_like(groups, -1))


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_backend(backend: Backend, device: torch.device, q_len: int, kv_len: int) -> str:
    """The backend that will run; explicit choices that cannot run here raise a clear error."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        choice = "varlen" if flash_attn_available() else "flex"
    else:
        choice = "sdpa" if q_len * kv_len <= DENSE_PAIRS_LIMIT else "varlen"
    if (device.type, choice) not in _announced:
        _announced.add((device.type, choice))
        log.info("attention backend 'auto' chose %r on %s (rows of %d x %d)", choice, device.type, q_len, kv_len)
    return choice


def group_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_groups: torch.Tensor,
    kv_groups: torch.Tensor | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Scaled dot-product attention within groups.

    Args:
        q: (R, H, L, Dh); k, v: (R, H, S, Dh).
        q_groups: (R, L) group id per query (-1 = padding); kv_groups: (R, S), default ``q_groups``.
        backend: see the module docstring.
    Returns:
        (R, H, L, Dh), zeros for padding queries.
    """
    kv_groups = q_groups if kv_groups is None else kv_groups
    choice = resolve_backend(backend, q.device, q.shape[2], k.shape[2])
    if choice == "loop":
        return _loop(q, k, v, q_groups, kv_groups)
    if choice == "sdpa":
        return _dense(q, k, v, q_groups, kv_groups)
    if choice == "varlen":
        return _varlen(q, k, v, q_groups, kv_groups)
    return _flex(q, k, v, q_groups, kv_groups)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).reshape(-1, x.shape[1], x.shape[3])  # (R, H, L, Dh) -> (R L, H, Dh)


def _unflatten(x: torch.Tensor, rows: int) -> torch.Tensor:
    return x.reshape(rows, -1, x.shape[1], x.shape[2]).transpose(1, 2)  # (R L, H, Dh) -> (R, H, L, Dh)


def _loop(q, k, v, q_groups, kv_groups):
    """The reference: one attention call per group, written for clarity, not speed."""
    q_flat, k_flat, v_flat = _flatten(q), _flatten(k), _flatten(v)  # (R L, H, Dh)
    q_ids, k_ids = q_groups.reshape(-1), kv_groups.reshape(-1)
    out = torch.zeros_like(q_flat)
    for g in q_ids.unique().tolist():
        queries, keys = (q_ids == g).nonzero(as_tuple=True)[0], (k_ids == g).nonzero(as_tuple=True)[0]
        if g < 0 or len(keys) == 0:
            continue
        attended = F.scaled_dot_product_attention(  # (H, n, Dh) per group
            q_flat[queries].transpose(0, 1), k_flat[keys].transpose(0, 1), v_flat[keys].transpose(0, 1)
        )
        out = out.index_put((queries,), attended.transpose(0, 1))
    return _unflatten(out, q.shape[0])


def _dense(q, k, v, q_groups, kv_groups):
    mask = (q_groups[:, :, None] == kv_groups[:, None, :]) & (q_groups >= 0)[:, :, None]  # (R, L, S)
    has_key = mask.any(-1, keepdim=True)
    # A query with no key would give NaN; let it attend to everything and zero it afterwards.
    mask = mask | ~has_key
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
    return out * has_key[:, None].to(out.dtype)


def _sorted_groups(groups: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions sorted by dense group index, and each dense group's start offset (cu_seqlens)."""
    flat = groups.reshape(-1)
    valid = (flat >= 0).nonzero(as_tuple=True)[0]
    dense = torch.searchsorted(ids, flat[valid])
    order = torch.argsort(dense, stable=True)
    counts = torch.bincount(dense, minlength=len(ids))
    starts = torch.zeros(len(ids) + 1, dtype=torch.long, device=groups.device)
    starts[1:] = counts.cumsum(0)
    return valid[order], starts


def _varlen(q, k, v, q_groups, kv_groups):
    rows = q.shape[0]
    valid_q, valid_k = q_groups[q_groups >= 0], kv_groups[kv_groups >= 0]
    ids = torch.unique(torch.cat([valid_q, valid_k]))
    q_pos, q_starts = _sorted_groups(q_groups, ids)
    k_pos, k_starts = _sorted_groups(kv_groups, ids)
    q_flat, k_flat, v_flat = _flatten(q), _flatten(k), _flatten(v)
    out = torch.zeros_like(q_flat)
    q_len, k_len = q_starts.diff(), k_starts.diff()
    if q.is_cuda and flash_attn_available():
        from flash_attn import flash_attn_varlen_func

        attended = flash_attn_varlen_func(
            q_flat[q_pos],
            k_flat[k_pos],
            v_flat[k_pos],
            q_starts.int(),
            k_starts.int(),
            int(q_len.max()),
            int(k_len.max()),
        )
        # Groups with queries but no keys: flash returns zeros for them already.
        return _unflatten(out.index_put((q_pos,), attended), rows)
    # Stack groups of equal (query, key) length into one batched SDPA call per distinct pair.
    pairs = torch.stack([q_len, k_len], dim=1)
    for lq, lk in torch.unique(pairs, dim=0).tolist():
        if lq == 0 or lk == 0:
            continue
        members = ((q_len == lq) & (k_len == lk)).nonzero(as_tuple=True)[0]
        q_index = q_pos[q_starts[members][:, None] + torch.arange(lq, device=q.device)]  # (G, lq)
        k_index = k_pos[k_starts[members][:, None] + torch.arange(lk, device=q.device)]  # (G, lk)
        attended = F.scaled_dot_product_attention(
            q_flat[q_index].transpose(1, 2), k_flat[k_index].transpose(1, 2), v_flat[k_index].transpose(1, 2)
        )  # (G, H, lq, Dh)
        out = out.index_put((q_index.reshape(-1),), attended.transpose(1, 2).reshape(-1, *q_flat.shape[1:]))
    return _unflatten(out, rows)


def _flex(q, k, v, q_groups, kv_groups):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise RuntimeError(
            "attention backend 'flex' has no backward pass on CPU in PyTorch; use 'varlen' or 'sdpa' "
            "(or 'auto') for CPU training, or run under torch.no_grad()"
        )

    def mask_mod(b, h, qi, ki):
        return (q_groups[b, qi] == kv_groups[b, ki]) & (q_groups[b, qi] >= 0)

    block_mask = create_block_mask(mask_mod, q.shape[0], None, q.shape[2], k.shape[2], device=q.device)
    run = _compiled_flex() if q.is_cuda else flex_attention
    out = run(q, k, v, block_mask=block_mask)
    has_key = ((q_groups[:, :, None] == kv_groups[:, None, :]).any(-1) & (q_groups >= 0))[:, None, :, None]
    return out * has_key.to(out.dtype)


_flex_compiled = None


def _compiled_flex():
    global _flex_compiled
    if _flex_compiled is None:
        from torch.nn.attention.flex_attention import flex_attention

        # dynamic=None: row and group shapes vary batch to batch; after the first recompile the varying
        # dims are treated as dynamic instead of compiling one kernel per shape.
        _flex_compiled = torch.compile(flex_attention)
    return _flex_compiled

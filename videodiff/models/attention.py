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


class GroupPlan:
    """Everything about a group layout that does not depend on q, k, v, computed once per batch.

    A DiT applies the same layout in every block; the masks, sort orders and length buckets are built here
    once and reused by every layer (and by the backward pass).

    Args:
        q_groups: (R, L) group id per query (-1 = padding).
        kv_groups: (R, S) group id per key, default ``q_groups`` (self-attention).
        backend: see the module docstring.
    """

    def __init__(self, q_groups: torch.Tensor, kv_groups: torch.Tensor | None = None, backend: Backend = "auto"):
        self.q_groups = q_groups
        self.kv_groups = q_groups if kv_groups is None else kv_groups
        self.backend = resolve_backend(backend, q_groups.device, q_groups.shape[1], self.kv_groups.shape[1])
        # Queries with at least one key of their group (others return zeros): (R, L). Group ids are unique
        # across the batch and never span rows, so membership can be tested batch-wide.
        self.has_key = (self.q_groups >= 0) & torch.isin(self.q_groups, self.kv_groups)
        # Every query has keys (no padding): the outputs need no zeroing (one multiply less per layer).
        self.all_have_keys = bool(self.has_key.all())
        if self.backend == "sdpa":
            same = self.q_groups[:, :, None] == self.kv_groups[:, None, :]  # (R, L, S)
            # A query with no key would give NaN; let it attend to everything and zero it afterwards.
            self.dense_mask = (same | ~self.has_key[:, :, None])[:, None]  # (R, 1, L, S)
            if bool(self.dense_mask.all()):  # one unpadded group per row (DiT's image layout): no mask to apply
                self.dense_mask = None
        elif self.backend == "varlen":
            self._prepare_varlen()
        elif self.backend == "flex":
            self._prepare_flex()

    def _prepare_varlen(self) -> None:
        valid_q, valid_k = self.q_groups[self.q_groups >= 0], self.kv_groups[self.kv_groups >= 0]
        ids = torch.unique(torch.cat([valid_q, valid_k]))
        self.q_pos, self.q_starts = _sorted_groups(self.q_groups, ids)
        self.k_pos, self.k_starts = _sorted_groups(self.kv_groups, ids)
        q_len, k_len = self.q_starts.diff(), self.k_starts.diff()
        self.max_q = int(q_len.max()) if len(q_len) else 0
        self.max_k = int(k_len.max()) if len(k_len) else 0
        # Groups of equal (query, key) length, stacked for one batched SDPA call each (the CPU path).
        self.buckets = []
        device = self.q_groups.device
        for lq, lk in torch.unique(torch.stack([q_len, k_len], dim=1), dim=0).tolist():
            if lq == 0 or lk == 0:
                continue
            members = ((q_len == lq) & (k_len == lk)).nonzero(as_tuple=True)[0]
            q_index = self.q_pos[self.q_starts[members][:, None] + torch.arange(lq, device=device)]  # (G, lq)
            k_index = self.k_pos[self.k_starts[members][:, None] + torch.arange(lk, device=device)]  # (G, lk)
            self.buckets.append((q_index, k_index))
        # The buckets' outputs are concatenated, then gathered back to row order in one index_select: one
        # scatter per layer instead of one per bucket, and gathers whose backward is a cheap index_add.
        # Queries outside every bucket (padding, or no key in their group) read an appended zero row.
        concat = torch.cat([q.reshape(-1) for q, _ in self.buckets]) if self.buckets else self.q_pos[:0]
        self.inverse = torch.full((self.q_groups.numel(),), len(concat), dtype=torch.long, device=device)
        self.inverse[concat] = torch.arange(len(concat), device=device)

    def _prepare_flex(self) -> None:
        from torch.nn.attention.flex_attention import create_block_mask

        q_groups, kv_groups = self.q_groups, self.kv_groups

        def mask_mod(b, h, qi, ki):
            return (q_groups[b, qi] == kv_groups[b, ki]) & (q_groups[b, qi] >= 0)

        rows, length, kv_length = q_groups.shape[0], q_groups.shape[1], kv_groups.shape[1]
        self.block_mask = create_block_mask(mask_mod, rows, None, length, kv_length, device=q_groups.device)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(R, H, L, Dh) queries, (R, H, S, Dh) keys and values -> (R, H, L, Dh), zeros at padding."""
        if self.backend == "loop":
            return _loop(q, k, v, self.q_groups, self.kv_groups)
        if self.backend == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.dense_mask)
        elif self.backend == "varlen":
            out = self._varlen(q, k, v)
        else:
            out = self._flex(q, k, v)
        return out if self.all_have_keys else out * self.has_key[:, None, :, None].to(out.dtype)

    def _varlen(self, q, k, v):
        q_flat, k_flat, v_flat = _flatten(q), _flatten(k), _flatten(v)
        if q.is_cuda and flash_attn_available():
            from flash_attn import flash_attn_varlen_func

            attended = flash_attn_varlen_func(
                q_flat[self.q_pos],
                k_flat[self.k_pos],
                v_flat[self.k_pos],
                self.q_starts.int(),
                self.k_starts.int(),
                self.max_q,
                self.max_k,
            )
            return _unflatten(torch.zeros_like(q_flat).index_put((self.q_pos,), attended), q.shape[0])
        heads, dim = q_flat.shape[1:]

        def gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # (G, n) -> (G, H, n, Dh)
            return x.index_select(0, index.reshape(-1)).view(*index.shape, heads, dim).transpose(1, 2)

        parts = [
            F.scaled_dot_product_attention(gather(q_flat, qi), gather(k_flat, ki), gather(v_flat, ki))
            .transpose(1, 2)
            .reshape(-1, heads, dim)  # (G lq, H, Dh)
            for qi, ki in self.buckets
        ]
        parts.append(q_flat.new_zeros(1, heads, dim))
        return _unflatten(torch.cat(parts).index_select(0, self.inverse), q.shape[0])

    def _flex(self, q, k, v):
        from torch.nn.attention.flex_attention import flex_attention

        if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
            raise RuntimeError(
                "attention backend 'flex' has no backward pass on CPU in PyTorch; use 'varlen' or 'sdpa' "
                "(or 'auto') for CPU training, or run under torch.no_grad()"
            )
        run = _compiled_flex() if q.is_cuda else flex_attention
        return run(q, k, v, block_mask=self.block_mask)


def group_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_groups: torch.Tensor,
    kv_groups: torch.Tensor | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Scaled dot-product attention within groups (a one-off ``GroupPlan``; reuse a plan across layers).

    Args:
        q: (R, H, L, Dh); k, v: (R, H, S, Dh).
        q_groups: (R, L) group id per query (-1 = padding); kv_groups: (R, S), default ``q_groups``.
        backend: see the module docstring.
    Returns:
        (R, H, L, Dh), zeros for padding queries.
    """
    return GroupPlan(q_groups, kv_groups, backend)(q, k, v)


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


_flex_compiled = None


def _compiled_flex():
    global _flex_compiled
    if _flex_compiled is None:
        from torch.nn.attention.flex_attention import flex_attention

        # dynamic=None: row and group shapes vary batch to batch; after the first recompile the varying
        # dims are treated as dynamic instead of compiling one kernel per shape.
        _flex_compiled = torch.compile(flex_attention)
    return _flex_compiled

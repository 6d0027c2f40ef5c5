"""The Diffusion Transformer over packed spacetime patches (a plain nn.Module).

adaLN-Zero blocks (Peebles & Xie 2023) whose modulation is computed once per video from its conditioning
vector (timestep [+ class]) and gathered to the video's tokens; attention is restricted to groups
(``models/attention.py``), so a packed row of many videos gives each video exactly what it would get alone.
Layouts: ``joint`` (every block attends over all of a video's space-time tokens) or ``factorised``, either
``interleaved`` (Latte's variant 1: spatial and temporal blocks alternate) or ``sequential`` (each block
attends spatially then temporally, STDiT-style). Captions enter by cross-attention (PixArt / Open-Sora).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from videodiff.models.attention import Backend, GroupPlan, Layout, attention_groups
from videodiff.models.dit.embeddings import (
    CaptionProjection,
    LabelEmbedder,
    MixedRope3D,
    Rope3D,
    SinCos3D,
    TimestepEmbedder,
)
from videodiff.packing.pack import PackedBatch

SizeName = Literal["tiny", "S", "B", "L", "XL"]
# (hidden size, depth, heads): DiT's Table 1, plus a CPU-test size.
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (32, 2, 2),
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "XL": (1152, 28, 16),
}


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class GroupAttention(nn.Module):
    """Multi-head attention within groups; self-attention gets rotary positions when given."""

    def __init__(self, hidden_size: int, num_heads: int, kv_dim: int | None = None):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(hidden_size, hidden_size)
        self.kv = nn.Linear(kv_dim or hidden_size, 2 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x, plan: GroupPlan, rope=None, context=None):
        heads = lambda t: t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # (R, L, C) -> (R, H, L, Dh)
        q = heads(self.q(x))
        k, v = (heads(t) for t in self.kv(x if context is None else context).chunk(2, dim=-1))
        if rope is not None:
            cos, sin = rope
            q, k = Rope3D.rotate(q, cos, sin), Rope3D.rotate(k, cos, sin)
        out = plan(q, k, v)  # (R, H, L, Dh)
        return self.proj(out.transpose(1, 2).flatten(2))


class DiTBlock(nn.Module):
    """Self-attention sublayers (one per entry of ``layouts``), optional cross-attention, MLP; adaLN-Zero."""

    def __init__(self, hidden_size: int, num_heads: int, layouts: Sequence[Layout], mlp_ratio: float, cross: bool):
        super().__init__()
        self.layouts = tuple(layouts)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6) for _ in layouts)
        self.attns = nn.ModuleList(GroupAttention(hidden_size, num_heads) for _ in layouts)
        self.cross = GroupAttention(hidden_size, num_heads) if cross else None
        self.cross_norm = nn.LayerNorm(hidden_size, eps=1e-6) if cross else None
        self.mlp_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        width = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden_size)
        )
        # shift, scale, gate for each attention sublayer and for the MLP.
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 3 * (len(layouts) + 1) * hidden_size))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x, cond, batch: PackedBatch, plans: dict, rope=None, context=None):
        """``plans`` maps each layout (and ``"cross"``) to its ``GroupPlan``; ``context`` is (R, S, C) tokens."""
        # Each (R, L, C), or (R, 1, C) with one video per row; padding outputs are masked by the DiT.
        mods = batch.per_token(self.modulation(cond)).chunk(3 * (len(self.layouts) + 1), dim=-1)
        for i, (layout, norm, attn) in enumerate(zip(self.layouts, self.norms, self.attns, strict=True)):
            shift, scale, gate = mods[3 * i : 3 * i + 3]
            x = x + gate * attn(modulate(norm(x), shift, scale), plans[layout], rope=rope)
        if self.cross is not None:
            x = x + self.cross(self.cross_norm(x), plans["cross"], context=context)
        shift, scale, gate = mods[-3:]
        return x + gate * self.mlp(modulate(self.mlp_norm(x), shift, scale))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, out_dim)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        for layer in (self.linear, self.modulation[1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, cond, batch: PackedBatch):
        shift, scale = batch.per_token(self.modulation(cond)).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """Diffusion Transformer on packed latent tokens.

    The first four arguments depend on the rest of the system (the autoencoder's latent channels, the text
    encoder's width, the label set, the diffusion's variance), so ``DiTModule`` supplies them and a config
    states only the backbone's own choices.

    Args:
        in_channels: latent channels C.
        text_dim: width of caption token states; None disables cross-attention.
        num_classes: enable class conditioning through adaLN (label ``num_classes`` is the null class); a
            list gives several label sets (one label per set and video), their embeddings summed.
        learn_sigma: output 2 x the patch features (prediction, then variance values) for learned variance.
        patch_size: (pt, ph, pw).
        size: a preset from ``PRESETS``; ``hidden_size``, ``depth`` and ``num_heads`` override it.
        attention: ``joint`` or ``factorised`` space-time attention.
        factorised: ``interleaved`` (alternate spatial / temporal blocks) or ``sequential`` (both per block).
        positions: ``rope`` (3-D rotary, default), ``rope_mixed`` (rotary with learned space-time frequency
            directions per head, ``MixedRope3D``) or ``sincos`` (additive factorised 3-D sin-cos).
        rope_theta: RoPE's base period. Each axis gets a third of a head's feature pairs with frequencies
            from 1 down to ``1 / rope_theta`` per token, so on small heads and grids a lower base keeps more
            of them at scales the grid can tell apart.
        attention_backend: see ``models/attention.py``.
        gradient_checkpointing: recompute each block in the backward pass (activation memory per block).
        pooled_captions: also add the mean of each video's projected caption tokens, through an MLP, to
            the adaLN conditioning (as SD3 adds its pooled text vector): a per-video signal that reaches
            every token from the first step, beside the cross-attention to the tokens.
    """

    def __init__(
        self,
        in_channels: int = 4,
        text_dim: int | None = None,
        num_classes: int | list[int] | None = None,
        learn_sigma: bool = True,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        size: SizeName = "tiny",
        hidden_size: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        attention: Literal["joint", "factorised"] = "joint",
        factorised: Literal["interleaved", "sequential"] = "interleaved",
        positions: Literal["rope", "rope_mixed", "sincos"] = "rope",
        rope_theta: float = 10000.0,
        attention_backend: Backend = "auto",
        gradient_checkpointing: bool = False,
        pooled_captions: bool = False,
    ):
        super().__init__()
        # Everything needed to rebuild this network from a checkpoint alone.
        self.config = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in locals().items() if k not in ("self", "__class__")
        }
        layout = attention
        if size not in PRESETS:
            raise ValueError(f"unknown DiT size {size!r}; expected one of {sorted(PRESETS)}")
        if layout not in ("joint", "factorised") or factorised not in ("interleaved", "sequential"):
            raise ValueError(f"unknown attention {layout!r} / factorised {factorised!r}")
        preset_hidden, preset_depth, preset_heads = PRESETS[size]
        hidden = hidden_size or preset_hidden
        self.depth, self.num_heads = depth or preset_depth, num_heads or preset_heads
        self.in_channels, self.patch_size, self.hidden_size = in_channels, tuple(patch_size), hidden
        self.patch_dim = in_channels * patch_size[0] * patch_size[1] * patch_size[2]
        self.out_factor = 2 if learn_sigma else 1
        self.layout, self.factorised, self.positions = layout, factorised, positions
        self.attention_backend, self.gradient_checkpointing = attention_backend, gradient_checkpointing

        self.embed = nn.Linear(self.patch_dim, hidden)
        self.timestep = TimestepEmbedder(hidden)
        self.labels = LabelEmbedder(num_classes, hidden) if num_classes else None
        self.captions = CaptionProjection(text_dim, hidden) if text_dim else None
        if pooled_captions and not text_dim:
            raise ValueError("pooled_captions needs caption conditioning (text_dim)")
        self.pooled = (
            nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)) if pooled_captions else None
        )
        if positions == "rope":
            self.rope, self.sincos = Rope3D(hidden // self.num_heads, rope_theta), None
        elif positions == "rope_mixed":
            self.rope, self.sincos = MixedRope3D(hidden // self.num_heads, self.num_heads, rope_theta), None
        elif positions == "sincos":
            self.rope, self.sincos = None, SinCos3D(hidden)
        else:
            raise ValueError(f"unknown positions {positions!r}; expected 'rope', 'rope_mixed' or 'sincos'")
        self.blocks = nn.ModuleList(
            DiTBlock(hidden, self.num_heads, self.block_layouts(i), mlp_ratio, cross=text_dim is not None)
            for i in range(self.depth)
        )
        self.final = FinalLayer(hidden, self.patch_dim * self.out_factor)
        self._init_weights()

    def block_layouts(self, index: int) -> tuple[Layout, ...]:
        if self.layout == "joint":
            return ("joint",)
        if self.factorised == "sequential":
            return ("spatial", "temporal")
        return ("spatial",) if index % 2 == 0 else ("temporal",)

    def _init_weights(self) -> None:
        def xavier(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        for name, module in self.named_modules():
            if "modulation" not in name and not name.startswith("final"):
                xavier(module)
        nn.init.normal_(self.timestep.mlp[0].weight, std=0.02)
        nn.init.normal_(self.timestep.mlp[2].weight, std=0.02)
        if self.pooled is not None:  # the same scale as the timestep embedding it is added to
            nn.init.normal_(self.pooled[0].weight, std=0.02)
            nn.init.normal_(self.pooled[2].weight, std=0.02)

    def condition(
        self,
        timesteps: torch.Tensor,
        labels: torch.Tensor | None = None,
        captions: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(N,) per-video timesteps [+ labels] [+ pooled captions] -> (N, hidden) conditioning vectors.

        ``captions`` are the projected caption tokens, (n_i, hidden) per video (``CaptionProjection``).
        """
        cond = self.timestep(timesteps)
        if self.labels is not None:
            if labels is None:
                raise ValueError("this DiT is class-conditional: pass labels, (N,) or (N, sets) (num_classes = null)")
            cond = cond + self.labels(labels)
        if self.pooled is not None:
            if captions is None or len(captions) != len(timesteps):
                raise ValueError(f"this DiT pools captions: pass one per video ({len(timesteps)})")
            pooled = torch.stack([c.mean(dim=0) for c in captions])  # (N, C)
            cond = cond + self.pooled(pooled.to(cond.dtype))
        return cond

    def _context(self, projected: Sequence[torch.Tensor], batch: PackedBatch):
        """Projected caption tokens packed by row beside their videos: (R, S, hidden) and their groups."""
        rows = batch.tokens.shape[0]
        per_row: list[list[tuple[int, torch.Tensor]]] = [[] for _ in range(rows)]
        for i, states in enumerate(projected):
            per_row[int(batch.rows[i])].append((i, states))
        length = max(1, max(sum(len(t) for _, t in row) for row in per_row))
        tokens = batch.tokens.new_zeros(rows, length, self.hidden_size)
        groups = torch.full((rows, length), -1, dtype=torch.long, device=batch.tokens.device)
        for r, row in enumerate(per_row):
            offset = 0
            for i, states in row:
                tokens[r, offset : offset + len(states)] = states
                groups[r, offset : offset + len(states)] = i
                offset += len(states)
        return tokens, groups

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        batch: PackedBatch,
        captions: Sequence[torch.Tensor | None] | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict for every token.

        Args:
            x: (R, L, patch_dim) noisy tokens laid out as ``batch``.
            timesteps: (N,) one per video.
            batch: the packing layout (``batch.tokens`` itself is not read).
            captions: per video, (n_i, text_dim) token states or None for the null caption.
            labels: (N,) class labels, or (N, sets) with several label sets, when class-conditional.
        Returns:
            (R, L, patch_dim * out_factor), zeros at padding.
        """
        batch.one_video_per_row()  # decided once, here, for every block's modulation (not inside compiled blocks)
        # One plan per layout, shared by every block (masks, sort orders and buckets are built once).
        layouts = {layout for block in self.blocks for layout in block.layouts}
        plans = {
            layout: GroupPlan(attention_groups(batch.video_ids, batch.coords, layout), backend=self.attention_backend)
            for layout in layouts
        }
        projected, context = None, None
        if self.captions is not None:
            if captions is None or len(captions) != batch.num_videos:
                raise ValueError(f"this DiT cross-attends to captions: pass one per video ({batch.num_videos})")
            projected = [self.captions(caption) for caption in captions]  # each (n_i, C)
            context, context_groups = self._context(projected, batch)
            joint = attention_groups(batch.video_ids, batch.coords, "joint")
            plans["cross"] = GroupPlan(joint, context_groups, backend=self.attention_backend)
        h = self.embed(x)  # (R, L, C)
        if self.sincos is not None:
            h = h + self.sincos(batch.coords).to(h.dtype)
        rope = self.rope.angles(batch.coords) if self.rope is not None else None
        cond = self.condition(timesteps, labels, projected)  # (N, C)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                h = checkpoint(block, h, cond, batch, plans, rope, context, use_reentrant=False)
            else:
                h = block(h, cond, batch, plans, rope, context)
        out = self.final(h, cond, batch)
        return out * batch.mask[..., None].to(out.dtype)


def parameter_counts(**kwargs) -> dict[str, int]:
    """Trainable parameters of the joint and both factorised layouts for the same settings (fair comparisons)."""
    variants = {
        "joint": {"attention": "joint"},
        "factorised-interleaved": {"attention": "factorised", "factorised": "interleaved"},
        "factorised-sequential": {"attention": "factorised", "factorised": "sequential"},
    }
    return {name: sum(p.numel() for p in DiT(**{**kwargs, **v}).parameters()) for name, v in variants.items()}

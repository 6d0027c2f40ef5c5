"""Patch n' Pack (NaViT): videos of different sizes as tokens packed into fixed-length rows.

Each video is patchified, optionally thinned by token dropping, and placed whole into the first row with
room (first-fit, longest first). A row holds several videos ("segments"); attention never crosses them,
which ``models/attention.py`` enforces from the per-token ids recorded here. ``unpack`` puts every token
back at its place in its own video's grid, so ``unpack(pack(x)) == x`` when nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

import torch

from videodiff.packing.patchify import Patch, grid_coords, patchify, token_grid, unpatchify


@dataclass
class PackedBatch:
    """Rows of packed tokens and where each token came from. R rows of L tokens, N videos.

    Per token (R, L): ``video_ids`` (index into the N videos, -1 = padding), ``segment_ids`` (1-based
    position of its video within the row, 0 = padding), ``coords`` (t, h, w) in its own token grid, and
    ``token_index`` (its raster index in that grid, -1 = padding). Per video (N): ``grids`` (T', H', W'),
    ``frames`` (latent frames before patching; 1 for an image), ``sample_index`` (position in the input list),
    ``lengths`` (tokens kept), ``rows`` and ``offsets`` (where it sits).
    """

    tokens: torch.Tensor  # (R, L, D)
    video_ids: torch.Tensor  # (R, L)
    segment_ids: torch.Tensor  # (R, L)
    coords: torch.Tensor  # (R, L, 3)
    token_index: torch.Tensor  # (R, L)
    grids: torch.Tensor  # (N, 3)
    frames: torch.Tensor  # (N,)
    sample_index: torch.Tensor  # (N,)
    lengths: torch.Tensor  # (N,)
    rows: torch.Tensor  # (N,)
    offsets: torch.Tensor  # (N,)

    @property
    def mask(self) -> torch.Tensor:
        """(R, L) true for real (kept) tokens."""
        return self.video_ids >= 0

    @property
    def num_videos(self) -> int:
        return len(self.grids)

    def full_lengths(self) -> torch.Tensor:
        return self.grids.prod(dim=1)

    def padding_fraction(self) -> float:
        return 1.0 - float(self.mask.float().mean())

    def gather(self, per_video: torch.Tensor) -> torch.Tensor:
        """(N, ...) per-video values -> (R, L, ...) per token, zeros at padding."""
        # Padding reads an appended zero row (no mask multiply over every token), and index_select's backward
        # is an index_add, where advanced indexing's is an accumulating index_put that dominated the CPU step.
        padded = torch.cat([per_video, per_video.new_zeros(1, *per_video.shape[1:])])
        index = torch.where(self.video_ids >= 0, self.video_ids, len(per_video))
        return padded.index_select(0, index.reshape(-1)).view(*index.shape, *per_video.shape[1:])

    def one_video_per_row(self) -> bool:
        """Row i holds video i alone, from its first token (padded batches, an image batch, one video).

        Computed once per batch and kept (a batch's layout never changes), so callers inside compiled or
        repeated code read a Python bool instead of syncing on a tensor comparison each time."""
        if "_one_per_row" not in self.__dict__:
            n = self.num_videos
            in_order = torch.arange(n, device=self.rows.device)
            self._one_per_row = n == self.video_ids.shape[0] and bool(
                ((self.rows == in_order) & (self.offsets == 0)).all()
            )
        return self._one_per_row

    def per_token(self, per_video: torch.Tensor) -> torch.Tensor:
        """(N, ...) per-video values that broadcast against (R, L, ...) tokens.

        With one video per row this is a (R, 1, ...) view, so the per-token copy and its backward are
        skipped (DiT's own image layout); padding tokens then read their row's values instead of zeros,
        which only suits per-token maps whose padding outputs are discarded (adaLN modulation). Otherwise
        it is ``gather``.
        """
        return per_video[:, None] if self.one_video_per_row() else self.gather(per_video)

    def to(self, device: torch.device | str) -> PackedBatch:
        return PackedBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def with_tokens(self, tokens: torch.Tensor) -> PackedBatch:
        """The same layout holding other per-token values (e.g. noise, or a network's output)."""
        return PackedBatch(**{**{f.name: getattr(self, f.name) for f in fields(self)}, "tokens": tokens})


@dataclass(frozen=True)
class TokenDropping:
    """NaViT token dropping: each video keeps a random share of its tokens.

    Args:
        rate: share of tokens to drop, fixed or drawn uniformly per video from ``(low, high)``.
        mode: ``random`` drops uniformly; ``similar`` drops the tokens closest to the same patch in the
            previous token frame (video's temporal redundancy). The first token frame is never dropped.
    """

    rate: float | tuple[float, float] = 0.0
    mode: Literal["random", "similar"] = "random"

    def __post_init__(self) -> None:
        low, high = (self.rate, self.rate) if isinstance(self.rate, (int, float)) else self.rate
        if not 0.0 <= low <= high < 1.0:
            raise ValueError(f"TokenDropping.rate must lie in [0, 1), got {self.rate}")
        if self.mode not in ("random", "similar"):
            raise ValueError(f"TokenDropping.mode must be 'random' or 'similar', got {self.mode!r}")

    def draw_rate(self, generator: torch.Generator | None) -> float:
        if isinstance(self.rate, (int, float)):
            return float(self.rate)
        low, high = self.rate
        return low + (high - low) * float(torch.rand((), generator=generator))

    def keep_indices(
        self, tokens: torch.Tensor, grid: tuple[int, int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Sorted raster indices of the tokens a video keeps (at least one)."""
        n = tokens.shape[0]
        drop = min(n - 1, int(round(self.draw_rate(generator) * n)))
        if drop == 0:
            return torch.arange(n, device=tokens.device)
        if self.mode == "random":
            order = torch.randperm(n, generator=generator).to(tokens.device)
            return order[drop:].sort().values
        t, h, w = grid
        frames = tokens.reshape(t, h * w, -1)  # (T', H'W', D)
        change = torch.full((t, h * w), float("inf"), device=tokens.device)
        change[1:] = (frames[1:] - frames[:-1]).float().pow(2).mean(-1)
        dropped = change.reshape(-1).argsort()[: min(drop, (t - 1) * h * w)]
        keep = torch.ones(n, dtype=torch.bool, device=tokens.device)
        keep[dropped] = False
        return keep.nonzero().squeeze(1)


def first_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Greedy first-fit, longest first: bins of indices whose lengths sum to at most ``capacity``."""
    too_long = [(i, n) for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        i, n = too_long[0]
        raise ValueError(
            f"video {i} has {n} tokens, more than a row's max_tokens={capacity}; "
            "lower the data's token_budget or raise max_tokens"
        )
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return bins


def pack(
    videos: Sequence[torch.Tensor],
    patch: Patch,
    max_tokens: int,
    num_rows: int | None = None,
    dropping: TokenDropping | None = None,
    keep: Sequence[torch.Tensor | None] | None = None,
    generator: torch.Generator | None = None,
    one_per_row: bool = False,
) -> PackedBatch:
    """Patchify ``(C, T, H, W)`` videos (any mix of sizes) and pack them into rows of ``max_tokens``.

    Args:
        videos: latent videos, all with the same channel count.
        patch: (pt, ph, pw).
        max_tokens: row length L.
        num_rows: pad to exactly this many rows (static shapes); None uses as many as needed.
        dropping: token dropping for training; never used when sampling.
        keep: explicit kept token indices per video (overrides ``dropping``), e.g. to repeat a layout.
        generator: randomness of the dropping.
        one_per_row: every video in a row of its own (pad-to-max batching, the baseline packing beats).
    """
    if not videos:
        raise ValueError("pack() needs at least one video")
    channels = {v.shape[0] for v in videos}
    if len(channels) > 1:
        raise ValueError(f"videos have different channel counts {sorted(channels)}")
    grids = [token_grid(v.shape, patch) for v in videos]
    tokens = [patchify(v, patch) for v in videos]  # each (N_i, D)
    kept: list[torch.Tensor] = []
    for i, (tok, grid) in enumerate(zip(tokens, grids, strict=True)):
        if keep is not None and keep[i] is not None:
            kept.append(torch.as_tensor(keep[i], dtype=torch.long, device=tok.device))
        elif dropping is not None:
            kept.append(dropping.keep_indices(tok, grid, generator))
        else:
            kept.append(torch.arange(tok.shape[0], device=tok.device))
    lengths = [len(k) for k in kept]
    bins = [[i] for i in range(len(lengths))] if one_per_row else first_fit(lengths, max_tokens)
    if one_per_row and max(lengths) > max_tokens:
        raise ValueError(f"a video has {max(lengths)} tokens, more than a row's max_tokens={max_tokens}")
    rows = len(bins) if num_rows is None else num_rows
    if rows < len(bins):
        raise ValueError(f"{len(videos)} videos need {len(bins)} rows of {max_tokens} tokens, num_rows={num_rows}")

    device, dim = tokens[0].device, tokens[0].shape[1]
    out = torch.zeros(rows, max_tokens, dim, dtype=tokens[0].dtype, device=device)
    video_ids = torch.full((rows, max_tokens), -1, dtype=torch.long, device=device)
    segment_ids = torch.zeros(rows, max_tokens, dtype=torch.long, device=device)
    coords = torch.zeros(rows, max_tokens, 3, dtype=torch.long, device=device)
    token_index = torch.full((rows, max_tokens), -1, dtype=torch.long, device=device)
    row_of, offset_of = [0] * len(videos), [0] * len(videos)
    for r, members in enumerate(bins):
        offset = 0
        for segment, i in enumerate(members, start=1):
            n = lengths[i]
            span = slice(offset, offset + n)
            out[r, span] = tokens[i][kept[i]]
            video_ids[r, span] = i
            segment_ids[r, span] = segment
            coords[r, span] = grid_coords(grids[i], device)[kept[i]]
            token_index[r, span] = kept[i]
            row_of[i], offset_of[i] = r, offset
            offset += n
    as_long = lambda values: torch.tensor(values, dtype=torch.long, device=device)
    return PackedBatch(
        tokens=out,
        video_ids=video_ids,
        segment_ids=segment_ids,
        coords=coords,
        token_index=token_index,
        grids=as_long(grids).reshape(-1, 3),
        frames=as_long([v.shape[1] for v in videos]),
        sample_index=torch.arange(len(videos), device=device),
        lengths=as_long(lengths),
        rows=as_long(row_of),
        offsets=as_long(offset_of),
    )


def unpack(tokens: torch.Tensor, batch: PackedBatch) -> list[torch.Tensor]:
    """``(R, L, D')`` per-token values -> per video ``(T' H' W', D')`` in raster order (zeros where dropped)."""
    videos = []
    for i in range(batch.num_videos):
        r, start, n = int(batch.rows[i]), int(batch.offsets[i]), int(batch.lengths[i])
        full = tokens.new_zeros(int(batch.full_lengths()[i]), tokens.shape[-1])
        full[batch.token_index[r, start : start + n]] = tokens[r, start : start + n]
        videos.append(full)
    return videos


def kept_masks(batch: PackedBatch) -> list[torch.Tensor]:
    """Per video, a raster-order bool mask of the tokens that were kept (all true without dropping)."""
    masks = []
    for i in range(batch.num_videos):
        r, start, n = int(batch.rows[i]), int(batch.offsets[i]), int(batch.lengths[i])
        mask = torch.zeros(int(batch.full_lengths()[i]), dtype=torch.bool, device=batch.tokens.device)
        mask[batch.token_index[r, start : start + n]] = True
        masks.append(mask)
    return masks


def unpack_videos(tokens: torch.Tensor, batch: PackedBatch, patch: Patch) -> list[torch.Tensor]:
    """``(R, L, C' pt ph pw)`` -> per video ``(C', T, H, W)`` (an image comes back with one frame)."""
    return [
        unpatchify(v, tuple(batch.grids[i].tolist()), patch, frames=int(batch.frames[i]))
        for i, v in enumerate(unpack(tokens, batch))
    ]

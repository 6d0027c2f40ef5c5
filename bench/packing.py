"""Patch n' Pack benchmarks: padding waste, DiT training throughput (packed / padded / one at a time),
and the attention backends. Called by bench/run.py; each function returns {figure name: record}."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from videodiff.models.attention import attention_groups, group_attention
from videodiff.models.dit.model import DiT
from videodiff.packing.pack import first_fit, pack

# The tiny autoencoder's strides and the DiT's 2x2 patches, as in configs/data/synthetic.yaml.
TEMPORAL, SPATIAL, PATCH = 2, 4, (1, 2, 2)
LATENT_CHANNELS = 4


def dataset_mix(num: int = 200, token_budget: int = 512, seed: int = 0) -> list[tuple[int, int, int]]:
    """Latent (T, H, W) shapes of one epoch of the built-in dataset under NaViT-style random sizes."""
    # Imported here: the video stack (decord, PyAV) is needed for the mix only, not on a bare GPU machine.
    from videodiff.data import ClipSampling, LatentGrid, SyntheticData, read_manifest
    from videodiff.data.datasets import ClipPlanner

    grid = LatentGrid(temporal_compression=TEMPORAL, spatial_compression=SPATIAL, patch_size=PATCH)
    entries = read_manifest(SyntheticData(num=num, seed=0).ensure())
    planner = ClipPlanner(grid, ClipSampling(target_fps=8, max_frames=17, token_budget=token_budget, random_size=True))
    rng = np.random.default_rng(seed)
    shapes = []
    for i, entry in enumerate(entries):
        t, h, w = planner.plan(i, entry, rng).plan.shape
        shapes.append((grid.latent_frames(t), h // SPATIAL, w // SPATIAL))
    return shapes


def tokens_of(shape: tuple[int, int, int]) -> int:
    t, h, w = shape
    pt, ph, pw = PATCH
    return max(1, t // pt) * (h // ph) * (w // pw)


def budget_batches(lengths: list[int], max_tokens: int, rows: int) -> list[list[int]]:
    """Indices grouped as the data module's ``PackedRows`` batches them: first-fit into ``rows`` rows."""
    from videodiff.data.batching import TokenBudgetSampler

    sampler = TokenBudgetSampler([], None, max_tokens, rows, shuffle=False)
    sampler.tokens = lambda index: lengths[index]  # group indices by their plain lengths
    return sampler.group(list(range(len(lengths))))


def steady_batches(lengths: list[int], max_tokens: int, rows: int) -> list[list[int]]:
    """``budget_batches`` without the epoch's last batch, which holds the remainder (unless it is the only one)."""
    batches = budget_batches(lengths, max_tokens, rows)
    return batches[:-1] or batches


def padding_figures(shapes, max_tokens: int = 1024, rows: int = 4, batch_size: int = 8, seed: int = 0) -> dict:
    """Share of token slots that are padding: greedy packing vs pad-to-max batching of the same samples."""
    lengths = [tokens_of(s) for s in shapes]
    order = np.random.default_rng(seed).permutation(len(lengths))
    shuffled = [lengths[i] for i in order]
    # Packed: the data module's batches (first-fit into `rows` rows, with its look-ahead).
    batches = [[shuffled[i] for i in b] for b in budget_batches(shuffled, max_tokens, rows)]
    packed_slots = sum(len(first_fit(b, max_tokens)) * max_tokens for b in batches)
    # The epoch's last batch holds the remainder; every other batch shows the steady state.
    steady_real = sum(sum(b) for b in batches[:-1])
    steady_slots = sum(len(first_fit(b, max_tokens)) * max_tokens for b in batches[:-1])
    # Whole-epoch packing (no batch boundary): the best greedy packing can do on this mix.
    epoch_slots = len(first_fit(lengths, max_tokens)) * max_tokens
    # Pad-to-max: random batches of `batch_size`, each padded to its longest sample.
    padded_slots = sum(
        max(lengths[i] for i in order[k : k + batch_size]) * len(order[k : k + batch_size])
        for k in range(0, len(order), batch_size)
    )
    real = sum(lengths)
    # No packing of these samples into rows of max_tokens can use fewer than ceil(real / max_tokens) rows: on a
    # small set that whole-number bound alone can exceed NaViT's 2%, so it is reported beside the figures.
    bound_slots = -(-real // max_tokens) * max_tokens
    config = {
        "samples": len(lengths),
        "max_tokens": max_tokens,
        "rows_per_batch": rows,
        "pad_batch_size": batch_size,
        "mix": "built-in synthetic set, 200 clips, random sizes, token budget 512, tiny AE + 2x2 patches",
    }
    fig = lambda value: {"median": value, "unit": "fraction", "config": config}
    return {
        "pack_padding_fraction": fig(1 - real / packed_slots),
        "pack_padding_fraction/whole_epoch": fig(1 - real / epoch_slots),
        "pack_padding_fraction/all_but_last_batch": fig(1 - steady_real / max(steady_slots, 1)),
        "pack_padding_fraction/lower_bound": fig(1 - real / bound_slots),
        "pad_to_max_padding_fraction": fig(1 - real / padded_slots),
    }


def summary(values: list[float]) -> dict:
    """Median, min and max, with every value (interleaved rounds pair up by position)."""
    stats = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return {**stats, "repeats": len(values), "values": values}


def timed_interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each function's values over ``repeats`` rounds that run every function once, in turn (after a warm-up).

    Variants compared as ratios run side by side in every round, so a slow spell of a shared machine falls on
    all of them alike instead of on whichever variant happened to be running (the previous session's S/joint
    packed median swung from 525 to 916 tokens/s when its repeats ran as one block)."""
    for fn in fns.values():
        fn()
    values: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            values[name].append(fn())
    return values


def throughput_figures(
    shapes,
    size: str,
    layout: str,
    steps: int,
    repeats: int,
    device: str = "cpu",
    backend: str = "auto",
    dtype: torch.dtype = torch.float32,
    max_tokens: int = 1024,
    rows: int = 4,
) -> dict:
    """Training tokens/s (forward + backward + AdamW step, real tokens only) three ways on the same videos.

    Each step trains one batch as the data module forms it (``PackedRows(max_tokens, rows)``, attention
    ``backend``). ``padded`` gives the same videos one row each, padded to the batch's longest, with dense
    attention under a key-padding mask (``sdpa``): the usual padded implementation, which computes padding
    in every layer. ``padded_group_attention`` is the same rows with ``backend``, whose attention skips
    padding, so only the per-token layers pay for it. ``one_at_a_time`` runs the videos singly. The target
    compares the layouts by the waste each one actually has:
    packed / padded >= (1 - packed waste) / (1 - padded waste) x 0.9.
    """
    g = torch.Generator().manual_seed(0)
    videos = [torch.randn(LATENT_CHANNELS, *s, generator=g) for s in shapes]
    model = DiT(
        in_channels=LATENT_CHANNELS, patch_size=PATCH, size=size, attention=layout, attention_backend=backend
    ).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    lengths = [tokens_of(tuple(v.shape[1:])) for v in videos]
    batches = [[videos[i] for i in b] for b in steady_batches(lengths, max_tokens, rows)][:steps]
    real = sum(tokens_of(tuple(v.shape[1:])) for group in batches for v in group)

    def step(batch):
        timesteps = torch.randint(0, 1000, (batch.num_videos,), device=device)
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
            out = model(batch.tokens, timesteps, batch)
            loss = (out[..., : batch.tokens.shape[-1]].float() - batch.tokens.float()).pow(2).mean()
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    def layouts(mode: str) -> list:
        prepared = []
        for group in batches:
            if mode == "packed":
                prepared.append(pack(group, PATCH, max_tokens).to(device))
            elif mode.startswith("padded"):
                longest = max(tokens_of(tuple(v.shape[1:])) for v in group)
                prepared.append(pack(group, PATCH, longest, one_per_row=True).to(device))
            else:
                prepared += [pack([v], PATCH, tokens_of(tuple(v.shape[1:]))).to(device) for v in group]
        return prepared

    def run(prepared: list, attention: str) -> Callable[[], float]:
        def go() -> float:
            model.attention_backend = attention
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for b in prepared:
                step(b)
            if device == "cuda":
                torch.cuda.synchronize()
            return real / (time.perf_counter() - start)

        return go

    backends = {"packed": backend, "padded": "sdpa", "padded_group_attention": backend, "one_at_a_time": backend}
    prepared = {mode: layouts(mode) for mode in backends}
    waste = {mode: 1 - real / sum(b.tokens.shape[0] * b.tokens.shape[1] for b in bs) for mode, bs in prepared.items()}
    config = {
        "size": size,
        "layout": layout,
        "steps": len(batches),
        "videos": sum(len(group) for group in batches),
        "batching": f"PackedRows({max_tokens}, {rows}) batches of the mix, the epoch's last left out",
        "real_tokens": real,
        "padding_fraction": {mode: round(w, 4) for mode, w in waste.items()},
        "device": device,
        "backend": backends,
        "dtype": str(dtype),
        "threads": torch.get_num_threads(),
    }
    key = f"dit_train_tokens_per_s/{size}/{layout}"
    rates = timed_interleaved({mode: run(prepared[mode], backends[mode]) for mode in backends}, repeats)
    figures = {f"{key}/{mode}": {**summary(v), "unit": "tokens/s", "config": config} for mode, v in rates.items()}
    model.attention_backend = backend

    def paired(baseline: str) -> dict:  # packed over a baseline, per round: both measured in the same round
        return summary([p / b for p, b in zip(rates["packed"], rates[baseline], strict=True)])

    ratio = paired("padded")
    # Issue 9 writes the bound as padded x (1 - padded waste) / (1 - packed waste) x 0.9, which is below 1 and
    # so not what it says it means; the real-token speed-up packing can reach is the inverse slot ratio.
    target = (1 - waste["packed"]) / (1 - waste["padded"]) * 0.9
    figures[f"{key}/ratio_packed_over_padded"] = {**ratio, "unit": "x", "config": config}
    grouped = paired("padded_group_attention")
    figures[f"{key}/ratio_packed_over_padded_group_attention"] = {**grouped, "unit": "x", "config": config}
    # The target from this run's own waste: packing turns nearly all the padding it removes into speed.
    figures[f"{key}/target_ratio"] = {"median": target, "unit": "x", "config": config}
    over = {k: v / target for k, v in ratio.items() if k in ("median", "min", "max")}
    figures[f"{key}/ratio_over_target"] = {**over, "unit": "x (>= 1 meets it)", "config": config}
    return figures


def attention_figures(
    shapes, repeats: int, device: str = "cpu", backends=("loop", "sdpa", "varlen"), heads: int = 6, head_dim: int = 64
) -> dict:
    """Forward + backward time of each backend on one packed batch of the dataset mix (joint and temporal)."""
    g = torch.Generator().manual_seed(0)
    videos = [torch.randn(LATENT_CHANNELS, *s, generator=g) for s in shapes[:24]]
    batch = pack(videos, PATCH, 2048).to(device)
    rows, length = batch.video_ids.shape
    figures = {}
    for layout in ("joint", "temporal"):
        groups = attention_groups(batch.video_ids, batch.coords, layout)
        q, k, v = (torch.randn(rows, heads, length, head_dim, device=device, requires_grad=True) for _ in range(3))

        def go(backend: str, q=q, k=k, v=v, groups=groups) -> float:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = group_attention(q, k, v, groups, backend=backend)
            out.sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - start) * 1000

        times = timed_interleaved({b: (lambda b=b: go(b)) for b in backends}, repeats)
        for backend, values in times.items():
            figures[f"attention_backend_ms/{layout}/{backend}"] = {
                **summary(values),
                "unit": "ms",
                "config": {
                    "rows": rows,
                    "row_tokens": length,
                    "videos": len(videos),
                    "heads": heads,
                    "head_dim": head_dim,
                    "device": device,
                    "pass": "forward+backward, fp32, backends interleaved per round",
                },
            }
    return figures

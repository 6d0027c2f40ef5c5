"""The benchmarks run (on a few tiny shapes) and compute their derived figures from what they measured, so
``make bench`` cannot rot between the runs that produce bench/results.json."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import dit_compute  # noqa: E402  (bench/ is a folder of scripts, not a package)
import packing  # noqa: E402

SHAPES = [(1, 4, 4), (3, 4, 6), (2, 6, 4), (1, 8, 8), (3, 2, 8), (2, 4, 4), (1, 4, 8), (3, 6, 6)]


def test_budget_batches_fill_rows_like_the_data_module():
    lengths = [packing.tokens_of(s) for s in SHAPES]
    batches = packing.budget_batches(lengths, max_tokens=32, rows=2)
    assert sorted(i for b in batches for i in b) == list(range(len(SHAPES)))
    for batch in batches:
        assert len(packing.first_fit([lengths[i] for i in batch], 32)) <= 2


def test_throughput_target_comes_from_each_layouts_own_padding():
    figures = packing.throughput_figures(SHAPES, "tiny", "joint", steps=2, repeats=3, max_tokens=32, rows=2)
    key = "dit_train_tokens_per_s/tiny/joint"
    waste = figures[f"{key}/packed"]["config"]["padding_fraction"]
    assert waste["one_at_a_time"] == 0.0 and waste["packed"] < waste["padded"]
    expected = (1 - waste["packed"]) / (1 - waste["padded"]) * 0.9
    assert figures[f"{key}/target_ratio"]["median"] == pytest.approx(expected, rel=1e-3)
    # The ratio pairs the rounds: packed and padded measured side by side in each.
    packed, padded = figures[f"{key}/packed"]["values"], figures[f"{key}/padded"]["values"]
    assert len(packed) == len(padded) == 3
    rounds = sorted(p / b for p, b in zip(packed, padded, strict=True))
    assert figures[f"{key}/ratio_packed_over_padded"]["median"] == pytest.approx(rounds[1])
    assert figures[f"{key}/ratio_over_target"]["median"] == pytest.approx(rounds[1] / expected, rel=1e-3)


def test_interleaved_timing_runs_every_variant_once_per_round():
    calls = []
    fns = {name: (lambda name=name: calls.append(name) or float(len(calls))) for name in ("a", "b")}
    values = packing.timed_interleaved(fns, repeats=2)
    assert calls == ["a", "b", "a", "b", "a", "b"]  # warm-up, then rounds
    assert values == {"a": [3.0, 5.0], "b": [4.0, 6.0]}


def test_packing_waste_is_reported_beside_its_whole_number_bound():
    figures = packing.padding_figures(SHAPES, max_tokens=32, rows=2, batch_size=4)
    real = sum(packing.tokens_of(s) for s in SHAPES)
    bound = figures["pack_padding_fraction/lower_bound"]["median"]
    assert bound == pytest.approx(1 - real / (-(-real // 32) * 32))
    assert 0 <= bound <= figures["pack_padding_fraction/whole_epoch"]["median"]
    assert bound <= figures["pack_padding_fraction"]["median"] < figures["pad_to_max_padding_fraction"]["median"]


def test_mfu_is_model_flops_over_the_measured_peak():
    figures = dit_compute.mfu_figures(SHAPES, "tiny", repeats=1, steps=1, rows=2, max_tokens=32)
    mfu, rate = figures["dit_mfu/tiny"], figures["dit_model_flops_per_s/tiny"]
    assert 0 < mfu["median"] < 1
    assert mfu["median"] == pytest.approx(rate["median"] / mfu["config"]["peak_matmul_flops"])

"""Training curves of a run, read back from its CSV log (``CSVLogger``: ``<run>/csv/version_N/metrics.csv``).

The report plots from the CSV copy rather than the wandb run files: CSV is the one format every Lightning
logger setup can add (``configs/presets/wandb_csv.yaml``) and that needs no service or protobuf reader.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

Series = dict[str, list[tuple[int, float]]]


def latest_metrics_file(run_dir: Path) -> Path | None:
    """The newest ``metrics.csv`` under ``run_dir`` (highest CSVLogger version), or None when there is none."""

    def version(path: Path) -> int:
        match = re.fullmatch(r"version_(\d+)", path.parent.name)
        return int(match.group(1)) if match else -1

    files = sorted(run_dir.glob("**/metrics.csv"), key=lambda p: (version(p), p.stat().st_mtime))
    return files[-1] if files else None


def read_metrics(path: Path) -> Series:
    """Every column of a Lightning ``metrics.csv`` as ``(step, value)`` pairs, blank cells skipped."""
    series: Series = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(float(row["step"]))
            for key, text in row.items():
                if key in ("step", "epoch") or not text:
                    continue
                value = float(text)
                if math.isfinite(value):
                    series.setdefault(key, []).append((step, value))
    return series


def median(series: Series, key: str, skip_first: int = 5) -> float | None:
    """Median of a logged value, leaving out the first records (warm-up steps time the allocator, not the model)."""
    values = sorted(v for _, v in series.get(key, [])[skip_first:])
    return values[len(values) // 2] if values else None


def plot_panels(panels: dict[str, dict[str, list[tuple[int, float]]]], path: Path, title: str) -> Path:
    """One PNG with a panel per entry; each panel draws its named curves against the training step."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training machine
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (panel, curves) in zip(axes[0], panels.items(), strict=True):
        for label, points in curves.items():
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, label=label, marker="o" if len(points) < 20 else None, linewidth=1)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if "fidelity" in panel:
            ax.set_ylim(-0.05, 1.05)  # accuracies: a fixed scale, so runs compare at a glance
        elif "loss" in panel and all(v > 0 for points in curves.values() for _, v in points):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def select(series: Series, keys: list[str]) -> dict[str, list[tuple[int, float]]]:
    """The named curves that the run logged (a run without validation simply has no ``val/*`` curve)."""
    return {key: series[key] for key in keys if series.get(key)}


def smooth(points: list[tuple[int, float]], window: int = 10) -> list[tuple[int, float]]:
    """Running mean over ``window`` records: per-step diffusion losses vary with the sampled timesteps."""
    out, total = [], 0.0
    for i, (step, value) in enumerate(points):
        total += value - (points[i - window][1] if i >= window else 0.0)
        out.append((step, total / min(i + 1, window)))
    return out

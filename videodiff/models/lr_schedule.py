"""Learning-rate schedules shared by the LightningModules: linear warm-up, then constant or cosine decay.

A pure function of the step, wrapped in ``torch.optim.lr_scheduler.LambdaLR`` and stepped every optimiser step,
so a resumed run continues on the same curve (the scheduler's step count is in the checkpoint).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

LRSchedule = Literal["constant", "cosine"]


def lr_factor(step: int, warmup_steps: int, schedule: LRSchedule, total_steps: int, min_ratio: float) -> float:
    """The multiple of the base learning rate at optimiser step ``step`` (0-based).

    Warm-up rises linearly to 1 over ``warmup_steps``; ``cosine`` then falls as half a cosine from 1 to
    ``min_ratio`` at ``total_steps`` and stays there (a run extended past its planned length keeps the floor).
    """
    warmup = max(1, warmup_steps)
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_schedule(schedule: str, min_ratio: float) -> None:
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {schedule!r}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_ratio}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, schedule: LRSchedule, total_steps: int, min_ratio: float
) -> dict:
    """Lightning's scheduler entry (stepped per optimiser step) for ``lr_factor``."""
    if schedule == "cosine" and total_steps <= 0:
        raise ValueError("lr_schedule: cosine needs a finite run: set trainer.max_steps (or max_epochs)")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, schedule, total_steps, min_ratio)
    )
    return {"scheduler": scheduler, "interval": "step"}

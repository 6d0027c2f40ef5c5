"""Per-step training throughput, logged the same way by every module (the report reads it back)."""

from __future__ import annotations

import time
from typing import Any


class StepThroughput:
    """Mixin for a LightningModule (before ``LightningModule`` in the bases): logs ``train/<unit>_per_s``.

    ``training_step`` sets ``self.step_work`` to what the step processed (real tokens, pixels); the time runs
    from batch start to batch end, so it covers forward, backward and the optimizer step, not data loading.
    """

    throughput_unit: str = "samples"
    step_work: int = 0

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()
        self.step_work = 0
        super().on_train_batch_start(batch, batch_idx)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        seconds = time.perf_counter() - getattr(self, "_step_start", time.perf_counter())
        if seconds > 0 and self.step_work:
            self.log(f"train/{self.throughput_unit}_per_s", self.step_work / seconds, batch_size=1)
        super().on_train_batch_end(outputs, batch, batch_idx)

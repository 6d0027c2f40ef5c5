"""What lets a long training run survive a kill and a bad step: per-step seeds and a non-finite loss policy.

Both modules mix this in. Its state (the run's seed, the count of skipped steps) travels in the checkpoint,
so a run resumed with ``--ckpt_path`` draws the same random numbers at the same step as one never stopped.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

NonFinitePolicy = Literal["skip", "stop"]
NONFINITE_POLICIES = ("skip", "stop")


def step_seed(run_seed: int, rank: int, step: int, batch_idx: int) -> int:
    """A 63-bit seed that differs for every (run, rank, optimiser step, batch) and depends on nothing else."""
    return int(np.random.SeedSequence([run_seed, rank, step, batch_idx]).generate_state(1, np.uint64)[0] >> 1)


class FaultTolerantSteps:
    """Mixin for a LightningModule (place it before ``LightningModule`` in the bases).

    Randomness: before each training batch the global torch generator is seeded from (run seed, rank,
    global step, batch index). Timesteps, noise, caption dropout and token dropping are then a function of
    where the run is, not of how it got there: a resumed run continues exactly, and DDP ranks draw
    different noise (a run-wide ``seed_everything`` alone gives every rank the same). The run seed is
    ``torch.initial_seed()`` at the first fit (what ``seed_everything`` set) and is kept in the checkpoint,
    so a resume that seeds differently still continues the original sequence.

    Non-finite losses: ``guard_loss`` returns None for a step whose loss is NaN/inf on any rank (Lightning
    then skips backward and the optimiser step on every rank together), counts it in
    ``train/nonfinite_steps``, and under ``on_nonfinite="stop"`` ends the run after that step; the weights
    were not updated, so whatever checkpoint the run writes on the way out is still a good one.
    """

    on_nonfinite: NonFinitePolicy = "skip"
    nonfinite_steps: int = 0
    step_skipped: bool = False  # the last guarded step was skipped (no optimiser update happened)
    _run_seed: int | None = None

    @staticmethod
    def check_nonfinite_policy(policy: str) -> None:
        if policy not in NONFINITE_POLICIES:
            raise ValueError(f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {policy!r}")

    def on_fit_start(self) -> None:
        if self._run_seed is None:
            self._run_seed = torch.initial_seed()
        super().on_fit_start()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._run_seed is None:  # training driven without Trainer.fit (tests calling the hooks directly)
            self._run_seed = torch.initial_seed()
        torch.manual_seed(step_seed(self._run_seed, self.global_rank, self.global_step, batch_idx))
        super().on_train_batch_start(batch, batch_idx)

    def guard_loss(self, loss: torch.Tensor | None) -> torch.Tensor | None:
        """``loss`` if every rank has a finite one, else None: the step is skipped on every rank together.

        ``loss`` is None for a batch whose samples were all unreadable. Every training step calls this exactly
        once, so ranks take the same decision; DDP hangs if one rank skips backward while another runs it.
        """
        finite = loss is None or bool(torch.isfinite(loss.detach()).all())
        present = loss is not None
        if self._trainer is not None:
            strategy = self.trainer.strategy
            finite, present = strategy.reduce_boolean_decision(finite), strategy.reduce_boolean_decision(present)
        self.step_skipped = not (finite and present)
        if finite:
            return loss if present else None
        self.nonfinite_steps += 1
        self.log("train/nonfinite_steps", float(self.nonfinite_steps), batch_size=1)
        action = "stopping the run (on_nonfinite=stop)" if self.on_nonfinite == "stop" else "step skipped"
        rank_zero_warn(
            f"non-finite training loss at global step {self.global_step}: {action}; "
            f"{self.nonfinite_steps} non-finite step(s) in this run"
        )
        if self.on_nonfinite == "stop" and self._trainer is not None:
            self.trainer.should_stop = True
        return None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["videodiff_run"] = {"run_seed": self._run_seed, "nonfinite_steps": self.nonfinite_steps}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("videodiff_run", {})
        self._run_seed = state.get("run_seed", self._run_seed)
        self.nonfinite_steps = int(state.get("nonfinite_steps", 0))
        super().on_load_checkpoint(checkpoint)

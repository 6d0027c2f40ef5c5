"""Reading Lightning checkpoints back into modules without the run's config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest ``.ckpt`` under a run directory (``--ckpt runs/my-run`` works).

    Lightning names checkpoint files after epoch and step and nests them under the logger's run folder, so the
    run directory a user chose with ``--trainer.default_root_dir`` is the stable thing to point at.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("**/*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"{path}: no .ckpt file under this directory (has the run saved a checkpoint?)")
        log.info("checkpoint: %s (the newest under %s)", found[-1], path)
        return found[-1]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict]:
    """(hyperparameters, state_dict) of a Lightning checkpoint (or a run directory's newest), ``weights_only``.

    LightningCLI adds private keys (``_class_path``, ``_instantiator``) to the saved hyperparameters; they are
    not constructor arguments and are dropped here.
    """
    path = resolve_checkpoint(path)
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    hparams = {k: v for k, v in dict(checkpoint.get("hyper_parameters", {})).items() if not k.startswith("_")}
    return hparams, checkpoint["state_dict"]

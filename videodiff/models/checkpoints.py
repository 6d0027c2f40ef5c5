"""Reading Lightning checkpoints back into modules without the run's config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict]:
    """(hyperparameters, state_dict) of a Lightning checkpoint, loaded with ``weights_only=True``.

    LightningCLI adds private keys (``_class_path``, ``_instantiator``) to the saved hyperparameters; they are
    not constructor arguments and are dropped here.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    hparams = {k: v for k, v in dict(checkpoint.get("hyper_parameters", {})).items() if not k.startswith("_")}
    return hparams, checkpoint["state_dict"]

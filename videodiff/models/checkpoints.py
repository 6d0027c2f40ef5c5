"""Writing Lightning checkpoints safely, and reading them back into modules without the run's config."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from videodiff.errors import ConfigError

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


def load_strict(module: torch.nn.Module, state_dict: dict, path: str | Path) -> None:
    """``load_state_dict(strict=True)``, with an error that names the file and the keys that do not match."""
    result = module.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        shown = lambda keys: ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = [f"missing keys: {shown(result.missing_keys)}"] if result.missing_keys else []
        parts += [f"unexpected keys: {shown(result.unexpected_keys)}"] if result.unexpected_keys else []
        raise ConfigError(
            f"{path}: the weights do not match the {type(module).__name__} its hyperparameters describe; "
            + "; ".join(parts)
        )


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


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the file that was at its path (if any) is unchanged."""


def nonfinite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``state_dict`` holding a NaN or an infinity."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


class SafeCheckpointIO(TorchCheckpointIO):
    """The trainer's checkpoint writer (the CLI's default plugin): a crash, a full disk or broken weights never
    cost the last good checkpoint.

    - Weights with NaN/inf are refused before anything is written: a diverged run must not overwrite, or
      rotate away, the checkpoint a user would go back to.
    - Local files are written to a temporary file in the same directory, flushed to disk, then renamed over
      the target (atomic on POSIX). Lightning's own writer stages in the system temp directory, which may be
      a small tmpfs or another filesystem, where the final move is a copy and not atomic.
    - A write that fails (no space, no permission) removes its temporary file and raises one line naming
      the path and the reason. Remote paths (``s3://``...) go through Lightning's fsspec writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        bad = nonfinite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise CheckpointWriteError(
                f"not writing checkpoint {path}: non-finite weights ({shown}) at global step "
                f"{checkpoint.get('global_step', '?')}; the last good checkpoint is kept"
            )
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options for local files")
        target = Path(str(path).removeprefix("file://"))
        temporary = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
            temporary = None
        except OSError as e:
            kept = "the previous checkpoint there is unchanged" if target.exists() else "nothing was written"
            raise CheckpointWriteError(
                f"cannot write checkpoint {target}: {e.strerror or e}; {kept}. Free space or choose another "
                "directory (--trainer.default_root_dir)"
            ) from e
        finally:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)

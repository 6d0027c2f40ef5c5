"""The ``videodiff`` command: Lightning's fit/validate/test/predict, plus the commands around them.

Configs use OmegaConf interpolation resolved *after* all config files and command-line overrides are merged
(``parser_mode="omegaconf+"``), so an override reaches every key that interpolates it. Interpolations are
written relative (``${.root}``, ``${...model.init_args.patch_size}``) because in this mode the resolved tree
is rooted at the subcommand (``fit``, ``validate``...), and a relative path works under every subcommand.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

# Lightning 2.6 calls jsonargparse APIs that jsonargparse 4.49+ deprecates: warnings a user can do nothing
# about. Set before jsonargparse is imported; an explicit setting in the environment wins.
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from videodiff.errors import ConfigError

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")

# The default logger: wandb in offline mode, so runs are tracked on a machine with no network and can be
# synced later with `wandb sync`. configs/presets/ swap it for TensorBoard or CSV.
DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.WandbLogger",
    "init_args": {"project": "videodiff", "offline": True, "save_dir": None},
}


TRAINER_DEFAULTS = {
    "logger": DEFAULT_LOGGER,
    "default_root_dir": "runs",
    # Checkpoints go through a writer that never loses the last good one (temp file + rename; refuses NaN).
    "plugins": [{"class_path": "videodiff.models.checkpoints.SafeCheckpointIO"}],
    # The batch samplers shard themselves across ranks (by sample, from (seed, epoch)); Lightning's
    # DistributedSampler injection cannot wrap a batch sampler and would fail under DDP.
    "use_distributed_sampler": False,
}


class ConciseErrors(LightningArgumentParser):
    """Parse errors without the hundred-line usage dump; a bad choice (a ``Literal``) becomes one line.

    jsonargparse reports a wrong value deep in a config as the tree of every type it tried; the user needs
    the key, the allowed values and what was given.
    """

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        choice = re.search(r"Expected a typing\.Literal\[(.*?)\]\. Got value: ([^.\s]+)", message)
        top = re.match(r'Parser key "([^"]+)"', message)
        nested = re.search(r"NestedArg\(key='([^']+)'", message)
        if choice and top:
            key = f"{top.group(1)}.init_args.{nested.group(1)}" if nested else top.group(1)
            message = f"{key}: expected one of {choice.group(1)}, got {choice.group(2)!r}"
        sys.stderr.write(f"error: {message}\n(`videodiff fit --help` lists every option)\n")
        sys.exit(2)


class SaveAndLogConfig(SaveConfigCallback):
    """Saves the resolved config beside the run (Lightning's behaviour), sends it to every logger and writes it
    into every checkpoint (``checkpoint["videodiff_config"]``, YAML)."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        # Every checkpoint carries the run's resolved config: what produced it stays known without the log dir.
        checkpoint["videodiff_config"] = self.parser.dump(self.config, skip_none=False)


class VideoDiffCLI(LightningCLI):
    """LightningCLI in subclass mode: ``model`` and ``data`` are any LightningModule / LightningDataModule."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs):
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", SaveAndLogConfig)
        super().__init__(
            model_class=LightningModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_kwargs={"parser_mode": "omegaconf+"},
            parser_class=ConciseErrors,
            args=list(args) if args is not None else None,
            run=run,
            **kwargs,
        )

    def before_instantiate_classes(self) -> None:
        # The default logger writes where the run does: `--trainer.default_root_dir=runs/x` moves its files
        # and checkpoints too, so `videodiff sample --ckpt runs/x` finds them.
        config = self.config[self.subcommand] if self.subcommand else self.config
        logger = config.trainer.logger
        if getattr(logger, "class_path", None) == DEFAULT_LOGGER["class_path"] and logger.init_args.save_dir is None:
            logger.init_args.save_dir = config.trainer.default_root_dir

    def _parse_ckpt_path(self) -> None:
        # Lightning would merge the checkpoint's hyper_parameters into the model's config here. Ours also hold
        # what the module derives for `from_checkpoint` (backbone_config, autoencoder_config, ...), which are
        # not arguments, so that merge fails on every checkpoint file; and a resumed run's config is the one
        # on its command line (data and trainer are not in the checkpoint either). Weights, optimiser and loop
        # state still come from the checkpoint, through Trainer.fit.
        subcommand = self.config.get("subcommand")  # self.subcommand is not set yet at this point
        if not subcommand:
            return
        config = self.config[subcommand]
        # `--ckpt_path runs/x` resumes from the run folder's newest checkpoint, like `sample --ckpt runs/x`, and
        # `--ckpt_path last` from the newest under default_root_dir. Lightning's own "last" looks only for a
        # last.ckpt, which the default checkpointing never writes, and then silently starts from scratch.
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last" and os.path.isdir(config.trainer.default_root_dir or ""):
            ckpt_path = config.trainer.default_root_dir
        if isinstance(ckpt_path, str) and os.path.isdir(ckpt_path):
            from videodiff.models.checkpoints import resolve_checkpoint

            try:
                config.ckpt_path = str(resolve_checkpoint(ckpt_path))
            except FileNotFoundError:
                if config.ckpt_path != "last":
                    raise ConfigError(f"--ckpt_path {ckpt_path}: no .ckpt file under this folder") from None
                # `last` with no checkpoint yet: Lightning warns and starts fresh (a requeued job's first run)


# Commands beside Lightning's: each is ``videodiff.commands.<name>.main(argv)``, imported only when run, so
# `videodiff --help` and Lightning's commands never pay for decoders or text encoders.
COMMANDS: dict[str, str] = {
    "data": "make and check datasets: `videodiff data synth|scan|inspect --help`",
    "encode": "cache latents of a manifest with a trained autoencoder: `videodiff encode --help`",
    "sample": "generate videos of any size from a DiT checkpoint: `videodiff sample --help`",
    "fvd": "FVD between real and generated videos (I3D): `videodiff fvd --help`",
    "evaluate": "generate with a held-out set's captions, FVD + autoencoder PSNR/SSIM: `videodiff evaluate --help`",
    "fidelity": "caption fidelity of a DiT on the built-in set, over many prompts: `videodiff fidelity --help`",
    "report": "HTML + markdown report of a demo run: `videodiff report --help`",
}


def run_command(name: str, argv: list[str]) -> int:
    return importlib.import_module(f"videodiff.commands.{name}").main(argv)


USAGE = """usage: videodiff COMMAND [options]

Sora-style latent video diffusion at native resolution.

Training (LightningCLI; `videodiff fit --help` lists every option):
  fit        train a model:            videodiff fit --config configs/....yaml
  validate   run the validation loop
  test       run the test loop
  predict    run the predict loop

Around training:
{commands}

Configs compose: repeat --config (later files win) and override any key, e.g. --trainer.max_steps=10.
"""


def main(args: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in COMMANDS:
        return run_command(argv[0], argv[1:])
    if not argv or argv[0] in ("-h", "--help"):
        lines = "\n".join(f"  {name:<10} {text}" for name, text in COMMANDS.items())
        print(USAGE.format(commands=lines))
        return 0 if argv else 2
    # Lightning warns when given args while sys.argv also has some: pass None when they are sys.argv's.
    try:
        VideoDiffCLI(args=None if args is None else argv)
    except Exception as error:  # a ConfigError anywhere in the chain (jsonargparse wraps the ones it instantiates)
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

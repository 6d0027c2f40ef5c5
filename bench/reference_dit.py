"""Side by side: videodiff's DiT training step vs the reference DiT (facebookresearch/DiT ``models.py``).

The reference is not part of videodiff: give a checkout of it (``--reference-dit PATH``) and a ``timm`` to
import its layers from (``pip install --no-deps timm``). Both networks get the same image-shaped config:
class-conditional DiT-S/2 on 32x32x4 latents (256 px images through SD's VAE), learned sigma, a batch of
images; videodiff sees each image as a one-frame video, one per row, so nothing is padded.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from packing import summary, timed_interleaved  # bench/packing.py (run.py puts bench/ on the path)

from videodiff.models.dit.model import PRESETS, DiT
from videodiff.packing.pack import pack


class _Placeholder(type):
    """Any attribute of a missing torchvision: a class that fails only if it is ever used."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"torchvision is not installed: {cls.__name__} is unavailable in this benchmark")


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """timm imports torchvision at import time for data transforms and frozen batch norm, none of which the
    reference DiT uses; torchvision would drag in a CUDA torch, so the benchmark stands in for it."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def missing(name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Placeholder(name, (), {})

        module.__getattr__ = missing
        return module

    def exec_module(self, module) -> None:
        pass


def load_reference(checkout: Path) -> types.ModuleType:
    models = checkout / "models.py"
    if not models.is_file():
        raise SystemExit(f"--reference-dit: {models} not found (give a checkout of facebookresearch/DiT)")
    if importlib.util.find_spec("timm") is None:
        raise SystemExit("--reference-dit needs timm for the reference's layers: pip install --no-deps timm")
    if importlib.util.find_spec("torchvision") is None:
        sys.meta_path.insert(0, _TorchvisionStub())
    spec = importlib.util.spec_from_file_location("reference_dit_models", models)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commit(checkout: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def reference_figures(
    checkout: Path, repeats: int, device: str = "cpu", size: str = "S", batch: int = 8, steps: int = 3
) -> dict:
    """Training images/s (forward + backward + AdamW) of both implementations at the same config."""
    reference_module = load_reference(checkout)
    hidden, depth, heads = PRESETS[size]
    image, channels, classes = 32, 4, 1000
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    reference = getattr(reference_module, f"DiT_{size}_2")(input_size=image, num_classes=classes).to(device)
    ours = DiT(in_channels=channels, num_classes=classes, patch_size=(1, 2, 2), size=size, positions="sincos").to(
        device
    )
    images = torch.randn(batch, channels, image, image, device=device)
    labels = torch.randint(0, classes, (batch,), device=device)
    packed = pack(list(images.unsqueeze(2)), (1, 2, 2), (image // 2) ** 2, one_per_row=True).to(device)

    def reference_step() -> None:
        t = torch.randint(0, 1000, (batch,), device=device)
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
            out = reference(images, t, labels)
            loss = F.mse_loss(out[:, :channels].float(), images)
        loss.backward()

    def our_step() -> None:
        t = torch.randint(0, 1000, (batch,), device=device)
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
            out = ours(packed.tokens, t, packed, labels=labels)
            loss = F.mse_loss(out[..., : packed.tokens.shape[-1]].float(), packed.tokens)
        loss.backward()

    def rate(model, step) -> Callable[[], float]:
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def run() -> float:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                step()
                optimiser.step()
                optimiser.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            return steps * batch / (time.perf_counter() - start)

        return run

    config = {
        "preset": f"DiT-{size}/2 ({hidden} x {depth}, {heads} heads), class-conditional, learned sigma",
        "input": f"{batch} latents of {channels}x{image}x{image}",
        "device": device,
        "dtype": str(dtype),
        "threads": torch.get_num_threads(),
        "reference": f"facebookresearch/DiT models.py @ {_commit(checkout)}",
        "parameters": {
            "reference": sum(p.numel() for p in reference.parameters()),
            "videodiff": sum(p.numel() for p in ours.parameters()),
        },
        "videodiff_positions": "sincos (the reference's fixed sin-cos table), attention backend auto",
    }
    key = f"reference_dit_train_images_per_s/{size}"
    # Side by side in every round (see packing.timed_interleaved), and the ratio paired per round.
    rates = timed_interleaved(
        {"reference": rate(reference, reference_step), "videodiff": rate(ours, our_step)}, repeats
    )
    figures = {f"{key}/{name}": {**summary(v), "unit": "images/s", "config": config} for name, v in rates.items()}
    ratio = summary([o / r for o, r in zip(rates["videodiff"], rates["reference"], strict=True)])
    figures[f"{key}/ratio_videodiff_over_reference"] = {**ratio, "unit": "x", "config": config}
    return figures

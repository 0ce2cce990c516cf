"""Atomic files and checksums: a reader never sees a half-written store file, and a
writer that dies leaves only a ``.<name>.tmp-<pid>`` beside it (removed by the next build)."""
from __future__ import annotations

import hashlib
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: Temporary files of :func:`atomic_output` and the shard writer: ``.<name>.tmp-<pid>``.
_TEMPORARY_MARK = ".tmp-"
TEMPORARY_GLOB = f".*{_TEMPORARY_MARK}*"


def temporary_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}{_TEMPORARY_MARK}{os.getpid()}")


def is_temporary(path: Path) -> bool:
    name = Path(path).name
    return name.startswith(".") and _TEMPORARY_MARK in name


def temporary_target(tmp: Path) -> tuple[str, int | None]:
    """(name of the file being written, writer's pid or None) of a temporary's path."""
    name, _, pid = Path(tmp).name[1:].rpartition(_TEMPORARY_MARK)
    return name, int(pid) if pid.isdigit() else None


@contextmanager
def atomic_output(path: Path):
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN/inf are not JSON; null means "no value" (see the errors field)
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


def json_clean(obj):
    """NaN -> None and numpy scalars -> Python, recursively, so json never writes NaN."""
    if isinstance(obj, dict):
        return {k: json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    return _json_safe(obj)


def write_json_atomic(path: Path, obj, compact: bool = False) -> None:
    """``obj`` as JSON (keys sorted, NaN as null), written whole or not at all. ``compact``:
    no indentation or spaces (a large file machines read: a recipe part's rows)."""
    layout = {"separators": (",", ":")} if compact else {"indent": 1}
    with atomic_output(path) as tmp, open(tmp, "w") as f:
        json.dump(json_clean(obj), f, sort_keys=True, allow_nan=False, **layout)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

"""ESC-50: environmental sound classification clips, used as unseen test noise.

Expected layout::

    root/
      audio/1-100032-A-0.wav ...
      meta/esc50.csv      (columns filename, fold, target, category, esc10, src_file, take)

Every clip is kind "unseen". ``folds`` and ``categories`` keep a subset (rows they leave out
are a choice, not a loss, and are not rejected). A meta row whose clip is missing, or a clip in
``audio/`` that the meta file does not list, becomes a reject. ``noise_id`` is the clip's stem.

Citation: K. J. Piczak, "ESC: Dataset for Environmental Sound Classification", ACM Multimedia 2015.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from shards.errors import InputError

from ..records import NoiseFile, Reject, safe_id
from ._common import index_files, noise_records, read_label_csv, require_dir, row_place

REQUIRED_COLUMNS = ("filename", "fold", "category")


def prepare(
    root: str | Path,
    *,
    folds: Iterable[int] | None = None,
    categories: Iterable[str] | None = None,
    kind: str = "unseen",
) -> tuple[list[NoiseFile], list[Reject]]:
    """Clips listed in ``meta/esc50.csv`` (optionally only ``folds`` / ``categories``)."""
    root = require_dir(root, "the ESC-50 folder holding audio/ and meta/esc50.csv")
    table = read_label_csv(root / "meta" / "esc50.csv", REQUIRED_COLUMNS, what="meta file")
    audio_dir = root / "audio"
    if not audio_dir.is_dir():
        raise InputError(f"{audio_dir}: folder not found (expected ESC-50's audio/*.wav)")
    fold_set = {int(f) for f in folds} if folds is not None else None
    category_set = set(categories) if categories is not None else None
    if category_set is not None:
        known = {row["category"] for _, row in table}
        unknown = sorted(category_set - known)
        if unknown:
            raise InputError(f"{table.path}: no clips of category {', '.join(unknown)}")

    on_disk = index_files(audio_dir)
    listed: set[str] = set()
    rejects: list[Reject] = list(table.rejects)
    files: list[tuple[str, Path, str]] = []
    for line, row in table:
        place = row_place(table, line)
        name = row["filename"]
        listed.add(name)
        try:
            fold = int(row["fold"])
        except ValueError:
            rejects.append(Reject(str(audio_dir / name), f"fold '{row['fold']}' is not an integer ({place})"))
            continue
        if (fold_set is not None and fold not in fold_set) or (
            category_set is not None and row["category"] not in category_set
        ):
            continue
        paths = on_disk.get(name)
        if not paths:
            rejects.append(Reject(str(audio_dir / name), f"audio file not found ({place})"))
            continue
        files.append((safe_id(Path(name).stem), paths[0], kind))
    for name in sorted(set(on_disk) - listed):
        for path in on_disk[name]:
            rejects.append(Reject(str(path), f"not listed in {table.path.name}"))
    records, header_rejects = noise_records(files)
    return records, rejects + header_rejects

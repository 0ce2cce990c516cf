"""Helpers shared by the corpus adapters: label-file reading, folder checks, file indexes."""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..audio import AudioError, audio_info
from shards.errors import InputError
from ..records import NoiseFile, Reject, safe_id

#: Extensions the noise adapters read; all go through soundfile (libsndfile >= 1.1 reads mp3),
#: which ``read_segment`` needs to cut noise without decoding whole files.
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".w64", ".caf")


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` resolved to an absolute folder, or :class:`InputError` naming ``what`` was expected."""
    path = Path(path).expanduser()
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise InputError(f"{path}: {state} (expected {what})")
    return path.resolve()


def read_text(path: Path) -> str:
    """A label file's text. UTF-8 (with or without BOM) is what the corpora ship; cp1252 is the
    usual culprit when a file was re-saved from a spreadsheet, and only ids and labels are used."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


class LabelTable:
    """Rows of a CSV label file as dicts keyed by the (whitespace-stripped) header, with the
    1-based line number each row starts on (quoted fields may span lines)."""

    def __init__(self, path: Path, header: list[str], rows: list[tuple[int, dict[str, str]]]):
        self.path = path
        self.header = header
        self.rows = rows

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def read_label_csv(
    path: str | Path, required: Iterable[str], *, what: str = "label file", lower_header: bool = False
) -> LabelTable:
    """Read ``path`` as CSV; :class:`InputError` (one line) when it is missing, empty or lacks a
    column of ``required``. Values are stripped; short rows get "" for missing fields;
    ``lower_header`` makes column names case-insensitive (given in lower case)."""
    path = Path(path)
    required = list(required)
    expected = ", ".join(required)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found (expected a CSV with columns {expected})")
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() if lower_header else h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError(f"{path}: empty {what} (expected a CSV with columns {expected})") from None
    except csv.Error as exc:
        raise InputError(f"{path}: unreadable {what} header ({exc}); expected columns {expected}") from None
    missing = [c for c in required if c not in header]
    if missing:
        found = ", ".join(h for h in header if h) or "none"
        raise InputError(
            f"{path}: {what} lacks column(s) {', '.join(missing)}; expected columns {expected} (found {found})"
        )
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        line = reader.line_num + 1
        for values in reader:
            if any(v.strip() for v in values):
                padded = values + [""] * (len(header) - len(values))
                rows.append((line, {h: v.strip() for h, v in zip(header, padded)}))
            line = reader.line_num + 1
    except csv.Error as exc:
        # a broken quote swallows the rest of the file: stop there and say so
        raise InputError(f"{path}: unreadable CSV near line {reader.line_num} ({exc})") from None
    return LabelTable(path, header, rows)


def row_place(table: LabelTable, line: int) -> str:
    return f"{table.path.name} line {line}"


def index_files(folder: Path, suffixes: Iterable[str] | None = None) -> dict[str, list[Path]]:
    """File name -> paths of every file under ``folder`` (recursive), one walk instead of a
    stat per label row; hidden files (``._x.wav`` from macOS archives) are left out."""
    wanted = {s.lower() for s in suffixes} if suffixes is not None else None
    index: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if wanted is not None and os.path.splitext(name)[1].lower() not in wanted:
                continue
            index.setdefault(name, []).append(Path(dirpath) / name)
    return index


def list_audio(folder: Path, suffixes: Iterable[str] = SOUNDFILE_EXTENSIONS) -> list[Path]:
    """Audio files under ``folder`` (recursive, sorted, hidden ones left out)."""
    return sorted(p for paths in index_files(folder, suffixes).values() for p in paths)


def noise_records(
    files: Iterable[tuple[str, Path, str]],
) -> tuple[list[NoiseFile], list[Reject]]:
    """NoiseFile rows from (noise_id, path, kind) with the length read from each header; files
    whose header is unreadable, empty or truncated become rejects. Sorted by noise_id."""
    records: list[NoiseFile] = []
    rejects: list[Reject] = []
    seen: dict[str, str] = {}
    for noise_id, path, kind in files:
        if noise_id in seen:
            rejects.append(Reject(str(path), f"duplicate noise id '{noise_id}' (also {seen[noise_id]})"))
            continue
        try:
            frames, sr = audio_info(path)
        except AudioError as err:
            rejects.append(Reject(str(path), err.reason))
            continue
        seen[noise_id] = str(path)
        records.append(NoiseFile(noise_id, str(path), kind, frames, sr))
    records.sort(key=lambda r: r.noise_id)
    return records, rejects


def unique_ids(paths: list[Path], base: Path) -> dict[Path, str]:
    """A ``safe_id`` per path: the file's stem where that is unique, else the path relative
    to ``base`` without extension (and with it, as a last resort)."""
    by_stem: dict[str, list[Path]] = {}
    for p in paths:
        by_stem.setdefault(safe_id(p.stem), []).append(p)
    ids: dict[Path, str] = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            ids[group[0]] = stem
            continue
        for p in group:
            rel = p.relative_to(base)
            ids[p] = safe_id(str(rel.with_suffix("")))
    # "a.wav" and "a.flac" in one folder still collide: keep the extension for those
    counts: dict[str, int] = {}
    for i in ids.values():
        counts[i] = counts.get(i, 0) + 1
    for p, i in list(ids.items()):
        if counts[i] > 1:
            ids[p] = safe_id(str(p.relative_to(base)))
    return ids

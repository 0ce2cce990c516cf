"""Helpers shared by the corpus adapters: label-file reading, folder checks, file indexes."""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from ..audio import AudioError, scan_audio
from shards.errors import InputError
from ..records import NoiseFile, Reject, safe_id

#: Extensions the noise adapters read; all go through soundfile (libsndfile >= 1.1 reads mp3),
#: which ``read_segment`` needs to cut noise without decoding whole files.
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".w64", ".caf")


@dataclass(frozen=True)
class SplitOption:
    """An option of an adapter (a keyword of its ``prepare``) that ``prep`` offers as
    ``--<parameter>``; an adapter lists them in ``SPLIT_OPTIONS``. By default its value is a
    comma-separated list (``--test-speakers 15,16``); ``single`` takes one value
    (``--test-session 5``) and ``choices`` one of fixed words (``--happy hap+exc``). They
    decide which utterances an adapter yields and how: splits, and label conventions."""

    parameter: str  # prepare's keyword, e.g. "test_speakers"
    help: str  # what the values are, e.g. "speakers held out for test"
    item: type = str  # the type of one value (str, int)
    single: bool = False  # one value, not a comma-separated list
    choices: tuple[str, ...] = ()  # the words allowed (a single str value); empty: any value of ``item``

    @property
    def flag(self) -> str:
        return "--" + self.parameter.replace("_", "-")

    def parse(self, text: str):
        """``"15,16"`` (a tuple), ``"5"`` or ``"hap"`` as prepare's value; InputError names the
        option and what was expected."""
        if self.choices:
            if text.strip() not in self.choices:
                raise InputError(f"{self.flag} {text!r}: expected one of {', '.join(self.choices)}")
            return text.strip()
        if self.single:
            try:
                return self.item(text.strip())
            except ValueError:
                raise InputError(f"{self.flag} {text!r}: expected one {self.item.__name__} value") from None
        items = [x.strip() for x in text.split(",") if x.strip()]
        try:
            return tuple(self.item(x) for x in items)
        except ValueError:
            raise InputError(f"{self.flag} {text!r}: expected comma-separated {self.item.__name__} values") from None

    def describe(self, default) -> str:
        """What the option takes and its default (``default``: prepare's), for ``--help``."""
        if self.choices:
            return f"{self.help}: one of {', '.join(self.choices)} (default {default})"
        if self.single:
            return f"{self.help} (default {default})"
        return f"{self.help}, comma-separated (default {','.join(str(v) for v in default)})"


def held_out_ids(
    test: Collection[int], validation: Collection[int], allowed: range, noun: str, corpus: str, root: Path
) -> tuple[frozenset[int], frozenset[int]]:
    """The test and validation ids of a split by speaker (``noun``: actor, session ...),
    checked: integers in ``allowed``, none given for both; else :class:`InputError`."""
    held: list[frozenset[int]] = []
    for split, values in (("test", test), ("validation", validation)):
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise InputError(f"{root}: {split} {noun} {value!r} is not one of {corpus}'s {noun}s "
                                 f"(expected integers {allowed.start}-{allowed.stop - 1})")
        held.append(frozenset(values))
    overlap = held[0] & held[1]
    if overlap:
        listed = ", ".join(str(v) for v in sorted(overlap))
        raise InputError(f"{root}: {noun}(s) {listed} given for both test and validation")
    return held[0], held[1]


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
    1-based line number each row starts on (quoted fields may span lines). ``rejects``: a
    row per line lost to broken quoting, which the adapter passes on with its own;
    ``lines``: the non-blank lines after the header, to tell rows read from rows in the file."""

    def __init__(
        self,
        path: Path,
        header: list[str],
        rows: list[tuple[int, dict[str, str]]],
        rejects: list[Reject] | None = None,
        lines: int | None = None,
    ):
        self.path = path
        self.header = header
        self.rows = rows
        self.rejects = list(rejects or [])
        self.lines = len(rows) if lines is None else lines

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class LabelCount:
    """How much of one label file was read: rows taken vs non-blank lines in the file."""

    file: str
    rows_read: int
    lines: int
    lines_rejected: int

    def summary(self) -> str:
        text = f"{Path(self.file).name}: {self.rows_read} rows read of {self.lines} lines in the file"
        if self.lines_rejected:
            text += f" ({self.lines_rejected} lines lost to broken quoting, each in rejects.csv)"
        return text


_label_counts: ContextVar[list[LabelCount] | None] = ContextVar("label_counts", default=None)


@contextmanager
def counting_label_rows() -> Iterator[list[LabelCount]]:
    """Inside the block, every :func:`read_label_csv` appends its :class:`LabelCount` to the
    list yielded (the command line reports them beside the build summary)."""
    counts: list[LabelCount] = []
    token = _label_counts.set(counts)
    try:
        yield counts
    finally:
        _label_counts.reset(token)


def _looks_like_rows(values: list[str], columns: int) -> bool:
    """Whether a row that spans lines holds, inside a quoted field, lines that are rows of
    their own (as many fields as the header): a stray quote swallowed them. A quoted field
    with a genuine line break (a transcript) does not look like that."""
    for value in values:
        for inner in value.splitlines()[1:]:
            fields = next(csv.reader([inner]), [])
            if len(fields) >= columns:
                return True
    return False


def read_label_csv(
    path: str | Path, required: Iterable[str], *, what: str = "label file", lower_header: bool = False
) -> LabelTable:
    """Read ``path`` as CSV; :class:`InputError` (one line) when it is missing, empty or lacks a
    column of ``required``. Values are stripped; short rows get "" for missing fields;
    ``lower_header`` makes column names case-insensitive (given in lower case). A stray
    quote that runs a field over the rows below is not read as one row: that row and every
    line it swallowed become rejects, each with its line number (``LabelTable.rejects``)."""
    path = Path(path)
    required = list(required)
    expected = ", ".join(required)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found (expected a CSV with columns {expected})")
    text = read_text(path)
    physical = list(io.StringIO(text, newline=""))  # the lines as the csv reader counts them
    reader = csv.reader(physical)
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
    first_data_line = reader.line_num + 1
    rows: list[tuple[int, dict[str, str]]] = []
    rejects: list[Reject] = []
    try:
        line = first_data_line
        for values in reader:
            last = reader.line_num
            if last > line and _looks_like_rows(values, len(header)):
                rejects += _broken_quote_rejects(path, physical, line, last)
            elif any(v.strip() for v in values):
                padded = values + [""] * (len(header) - len(values))
                rows.append((line, {h: v.strip() for h, v in zip(header, padded)}))
            line = reader.line_num + 1
    except csv.Error as exc:
        # e.g. a stray quote swallowing more than the csv module's field limit: stop and say so
        raise InputError(f"{path}: unreadable CSV near line {reader.line_num} ({exc})") from None
    lines = sum(1 for text_line in physical[first_data_line - 1 :] if _has_content(text_line))
    table = LabelTable(path, header, rows, rejects, lines)
    counts = _label_counts.get()
    if counts is not None:
        counts.append(LabelCount(str(path), len(rows), lines, len(rejects)))
    return table


def _has_content(text_line: str) -> bool:
    return any(c not in " \t\r\n," for c in text_line)


def _broken_quote_rejects(path: Path, physical: list[str], first: int, last: int) -> list[Reject]:
    """A reject for each non-blank line from ``first`` to ``last`` (1-based): the row whose
    quote opened a field that ran on to ``last``, and the rows that field swallowed."""
    span = f"a quote opened on line {first} runs on to line {last}"
    rejects = []
    for number in range(first, last + 1):
        if not _has_content(physical[number - 1]):
            continue
        if number == first:
            reason = f"broken quoting: {span}, taking in the rows below; left out (fix the quote and rerun)"
        else:
            reason = f"broken quoting: swallowed by the quote opened on line {first}; left out (fix the quote and rerun)"
        rejects.append(Reject(line_place(path, number), reason))
    return rejects


def line_place(path: Path, line: int) -> str:
    """Where a label row is, as the ``file`` of its reject: ``labels.csv line 7``."""
    return f"{Path(path).name} line {line}"


def row_place(table: LabelTable, line: int) -> str:
    return line_place(table.path, line)


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
    """NoiseFile rows from (noise_id, path, kind) with the length read from each header. Each
    file is read through (:func:`~mixer.audio.scan_audio`): one that is unreadable, empty,
    truncated, silent or holds NaN/inf becomes a reject here, so no mix is planned on it.
    Sorted by noise_id."""
    records: list[NoiseFile] = []
    rejects: list[Reject] = []
    seen: dict[str, str] = {}
    for noise_id, path, kind in files:
        if noise_id in seen:
            rejects.append(Reject(str(path), f"duplicate noise id '{noise_id}' (also {seen[noise_id]})"))
            continue
        try:
            frames, sr = scan_audio(path)
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

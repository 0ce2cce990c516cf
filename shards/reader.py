"""Reading a store: the API the trainer (and anything else downstream) uses.

    store = open_store("data/stores/demo")          # refuses a store that does not match its manifest
    table = store.table(["key", "label", "split"])  # the metadata table (pyarrow)
    wav, fields = store.sample("utt__s03-noise")    # one sample: 16 kHz float32 audio and its JSON fields
    wavs = store.read_audio(keys)                   # many, batched by shard and offset
    for key, fields in store.iter_shard("superset-train-000000"):   # a shard read sequentially
        ...
    clips = store.clips(level_index.members("train", 2))  # a picklable random-access source

A caller names samples by key (or hands over level members); where a sample's bytes lie
in its shard stays behind this API, so the storage of a mix can change later without
touching the trainer.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import soundfile as sf

from shards.atomic import sha256_file
from shards.errors import InputError, StoreError
from shards.levelindex import LevelIndex, LevelMembers, find_level_index, open_level_index
from shards.vocab import MANIFEST, STORE_FORMAT, TABLE, shard_path

#: Table columns that locate a sample's FLAC payload.
_LOCATION_COLUMNS = ["key", "shard", "flac_offset", "flac_size"]


def decode_flac(data: bytes) -> np.ndarray:
    """A stored FLAC payload as float32 samples in [-1, 1)."""
    wav, _ = sf.read(io.BytesIO(data), dtype="float32")
    return wav


def _refuse(store: Path, problem: str) -> StoreError:
    return StoreError(f"{store}: {problem}; run 'prep verify {store}' for every problem, "
                      f"and the same 'prep superset'/'prep testsets' command again to repair it")


#: Fields every shard entry of a manifest has.
MANIFEST_SHARD_KEYS = ("name", "path", "samples", "sha256", "bytes")


class ManifestError(Exception):
    """A manifest that cannot be used; ``str(err)`` is the problem, e.g. ``not JSON (...)``."""


def load_manifest(path: Path, complete: bool = False) -> dict:
    """The manifest at ``path``, checked for its format; with ``complete`` also for a sample
    count and complete shard entries (what ``prep verify`` checks every shard against).
    :class:`ManifestError` says what is wrong (FileNotFoundError when there is none)."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"not JSON ({exc})") from None
    except OSError as exc:
        raise ManifestError(f"unreadable ({exc.strerror or exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise ManifestError(f"not a manifest of format {STORE_FORMAT!r}")
    shards = manifest.get("shards")
    if complete and (not isinstance(shards, list) or not isinstance(manifest.get("samples"), int)
                     or not all(isinstance(e, dict) and all(k in e for k in MANIFEST_SHARD_KEYS) for e in shards)):
        raise ManifestError(f"not a manifest of format {STORE_FORMAT!r}")
    return manifest


def read_manifest(store: Path) -> dict:
    """The store's manifest; a missing or unusable one is a :class:`StoreError`."""
    try:
        return load_manifest(Path(store) / MANIFEST)
    except FileNotFoundError:
        raise _refuse(store, f"no {MANIFEST} (not a store, or a build that never finished)") from None
    except ManifestError as exc:
        raise _refuse(store, f"{MANIFEST} is {exc}") from None


def quick_check(store: Path, manifest: dict) -> list[str]:
    """The cheap checks done before any read (no shard is read): the table matches its
    recorded sha256 and every shard is present with its recorded size. ``prep verify``
    does the full check (every shard's sha256 and every row's offsets)."""
    problems = []
    table_entry = manifest.get("table")
    table_path = Path(store) / TABLE
    if not table_path.is_file():
        problems.append(f"{TABLE} is missing")
    elif isinstance(table_entry, dict) and sha256_file(table_path) != table_entry.get("sha256"):
        problems.append(f"{TABLE} differs from the manifest's sha256 (changed after the build)")
    for entry in manifest.get("shards", []):
        path = Path(store) / entry["path"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{entry['path']} is missing")
            continue
        if size != entry["bytes"]:
            problems.append(f"{entry['path']} is {size} bytes, the manifest records {entry['bytes']}")
    return problems


class _OpenShards:
    """Open shard files of this process, shared by every ClipSource and capped (least
    recently used closed first): a store of thousands of shards read by K+1 sources in each
    DataLoader worker stays far below the open-file limit."""

    def __init__(self, cap: int = 128):
        from collections import OrderedDict

        self.cap = cap
        # A forked DataLoader worker inherits these descriptors; reads use pread (no shared
        # file offset), so parent and children can use the same ones safely.
        self._files: "OrderedDict[str, int]" = OrderedDict()

    def fd(self, path: str) -> int:
        fd = self._files.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._files[path] = fd
            while len(self._files) > self.cap:
                os.close(self._files.popitem(last=False)[1])
        else:
            self._files.move_to_end(path)
        return fd


_OPEN_SHARDS = _OpenShards()


@dataclass
class ClipSource:
    """Random access to the audio of a fixed list of samples, by position. Picklable and
    cheap to send to DataLoader workers: it holds the store path and three arrays; shard
    files are opened lazily through one capped cache per process."""

    store_dir: str
    keys: list[str]
    _shards: list[str] = field(repr=False)
    _shard_index: np.ndarray = field(repr=False)
    _offset: np.ndarray = field(repr=False)
    _size: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    def read_bytes(self, i: int) -> bytes:
        size = int(self._size[i])
        path = os.path.join(self.store_dir, self._shards[int(self._shard_index[i])])
        data = os.pread(_OPEN_SHARDS.fd(path), size, int(self._offset[i]))
        if len(data) != size:
            raise StoreError(f"{Path(self.store_dir) / self._shards[int(self._shard_index[i])]}: "
                             f"truncated (sample {self.keys[i]}); run 'prep verify {self.store_dir}'")
        return data

    def audio(self, i: int) -> np.ndarray:
        return decode_flac(self.read_bytes(i))

    def shard_names(self) -> list[str]:
        """The shards (relative paths, as the manifest names them) holding these samples."""
        return sorted({self._shards[int(j)] for j in np.unique(self._shard_index)})



def _clip_source(store_dir: Path, table: pa.Table) -> ClipSource:
    shard_codes = pc.dictionary_encode(table["shard"].combine_chunks())
    return ClipSource(
        store_dir=str(store_dir),
        keys=table["key"].to_pylist(),
        _shards=shard_codes.dictionary.to_pylist(),
        _shard_index=shard_codes.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        _offset=table["flac_offset"].to_numpy(zero_copy_only=False).astype(np.int64),
        _size=table["flac_size"].to_numpy(zero_copy_only=False).astype(np.int64),
    )


class Store:
    """An opened store. Use :func:`open_store`."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self._locations: pa.Table | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, samples={self.manifest.get('samples')})"

    # -- the table ------------------------------------------------------------------
    def table(self, columns: Sequence[str] | None = None, filters=None) -> pa.Table:
        """The metadata table (one row per sample), optionally only some columns and rows
        (``filters`` as pyarrow.parquet: ``[("subset", "=", "clean")]``)."""
        try:
            return pq.read_table(self.path / TABLE, columns=list(columns) if columns else None, filters=filters)
        except (OSError, pa.ArrowInvalid) as exc:
            raise _refuse(self.path, f"{TABLE} is unreadable ({exc})") from None

    def table_columns(self) -> list[str]:
        """Column names of the table (read from its footer only)."""
        try:
            return pq.read_schema(self.path / TABLE).names
        except (OSError, pa.ArrowInvalid) as exc:
            raise _refuse(self.path, f"{TABLE} is unreadable ({exc})") from None

    def shards(self) -> list[dict]:
        """The manifest's shard entries (name, path, subset, split, samples, sha256, bytes)."""
        return list(self.manifest["shards"])

    # -- samples by key -------------------------------------------------------------
    def _located(self, keys: Sequence[str]) -> pa.Table:
        if self._locations is None:
            self._locations = self.table(_LOCATION_COLUMNS)
        where = pc.index_in(pa.array(list(keys), type=pa.string()), value_set=self._locations["key"])
        if where.null_count:
            missing = [k for k, w in zip(keys, where.to_pylist()) if w is None][:3]
            raise InputError(f"{self.path}: no sample with key {', '.join(missing)}")
        return self._locations.take(where)

    def clips(self, samples: Sequence[str] | LevelMembers) -> ClipSource:
        """Random access to the audio of ``samples`` (keys, or the members of a level)."""
        if isinstance(samples, LevelMembers):
            return _clip_source(self.path, samples._table)
        return _clip_source(self.path, self._located(samples))

    def read_audio(self, keys: Sequence[str]) -> list[np.ndarray]:
        """The audio of many samples, in the order asked; read shard by shard in offset order."""
        source = self.clips(keys)
        order = np.lexsort((source._offset, source._shard_index))
        out: list[np.ndarray | None] = [None] * len(source)
        for i in order.tolist():
            out[i] = source.audio(i)
        return out  # type: ignore[return-value]

    def read_fields(self, keys: Sequence[str]) -> list[dict]:
        """The JSON fields of many samples (the same values as their table rows)."""
        if self._locations is None or "json_offset" not in self._locations.column_names:
            self._locations = self.table(_LOCATION_COLUMNS + ["json_offset", "json_size"])
        rows = self._located(keys)
        out = []
        for shard, offset, size in zip(rows["shard"].to_pylist(), rows["json_offset"].to_pylist(), rows["json_size"].to_pylist()):
            out.append(json.loads(self.read_member(shard, offset, size)))
        return out

    def sample(self, key: str) -> tuple[np.ndarray, dict]:
        """One sample: its audio (16 kHz float32) and its JSON fields."""
        return self.read_audio([key])[0], self.read_fields([key])[0]

    def read_member(self, shard: str, offset: int, size: int) -> bytes:
        """Raw bytes of one tar member's payload, by location (the level index and the table
        record these)."""
        path = self.path / shard
        with open(path, "rb") as f:
            data = os.pread(f.fileno(), int(size), int(offset))
        if len(data) != int(size):
            raise _refuse(self.path, f"{shard} is truncated at offset {offset}")
        return data

    # -- shards read sequentially ---------------------------------------------------
    def iter_shard(self, name: str) -> Iterator[tuple[str, dict[str, bytes]]]:
        """(key, {field: bytes}) for every sample of one shard, in stored order."""
        path = shard_path(self.path, name)
        with tarfile.open(path, mode="r:") as tar:
            key, fields = None, {}
            for member in tar:
                if not member.isfile():
                    continue
                stem, _, ext = member.name.partition(".")
                if stem != key and key is not None:
                    yield key, fields
                    fields = {}
                key = stem
                fields[ext] = tar.extractfile(member).read()
            if key is not None:
                yield key, fields

    # -- identity -------------------------------------------------------------------
    def content_sha256(self, subsets: Sequence[str] | None = None, splits: Sequence[str] | None = None) -> str:
        """A digest of what some parts of the store hold: sha256 over the names and sha256s
        of the shards of ``subsets`` and ``splits`` (all when None). It changes when a
        rebuild changes any of their samples, and not when other parts are added (test
        sets built after training leave the training data's digest as it was)."""
        entries = sorted(f"{s['name']}:{s['sha256']}" for s in self.manifest.get("shards", [])
                         if (subsets is None or s["subset"] in subsets) and (splits is None or s["split"] in splits))
        return hashlib.sha256("\n".join(entries).encode()).hexdigest()

    # -- level indexes --------------------------------------------------------------
    def level_index(self, metric: str, quant: str, n_levels: int | None = None) -> LevelIndex:
        """The level index ``prep score`` wrote for (metric, quant[, K])."""
        return open_level_index(find_level_index(self.path, metric, quant, n_levels))


def open_store(path: str | Path, check: bool = True) -> Store:
    """Open a store for reading. With ``check`` (the default) the manifest must parse, the
    table must match its recorded sha256 and every shard must be in place with its recorded
    size; otherwise :class:`StoreError` says what differs and how to repair it. Without
    ``check`` nothing is verified and a folder with only a table opens too."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: store directory not found (expected OUT/<corpus> built by 'prep superset')")
    if not check and not (path / MANIFEST).is_file():
        return Store(path, {})  # a bare table (benchmarks, inspection): read as it is
    manifest = read_manifest(path)
    if check:
        problems = quick_check(path, manifest)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise _refuse(path, problems[0] + more)
    return Store(path, manifest)

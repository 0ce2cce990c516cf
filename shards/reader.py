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
from shards.distortions import LIST_COLUMNS, Sources, additive_kinds, render_recipe
from shards.mixing import mix_recipe
from shards.rows import decode_rows
from shards.vocab import (
    MANIFEST, RECIPE_LAYOUT, STORE_FORMAT, TABLE, is_babble_shard, noise_keys_of_stage, rir_key, shard_path,
)

#: Table columns that locate a sample's FLAC payload.
_LOCATION_COLUMNS = ["key", "shard", "flac_offset", "flac_size"]
#: Table columns of a mix's recipe (a recipe store's rows have no payload of their own).
_RECIPE_COLUMNS = ["utt_id", "noise_type", "noise_file", "noise_offset", "noise_gain", "gain"]
#: Table columns of a recipe of another kind than the additive ones (shards.distortions);
#: a store of additive mixes only has none of them.
_KIND_RECIPE_COLUMNS = ["kind", "rir_id", "rir_shift", "reverb_gain", "talker_ids", "talker_offsets", "talker_gains"]
#: Keys of a rows-file row that say where it is stored, not what it is.
_ROW_LOCATION_KEYS = ("key", "shard", "flac_offset", "flac_size", "json_offset", "json_size")


def decode_flac(data: bytes) -> np.ndarray:
    """A stored FLAC payload as float32 samples in [-1, 1)."""
    wav, _ = sf.read(io.BytesIO(data), dtype="float32")
    return wav


def _refuse(store: Path, problem: str) -> StoreError:
    return StoreError(f"{store}: {problem}; run 'prep verify {store}' for every problem, "
                      f"and the same 'prep superset'/'prep testsets' command again to repair it")


#: What Store.content_sha256 can digest: each shard's samples, or its bytes.
CONTENT_BASES = ("samples", "bytes")
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

#: The environment variable that sets the MB of decoded clean utterances a process keeps for
#: mixing recipes (16-bit, so the default 1024 holds about 9 h at 16 kHz); 0 turns it off.
CLEAN_CACHE_ENV, CLEAN_CACHE_MB = "METRICAUG_CLEAN_CACHE_MB", 1024


def clean_cache_bytes() -> int:
    """The decoded-clean cap of this process, from ``METRICAUG_CLEAN_CACHE_MB`` when set."""
    text = os.environ.get(CLEAN_CACHE_ENV, "").strip()
    try:
        mb = float(text) if text else CLEAN_CACHE_MB
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise InputError(f"{CLEAN_CACHE_ENV}={text!r}: expected a number of MB, 0 or more (0 turns the cache off)")
    return int(mb * 2**20)


class _DecodedClean:
    """Clean utterances of this process decoded to 16-bit samples, for mixing recipes, up to
    ``cap`` bytes (least recently used dropped first). A recipe store's 30 mixes of an
    utterance share its clean FLAC, and an epoch draws about two mixes per utterance: decoding
    it once per process, not once per mix, is what makes mixing on read cheaper than decoding
    a stored mix. Entries are read-only; mixing copies them to float64."""

    def __init__(self, cap: int | None = None):
        from collections import OrderedDict

        self.cap = cap  # None: read from the environment on first use
        self.nbytes = 0
        self._arrays: "OrderedDict[tuple[str, int], np.ndarray]" = OrderedDict()

    def get(self, path: str, offset: int, read) -> np.ndarray:
        key = (path, offset)
        pcm = self._arrays.get(key)
        if pcm is not None:
            self._arrays.move_to_end(key)
            return pcm
        if self.cap is None:
            self.cap = clean_cache_bytes()
        pcm, _ = sf.read(io.BytesIO(read()), dtype="int16")
        pcm.setflags(write=False)
        if pcm.nbytes <= self.cap:
            self._arrays[key] = pcm
            self.nbytes += pcm.nbytes
            while self.nbytes > self.cap:
                self.nbytes -= self._arrays.popitem(last=False)[1].nbytes
        return pcm

    def clear(self) -> None:
        self._arrays.clear()
        self.nbytes = 0


_DECODED_CLEAN = _DecodedClean()


@dataclass(frozen=True)
class NoiseLocation:
    """Where a stored noise's WAV payload lies: its shard (relative to the store) and the
    payload's byte offset and size in it."""

    shard: str
    offset: int
    size: int


#: Memory maps of noise shards in this process, by path: the page cache holds the samples
#: once for every process of the machine, and a read touches only the stretch it mixes.
_NOISE_MAPS: dict[str, "np.memmap"] = {}
#: Noise shards of this process checked against the manifest's sha256: path -> (size, mtime_ns).
_NOISE_CHECKED: dict[str, tuple[int, int]] = {}


def _wav_data_span(head: bytes) -> tuple[int, int]:
    """(offset, size) of the data chunk of a PCM_16 mono WAV that starts with ``head``."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE payload")
    pos = 12
    while pos + 8 <= len(head):
        chunk_id, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk_id == b"fmt " and (int.from_bytes(head[pos + 10:pos + 12], "little") != 1
                                    or int.from_bytes(head[pos + 22:pos + 24], "little") != 16):
            raise ValueError("not mono 16-bit PCM")
        if chunk_id == b"data":
            return pos + 8, size
        pos += 8 + size + (size & 1)
    raise ValueError("no data chunk")


def stored_noise(store: str | Path, location: NoiseLocation) -> np.ndarray:
    """A stored noise's 16-bit samples (int16), memory-mapped from its shard, not copied."""
    path = os.path.join(str(store), location.shard)
    mapped = _NOISE_MAPS.get(path)
    if mapped is None:
        try:
            mapped = np.memmap(path, dtype=np.uint8, mode="r")
        except (FileNotFoundError, ValueError) as exc:
            raise StoreError(f"{path}: the noise shard of this recipe store is missing or empty ({exc}); "
                             f"run 'prep verify {store}'") from None
        _NOISE_MAPS[path] = mapped
    payload = mapped[location.offset:location.offset + location.size]
    if payload.size != location.size:
        raise StoreError(f"{path}: truncated noise shard; run 'prep verify {store}'")
    try:
        start, size = _wav_data_span(bytes(payload[:256]))
    except ValueError as exc:
        raise StoreError(f"{path}: noise at offset {location.offset} is unreadable ({exc}); run 'prep verify {store}'") from None
    return payload[start:start + size].view("<i2")


#: RIRs of this process read from a recipe store, by (shard path, payload offset).
_STORED_RIRS: dict[tuple[str, int], np.ndarray] = {}


def stored_rir(store: str | Path, location: NoiseLocation) -> np.ndarray:
    """A stored RIR's float32 samples (read-only; read once per process)."""
    path = os.path.join(str(store), location.shard)
    key = (path, location.offset)
    rir = _STORED_RIRS.get(key)
    if rir is None:
        try:
            with open(path, "rb") as f:
                data = os.pread(f.fileno(), location.size, location.offset)
            rir = np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise StoreError(f"{path}: the RIR at offset {location.offset} is missing or unreadable ({exc}); "
                             f"run 'prep verify {store}'") from None
        rir.setflags(write=False)
        _STORED_RIRS[key] = rir
    return rir


def release_process_caches() -> None:
    """Drop what this process keeps from the recipe stores it read: the decoded clean
    utterances, the noise shards' memory maps (their touched pages count in the process's
    resident size) and the stored RIRs. A worker that renders one part after another
    (``prep materialize``, a recipe build) calls it after each part: a part's mixes share
    their clean utterances and noise, the next part's rarely do, and a worker whose resident
    size grows by more than 300 MB over its first task is taken for a leaking one and
    restarted by joblib's loky (its "A worker stopped ... memory leak" warning). The checks
    already done (noise shard sha256s) are kept."""
    _DECODED_CLEAN.clear()
    _NOISE_MAPS.clear()
    _STORED_RIRS.clear()


def check_noise_shard(store: str | Path, shard: str, sha256: str) -> None:
    """Refuse a noise shard that is not the one the store was built with (a recipe store
    mixes only with the noise its metrics were computed on): its sha256 is checked once per
    process and file version (size and mtime)."""
    path = os.path.join(str(store), shard)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise StoreError(f"{path}: missing (the noise this recipe store mixes with); "
                         f"run the same build command again to restore it") from None
    stamp = (info.st_size, info.st_mtime_ns)
    if _NOISE_CHECKED.get(path) == stamp:
        return
    if sha256_file(Path(path)) != sha256:
        raise StoreError(f"{path}: sha256 differs from the manifest (the noise this recipe store mixes with was "
                         f"changed or damaged after the build); run the same build command again to restore it")
    _NOISE_CHECKED[path] = stamp
    _NOISE_MAPS.pop(path, None)  # map the checked file, not an older one
    for key in [k for k in _STORED_RIRS if k[0] == path]:
        del _STORED_RIRS[key]


@dataclass(frozen=True)
class _Recipes:
    """The recipes of a ClipSource's recipe samples (arrays by position; ``is_recipe`` marks
    them). Their ``_shard_index``/``_offset``/``_size`` in the source locate the clean FLAC."""

    is_recipe: np.ndarray  # bool
    noise_shard: np.ndarray  # index into noise_shards
    noise_at: np.ndarray  # the noise WAV payload's byte offset
    noise_bytes: np.ndarray  # and size
    noise_offset: np.ndarray  # the recipe: where the stretch starts, in samples
    noise_gain: np.ndarray
    gain: np.ndarray
    noise_shards: list[str]
    noise_sha256: list[str]
    #: position -> the recipe of a mix of a non-additive kind (shards.distortions): its kind,
    #: numbers, and where its talkers' clean FLACs and its RIR lie (see Store._kind_recipe)
    kinds: dict = field(default_factory=dict)


@dataclass
class ClipSource:
    """Random access to the audio of a fixed list of samples, by position. Picklable and
    cheap to send to DataLoader workers: it holds the store path and a few arrays; shard
    files are opened lazily through one capped cache per process. A recipe store's mixes
    are rendered from their stored clean utterance and noise (shards.mixing.mix_recipe):
    the same arrays an audio store of the same build returns."""

    store_dir: str
    keys: list[str]
    _shards: list[str] = field(repr=False)
    _shard_index: np.ndarray = field(repr=False)
    _offset: np.ndarray = field(repr=False)
    _size: np.ndarray = field(repr=False)
    _recipes: _Recipes | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    def read_bytes(self, i: int) -> bytes:
        """The stored bytes sample ``i`` is read from: its FLAC, or for a recipe the clean
        utterance's FLAC it is mixed from."""
        size = int(self._size[i])
        path = os.path.join(self.store_dir, self._shards[int(self._shard_index[i])])
        data = os.pread(_OPEN_SHARDS.fd(path), size, int(self._offset[i]))
        if len(data) != size:
            raise StoreError(f"{Path(self.store_dir) / self._shards[int(self._shard_index[i])]}: "
                             f"truncated (sample {self.keys[i]}); run 'prep verify {self.store_dir}'")
        return data

    def audio(self, i: int) -> np.ndarray:
        r = self._recipes
        if r is None or not r.is_recipe[i]:
            return decode_flac(self.read_bytes(i))
        path = os.path.join(self.store_dir, self._shards[int(self._shard_index[i])])
        clean = _DECODED_CLEAN.get(path, int(self._offset[i]), lambda: self.read_bytes(i))
        shard = int(r.noise_shard[i])
        noise = None
        if shard >= 0:
            check_noise_shard(self.store_dir, r.noise_shards[shard], r.noise_sha256[shard])
            noise = stored_noise(self.store_dir, NoiseLocation(r.noise_shards[shard], int(r.noise_at[i]),
                                                              int(r.noise_bytes[i])))
        recipe = r.kinds.get(i)
        if recipe is None:
            return mix_recipe(clean, noise, int(r.noise_offset[i]), float(r.noise_gain[i]), float(r.gain[i]))
        return self._render_kind(clean, noise, recipe)

    def _render_kind(self, clean: np.ndarray, noise: np.ndarray | None, recipe: dict) -> np.ndarray:
        """A mix of a non-additive kind rendered from its recipe and stored sources."""
        talkers = []
        for shard, offset, size, digest in recipe["talkers"]:
            if digest:  # a stored --babble-root recording: refused when it is not the one the store was built with
                check_noise_shard(self.store_dir, shard, digest)
            path = os.path.join(self.store_dir, shard)
            talkers.append(_DECODED_CLEAN.get(path, offset, lambda: _pread(path, size, offset, self.store_dir)))
        rir = None
        if recipe["rir"] is not None:
            shard, offset, size, digest = recipe["rir"]
            check_noise_shard(self.store_dir, shard, digest)
            rir = stored_rir(self.store_dir, NoiseLocation(shard, offset, size))
        return render_recipe(recipe["kind"], clean, recipe, Sources(noise=noise, talkers=tuple(talkers), rir=rir))

    def shard_names(self) -> list[str]:
        """The shards (relative paths, as the manifest names them) holding these samples."""
        return sorted({self._shards[int(j)] for j in np.unique(self._shard_index)})


def _pread(path: str, size: int, offset: int, store_dir: str) -> bytes:
    data = os.pread(_OPEN_SHARDS.fd(path), size, offset)
    if len(data) != size:
        raise StoreError(f"{path}: truncated at offset {offset}; run 'prep verify {store_dir}'")
    return data


def _column(table: pa.Table, name: str, dtype) -> np.ndarray:
    return table[name].to_numpy(zero_copy_only=False).astype(dtype)


def _clip_source(store_dir: Path, table: pa.Table, recipes: _Recipes | None = None) -> ClipSource:
    shard_codes = pc.dictionary_encode(table["shard"].combine_chunks())
    return ClipSource(
        store_dir=str(store_dir),
        keys=table["key"].to_pylist(),
        _shards=shard_codes.dictionary.to_pylist(),
        _shard_index=shard_codes.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        _offset=_column(table, "flac_offset", np.int64),
        _size=_column(table, "flac_size", np.int64),
        _recipes=recipes,
    )


class _KeyRows:
    """The table row of each key, by binary search over the table's keys sorted once as
    bytes: one sort per opened store, then O(m log n) per lookup of m keys. pyarrow's
    ``index_in`` hashes the whole key column on every call, which at 10^6 rows cost 0.2 s a
    call and most of an epoch's plan (BENCHMARKS.md, the scale bench)."""

    def __init__(self, keys: pa.ChunkedArray):
        encoded = np.array([k.encode() for k in keys.to_pylist()], dtype=np.bytes_)
        self._order = np.argsort(encoded, kind="stable")
        self._sorted = encoded[self._order]

    def rows(self, wanted: Sequence[str]) -> np.ndarray:
        """Each wanted key's row number, -1 where the table holds no such key."""
        out = np.full(len(wanted), -1, np.int64)
        width = self._sorted.itemsize
        if not len(wanted) or not len(self._sorted):
            return out
        encoded = [k.encode() for k in wanted]
        # numpy's bytes cut what is longer than the width and drop trailing NULs: such keys
        # are in no table, so they are ruled out before the search
        fits = np.array([len(b) <= width and not b.endswith(b"\0") for b in encoded], dtype=bool)
        probe = np.array(encoded, dtype=f"S{width}")
        at = np.minimum(np.searchsorted(self._sorted, probe), len(self._sorted) - 1)
        found = fits & (self._sorted[at] == probe)
        out[found] = self._order[at[found]]
        return out


class Store:
    """An opened store. Use :func:`open_store`."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self._locations: pa.Table | None = None
        self._key_rows: _KeyRows | None = None
        entries = manifest.get("shards", [])
        #: recipe parts (rows file path -> the stage whose noise they mix with)
        self._recipe_stage = {e["path"]: e["stage"] for e in entries if e.get("layout") == RECIPE_LAYOUT}
        self._sha256 = {e["path"]: e.get("sha256", "") for e in entries if "path" in e}
        #: stage -> (noise type, noise file) -> key of the stored noise its recipes mix with
        self._noise_keys = {stage: noise_keys_of_stage(stage, info)
                            for stage, info in manifest.get("stages", {}).items()}

    @property
    def layout(self) -> str:
        """"recipe" when some mixes are stored as recipes (rendered on read), else "audio"."""
        return RECIPE_LAYOUT if self._recipe_stage else "audio"

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
    def _recipe_columns(self) -> list[str]:
        """The columns a recipe is read from (none in an audio store)."""
        if not self._recipe_stage:
            return []
        present = set(self.table_columns())
        return _RECIPE_COLUMNS + [c for c in _KIND_RECIPE_COLUMNS if c in present]

    def _located(self, keys: Sequence[str]) -> pa.Table:
        if self._locations is None:
            # one chunk per column: a take from many row groups' chunks costs more per row
            self._locations = self.table(_LOCATION_COLUMNS + self._recipe_columns()).combine_chunks()
        keys = list(keys)
        where = self._rows_of(keys)
        if (where < 0).any():
            missing = [keys[i] for i in np.flatnonzero(where < 0)[:3]]
            raise InputError(f"{self.path}: no sample with key {', '.join(missing)}")
        return self._locations.take(pa.array(where))

    def _rows_of(self, keys: list[str]) -> np.ndarray:
        """The table rows of ``keys`` (-1: absent); the lookup is built on first use."""
        if self._key_rows is None:
            self._key_rows = _KeyRows(self._locations["key"])
        return self._key_rows.rows(keys)

    def _noise_key(self, stage: str, noise_type: str, noise_file: str) -> str:
        keys = self._noise_keys.get(stage) or noise_keys_of_stage(stage, {})
        return keys(noise_type, noise_file)

    def _recipes(self, rows: pa.Table) -> tuple[pa.Table, _Recipes | None]:
        """For rows of recipe parts: the clean FLAC's location in place of their own (none),
        and their recipes; other rows as they are."""
        if not self._recipe_stage or not rows.num_rows:
            return rows, None
        shards = rows["shard"].to_pylist()
        is_recipe = np.array([s in self._recipe_stage for s in shards], dtype=bool)
        if not is_recipe.any():
            return rows, None
        picked = np.flatnonzero(is_recipe)
        part = rows.take(pa.array(picked))
        keys, utt_ids = part["key"].to_pylist(), part["utt_id"].to_pylist()
        # a babble or reverb recipe mixes no noise file
        with_noise = np.array([bool(f) for f in part["noise_file"].to_pylist()], dtype=bool)
        noisy = part.filter(pa.array(with_noise))
        key_of: dict[tuple[str, str, str], str] = {}  # a few hundred noise files serve every mix
        noise_keys = [key_of.get(source) or key_of.setdefault(source, self._noise_key(*source))
                      for source in zip([self._recipe_stage[s] for s in noisy["shard"].to_pylist()],
                                        noisy["noise_type"].to_pylist(), noisy["noise_file"].to_pylist())]
        clean = self._resolved(utt_ids, keys, "clean utterance")
        noise = self._resolved(noise_keys, noisy["key"].to_pylist(), "noise")
        # the rows' locations become the clean FLAC's: a recipe is read from its clean utterance
        merged = {name: rows[name].to_numpy(zero_copy_only=False).copy() for name in ("flac_offset", "flac_size")}
        shard_col = np.array(shards, dtype=object)
        shard_col[picked] = clean["shard"].to_pylist()
        merged["flac_offset"][picked] = _column(clean, "flac_offset", np.int64)
        merged["flac_size"][picked] = _column(clean, "flac_size", np.int64)
        located = pa.table({"key": rows["key"], "shard": pa.array(shard_col.tolist(), type=pa.string()),
                            "flac_offset": merged["flac_offset"], "flac_size": merged["flac_size"]})
        n = rows.num_rows
        noise_codes = pc.dictionary_encode(noise["shard"].combine_chunks())
        noise_shards = noise_codes.dictionary.to_pylist()

        def spread(values, dtype, fill=0, at=picked):
            out = np.full(n, fill, dtype=dtype)
            out[at] = values
            return out

        recipes = _Recipes(
            is_recipe=is_recipe,
            noise_shard=spread(noise_codes.indices.to_numpy(zero_copy_only=False), np.int32, -1, picked[with_noise]),
            noise_at=spread(_column(noise, "flac_offset", np.int64), np.int64, 0, picked[with_noise]),
            noise_bytes=spread(_column(noise, "flac_size", np.int64), np.int64, 0, picked[with_noise]),
            noise_offset=spread(_column(part, "noise_offset", np.int64), np.int64),
            noise_gain=spread(_column(part, "noise_gain", np.float64), np.float64),
            gain=spread(_column(part, "gain", np.float64), np.float64),
            noise_shards=noise_shards,
            noise_sha256=[self._sha256.get(s, "") for s in noise_shards],
            kinds=self._kind_recipes(part, picked),
        )
        for shard, digest in zip(recipes.noise_shards, recipes.noise_sha256):
            check_noise_shard(self.path, shard, digest)  # here, once, before any worker reads
        for recipe in recipes.kinds.values():
            if recipe["rir"] is not None:
                check_noise_shard(self.path, recipe["rir"][0], recipe["rir"][3])
            for shard, _, _, digest in recipe["talkers"]:
                if digest:
                    check_noise_shard(self.path, shard, digest)
        return located, recipes

    def _kind_recipes(self, part: pa.Table, picked: np.ndarray) -> dict[int, dict]:
        """position -> recipe of every row of ``part`` (recipe rows at ``picked``) whose kind
        is not additive: its numbers (shards.distortions.DISTORTION_COLUMNS), where its
        talkers' clean FLACs lie, and its RIR's (shard, offset, size, shard sha256)."""
        if "kind" not in part.column_names:
            return {}
        additive = set(additive_kinds())
        kinds = part["kind"].to_pylist()
        chosen = [j for j, kind in enumerate(kinds) if kind and kind not in additive]
        if not chosen:
            return {}
        rows = part.take(pa.array(chosen)).to_pylist()
        keys = [r["key"] for r in rows]
        for r in rows:
            for name in LIST_COLUMNS:
                r[name] = json.loads(r[name]) if r[name] else []
        talker_ids = [t for r in rows for t in r["talker_ids"]]
        talkers = self._resolved(talker_ids, [r["key"] for r in rows for _ in r["talker_ids"]], "talker") \
            if talker_ids else None
        talker_at = list(zip(talkers["shard"].to_pylist(), talkers["flac_offset"].to_pylist(),
                             talkers["flac_size"].to_pylist())) if talkers is not None else []
        with_rir = [j for j, r in enumerate(rows) if r["rir_id"]]
        rirs = self._resolved([rir_key(rows[j]["rir_id"]) for j in with_rir], [keys[j] for j in with_rir], "RIR") \
            if with_rir else None
        rir_at = dict(zip(with_rir, zip(rirs["shard"].to_pylist(), rirs["flac_offset"].to_pylist(),
                                        rirs["flac_size"].to_pylist()))) if rirs is not None else {}
        out, used = {}, 0
        for j, r in enumerate(rows):
            count = len(r["talker_ids"])
            rir = rir_at.get(j)
            out[int(picked[chosen[j]])] = {
                "kind": r["kind"], "noise_offset": int(r["noise_offset"]), "noise_gain": float(r["noise_gain"]),
                "gain": float(r["gain"]), "rir_shift": int(r["rir_shift"]), "reverb_gain": float(r["reverb_gain"]),
                "talker_offsets": [int(x) for x in r["talker_offsets"]],
                "talker_gains": [float(x) for x in r["talker_gains"]],
                "talkers": [(str(a), int(b), int(c), self._sha256.get(a, "") if is_babble_shard(a) else "")
                            for a, b, c in talker_at[used:used + count]],
                "rir": None if rir is None else (rir[0], int(rir[1]), int(rir[2]), self._sha256.get(rir[0], "")),
            }
            used += count
        return out

    def _resolved(self, wanted: list[str], of: list[str], what: str) -> pa.Table:
        where = self._rows_of(wanted)
        if (where < 0).any():
            i = int(np.flatnonzero(where < 0)[0])
            raise _refuse(self.path, f"the recipe of {of[i]} needs its {what} {wanted[i]}, which the store does not hold")
        return self._locations.take(pa.array(where))

    def clips(self, samples: Sequence[str] | LevelMembers) -> ClipSource:
        """Random access to the audio of ``samples`` (keys, or the members of a level). The
        store resolves each key to its stored bytes or its recipe."""
        keys = samples.key if isinstance(samples, LevelMembers) else samples
        located, recipes = self._recipes(self._located(keys))
        return _clip_source(self.path, located, recipes)

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
            # the same rows in the same order, so the key lookup built on the other columns holds
            self._locations = self.table(_LOCATION_COLUMNS + ["json_offset", "json_size"]
                                         + self._recipe_columns()).combine_chunks()
        rows = self._located(keys)
        out = []
        parts: dict[str, dict] = {}
        for key, shard, offset, size in zip(rows["key"].to_pylist(), rows["shard"].to_pylist(),
                                            rows["json_offset"].to_pylist(), rows["json_size"].to_pylist()):
            if shard in self._recipe_stage:  # a recipe's fields are in its part's rows file
                if shard not in parts:
                    parts[shard] = {r["key"]: r for r in decode_rows(json.loads((self.path / shard).read_text())) or []}
                out.append({k: v for k, v in parts[shard][key].items() if k not in _ROW_LOCATION_KEYS})
            else:
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
    def content_sha256(self, subsets: Sequence[str] | None = None, splits: Sequence[str] | None = None,
                       basis: str = "samples") -> str:
        """A digest of what some parts of the store hold: sha256 over the names and digests
        of the shards of ``subsets`` and ``splits`` (all when None). It changes when a
        rebuild changes any of their samples, and not when other parts are added (test
        sets built after training leave the training data's digest as it was).

        ``basis`` "samples" digests each shard's ``content_sha256`` (its samples and fields,
        not the bytes libFLAC chose for them; shards.writer.member_content), falling back to
        its file sha256 where the manifest has none (recipe parts, older stores); "bytes"
        digests the file sha256s, as runs recorded before the samples basis did."""
        if basis not in CONTENT_BASES:
            raise ValueError(f"basis {basis!r}: expected one of {', '.join(CONTENT_BASES)}")
        field = (lambda s: s.get("content_sha256") or s["sha256"]) if basis == "samples" else (lambda s: s["sha256"])
        entries = sorted(f"{s['name']}:{field(s)}" for s in self.manifest.get("shards", [])
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

"""Layout of a corpus store ``OUT/<corpus>/`` and the pieces every stage shares:

    manifest.json        corpus, options and seed per stage, package versions, every shard
    metadata.parquet     one row per sample (clean utterances and mixes): the metadata table
    rejects.csv          file, reason: everything left out, and why
    plans/<stage>.json   what a stage planned (options, roots, shard names)
    shards/<name>.tar    WebDataset shards; shards/<name>.rows.json is the shard's part of
                         the table, written just before the tar is renamed into place
    .lock                held by the build that is writing the store
"""
from __future__ import annotations

import csv
import errno
import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mixer.records import InputError
from shards.writer import atomic_output

MANIFEST = "manifest.json"
TABLE = "metadata.parquet"
REJECTS = "rejects.csv"

#: Columns of metadata.parquet, in order. Floats are NaN where there is no value.
TABLE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("subset", pa.string()),
        ("split", pa.string()),
        ("shard", pa.string()),
        ("flac_offset", pa.int64()),
        ("flac_size", pa.int64()),
        ("json_offset", pa.int64()),
        ("json_size", pa.int64()),
        ("corpus", pa.string()),
        ("utt_id", pa.string()),
        ("speaker", pa.string()),
        ("label", pa.string()),
        ("noise_type", pa.string()),
        ("noise_file", pa.string()),
        ("noise_offset", pa.int64()),
        ("snr_bin", pa.int64()),
        ("snr_target", pa.float64()),
        ("snr_achieved", pa.float64()),
        ("noise_gain", pa.float64()),
        ("gain", pa.float64()),
        ("num_samples", pa.int64()),
        ("stoi", pa.float64()),
        ("pesq", pa.float64()),
        ("fwsnrseg", pa.float64()),
        ("errors", pa.string()),
    ]
)


def shard_path(store: Path, name: str) -> Path:
    return store / "shards" / f"{name}.tar"


def rows_path(store: Path, name: str) -> Path:
    return store / "shards" / f"{name}.rows.json"


def read_rows(store: Path, name: str) -> dict | None:
    try:
        with open(rows_path(store, name)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def shard_is_complete(store: Path, name: str, fingerprint: str) -> bool:
    """Complete = the tar was renamed into place and its rows were written for this very plan."""
    if not shard_path(store, name).is_file():
        return False
    rows = read_rows(store, name)
    return rows is not None and rows.get("fingerprint") == fingerprint


def remove_stale_temporaries(store: Path) -> int:
    """Half-written files of a build that died (kill -9, power loss)."""
    count = 0
    for tmp in (store / "shards").glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count


@contextmanager
def store_lock(store: Path):
    """An exclusive lock on the store; the OS drops it when the holder dies, even by kill -9."""
    store.mkdir(parents=True, exist_ok=True)
    lock_file = open(store / ".lock", "a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock_file.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise InputError(f"{store}: another build is writing this store (lock {store / '.lock'} is held); wait for it or pick another --out") from None
        raise
    try:
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        yield
    finally:
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()


def rows_to_table(rows: list[dict]) -> pa.Table:
    columns = {}
    for field in TABLE_SCHEMA:
        values = [r.get(field.name) for r in rows]
        if pa.types.is_floating(field.type):
            values = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        elif pa.types.is_integer(field.type):
            values = np.array([-1 if v is None else v for v in values], dtype=np.int64)
        else:
            values = ["" if v is None else str(v) for v in values]
        columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=TABLE_SCHEMA)


def read_table(store: Path, columns: list[str] | None = None) -> pa.Table:
    path = Path(store) / TABLE
    if not path.is_file():
        raise InputError(f"{path}: no metadata table (expected a store built by 'prep superset')")
    return pq.read_table(path, columns=columns)


def write_table(store: Path, table: pa.Table) -> None:
    with atomic_output(store / TABLE) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_rejects(store: Path, rejects: list[dict]) -> None:
    unique = sorted({(r["file"], r["reason"]) for r in rejects})
    with atomic_output(store / REJECTS) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "reason"])
        writer.writerows(unique)

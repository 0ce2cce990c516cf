"""Layout of a corpus store ``OUT/<corpus>/`` and the pieces every stage shares:

    manifest.json        corpus, options and seed per stage, package versions, every shard
    metadata.parquet     one row per sample (clean utterances and mixes): the metadata table
    rejects.csv          file, reason: everything left out, and why
    plans/<stage>.json   what a stage planned (options, roots, shard names)
    shards/<name>.tar    WebDataset shards; shards/<name>.rows.json is the shard's part of
                         the table, written just before the tar is renamed into place
    .lock                held by the build that is writing the store; holds its owner token
                         (pid, host, nonce): a worker publishes a shard only while that
                         build still holds the lock

This module writes those files (the build's side); :mod:`shards.reader` opens a finished
store for reading and refuses one that does not match its manifest.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import fcntl
import json
import os
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shards.atomic import TEMPORARY_GLOB, atomic_output, json_clean, sha256_file, temporary_target, write_json_atomic
from shards.distortions import DISTORTION_COLUMNS, LIST_COLUMNS
from shards.errors import InputError
from shards.metrics import metric_specs
from shards.rows import ROW_SHAPES, ROWS_BY_COLUMN, decode_rows, encode_rows
from shards.vocab import (
    CLEAN_SUBSET, LEVELS_DIR, LOCK, MANIFEST, PLANS_DIR, RECIPE_LAYOUT, REJECTS, ROWS_SUFFIX, SHARD_SUFFIX,
    SHARDS_DIR, STORE_FORMAT, TABLE, rows_relpath, shard_path, shard_relpath,
)

#: Columns of metadata.parquet before the metrics' columns, in order.
_SAMPLE_COLUMNS = (
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
)


def table_schema(kinds: bool = False) -> pa.Schema:
    """Columns of metadata.parquet, in order: the sample's, with ``kinds`` the distortion
    kinds' columns (shards.distortions: a store that holds a mix beyond the additive kinds),
    one float column per registered metric (shards.metrics), then the metrics' errors.
    Floats are NaN where there is no value."""
    metric_columns = [(spec.column, pa.float64()) for spec in metric_specs()]
    kind_columns = [(name, getattr(pa, kind)()) for name, kind in DISTORTION_COLUMNS] if kinds else []
    return pa.schema([*_SAMPLE_COLUMNS, *kind_columns, *metric_columns, ("errors", pa.string())])


def holds_kinds(rows: list[dict]) -> bool:
    """Whether rows hold a mix of a kind beyond the additive ones (its rows name their kind)."""
    return any("kind" in r for r in rows)


def rows_path(store: Path, name: str) -> Path:
    return Path(store) / SHARDS_DIR / f"{name}{ROWS_SUFFIX}"


def read_rows(store: Path, name: str) -> dict | None:
    try:
        with open(rows_path(store, name)) as f:
            part = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(part, dict):
        return None
    rows = decode_rows(part)  # a recipe part's are stored by column (shards.rows)
    if rows is None:
        return None
    return {**{k: v for k, v in part.items() if k not in ROWS_BY_COLUMN + ROW_SHAPES}, "rows": rows}


def rows_sha256(rows: list[dict]) -> str:
    """A digest of a recipe part's rows as JSON (keys sorted, NaN as null)."""
    text = json.dumps(json_clean(rows), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def recipe_rows_document(task, rows: list[dict], rejects: list[dict]) -> dict:
    """The rows file of a recipe part (no tar): its rows and rejects, the fingerprint of its
    task, the audio fingerprint an audio build of it has (``prep materialize`` writes that
    one) and a digest of its rows, checked before the part counts as complete. The rows are
    stored by column (:mod:`shards.rows`); :func:`read_rows` gives them back as rows."""
    return {"name": task.name, "subset": task.subset, "split": task.split, "layout": RECIPE_LAYOUT,
            "stage": task.stage, "fingerprint": task.fingerprint(), "audio_fingerprint": task.audio_fingerprint(),
            "samples": len(rows), "metrics": list(task.metrics), **encode_rows(rows), "rejects": rejects,
            "rows_sha256": rows_sha256(rows)}


def is_recipe_part(part: dict | None) -> bool:
    return isinstance(part, dict) and part.get("layout") == RECIPE_LAYOUT


def shard_is_complete(store: Path, name: str, fingerprint: str) -> bool:
    """Complete = the tar was renamed into place, its rows were written for this very plan
    (inputs included), and the tar is still the file those rows describe: same size (a
    stat) and same sha256 (one read of the shard). A shard damaged in place is rebuilt.
    A recipe part (no tar) is complete when its rows were written for this plan and still
    match their digest."""
    path = shard_path(store, name)
    rows = read_rows(store, name)
    if rows is None or rows.get("fingerprint") != fingerprint:
        return False
    if is_recipe_part(rows):
        return isinstance(rows.get("rows"), list) and rows_sha256(rows["rows"]) == rows.get("rows_sha256")
    try:
        if path.stat().st_size != rows.get("bytes"):
            return False
        return sha256_file(path) == rows.get("sha256")
    except OSError:  # missing or unreadable: build it again
        return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, run by another user
    return True


#: Folders of a store where a writer may leave a temporary (besides the store root).
_TEMPORARY_DIRS = ("", SHARDS_DIR, PLANS_DIR, LEVELS_DIR)


def remove_stale_temporaries(store: Path) -> int:
    """Half-written files of a writer that died (kill -9, power loss): shard tars, rows,
    plans, the table, rejects, manifest and level files. Call with the store lock held.
    In levels/ (written by ``prep score``, which takes no lock) a temporary whose writer
    is still alive (``.<name>.tmp-<pid>``) is left alone."""
    count = 0
    for folder in _TEMPORARY_DIRS:
        for tmp in (Path(store) / folder).glob(TEMPORARY_GLOB):
            _, pid = temporary_target(tmp)
            if folder == LEVELS_DIR and pid is not None and pid != os.getpid() and pid_alive(pid):
                continue
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                count += 1
    return count


def shards_in_progress(store: Path) -> list[str]:
    """Names of the shards whose temporary tar is in shards/ (being written, or left by a
    worker that died)."""
    names = set()
    for tmp in (Path(store) / SHARDS_DIR).glob(TEMPORARY_GLOB):
        target, _ = temporary_target(tmp)
        if target.endswith(SHARD_SUFFIX):
            names.add(target[: -len(SHARD_SUFFIX)])
    return sorted(names)


def remove_unplanned_shards(store: Path, planned: set[str]) -> list[str]:
    """Delete shard tars and rows files that no stage's plan names (left by an older plan
    with more or other shards), so that ``shards/*.tar`` holds exactly the store's samples.
    Only files named like shards are touched. Returns the names removed."""
    removed = set()
    for path in (Path(store) / SHARDS_DIR).iterdir() if (Path(store) / SHARDS_DIR).is_dir() else ():
        for suffix in (SHARD_SUFFIX, ROWS_SUFFIX):
            if path.name.endswith(suffix) and not path.name.startswith("."):
                name = path.name[: -len(suffix)]
                if name not in planned and path.is_file():
                    path.unlink(missing_ok=True)
                    removed.add(name)
    return sorted(removed)


def _lock_token() -> str:
    return f"{os.getpid()} {socket.gethostname()} {uuid.uuid4().hex}"


@contextmanager
def folder_lock(folder: Path, busy: str):
    """An exclusive lock on a folder (its ``.lock`` file); the OS drops it when the holder
    dies, even by kill -9. Held already: InputError(``busy``). Yields the owner token
    written into the lock file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_file = open(folder / LOCK, "a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock_file.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise InputError(busy) from None
        raise
    try:
        token = _lock_token()
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{token}\n")
        lock_file.flush()
        yield token
    finally:
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()


def store_lock(store: Path):
    """The build's lock on the store. Yields the owner token; the build hands it to its
    workers, which publish only while :func:`lock_owned_by` says the token's build holds it."""
    return folder_lock(store, f"{store}: another build is writing this store (lock {Path(store) / LOCK} is held); "
                              f"wait for it or pick another --out")


def lock_holder_pid(token: str) -> int | None:
    """The pid of the build that wrote ``token``, if it runs on this machine."""
    pid, host, _ = token.split(" ", 2)
    return int(pid) if host == socket.gethostname() else None


def lock_owned_by(store: Path, token: str) -> bool:
    """Whether the build that wrote ``token`` still owns the store: the lock file names it
    (no later build took over) and, on its host, its process is alive (a build killed with
    kill -9 leaves its token behind, but not its process). A worker of a dead or replaced
    build must not publish anything."""
    try:
        current = (Path(store) / LOCK).read_text().strip()
    except OSError:
        return False
    if current != token:
        return False
    pid = lock_holder_pid(token)
    if pid is None:
        return True  # a Dask worker on another machine: the token is all it can check
    return pid_alive(pid)


def rows_to_table(rows: list[dict], kinds: bool = False) -> pa.Table:
    """The table of ``rows`` (``kinds``: with the distortion kinds' columns; a row that names
    no kind is of the additive kind its noise type names; list values are stored as JSON)."""
    schema = table_schema(kinds)
    columns = {}
    for field in schema:
        if field.name == "kind":
            values = [r.get("kind", r.get("noise_type") if r.get("utt_id") else "") for r in rows]
        elif field.name in LIST_COLUMNS:
            values = [json.dumps(r[field.name]) if field.name in r else "" for r in rows]
        else:
            values = [r.get(field.name) for r in rows]
        if pa.types.is_floating(field.type):
            values = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        elif pa.types.is_integer(field.type):
            values = np.array([-1 if v is None else v for v in values], dtype=np.int64)
        else:
            values = ["" if v is None else str(v) for v in values]
        columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=schema)


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


def read_plans(store: Path) -> dict[str, dict]:
    """Every stage's plan (``plans/<stage>.json``), by stage name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((Path(store) / PLANS_DIR).glob("*.json"))}


def write_plan(store: Path, stage: str, plan: dict) -> None:
    (Path(store) / PLANS_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(store) / PLANS_DIR / f"{stage}.json", plan)


def finalize_store(store: Path, versions: dict[str, str]) -> dict:
    """Rewrite metadata.parquet, rejects.csv and manifest.json from every stage's plan and
    the rows files of its built shards. Deterministic: the same shards give the same files.
    Rows are turned into a columnar table shard by shard, so a million-row store never sits
    in memory as Python dicts. ``versions`` (package versions of the build) go into the
    manifest."""
    import pyarrow.compute as pc

    store = Path(store)
    plans = read_plans(store)
    remove_unplanned_shards(store, {name for plan in plans.values() for name in plan["shards"]})
    tables, rejects, shards = [], [], []
    layouts: set[str] = set()
    stage_totals = {}
    kinds = False
    seen: set[str] = set()  # a shard two stages plan (an RIR, stored once per store) is read once
    for stage, plan in plans.items():
        stage_rejects = [(r["file"], r["reason"]) for r in plan.get("prepare_rejects", [])]
        totals = {"samples": 0, "pesq_failures": 0, "shards_built": 0, "shards_planned": len(plan["shards"])}
        for name in plan["shards"]:
            if name in seen:
                continue
            seen.add(name)
            part = read_rows(store, name)
            recipe = is_recipe_part(part)
            if part is None or not (recipe or shard_path(store, name).is_file()):
                continue  # not built yet (an interrupted stage): verify reports it
            table = rows_to_table(part["rows"], kinds=True)
            kinds = kinds or holds_kinds(part["rows"])
            tables.append(table)
            stage_rejects += [(r["file"], r["reason"]) for r in part["rejects"]]
            totals["samples"] += table.num_rows
            if "pesq" in part["metrics"]:
                failed = pc.and_(pc.is_nan(table["pesq"]), pc.not_equal(table["subset"], CLEAN_SUBSET))
                totals["pesq_failures"] += int(pc.sum(failed).as_py() or 0)
            totals["shards_built"] += 1
            entry = {"name": name, "path": shard_relpath(name), "stage": stage, "subset": part["subset"],
                     "split": part["split"], "samples": part["samples"], "sha256": part.get("sha256"),
                     "bytes": part.get("bytes")}
            if part.get("content_sha256"):  # parts built before it was recorded have none
                entry["content_sha256"] = part["content_sha256"]
            if recipe:  # the part is its rows file
                layouts.add(RECIPE_LAYOUT)
                entry.update(path=rows_relpath(name), sha256=sha256_file(rows_path(store, name)),
                             bytes=rows_path(store, name).stat().st_size, layout=RECIPE_LAYOUT)
            shards.append(entry)
        totals["rejects"] = len(set(stage_rejects))
        stage_totals[stage] = totals
        rejects += stage_rejects
    table = pa.concat_tables(tables) if tables else rows_to_table([], kinds=True)
    if not kinds:  # additive mixes only: the table every store had before the other kinds
        table = table.select(table_schema().names)
    write_table(store, table)
    write_rejects(store, [{"file": f, "reason": r} for f, r in rejects])
    subsets = table.column("subset").to_pylist()
    manifest = {
        "format": STORE_FORMAT,
        "corpus": next((p.get("corpus") for p in plans.values()), store.name),
        "stages": {stage: {**{k: v for k, v in plan.items() if k not in ("shards", "prepare_rejects")},
                           "totals": stage_totals[stage]} for stage, plan in plans.items()},
        "versions": versions,
        # checksums of the table and rejects: a reader refuses a table that changed after the build
        "table": {"file": TABLE, "sha256": sha256_file(store / TABLE), "rows": table.num_rows},
        "rejects": {"file": REJECTS, "count": len(set(rejects)), "sha256": sha256_file(store / REJECTS)},
        "samples": table.num_rows,
        "samples_by_subset": {s: subsets.count(s) for s in sorted(set(subsets))},
        "shards": sorted(shards, key=lambda s: s["name"]),
    }
    if layouts:  # a store with recipe parts says so; an audio store's manifest is as it always was
        manifest["layout"] = RECIPE_LAYOUT
    write_json_atomic(store / MANIFEST, manifest)
    return manifest

"""``prep verify``: a store is sound when its manifest parses, the table and rejects match
the sha256 the manifest records, every planned shard is in place with the checksum and
sample count the manifest records, shards/ holds nothing else, and every row of the table
finds its audio and json in its shard at the recorded byte offsets.

Each problem is reported once: a shard that is missing or damaged is one line (its table
rows are not reported again), and a table that differs from its checksum is one line (its
rows are not checked against the shards, since they cannot be trusted)."""
from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import typer

from shards import store as st
from shards.atomic import is_temporary, sha256_file
from shards.errors import InputError
from shards.vocab import (
    MANIFEST, PLANS_DIR, REJECTS, ROWS_SUFFIX, SHARD_SUFFIX, SHARDS_DIR, STORE_FORMAT, TABLE, shard_relpath,
)

_REBUILD = "run the same build command again to rewrite it"
_SHARD_KEYS = ("name", "path", "samples", "sha256", "bytes")


def tar_index(path: Path) -> dict[str, tuple[int, int]]:
    """member name -> (payload offset, size)."""
    with tarfile.open(path, mode="r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def _read_manifest(path: Path) -> tuple[dict | None, str | None]:
    """(manifest, None), or (None, the one-line problem)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"{MANIFEST}: not JSON ({exc}); {_REBUILD}"
    except OSError as exc:
        return None, f"{MANIFEST}: unreadable ({exc.strerror or exc}); {_REBUILD}"
    shards = manifest.get("shards") if isinstance(manifest, dict) else None
    if (not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT or not isinstance(shards, list)
            or not isinstance(manifest.get("samples"), int)
            or not all(isinstance(e, dict) and all(k in e for k in _SHARD_KEYS) for e in shards)):
        return None, f"{MANIFEST}: not a manifest of format {STORE_FORMAT!r}; {_REBUILD}"
    return manifest, None


def _check_file(store: Path, entry, name: str, what: str) -> str | None:
    """The problem with the table or rejects file against its manifest entry, or None."""
    if not isinstance(entry, dict) or "sha256" not in entry:
        return None  # a manifest without checksums for this file (older build)
    path = store / name
    if not path.is_file():
        return f"{name}: missing; {_REBUILD}"
    if sha256_file(path) != entry["sha256"]:
        return f"{name}: sha256 differs from the manifest ({what} changed or damaged after the build); {_REBUILD}"
    return None


def _read_table(store: Path) -> tuple[dict | None, str | None]:
    try:
        table = st.read_table(store, ["key", "shard", "flac_offset", "flac_size", "json_offset", "json_size"])
    except InputError:
        return None, f"{TABLE}: missing; {_REBUILD}"
    except (OSError, pa.ArrowException) as exc:
        return None, f"{TABLE}: unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); {_REBUILD}"
    return table.to_pydict(), None


def _unlisted_files(store: Path, recorded: dict, planned: set[str]) -> list[str]:
    """Files in shards/ that the manifest does not list (a shard of an older plan, a
    temporary of an interrupted build, something put there by hand)."""
    folder = store / SHARDS_DIR
    if not folder.is_dir():
        return []
    listed = {Path(e["path"]).name for e in recorded.values()}
    known = recorded.keys() | planned
    problems = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if name in listed:
            continue
        if name.endswith(ROWS_SUFFIX) and name[: -len(ROWS_SUFFIX)] in known:
            continue  # a listed shard's rows, or a planned one's (reported as not built)
        if name.endswith(SHARD_SUFFIX) and name[: -len(SHARD_SUFFIX)] in planned:
            continue  # built, not yet in the manifest: reported as planned but not built
        rel = f"{SHARDS_DIR}/{name}"
        if is_temporary(name):
            problems.append(f"{rel}: temporary file of an interrupted build (the next build removes it)")
        elif name.endswith((SHARD_SUFFIX, ROWS_SUFFIX)):
            problems.append(f"{rel}: not listed in the manifest (left by an older plan; the next build removes it)")
        else:
            problems.append(f"{rel}: not listed in the manifest (not a file of this store)")
    return problems


def verify_store(store: Path, progress: bool = False) -> tuple[list[str], dict]:
    """Returns (problems, counts). No problems means the store is sound. Reads every shard
    once (checksums), so a progress bar in bytes is offered for big stores. Raises
    :class:`InputError` only for a folder without a manifest (not a store); a damaged
    manifest or table is a problem like any other."""
    from tqdm import tqdm

    store = Path(store)
    manifest_path = store / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no manifest (expected a store built by 'prep superset')")
    counts = {"shards": 0, "samples": 0, "planned_shards": 0}
    manifest, problem = _read_manifest(manifest_path)
    if manifest is None:
        return [problem], counts  # nothing else can be checked against it
    problems: list[str] = []

    planned = set()
    for plan_file in sorted((store / PLANS_DIR).glob("*.json")):
        try:
            planned.update(json.loads(plan_file.read_text())["shards"])
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            problems.append(f"{PLANS_DIR}/{plan_file.name}: not a plan (not JSON, or no shard list); {_REBUILD}")
    recorded = {s["name"]: s for s in manifest["shards"]}
    for name in sorted(planned - recorded.keys()):
        problems.append(f"{shard_relpath(name)}: planned but not built (run the same build command again to resume)")
    problems += _unlisted_files(store, recorded, planned)

    rejects_problem = _check_file(store, manifest.get("rejects"), REJECTS, "rejects")
    if rejects_problem:
        problems.append(rejects_problem)
    # a table that differs from its checksum is one problem: its rows are not checked further
    table_problem = _check_file(store, manifest.get("table"), TABLE, "table")
    table = None
    if table_problem is None:
        table, table_problem = _read_table(store)
    if table_problem:
        problems.append(table_problem)
        table = {"key": [], "shard": []}

    rows_by_shard: dict[str, list[int]] = defaultdict(list)
    for i, shard in enumerate(table["shard"]):
        rows_by_shard[shard].append(i)
    if table_problem is None:
        if len(table["key"]) != manifest["samples"]:
            problems.append(f"{TABLE}: {len(table['key'])} rows, manifest says {manifest['samples']}")
        if len(set(table["key"])) != len(table["key"]):
            problems.append(f"{TABLE}: duplicate keys")

    bar = tqdm(total=sum(e["bytes"] for e in recorded.values()), unit="B", unit_scale=True,
               desc=f"verify {store.name}", disable=not progress)
    for _, entry in sorted(recorded.items()):
        bar.update(entry["bytes"])
        path = store / entry["path"]
        rows = rows_by_shard.pop(entry["path"], [])  # a missing or damaged shard is one problem
        if not path.is_file():
            problems.append(f"{entry['path']}: missing (run the same build command again to rebuild it)")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from the manifest (file changed or damaged; "
                            f"run the same build command again to rebuild it)")
            continue
        try:
            index = tar_index(path)
        except (tarfile.TarError, OSError) as exc:
            problems.append(f"{entry['path']}: not a readable tar ({exc})")
            continue
        if len(index) != 2 * entry["samples"]:
            problems.append(f"{entry['path']}: {len(index)} members, expected {2 * entry['samples']} (flac + json per sample)")
        if table_problem is not None:
            continue
        if len(rows) != entry["samples"]:
            problems.append(f"{entry['path']}: {len(rows)} table rows, manifest says {entry['samples']} samples")
        for i in rows:
            key = table["key"][i]
            for ext in ("flac", "json"):
                where = index.get(f"{key}.{ext}")
                if where is None:
                    problems.append(f"{entry['path']}: no {key}.{ext} for its table row")
                elif where != (table[f"{ext}_offset"][i], table[f"{ext}_size"][i]):
                    problems.append(f"{entry['path']}: {key}.{ext} is not at the offset/size the table records")
    bar.close()
    for shard, rows in rows_by_shard.items():
        problems.append(f"{TABLE}: {len(rows)} rows point at {shard}, which the manifest does not list")
    counts = {"shards": len(recorded), "samples": len(table["key"]), "planned_shards": len(planned)}
    return problems, counts


def verify(store: Path = typer.Argument(..., help="A store folder, OUT/<corpus>."),
           quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")):
    """Check the manifest, the table's and rejects' checksums, every shard's checksum and
    sample count, that shards/ holds only the shards the manifest lists, and that every table
    row has its audio. Exit code 0: sound; 1: problems (one line each); 2: not a store."""
    try:
        problems, counts = verify_store(store, progress=not quiet)
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    for p in problems:
        typer.echo(f"FAIL {p}")
    status = "FAILED" if problems else "OK"
    typer.echo(f"{status}: {counts['shards']} shards, {counts['samples']} samples, {len(problems)} problems ({store})")
    if problems:
        raise typer.Exit(1)

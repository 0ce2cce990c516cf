"""``prep verify``: a store is sound when every planned shard is in place with the
checksum and sample count the manifest records, and every row of the metadata table
finds its audio and json in its shard at the recorded byte offsets."""
from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from pathlib import Path

import typer

from shards import store as st
from shards.atomic import sha256_file
from shards.errors import InputError
from shards.vocab import MANIFEST, PLANS_DIR, TABLE, shard_relpath


def tar_index(path: Path) -> dict[str, tuple[int, int]]:
    """member name -> (payload offset, size)."""
    with tarfile.open(path, mode="r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def verify_store(store: Path, progress: bool = False) -> tuple[list[str], dict]:
    """Returns (problems, counts). No problems means the store is sound. Reads every shard
    once (checksums), so a progress bar in bytes is offered for big stores."""
    from tqdm import tqdm

    store = Path(store)
    manifest_path = store / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no manifest (expected a store built by 'prep superset')")
    manifest = json.loads(manifest_path.read_text())
    table = st.read_table(store, ["key", "shard", "flac_offset", "flac_size", "json_offset", "json_size"]).to_pydict()
    problems: list[str] = []

    planned = set()
    for plan_file in sorted((store / PLANS_DIR).glob("*.json")):
        planned.update(json.loads(plan_file.read_text())["shards"])
    recorded = {s["name"]: s for s in manifest["shards"]}
    for name in sorted(planned - recorded.keys()):
        problems.append(f"{shard_relpath(name)}: planned but not built (run the same build command again to resume)")

    rows_by_shard: dict[str, list[int]] = defaultdict(list)
    for i, shard in enumerate(table["shard"]):
        rows_by_shard[shard].append(i)
    if len(table["key"]) != manifest["samples"]:
        problems.append(f"{TABLE}: {len(table['key'])} rows, manifest says {manifest['samples']}")
    if len(set(table["key"])) != len(table["key"]):
        problems.append(f"{TABLE}: duplicate keys")

    bar = tqdm(total=sum(e["bytes"] for e in recorded.values()), unit="B", unit_scale=True,
               desc=f"verify {store.name}", disable=not progress)
    for _, entry in sorted(recorded.items()):
        bar.update(entry["bytes"])
        path = store / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: missing")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from the manifest (file changed or damaged)")
            continue
        index = tar_index(path)
        if len(index) != 2 * entry["samples"]:
            problems.append(f"{entry['path']}: {len(index)} members, expected {2 * entry['samples']} (flac + json per sample)")
        rows = rows_by_shard.pop(entry["path"], [])
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
    """Check every shard's checksum and sample count, and that every table row has its audio.
    Exit code 0: sound; 1: problems (listed); 2: not a store."""
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

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
import pyarrow.parquet as pq
import typer

from shards import store as st
from shards.atomic import is_temporary, sha256_file
from shards.cli import fail
from shards.errors import InputError
from shards.reader import ManifestError, load_manifest
from shards.vocab import (
    MANIFEST, PLANS_DIR, RECIPE_LAYOUT, REJECTS, ROWS_SUFFIX, SHARD_SUFFIX, SHARDS_DIR, TABLE,
    noise_keys_of_stage, payload_ext, rir_key, shard_relpath,
)

_REBUILD = "run the same build command again to rewrite it"
#: Table columns naming a recipe's other sources (a store of additive mixes has neither).
_SOURCE_COLUMNS = ("rir_id", "talker_ids")


def tar_index(path: Path) -> dict[str, tuple[int, int]]:
    """member name -> (payload offset, size)."""
    with tarfile.open(path, mode="r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def _read_manifest(path: Path) -> tuple[dict | None, str | None]:
    """(manifest, None), or (None, the one-line problem)."""
    try:
        return load_manifest(path, complete=True), None
    except FileNotFoundError:
        return None, f"{MANIFEST}: unreadable (no such file); {_REBUILD}"
    except ManifestError as exc:
        return None, f"{MANIFEST}: {exc}; {_REBUILD}"


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
        present = set(pq.read_schema(store / TABLE).names) if (store / TABLE).is_file() else set()
        table = st.read_table(store, ["key", "shard", "flac_offset", "flac_size", "json_offset", "json_size",
                                      "subset", "utt_id", "noise_type", "noise_file"]
                              + [c for c in _SOURCE_COLUMNS if c in present])
    except InputError:
        return None, f"{TABLE}: missing; {_REBUILD}"
    except (OSError, pa.ArrowException) as exc:
        return None, f"{TABLE}: unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); {_REBUILD}"
    columns = table.to_pydict()
    for name in _SOURCE_COLUMNS:  # a store of additive mixes has neither: empty for every row, once
        columns.setdefault(name, [""] * table.num_rows)
    return columns, None


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
    store = Path(store)
    manifest_path = store / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no manifest (expected a store built by 'prep superset')")
    manifest, problem = _read_manifest(manifest_path)
    if manifest is None:
        return [problem], {"shards": 0, "samples": 0, "planned_shards": 0}  # nothing else can be checked against it

    planned, problems = _planned_shards(store)
    recorded = {s["name"]: s for s in manifest["shards"]}
    for name in sorted(planned - recorded.keys()):
        problems.append(f"{shard_relpath(name)}: planned but not built (run the same build command again to resume)")
    problems += _unlisted_files(store, recorded, planned)
    rejects_problem = _check_file(store, manifest.get("rejects"), REJECTS, "rejects")
    if rejects_problem:
        problems.append(rejects_problem)
    table, table_problems = _checked_table(store, manifest)
    problems += table_problems
    rows_by_shard: dict[str, list[int]] = defaultdict(list)
    for i, shard in enumerate(table["shard"] if table else ()):
        rows_by_shard[shard].append(i)
    problems += _check_shards(store, recorded, table, rows_by_shard, progress, manifest.get("stages", {}))
    for shard, rows in rows_by_shard.items():
        problems.append(f"{TABLE}: {len(rows)} rows point at {shard}, which the manifest does not list")
    counts = {"shards": len(recorded), "samples": len(table["key"]) if table else 0, "planned_shards": len(planned)}
    return problems, counts


def _planned_shards(store: Path) -> tuple[set[str], list[str]]:
    """The shard names of every stage's plan, and a problem per plan that cannot be read."""
    planned: set[str] = set()
    problems = []
    for plan_file in sorted((store / PLANS_DIR).glob("*.json")):
        try:
            planned.update(json.loads(plan_file.read_text())["shards"])
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            problems.append(f"{PLANS_DIR}/{plan_file.name}: not a plan (not JSON, or no shard list); {_REBUILD}")
    return planned, problems


def _checked_table(store: Path, manifest: dict) -> tuple[dict | None, list[str]]:
    """The table's location columns, or None when the table differs from its checksum or
    cannot be read (one problem: its rows are not checked further); and its problems."""
    table_problem = _check_file(store, manifest.get("table"), TABLE, "table")
    table = None
    if table_problem is None:
        table, table_problem = _read_table(store)
    if table_problem:
        return None, [table_problem]
    problems = []
    if len(table["key"]) != manifest["samples"]:
        problems.append(f"{TABLE}: {len(table['key'])} rows, manifest says {manifest['samples']}")
    if len(set(table["key"])) != len(table["key"]):
        problems.append(f"{TABLE}: duplicate keys")
    return table, problems


def _check_shards(store: Path, recorded: dict, table: dict | None, rows_by_shard: dict[str, list[int]],
                  progress: bool, stages: dict) -> list[str]:
    """Every listed shard's checksum and members, and (with a trusted ``table``) that each
    of its rows finds its audio and json where the table says. A shard's rows are taken out
    of ``rows_by_shard``: a missing or damaged shard is one problem."""
    from tqdm import tqdm

    problems: list[str] = []
    keys = set(table["key"]) if table is not None else set()
    bar = tqdm(total=sum(e["bytes"] for e in recorded.values()), unit="B", unit_scale=True,
               desc=f"verify {store.name}", disable=not progress)
    for _, entry in sorted(recorded.items()):
        bar.update(entry["bytes"])
        path = store / entry["path"]
        rows = rows_by_shard.pop(entry["path"], [])
        if not path.is_file():
            problems.append(f"{entry['path']}: missing (run the same build command again to rebuild it)")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from the manifest (file changed or damaged; "
                            f"run the same build command again to rebuild it)")
            continue
        if entry.get("layout") == RECIPE_LAYOUT:
            if table is not None:
                noise_key_of = noise_keys_of_stage(entry["stage"], stages.get(entry["stage"], {}))
                problems += _check_recipes(entry, rows, table, keys, noise_key_of)
            continue
        try:
            index = tar_index(path)
        except (tarfile.TarError, OSError) as exc:
            problems.append(f"{entry['path']}: not a readable tar ({exc})")
            continue
        if len(index) != 2 * entry["samples"]:
            problems.append(f"{entry['path']}: {len(index)} members, expected {2 * entry['samples']} (flac + json per sample)")
        if table is not None:
            problems += _check_rows(entry, rows, table, index)
    bar.close()
    return problems


def _check_rows(entry: dict, rows: list[int], table: dict, index: dict[str, tuple[int, int]]) -> list[str]:
    """One shard's table rows against its tar: the count, and each row's members where the table says."""
    problems = []
    if len(rows) != entry["samples"]:
        problems.append(f"{entry['path']}: {len(rows)} table rows, manifest says {entry['samples']} samples")
    audio_ext = payload_ext(entry.get("subset", ""))
    for i in rows:
        key = table["key"][i]
        for ext in (audio_ext, "json"):
            where = index.get(f"{key}.{ext}")
            if where is None:
                problems.append(f"{entry['path']}: no {key}.{ext} for its table row")
            elif where != (table[f"{'flac' if ext == audio_ext else ext}_offset"][i],
                           table[f"{'flac' if ext == audio_ext else ext}_size"][i]):
                problems.append(f"{entry['path']}: {key}.{ext} is not at the offset/size the table records")
    return problems


def _check_recipes(entry: dict, rows: list[int], table: dict, keys: set[str], noise_key_of) -> list[str]:
    """One recipe part's table rows: the count, and that every recipe's clean utterance and
    noise are in the store (``noise_key_of(type, file)``: the key its stage names)."""
    problems = []
    if len(rows) != entry["samples"]:
        problems.append(f"{entry['path']}: {len(rows)} table rows, manifest says {entry['samples']} samples")
    noise_keys: dict[tuple[str, str], str] = {}
    for i in rows:
        key, utt_id = table["key"][i], table["utt_id"][i]
        if utt_id not in keys:
            problems.append(f"{entry['path']}: the recipe of {key} needs clean utterance {utt_id}, which the store does not hold")
        noise_source = (table["noise_type"][i], table["noise_file"][i])
        if noise_source not in noise_keys:  # a few hundred noise files serve a million mixes
            noise_keys[noise_source] = noise_key_of(*noise_source)
        noise = noise_keys[noise_source]
        if table["noise_file"][i] and noise not in keys:
            problems.append(f"{entry['path']}: the recipe of {key} needs noise {table['noise_file'][i]} ({noise}), "
                            f"which the store does not hold")
        rir_id = table["rir_id"][i]
        if rir_id and rir_key(rir_id) not in keys:
            problems.append(f"{entry['path']}: the recipe of {key} needs RIR {rir_id} ({rir_key(rir_id)}), "
                            f"which the store does not hold")
        talkers = table["talker_ids"][i]
        for talker in json.loads(talkers) if talkers else []:
            if talker not in keys:
                problems.append(f"{entry['path']}: the recipe of {key} needs talker {talker}, which the store does not hold")
    return problems


def verify(store: Path = typer.Argument(..., help="A store folder, OUT/<corpus>."),
           quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")):
    """Check the manifest, the table's and rejects' checksums, every shard's checksum and
    sample count, that shards/ holds only the shards the manifest lists, and that every table
    row has its audio. Exit code 0: sound; 1: problems (one line each); 2: not a store."""
    try:
        problems, counts = verify_store(store, progress=not quiet)
    except InputError as exc:
        fail(str(exc))
    report(store, problems, counts)


def report(store: Path, problems: list[str], counts: dict) -> None:
    """Print ``prep verify``'s lines (one per problem, then the status); exit 1 on problems."""
    for p in problems:
        typer.echo(f"FAIL {p}")
    status = "FAILED" if problems else "OK"
    typer.echo(f"{status}: {counts['shards']} shards, {counts['samples']} samples, {len(problems)} problems ({store})")
    if problems:
        raise typer.Exit(1)

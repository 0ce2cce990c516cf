"""A run folder: the names of its files, defined once, and the readers that turn a missing
or damaged file into one line naming it and what to run.

``trainer run`` writes ``config.json`` (the settings and what the run read), ``epochs.jsonl``
(one record per finished epoch), ``last.pt`` (where ``--resume`` continues), ``best.pt`` (the
selected epoch's model), ``train.log``; ``trainer eval`` writes ``results.json``. ``trainer
report`` reads the JSON files only. Nothing here imports torch at module level: the report
runs without it.
"""
from __future__ import annotations

import json
from pathlib import Path

from shards.errors import InputError

RUN_FORMAT = "metricaug-run/1"
CONFIG = "config.json"
EPOCHS = "epochs.jsonl"
LOG = "train.log"
LAST = "last.pt"
BEST = "best.pt"
RESULTS = "results.json"
LOCK = ".lock"  # held by the one `trainer run` writing the folder


def read_json(path: Path, what: str, make: str) -> dict:
    """A JSON object file; missing or not JSON: one line naming it and the command ``make``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no {what} (write it with '{make}')")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {what} is not JSON ({exc}); write it again with '{make}'") from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: {what} is not a JSON object; write it again with '{make}'")
    return document


def read_config(run: Path) -> dict:
    return read_json(Path(run) / CONFIG, "run settings", "trainer run")


def read_results(run: Path) -> dict:
    return read_json(Path(run) / RESULTS, "test results", f"trainer eval {run}")


def read_epochs(run: Path) -> list[dict]:
    """The finished epochs' records; a folder with none is one line saying so."""
    path = Path(run) / EPOCHS
    records = []
    if path.is_file():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"{path}: line {number} is not JSON; continue the run with "
                                 f"'trainer run ... --out {run} --resume', which rewrites it") from None
    if not records:
        raise InputError(f"{run}: no finished epoch (train it with 'trainer run ... --out {run}')")
    return records


def load_checkpoint(path: Path, device) -> dict:
    """A checkpoint written by ``trainer run``; truncated or not a checkpoint: one line."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint (written by 'trainer run' after each epoch)")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable checkpoint ({first}); it was damaged after it was written: "
                         f"train again into another --out, or delete it to continue from the other checkpoint") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise InputError(f"{path}: not a checkpoint written by 'trainer run'")
    return payload


def data_identity(store, subsets, basis: str = "samples") -> dict:
    """What a run read from a store, by content: the training and validation shards of
    ``subsets``, their samples digested (``Store.content_sha256``), so that a store rebuilt
    where another libFLAC encodes the same samples is still the run's data."""
    from shards.vocab import SUPERSET_SPLITS

    subsets = sorted(set(subsets))
    return {"subsets": subsets, "basis": basis, "sha256": store.content_sha256(subsets, SUPERSET_SPLITS, basis)}


def same_data(store, recorded: dict | None) -> bool:
    """Whether ``store`` holds the data of a recorded identity, digested on the identity's own
    basis (runs recorded before the basis existed digested shard bytes)."""
    if not recorded:
        return True  # a run from before identities were recorded: nothing to compare
    return data_identity(store, recorded["subsets"], recorded.get("basis", "bytes"))["sha256"] == recorded["sha256"]


def check_data_identity(store, recorded: dict | None, run: Path) -> None:
    """Refuse a store whose training data is not the data ``run`` was trained on."""
    if not same_data(store, recorded):
        raise InputError(f"{store.path}: not the data {run} was trained on (its {', '.join(recorded['subsets'])} "
                         f"shards changed since, e.g. a rebuild); use the original store or train a new run on this one")

"""The level-index file format: which stored mixes form each distortion level.

``prep score`` writes, for one (metric, quantizer, K), two files under ``STORE/levels/``:

    <metric>-<quant>-k<K>.json     small (kilobytes at any store size): the fitted quantizer,
                                   per-group and per-level statistics and counts, warnings,
                                   and the sha256 of the members file
    <metric>-<quant>-k<K>.parquet  one row per assigned mix, sorted by (group, level, key):
                                   group, level, key, utt_id, label, shard, flac_offset,
                                   flac_size, value

Groups are ``train`` and ``validation`` for the superset and the test subset's own name
(``test_snr0`` ... ``test_unseen``) for the test sets. Level 1 is the least distorted. The
JSON records the metric's label and direction (``metric_label``, ``higher_is_better``). The
members file is written in row groups of (group, level) runs, so reading one level with a
pyarrow filter touches only the row groups that hold it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shards.atomic import atomic_output, sha256_file, write_bytes_atomic
from shards.errors import InputError
from shards.metrics import builtin_metric_spec
from shards.vocab import LEVELS_DIR, TRAIN, levels_stem

LEVELS_FORMAT = "metricaug-levels/2"
#: Columns of the members file, in order.
MEMBERS_SCHEMA = pa.schema([
    ("group", pa.string()),
    ("level", pa.int16()),
    ("key", pa.string()),
    ("utt_id", pa.string()),
    ("label", pa.string()),
    ("shard", pa.string()),  # tar path relative to the store directory
    ("flac_offset", pa.int64()),  # byte offset of <key>.flac's payload inside the tar
    ("flac_size", pa.int64()),
    ("value", pa.float64()),  # the metric value the level was assigned from
])
#: Rows per Parquet row group: small enough that a filter on one level skips most of a
#: million-row file, large enough that the footer stays small.
ROW_GROUP_ROWS = 65536


def level_index_paths(levels_dir: Path, metric: str, quant: str, n_levels: int) -> tuple[Path, Path]:
    stem = levels_stem(metric, quant, n_levels)
    return Path(levels_dir) / f"{stem}.json", Path(levels_dir) / f"{stem}.parquet"


def write_level_index(json_path: Path, parquet_path: Path, summary: dict, members: pa.Table) -> None:
    """Write the members file, then the JSON that records its checksum (so a JSON in place
    always describes the members file beside it). ``members`` must follow MEMBERS_SCHEMA and
    be sorted by (group, level, key)."""
    members = members.select(MEMBERS_SCHEMA.names).cast(MEMBERS_SCHEMA)
    with atomic_output(parquet_path) as tmp:
        pq.write_table(members, tmp, row_group_size=ROW_GROUP_ROWS, compression="zstd")
    document = dict(summary, format=LEVELS_FORMAT, members_file=Path(parquet_path).name,
                    members_sha256=sha256_file(parquet_path), members_rows=members.num_rows)
    text = json.dumps(document, sort_keys=True, indent=1, allow_nan=False)
    write_bytes_atomic(json_path, (text + "\n").encode("utf-8"))


@dataclass(frozen=True)
class LevelMembers:
    """The samples of one level of one group, in key order. ``Store.clips(members)``
    reads their audio; where each sample lies in its shard stays the store's business."""

    group: str
    level: int
    key: list[str]
    utt_id: list[str]
    label: list[str]
    value: np.ndarray
    _table: pa.Table = field(repr=False, compare=False)  # the rows as read, locations included

    def __len__(self) -> int:
        return len(self.key)

    def take(self, indices) -> "LevelMembers":
        """The members at ``indices`` (repeats allowed), in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        table = self._table.take(pa.array(idx))
        return _members_from_table(self.group, self.level, table)


def _members_from_table(group: str, level: int, table: pa.Table) -> LevelMembers:
    return LevelMembers(
        group=group, level=level,
        key=table["key"].to_pylist(), utt_id=table["utt_id"].to_pylist(), label=table["label"].to_pylist(),
        value=table["value"].to_numpy(zero_copy_only=False).astype(np.float64, copy=False), _table=table,
    )


@dataclass
class LevelIndex:
    """An opened level index: the summary is in memory, members are read per request."""

    path: Path
    summary: dict

    @property
    def members_path(self) -> Path:
        return self.path.with_name(self.summary["members_file"])

    @property
    def metric(self) -> str:
        return self.summary["metric"]

    @property
    def metric_label(self) -> str:
        """How a report names the metric ("STOI"); a level index written before labels were
        recorded takes the built-in metric's, else the name."""
        if "metric_label" in self.summary:
            return self.summary["metric_label"]
        spec = builtin_metric_spec(self.metric)
        return spec.label if spec else self.metric

    @property
    def higher_is_better(self) -> bool:
        """Whether a higher metric value means less distortion (level 1 holds the highest);
        an older level index takes the built-in metric's direction (all higher is better)."""
        if "higher_is_better" in self.summary:
            return bool(self.summary["higher_is_better"])
        spec = builtin_metric_spec(self.metric)
        return spec.higher_is_better if spec else True

    @property
    def quant(self) -> str:
        return self.summary["quant"]

    @property
    def n_levels(self) -> int:
        return int(self.summary["n_levels"])

    @property
    def groups(self) -> list[str]:
        return list(self.summary["groups"])

    @property
    def warnings(self) -> list[str]:
        return list(self.summary.get("warnings", []))

    def counts(self, group: str = TRAIN) -> list[int]:
        """Members per level (1..K) of one group."""
        self._check_group(group)
        return [int(row["count"]) for row in self.summary["stats"][group]]

    def _check_group(self, group: str) -> None:
        if group not in self.summary["stats"]:
            raise InputError(f"{self.path}: no group {group!r} (groups: {', '.join(self.groups)})")

    def members(self, group: str, level: int) -> LevelMembers:
        """One level's members, read with a filter (only the row groups that hold them)."""
        self._check_group(group)
        if not 1 <= int(level) <= self.n_levels:
            raise InputError(f"{self.path}: level {level} outside 1..{self.n_levels}")
        filters = [("group", "=", group), ("level", "=", int(level))]
        try:
            table = pq.read_table(self.members_path, filters=filters)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{self.members_path}: unreadable level members ({exc})") from None
        table = table.sort_by([("key", "ascending")])
        return _members_from_table(group, int(level), table)

    def assignments(self, group: str | None = None, columns: list[str] | None = None) -> pa.Table:
        """Every assigned mix (optionally of one group): the members file as a table."""
        filters = None if group is None else [("group", "=", group)]
        return pq.read_table(self.members_path, columns=columns, filters=filters)


def open_level_index(path: str | Path, verify_members: bool = True) -> LevelIndex:
    """Read ``levels/<metric>-<quant>-k<K>.json``; refuses one whose members file is
    missing or not the one it was written with."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no level index (expected the output of 'prep score')")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON level index ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != LEVELS_FORMAT:
        raise InputError(f"{path}: not a level index of this version (expected format {LEVELS_FORMAT!r}); "
                         f"run 'prep score' again to rewrite it")
    index = LevelIndex(path=path, summary=document)
    members = index.members_path
    if not members.is_file():
        raise InputError(f"{members}: missing (the members file of {path.name}); run 'prep score' again")
    if verify_members and sha256_file(members) != document["members_sha256"]:
        raise InputError(f"{members}: sha256 differs from {path.name} (changed after 'prep score'); run 'prep score' again")
    return index


def find_level_index(store: str | Path, metric: str, quant: str, n_levels: int | None = None) -> Path:
    """The level index of a store for (metric, quant[, K]). With K unset, the one K there
    is; several or none are a one-line error naming the command that makes one."""
    levels_dir = Path(store) / LEVELS_DIR
    make = f"prep score {store} --metric {metric} --quant {quant}"
    if n_levels is not None:
        path, _ = level_index_paths(levels_dir, metric, quant, n_levels)
        if not path.is_file():
            raise InputError(f"{path}: no level index; make it with '{make} --levels {n_levels}'")
        return path
    stem = levels_stem(metric, quant, 0)[:-1]  # "<metric>-<quant>-k"
    found = sorted(p for p in levels_dir.glob(f"{stem}*.json") if p.stem[len(stem):].isdigit())
    if not found:
        raise InputError(f"{levels_dir}: no {metric}/{quant} level index; make it with '{make}'")
    if len(found) > 1:
        ks = ", ".join(p.stem[len(stem):] for p in found)
        raise InputError(f"{levels_dir}: {metric}/{quant} level indexes for K = {ks}; choose one with --levels")
    return found[0]


def list_level_indexes(store: str | Path) -> list[Path]:
    """Every level index of a store (``levels/<metric>-<quant>-k<K>.json``), in name order."""
    levels_dir = Path(store) / LEVELS_DIR
    return sorted(p for p in levels_dir.glob("*-*-k*.json") if p.stem.rpartition("-k")[2].isdigit())


def members_table_from_columns(columns: dict[str, object]) -> pa.Table:
    """Build a members table from column arrays (for writers); checks the columns."""
    missing = [c for c in MEMBERS_SCHEMA.names if c not in columns]
    if missing:
        raise ValueError(f"members table lacks column(s) {', '.join(missing)}")
    return pa.table({name: columns[name] for name in MEMBERS_SCHEMA.names}).cast(MEMBERS_SCHEMA)


def sort_members(table: pa.Table, group_order: list[str]) -> pa.Table:
    """Sort by (group in ``group_order``, level, key): the file's row order."""
    rank = pc.index_in(table["group"], value_set=pa.array(group_order, type=pa.string()))
    table = table.append_column("_rank", rank)
    table = table.sort_by([("_rank", "ascending"), ("level", "ascending"), ("key", "ascending")])
    return table.drop_columns(["_rank"])

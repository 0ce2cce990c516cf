"""``prep verify --rescore M``: re-mix and re-score a seeded sample of M mixes and compare
their metrics with the table, exactly. A mix is read as every reader reads it (an audio
store: its FLAC; a recipe store: rendered from its clean utterance and stored noise) and
scored as the build scored it: together with the other mixes of its utterance in its shard
(the metrics' batched code paths agree with single scoring only to 1e-12), one BLAS
thread, the metrics its shard was built with."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from mixer.build import score_fields
from shards import store as st
from shards.metrics import metric_specs
from shards.reader import Store
from shards.vocab import ROWS_SUFFIX, SHARD_SUFFIX


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def _part_name(shard: str) -> str:
    name = Path(shard).name
    for suffix in (ROWS_SUFFIX, SHARD_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def rescore(store: Store, count: int, seed: int = 0) -> tuple[list[str], int]:
    """(problems, mixes compared): one problem per mix whose re-computed metrics or errors
    differ from its table row, naming the mix and the column."""
    from threadpoolctl import threadpool_limits

    columns = [spec.column for spec in metric_specs()] + ["errors"]
    table = store.table(["key", "shard", "utt_id", "noise_type"] + columns)
    mixes = np.flatnonzero(pc.and_(pc.not_equal(table["noise_type"], ""), pc.not_equal(table["utt_id"], "")).to_numpy(
        zero_copy_only=False))
    if not count or not mixes.size:
        return [], 0
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(mixes, size=min(count, mixes.size), replace=False))
    keys, shards, utts = table["key"].to_pylist(), table["shard"].to_pylist(), table["utt_id"].to_pylist()
    groups: dict[tuple[str, str], list[int]] = {}
    for i in mixes.tolist():
        groups.setdefault((shards[i], utts[i]), []).append(i)
    values = {c: table[c].to_pylist() for c in columns}
    problems = []
    wanted = {(shards[i], utts[i]) for i in picked.tolist()}
    picked_set = set(picked.tolist())
    for shard, utt in sorted(wanted):
        rows = groups[(shard, utt)]  # in table order: the order the build scored them in
        part = st.read_rows(store.path, _part_name(shard)) or {}
        metrics = tuple(part.get("metrics", ()))
        clean = store.read_audio([utt])[0]
        with threadpool_limits(limits=1):
            scored = score_fields(clean, store.read_audio([keys[i] for i in rows]), metrics)
        for i, fields in zip(rows, scored):
            if i not in picked_set:
                continue
            for column in columns:
                recorded, now = values[column][i], fields[column]
                if column != "errors":
                    recorded = float("nan") if recorded is None else float(recorded)
                    now = float(now)
                if not _same(recorded, now):
                    problems.append(f"{keys[i]}: {column} is {recorded!r} in the table, {now!r} re-mixed and re-scored "
                                    f"({shard})")
    return problems, int(picked.size)

"""Distortion levels of a corpus store: ``prep score OUT/<corpus> --metric M --quant Q``.

Opens the store (refusing one that does not match its manifest), reads only its table
(never the tars), fits a quantizer (``scoring.quantize``) on the train superset's values of
one metric and assigns a level to every mix of the train and validation superset and of the
test sets. Writes, under ``<store>/levels/``, through the level-index format of
:mod:`shards.levelindex`:

    <metric>-<quant>-k<K>.json     quantizer, per-level statistics, counts, warnings (small)
    <metric>-<quant>-k<K>.parquet  the members: one row per assigned mix with its group,
                                   level, key, utt_id, label, shard, FLAC byte range, value
    <metric>-<quant>-k<K>.png      metric histogram by level with the level boundaries,
                                   and a box plot of the SNR per level (train superset)

Groups: ``train`` and ``validation`` for the superset (subset "superset"), and the
test subset's own name (``test_snr0`` ... ``test_unseen``) for the test sets; a
non-superset subset whose split is not "test" is named ``<subset>/<split>``.

Level 1 is the least distorted (highest metric), level K the most. Mixes whose metric
is NaN (or PESQ's failure value -1, the authors' convention) are left out of fitting and
assignment and counted per group. Same inputs give byte-identical JSON: rows are
processed in key order, keys are sorted and nothing depends on time or paths.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.plots import plot_levels
from scoring.quantize import AUTHORS_MAX_ITER, AUTHORS_RANDOM_STATE, QUANTIZER_NAMES, UniformQuantizer, make_quantizer
from shards.atomic import sha256_file
from shards.errors import InputError
from shards.levelindex import level_index_paths, members_table_from_columns, sort_members, write_level_index
from shards.metrics import MetricSpec, metric_names, metric_spec
from shards.reader import open_store
from shards.vocab import (
    LEVELS_DIR, PESQ_FAILED, SUPERSET_SUBSET, TABLE, TEST_SUBSET_PREFIX, TRAIN, VALIDATION,
)

DEFAULT_MIN_TRAIN_PER_LEVEL = 32
#: Where the quantizer is fitted: subset, split.
FIT_SUBSET, FIT_SPLIT = SUPERSET_SUBSET, TRAIN
#: Columns read from the table besides the metric.
BASE_COLUMNS: tuple[str, ...] = (
    "key", "subset", "split", "shard", "flac_offset", "flac_size",
    "utt_id", "label", "noise_type", "snr_achieved",
)
#: The distortion kind of a mix (shards.distortions), in a store that holds kinds beyond the additive ones.
KIND_COLUMN = "kind"


class LevelSizeWarning(UserWarning):
    """A level holds fewer train samples than asked for (the trainer then draws its share
    with replacement, or gives an empty level's share to the others), or the mixture did
    not converge: things ``prep score`` reports with what to do about them."""


@dataclass
class ScoreResult:
    """One quantizer's output: the files written and the index without its members."""

    paths: list[Path]
    summary: dict
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------
# reading the metadata table
# ----------------------------------------------------------------------------------
def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a string column against its sorted distinct values (vectorised)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        array = pc.fill_null(array, "")
    encoded = pc.dictionary_encode(array)
    values = encoded.dictionary.to_pylist()
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values), dtype=np.int64)
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return rank[indices], [values[i] for i in order]


def _natural_key(name: str) -> list:
    """test_snr5 before test_snr10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _group_order(name: str) -> tuple:
    """train, validation, then the test sets in natural order."""
    return ({FIT_SPLIT: 0, VALIDATION: 1}.get(name, 2), _natural_key(name))


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        array = pc.fill_null(pc.cast(array, pa.float64()), float("nan"))
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)


def _ints(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if array.null_count:
        array = pc.fill_null(array, -1)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


@dataclass
class _Mixes:
    """The store's mix rows (clean utterances dropped), sorted by key."""

    n_rows: int  # rows of the whole table
    key: pa.Array
    utt_id: pa.Array
    value: np.ndarray  # the metric
    failed: np.ndarray  # bool: metric NaN / failed
    group: np.ndarray  # code into group_names
    group_names: list[str]
    fit_group: int  # code of the train superset group, -1 if absent
    shard: np.ndarray
    shard_names: list[str]
    label: np.ndarray
    label_names: list[str]
    noise: np.ndarray
    noise_names: list[str]
    #: the distortion kind of each mix (the table's ``kind`` column); None for a store
    #: without that column (additive mixes only: the noise type is the kind)
    kind: np.ndarray | None
    kind_names: list[str]
    flac_offset: np.ndarray
    flac_size: np.ndarray
    snr: np.ndarray


def _read_mixes(store, spec: MetricSpec) -> _Mixes:
    metadata_path = store.path / TABLE
    names = store.table_columns()
    # a store of additive mixes only has no kind column: its levels report as they always did
    wanted = list(BASE_COLUMNS) + ([KIND_COLUMN] if KIND_COLUMN in names else []) + [spec.column]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise InputError(f"{metadata_path}: missing column(s) {', '.join(missing)}")
    table = store.table(wanted)
    n_rows = table.num_rows
    if pc.count_distinct(table["key"]).as_py() != n_rows:
        raise InputError(f"{metadata_path}: column 'key' has duplicate values (expected one row per sample)")

    # Keep the mixes only, in key order: the order makes ties, sums and lists
    # independent of how the table's rows happen to be arranged.
    # Levels describe the superset and the test sets; the baselines' training mixes
    # (fixed_snr, copypaste) are neither and carry no metrics.
    subset_col = pc.fill_null(table["subset"], "")
    is_mix = pc.or_(pc.equal(subset_col, SUPERSET_SUBSET), pc.starts_with(subset_col, TEST_SUBSET_PREFIX))
    mixes = table.filter(is_mix)
    mixes = mixes.take(pc.sort_indices(mixes, sort_keys=[("key", "ascending")]))

    subset, subset_names = _codes(mixes["subset"])
    split, split_names = _codes(mixes["split"])
    # group = superset split, or the test subset's name
    combo = subset * len(split_names) + split
    combo_ids, combo_inverse = np.unique(combo, return_inverse=True)
    combo_group: list[str] = []
    for cid in combo_ids.tolist():
        subset_name, split_name = subset_names[cid // len(split_names)], split_names[cid % len(split_names)]
        if subset_name == FIT_SUBSET:
            combo_group.append(split_name)
        elif split_name == "test":
            combo_group.append(subset_name)
        else:
            combo_group.append(f"{subset_name}/{split_name}")
    group_names = sorted(set(combo_group), key=_group_order)
    combo_to_group = np.array([group_names.index(g) for g in combo_group], dtype=np.int64)
    group = combo_to_group[combo_inverse.reshape(-1)] if combo_ids.size else np.empty(0, np.int64)
    fit_group = group_names.index(FIT_SPLIT) if FIT_SPLIT in group_names else -1

    value = _floats(mixes[spec.column])
    failed = ~np.isfinite(value)
    if spec.name == "pesq":
        failed |= value == PESQ_FAILED

    shard, shard_names = _codes(mixes["shard"])
    label, label_names = _codes(mixes["label"])
    noise, noise_names = _codes(mixes["noise_type"])
    kind, kind_names = _codes(mixes[KIND_COLUMN]) if KIND_COLUMN in mixes.column_names else (None, [])
    return _Mixes(
        n_rows=n_rows,
        key=mixes["key"].combine_chunks(),
        utt_id=mixes["utt_id"].combine_chunks(),
        value=value,
        failed=failed,
        group=group,
        group_names=group_names,
        fit_group=fit_group,
        shard=shard,
        shard_names=shard_names,
        label=label,
        label_names=label_names,
        noise=noise,
        noise_names=noise_names,
        kind=kind,
        kind_names=kind_names,
        flac_offset=_ints(mixes["flac_offset"]),
        flac_size=_ints(mixes["flac_size"]),
        snr=_floats(mixes["snr_achieved"]),
    )


# ----------------------------------------------------------------------------------
# levels
# ----------------------------------------------------------------------------------
def _assign(goodness: np.ndarray, quantizer, fit_mask: np.ndarray, assign_mask: np.ndarray) -> np.ndarray:
    """Levels 1..K for assigned rows, 0 for rows left out; ``goodness`` is highest at level 1."""
    levels = np.zeros(goodness.size, dtype=np.int64)
    if isinstance(quantizer, UniformQuantizer):
        # Train samples get their rank-based level (equal counts, ties by key since
        # rows are in key order); everything else is placed by the stored boundaries.
        quantizer.fit(goodness[fit_mask])
        levels[fit_mask] = quantizer.labels_
        others = assign_mask & ~fit_mask
        levels[others] = quantizer.predict(goodness[others])
    else:
        quantizer.fit(goodness[fit_mask])
        levels[assign_mask] = quantizer.predict(goodness[assign_mask])
    return levels


def _none_if_nan(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _shares(cell: np.ndarray, codes: np.ndarray, n_cells: int, n_codes: int) -> np.ndarray:
    """Counts per (cell, code): a (n_cells, n_codes) array."""
    return np.bincount(cell * n_codes + codes, minlength=n_cells * n_codes).reshape(n_cells, n_codes)


def _level_stats(mixes: _Mixes, levels: np.ndarray, n_levels: int) -> dict[str, list[dict]]:
    """Per group and level: count, metric min/mean/max, mean SNR, share of each noise type,
    of each class and (a store with a kind column) of each distortion kind."""
    n_groups = len(mixes.group_names)
    assigned = levels > 0
    cell = mixes.group[assigned] * n_levels + (levels[assigned] - 1)
    n_cells = n_groups * n_levels
    values = mixes.value[assigned]
    counts = np.bincount(cell, minlength=n_cells)
    sums = np.bincount(cell, weights=values, minlength=n_cells)
    snr = mixes.snr[assigned]
    snr_ok = np.isfinite(snr)
    snr_counts = np.bincount(cell[snr_ok], minlength=n_cells)
    snr_sums = np.bincount(cell[snr_ok], weights=snr[snr_ok], minlength=n_cells)
    n_noise = len(mixes.noise_names)
    noise_counts = _shares(cell, mixes.noise[assigned], n_cells, n_noise)
    n_labels = len(mixes.label_names)
    label_counts = _shares(cell, mixes.label[assigned], n_cells, n_labels)
    kind_counts = None if mixes.kind is None else _shares(cell, mixes.kind[assigned], n_cells, len(mixes.kind_names))
    mins = np.full(n_cells, np.nan)
    maxs = np.full(n_cells, np.nan)
    if cell.size:
        order = np.argsort(cell, kind="stable")
        sorted_cells = cell[order]
        starts = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
        present = sorted_cells[starts]
        mins[present] = np.minimum.reduceat(values[order], starts)
        maxs[present] = np.maximum.reduceat(values[order], starts)

    stats: dict[str, list[dict]] = {}
    for g, name in enumerate(mixes.group_names):
        rows = []
        for lv in range(n_levels):
            c = g * n_levels + lv
            count = int(counts[c])
            rows.append({
                "level": lv + 1,
                "count": count,
                "metric_min": _none_if_nan(mins[c]),
                "metric_mean": _none_if_nan(sums[c] / count) if count else None,
                "metric_max": _none_if_nan(maxs[c]),
                "snr_mean": _none_if_nan(snr_sums[c] / snr_counts[c]) if snr_counts[c] else None,
                "noise_share": {
                    kind: (float(noise_counts[c, k] / count) if count else None)
                    for k, kind in enumerate(mixes.noise_names)
                },
                # a level's class mix: a WF1 gap between levels measures it as well as distortion
                "label_share": {
                    label: (float(label_counts[c, k] / count) if count else None)
                    for k, label in enumerate(mixes.label_names)
                },
            })
            if kind_counts is not None:  # each distortion kind's share (a store without kinds: not recorded)
                rows[-1]["kind_share"] = {kind: (float(kind_counts[c, k] / count) if count else None)
                                          for k, kind in enumerate(mixes.kind_names)}
        stats[name] = rows
    return stats


def _members(mixes: _Mixes, levels: np.ndarray) -> pa.Table:
    """Every assigned mix as a row of the level-index members file."""
    assigned = np.flatnonzero(levels > 0)
    take = pa.array(assigned)
    table = members_table_from_columns({
        "group": pa.array(np.asarray(mixes.group_names, dtype=object)[mixes.group[assigned]].tolist(), type=pa.string()),
        "level": pa.array(levels[assigned].astype(np.int16)),
        "key": mixes.key.take(take),
        "utt_id": mixes.utt_id.take(take),
        "label": pa.array(np.asarray(mixes.label_names, dtype=object)[mixes.label[assigned]].tolist(), type=pa.string()),
        "shard": pa.array(np.asarray(mixes.shard_names, dtype=object)[mixes.shard[assigned]].tolist(), type=pa.string()),
        "flac_offset": pa.array(mixes.flac_offset[assigned]),
        "flac_size": pa.array(mixes.flac_size[assigned]),
        "value": pa.array(mixes.value[assigned]),
    })
    return sort_members(table, mixes.group_names)


@dataclass(frozen=True)
class _Scoring:
    """What one ``prep score`` run fits with, the same for each quantizer it fits."""

    metadata_path: Path  # the table, as messages name it
    metadata_sha256: str
    metric: MetricSpec
    n_levels: int
    random_state: int
    max_iter: int
    min_train_per_level: int
    out_dir: Path
    plot: bool

    def stem(self, quant: str) -> str:
        return f"{self.metric.name}-{quant}-k{self.n_levels}"


def _goodness(spec: MetricSpec, values: np.ndarray) -> np.ndarray:
    """What the quantizers rank (highest = level 1): the values, negated for a metric where
    lower means less distorted."""
    return values if spec.higher_is_better else -values


def _fit_levels(run: _Scoring, mixes: _Mixes, quant: str):
    """(quantizer, levels 0..K of every mix, train mixes fitted on)."""
    metric = run.metric.name
    quantizer = make_quantizer(quant, n_levels=run.n_levels, random_state=run.random_state, max_iter=run.max_iter)
    fit_mask = (mixes.group == mixes.fit_group) & ~mixes.failed
    assign_mask = ~mixes.failed
    n_fit = int(fit_mask.sum())
    if n_fit == 0:
        raise InputError(
            f"{run.metadata_path}: no finite '{metric}' value among the train superset mixes "
            f"(subset == 'superset', split == 'train'); run the metric stage first"
        )
    if n_fit < run.n_levels:
        raise InputError(f"{run.metadata_path}: {n_fit} train superset mixes with a '{metric}' value cannot fill {run.n_levels} levels")
    levels = _assign(_goodness(run.metric, mixes.value), quantizer, fit_mask, assign_mask)
    return quantizer, levels, n_fit


def _level_warnings(run: _Scoring, quant: str, quantizer, train_counts: list[int]) -> list[str]:
    """What ``prep score`` warns about: thin or empty train levels, a mixture not converged."""
    stem = run.stem(quant)
    messages: list[str] = []
    for lv, count in enumerate(train_counts, start=1):
        if count == 0:
            messages.append(
                f"{stem}: level {lv} holds no train samples (the trainer "
                f"gives its share to the other levels); fewer --levels usually fills every level"
            )
        elif count < run.min_train_per_level:
            messages.append(
                f"{stem}: level {lv} holds {count} train samples "
                f"(< {run.min_train_per_level}); the trainer must sample it with replacement"
            )
    if quant == "gmm" and not quantizer.converged_:
        messages.append(
            f"{stem}: the mixture did not converge in {quantizer.n_iter_} iterations "
            f"(the authors' setting is 100); try --max-iter 500, or fewer --levels"
        )
    return messages


def _score_one(run: _Scoring, mixes: _Mixes, quant: str) -> ScoreResult:
    spec, n_levels = run.metric, run.n_levels
    metric = spec.name
    quantizer, levels, n_fit = _fit_levels(run, mixes, quant)
    stats = _level_stats(mixes, levels, n_levels)
    missing = {name: int(np.sum(mixes.failed & (mixes.group == g))) for g, name in enumerate(mixes.group_names)}
    messages = _level_warnings(run, quant, quantizer, [row["count"] for row in stats[FIT_SPLIT]])
    best = "highest" if spec.higher_is_better else "lowest"
    summary = {
        "metric": metric,
        "metric_label": spec.label,
        "higher_is_better": spec.higher_is_better,
        "quant": quant,
        "n_levels": n_levels,
        "level_order": f"level 1 = least distorted ({best} {metric}), level {n_levels} = most distorted",
        "quantizer": quantizer.to_dict(),
        "store": {"metadata": TABLE, "metadata_sha256": run.metadata_sha256, "rows": mixes.n_rows, "mixes": int(mixes.value.size)},
        "fit": {"subset": FIT_SUBSET, "split": FIT_SPLIT, "count": n_fit, "missing": missing.get(FIT_SPLIT, 0)},
        "min_train_per_level": run.min_train_per_level,
        "groups": mixes.group_names,
        "missing": missing,
        "stats": stats,
        "warnings": messages,
    }
    run.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, parquet_path = level_index_paths(run.out_dir, metric, quant, n_levels)
    png_path = json_path.with_suffix(".png")
    write_level_index(json_path, parquet_path, summary, _members(mixes, levels))
    paths = [json_path, parquet_path]
    if run.plot:
        in_fit = (mixes.group == mixes.fit_group) & (levels > 0)
        kinds = None if mixes.kind is None else (mixes.kind[in_fit], mixes.kind_names)
        plot_levels(png_path, metric, quant, quantizer, mixes.value[in_fit], levels[in_fit], mixes.snr[in_fit], n_levels,
                    boundary_sign=1.0 if spec.higher_is_better else -1.0, kinds=kinds)
        paths.append(png_path)
    for message in messages:
        warnings.warn(message, LevelSizeWarning, stacklevel=3)
    return ScoreResult(paths=paths, summary=summary, warnings=messages)


def run_scoring(
    store_dir: str | Path,
    metric: str,
    quant: str = "gmm",
    n_levels: int = 5,
    random_state: int = AUTHORS_RANDOM_STATE,
    min_train_per_level: int = DEFAULT_MIN_TRAIN_PER_LEVEL,
    out_dir: str | Path | None = None,
    max_iter: int = AUTHORS_MAX_ITER,
    plot: bool = True,
    check_store: bool = True,
) -> list[ScoreResult]:
    """Score a store with one quantizer (or both, ``quant="all"``); see the module doc.

    Raises :class:`InputError` for what a user can get wrong (missing store or table,
    unknown metric or quantizer, a metric without any value on the train superset).
    Emits :class:`LevelSizeWarning` for levels with fewer than ``min_train_per_level``
    train samples. The store is refused (:class:`shards.errors.StoreError`) when it does not
    match its manifest; ``check_store=False`` reads a bare table (benchmarks).
    """
    store_dir = Path(store_dir)
    spec = metric_spec(metric)
    if spec is None:
        raise InputError(f"--metric {metric!r}: expected one of {', '.join(metric_names())}")
    if quant == "all":
        quants: Iterable[str] = QUANTIZER_NAMES
    elif quant in QUANTIZER_NAMES:
        quants = (quant,)
    else:
        raise InputError(f"--quant {quant!r}: expected one of {', '.join(QUANTIZER_NAMES + ('all',))}")
    if int(n_levels) != n_levels or n_levels < 1:
        raise InputError(f"--levels {n_levels!r}: expected a positive integer")
    store = open_store(store_dir, check=check_store)
    metadata_path = store.path / TABLE
    mixes = _read_mixes(store, spec)
    if mixes.fit_group < 0:
        raise InputError(f"{metadata_path}: no train superset mixes (subset == 'superset', split == 'train')")
    recorded = store.manifest.get("table") if check_store else None
    digest = recorded["sha256"] if isinstance(recorded, dict) else sha256_file(metadata_path)
    run = _Scoring(
        metadata_path=metadata_path, metadata_sha256=digest, metric=spec, n_levels=int(n_levels),
        random_state=random_state, max_iter=max_iter, min_train_per_level=min_train_per_level,
        out_dir=Path(out_dir) if out_dir is not None else store_dir / LEVELS_DIR, plot=plot,
    )
    return [_score_one(run, mixes, q) for q in quants]


# ----------------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------------
def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _class_share_table(summary: dict, groups: list[str]) -> list[str]:
    """Each level's class shares (%) in ``groups``: a WF1 gap between levels measures their
    class mix as well as their distortion. Level files from before shares were recorded: one line."""
    stats = summary["stats"]
    if any("label_share" not in stats[g][0] for g in groups):
        return ["class shares: not recorded in this level index (run 'prep score' again)"]
    labels = sorted({label for g in groups for row in stats[g] for label in row["label_share"]})
    header = ["class %"] + [f"{g} {label}" for g in groups for label in labels]
    rows = [[str(lv + 1)] + [_fmt(None if stats[g][lv]["label_share"].get(label) is None else 100 * stats[g][lv]["label_share"][label], 1)
                             for g in groups for label in labels] for lv in range(summary["n_levels"])]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return ["  ".join(h.rjust(w) for h, w in zip(header, widths))] + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]


def render_level_table(summary: dict) -> str:
    """The per-level table of a level index (``ScoreResult.summary`` or ``LevelIndex.summary``)."""
    metric, quant, k = summary["metric"], summary["quant"], summary["n_levels"]
    fit = summary["fit"]
    quantizer = summary["quantizer"]["fitted"]
    head = f"{metric} / {quant} / K={k}: fitted on {fit['count']} train superset mixes"
    if fit["missing"]:
        head += f" ({fit['missing']} left out: no {metric} value)"
    if quant == "gmm":
        head += f"; mixture {'converged' if quantizer['converged_'] else 'not converged'} after {quantizer['n_iter_']} iterations"
    train = summary["stats"][FIT_SPLIT]
    other_groups = [g for g in summary["groups"] if g != FIT_SPLIT]
    # a store with distortion kinds: each kind's share (its additive mixes' kind is their noise
    # type); a store of additive mixes only: each noise type's share, as always
    share = "kind_share" if "kind_share" in train[0] else "noise_share"
    noise_kinds = sorted({kind for row in train for kind, part in row[share].items() if part})
    header = ["level", "train", f"{metric} min", "mean", "max", "SNR dB"] + [f"{n or 'none'} %" for n in noise_kinds] + other_groups
    rows = []
    for lv in range(k):
        row = train[lv]
        cells = [str(row["level"]), str(row["count"]), _fmt(row["metric_min"]), _fmt(row["metric_mean"]),
                 _fmt(row["metric_max"]), _fmt(row["snr_mean"], 1)]
        cells += [_fmt(None if row[share].get(n) is None else 100 * row[share][n], 1) for n in noise_kinds]
        cells += [str(summary["stats"][g][lv]["count"]) for g in other_groups]
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [head, "  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines += _class_share_table(summary, [g for g in (FIT_SPLIT, VALIDATION) if g in summary["groups"]])
    left_out = ", ".join(f"{g} {n}" for g, n in sorted(summary["missing"].items()) if n)
    lines.append(f"left out (no {metric} value): {left_out or 'none'}")
    return "\n".join(lines)

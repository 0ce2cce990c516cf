"""Distortion levels of a corpus store: ``prep score OUT/<corpus> --metric M --quant Q``.

Reads only ``metadata.parquet`` (never the tars), fits a quantizer (``scoring.quantize``)
on the train superset's values of one metric and assigns a level to every mix of the
train and validation superset and of the test sets. Writes, under ``<store>/levels/``:

    <metric>-<quant>-k<K>.json     the level index: quantizer, per-level statistics and,
                                   per group and level, the member samples with their
                                   shard and FLAC byte range (a reader seeks straight to it)
    <metric>-<quant>-k<K>.parquet  key, group, level, metric value: one row per assigned mix
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

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixer.records import InputError
from shards.writer import atomic_output, sha256_file
from scoring.quantize import (
    AUTHORS_MAX_ITER,
    QUANTIZER_NAMES,
    UniformQuantizer,
    make_quantizer,
    quantizer_from_dict,
)

#: Metrics that can be quantized; all are higher-is-better, so level 1 = highest value.
METRICS: tuple[str, ...] = ("stoi", "pesq", "fwsnrseg")
#: PESQ's failure value in the authors' code (pesq's on_error=RETURN_VALUES).
PESQ_FAILED = -1.0
LEVELS_FORMAT = "metricaug-levels/1"
METADATA = "metadata.parquet"
LEVELS_DIR = "levels"
DEFAULT_MIN_TRAIN_PER_LEVEL = 32
#: Where the quantizer is fitted: subset, split.
FIT_SUBSET, FIT_SPLIT = "superset", "train"
CLEAN_SUBSET = "clean"
#: Columns read from metadata.parquet besides the metric.
BASE_COLUMNS: tuple[str, ...] = (
    "key", "subset", "split", "shard", "flac_offset", "flac_size",
    "utt_id", "label", "noise_type", "snr_achieved",
)
#: Per-member columns of the level index, in the order they are written.
MEMBER_COLUMNS: tuple[str, ...] = ("key", "utt_id", "label", "shard", "flac_offset", "flac_size")


class LevelSizeWarning(UserWarning):
    """A level holds fewer train samples than asked for; the trainer must then draw
    that level's share with replacement."""


def levels_stem(metric: str, quant: str, n_levels: int) -> str:
    return f"{metric}-{quant}-k{n_levels}"


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
    return ({FIT_SPLIT: 0, "validation": 1}.get(name, 2), _natural_key(name))


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
    flac_offset: np.ndarray
    flac_size: np.ndarray
    snr: np.ndarray


def _check_store(store_dir: Path, metric: str) -> Path:
    if metric not in METRICS:
        raise InputError(f"--metric {metric!r}: expected one of {', '.join(METRICS)}")
    if not store_dir.is_dir():
        raise InputError(f"{store_dir}: store directory not found (expected OUT/<corpus> built by 'prep superset')")
    path = store_dir / METADATA
    if not path.is_file():
        raise InputError(f"{path}: no metadata table (expected a store built by 'prep superset')")
    return path


def _read_mixes(metadata_path: Path, metric: str) -> _Mixes:
    try:
        schema = pq.read_schema(metadata_path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{metadata_path}: not a readable Parquet file ({exc})") from None
    wanted = list(BASE_COLUMNS) + [metric]
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise InputError(f"{metadata_path}: missing column(s) {', '.join(missing)}")
    table = pq.read_table(metadata_path, columns=wanted)
    n_rows = table.num_rows
    if pc.count_distinct(table["key"]).as_py() != n_rows:
        raise InputError(f"{metadata_path}: column 'key' has duplicate values (expected one row per sample)")

    # Keep the mixes only, in key order: the order makes ties, sums and lists
    # independent of how the table's rows happen to be arranged.
    is_mix = pc.fill_null(pc.not_equal(table["subset"], CLEAN_SUBSET), True)
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

    value = _floats(mixes[metric])
    failed = ~np.isfinite(value)
    if metric == "pesq":
        failed |= value == PESQ_FAILED

    shard, shard_names = _codes(mixes["shard"])
    label, label_names = _codes(mixes["label"])
    noise, noise_names = _codes(mixes["noise_type"])
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
        flac_offset=_ints(mixes["flac_offset"]),
        flac_size=_ints(mixes["flac_size"]),
        snr=_floats(mixes["snr_achieved"]),
    )


# ----------------------------------------------------------------------------------
# levels
# ----------------------------------------------------------------------------------
def _assign(mixes: _Mixes, quantizer, fit_mask: np.ndarray, assign_mask: np.ndarray) -> np.ndarray:
    """Levels 1..K for assigned rows, 0 for rows left out."""
    levels = np.zeros(mixes.value.size, dtype=np.int64)
    if isinstance(quantizer, UniformQuantizer):
        # Train samples get their rank-based level (equal counts, ties by key since
        # rows are in key order); everything else is placed by the stored boundaries.
        quantizer.fit(mixes.value[fit_mask])
        levels[fit_mask] = quantizer.labels_
        others = assign_mask & ~fit_mask
        levels[others] = quantizer.predict(mixes.value[others])
    else:
        quantizer.fit(mixes.value[fit_mask])
        levels[assign_mask] = quantizer.predict(mixes.value[assign_mask])
    return levels


def _none_if_nan(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _level_stats(mixes: _Mixes, levels: np.ndarray, n_levels: int) -> dict[str, list[dict]]:
    """Per group and level: count, metric min/mean/max, mean SNR, share of each noise type."""
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
    noise_counts = np.bincount(cell * n_noise + mixes.noise[assigned], minlength=n_cells * n_noise).reshape(n_cells, n_noise)
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
            })
        stats[name] = rows
    return stats


def _members(mixes: _Mixes, levels: np.ndarray, n_levels: int) -> dict[str, dict[str, dict[str, list]]]:
    """Per group and level, the member columns (lists), each level in key order."""
    assigned = np.flatnonzero(levels > 0)
    cell = mixes.group[assigned] * n_levels + (levels[assigned] - 1)
    # Stable sort keeps key order inside each (group, level) cell.
    order = assigned[np.argsort(cell, kind="stable")]
    bounds = np.r_[0, np.cumsum(np.bincount(cell, minlength=len(mixes.group_names) * n_levels))]
    columns = {
        "key": mixes.key.take(pa.array(order)).to_pylist(),
        "utt_id": mixes.utt_id.take(pa.array(order)).to_pylist(),
        "label": mixes.label[order].tolist(),
        "shard": mixes.shard[order].tolist(),
        "flac_offset": mixes.flac_offset[order].tolist(),
        "flac_size": mixes.flac_size[order].tolist(),
    }
    members: dict[str, dict[str, dict[str, list]]] = {}
    for g, name in enumerate(mixes.group_names):
        per_level = {}
        for lv in range(n_levels):
            lo, hi = bounds[g * n_levels + lv], bounds[g * n_levels + lv + 1]
            per_level[str(lv + 1)] = {col: values[lo:hi] for col, values in columns.items()}
        members[name] = per_level
    return members


def _boundaries_for_plot(quantizer, low: float, high: float) -> np.ndarray:
    if isinstance(quantizer, UniformQuantizer):
        return np.asarray(quantizer.boundaries_)
    return quantizer.level_changes(low, high)


def _plot(path: Path, metric: str, quant: str, quantizer, mixes: _Mixes, levels: np.ndarray, n_levels: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    in_fit = (mixes.group == mixes.fit_group) & (levels > 0)
    values, fit_levels, snr = mixes.value[in_fit], levels[in_fit], mixes.snr[in_fit]
    per_level = [values[fit_levels == lv] for lv in range(1, n_levels + 1)]
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, n_levels))
    labels = [f"level {lv}" for lv in range(1, n_levels + 1)]

    fig, (ax_hist, ax_box) = plt.subplots(1, 2, figsize=(12, 4.5))
    low, high = float(values.min()), float(values.max())
    bins = np.linspace(low, high if high > low else low + 1.0, 101)
    # Stacked counts drawn with stairs: a few hundred artists even for a million rows.
    bottom = np.zeros(bins.size - 1)
    for lv, chunk in enumerate(per_level):
        counts, _ = np.histogram(chunk, bins=bins)
        ax_hist.stairs(bottom + counts, bins, baseline=bottom, fill=True, color=colors[lv], label=labels[lv])
        bottom = bottom + counts
    for b in _boundaries_for_plot(quantizer, low, high):
        ax_hist.axvline(b, color="black", linestyle="--", linewidth=0.8)
    ax_hist.set_xlabel(metric)
    ax_hist.set_ylabel("train superset mixes")
    ax_hist.set_title(f"{metric}: {quant} levels (dashed: boundaries)")
    ax_hist.legend(fontsize="small")

    snr_per_level = [s[np.isfinite(s)] for s in (snr[fit_levels == lv] for lv in range(1, n_levels + 1))]
    positions = [i + 1 for i, s in enumerate(snr_per_level) if s.size]
    if positions:
        ax_box.boxplot([snr_per_level[p - 1] for p in positions], positions=positions, showfliers=False)
    ax_box.set_xticks(range(1, n_levels + 1), [str(lv) for lv in range(1, n_levels + 1)])
    ax_box.set_xlim(0.5, n_levels + 0.5)
    ax_box.set_xlabel("level (1 = least distorted)")
    ax_box.set_ylabel("achieved SNR (dB)")
    ax_box.set_title("SNR per level (train superset)")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def _write_assignments(path: Path, mixes: _Mixes, levels: np.ndarray) -> None:
    assigned = np.flatnonzero(levels > 0)
    table = pa.table({
        "key": mixes.key.take(pa.array(assigned)),
        "group": pa.array(np.asarray(mixes.group_names, dtype=object)[mixes.group[assigned]].tolist(), type=pa.string()),
        "level": pa.array(levels[assigned].astype(np.int8)),
        "value": pa.array(mixes.value[assigned]),
    })
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def _score_one(
    metadata_path: Path,
    metadata_sha256: str,
    mixes: _Mixes,
    metric: str,
    quant: str,
    n_levels: int,
    random_state: int,
    max_iter: int,
    min_train_per_level: int,
    out_dir: Path,
    plot: bool,
) -> ScoreResult:
    quantizer = make_quantizer(quant, n_levels=n_levels, random_state=random_state, max_iter=max_iter)
    in_fit_group = mixes.group == mixes.fit_group
    fit_mask = in_fit_group & ~mixes.failed
    assign_mask = ~mixes.failed
    n_fit = int(fit_mask.sum())
    if n_fit == 0:
        raise InputError(
            f"{metadata_path}: no finite '{metric}' value among the train superset mixes "
            f"(subset == 'superset', split == 'train'); run the metric stage first"
        )
    if n_fit < n_levels:
        raise InputError(f"{metadata_path}: {n_fit} train superset mixes with a '{metric}' value cannot fill {n_levels} levels")
    levels = _assign(mixes, quantizer, fit_mask, assign_mask)

    stats = _level_stats(mixes, levels, n_levels)
    missing = {name: int(np.sum(mixes.failed & (mixes.group == g))) for g, name in enumerate(mixes.group_names)}
    messages: list[str] = []
    train_counts = [row["count"] for row in stats[FIT_SPLIT]]
    for lv, count in enumerate(train_counts, start=1):
        if count == 0:
            messages.append(
                f"{metric}-{quant}-k{n_levels}: level {lv} holds no train samples; "
                f"the trainer cannot draw from it"
            )
        elif count < min_train_per_level:
            messages.append(
                f"{metric}-{quant}-k{n_levels}: level {lv} holds {count} train samples "
                f"(< {min_train_per_level}); the trainer must sample it with replacement"
            )

    summary = {
        "format": LEVELS_FORMAT,
        "metric": metric,
        "quant": quant,
        "n_levels": n_levels,
        "level_order": f"level 1 = least distorted (highest {metric}), level {n_levels} = most distorted",
        "quantizer": quantizer.to_dict(),
        "store": {"metadata": METADATA, "metadata_sha256": metadata_sha256, "rows": mixes.n_rows, "mixes": int(mixes.value.size)},
        "fit": {"subset": FIT_SUBSET, "split": FIT_SPLIT, "count": n_fit, "missing": missing.get(FIT_SPLIT, 0)},
        "min_train_per_level": min_train_per_level,
        "groups": mixes.group_names,
        "missing": missing,
        "stats": stats,
        "member_columns": {
            "key": "WebDataset key; members of a level are in key order",
            "utt_id": "clean utterance id",
            "label": "index into 'labels'",
            "shard": "index into 'shards' (tar path relative to the store directory)",
            "flac_offset": "byte offset of <key>.flac's payload inside the tar",
            "flac_size": "size of that payload in bytes",
        },
        "shards": mixes.shard_names,
        "labels": mixes.label_names,
        "warnings": messages,
    }
    document = dict(summary, members=_members(mixes, levels, n_levels))

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = levels_stem(metric, quant, n_levels)
    json_path = out_dir / f"{stem}.json"
    parquet_path = out_dir / f"{stem}.parquet"
    png_path = out_dir / f"{stem}.png"
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    _write_atomic(json_path, (text + "\n").encode("utf-8"))
    _write_assignments(parquet_path, mixes, levels)
    paths = [json_path, parquet_path]
    if plot:
        _plot(png_path, metric, quant, quantizer, mixes, levels, n_levels)
        paths.append(png_path)
    for message in messages:
        warnings.warn(message, LevelSizeWarning, stacklevel=3)
    return ScoreResult(paths=paths, summary=summary, warnings=messages)


def run_scoring(
    store_dir: str | Path,
    metric: str,
    quant: str = "gmm",
    n_levels: int = 5,
    random_state: int = 2022,
    min_train_per_level: int = DEFAULT_MIN_TRAIN_PER_LEVEL,
    out_dir: str | Path | None = None,
    max_iter: int = AUTHORS_MAX_ITER,
    plot: bool = True,
) -> list[ScoreResult]:
    """Score a store with one quantizer (or both, ``quant="all"``); see the module doc.

    Raises :class:`InputError` for what a user can get wrong (missing store or table,
    unknown metric or quantizer, a metric without any value on the train superset).
    Emits :class:`LevelSizeWarning` for levels with fewer than ``min_train_per_level``
    train samples.
    """
    store_dir = Path(store_dir)
    metadata_path = _check_store(store_dir, metric)
    if quant == "all":
        quants: Iterable[str] = QUANTIZER_NAMES
    elif quant in QUANTIZER_NAMES:
        quants = (quant,)
    else:
        raise InputError(f"--quant {quant!r}: expected one of {', '.join(QUANTIZER_NAMES + ('all',))}")
    if int(n_levels) != n_levels or n_levels < 1:
        raise InputError(f"--levels {n_levels!r}: expected a positive integer")
    mixes = _read_mixes(metadata_path, metric)
    if mixes.fit_group < 0:
        raise InputError(f"{metadata_path}: no train superset mixes (subset == 'superset', split == 'train')")
    digest = sha256_file(metadata_path)
    out = Path(out_dir) if out_dir is not None else store_dir / LEVELS_DIR
    return [
        _score_one(metadata_path, digest, mixes, metric, q, int(n_levels), random_state,
                   max_iter, min_train_per_level, out, plot)
        for q in quants
    ]


def score_store(
    store_dir: str | Path,
    metric: str,
    quant: str = "gmm",
    n_levels: int = 5,
    random_state: int = 2022,
    min_train_per_level: int = DEFAULT_MIN_TRAIN_PER_LEVEL,
    out_dir: str | Path | None = None,
) -> list[Path]:
    """Write ``levels/<metric>-<quant>-k<K>.{json,parquet,png}``; returns the paths."""
    results = run_scoring(store_dir, metric, quant, n_levels, random_state, min_train_per_level, out_dir)
    return [p for r in results for p in r.paths]


# ----------------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------------
def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


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
    noise_kinds = sorted({kind for row in train for kind, share in row["noise_share"].items() if share})
    header = ["level", "train", f"{metric} min", "mean", "max", "SNR dB"] + [f"{n or 'none'} %" for n in noise_kinds] + other_groups
    rows = []
    for lv in range(k):
        row = train[lv]
        cells = [str(row["level"]), str(row["count"]), _fmt(row["metric_min"]), _fmt(row["metric_mean"]),
                 _fmt(row["metric_max"]), _fmt(row["snr_mean"], 1)]
        cells += [_fmt(None if row["noise_share"].get(n) is None else 100 * row["noise_share"][n], 1) for n in noise_kinds]
        cells += [str(summary["stats"][g][lv]["count"]) for g in other_groups]
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [head, "  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    left_out = ", ".join(f"{g} {n}" for g, n in sorted(summary["missing"].items()) if n)
    lines.append(f"left out (no {metric} value): {left_out or 'none'}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------
# reading a level index (for the trainer)
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelMembers:
    """The samples of one level of one group, in key order."""

    key: list[str]
    utt_id: list[str]
    label: list[str]
    shard: list[str]  # tar path relative to the store directory
    flac_offset: np.ndarray  # byte offset of <key>.flac inside the tar
    flac_size: np.ndarray

    def __len__(self) -> int:
        return len(self.key)


@dataclass
class LevelIndex:
    path: Path
    summary: dict  # everything but the members
    _members: dict = field(repr=False)

    @property
    def metric(self) -> str:
        return self.summary["metric"]

    @property
    def quant(self) -> str:
        return self.summary["quant"]

    @property
    def n_levels(self) -> int:
        return self.summary["n_levels"]

    @property
    def groups(self) -> list[str]:
        return list(self.summary["groups"])

    @property
    def warnings(self) -> list[str]:
        return list(self.summary["warnings"])

    def quantizer(self):
        """The fitted quantizer, rebuilt from the JSON (assigns new values)."""
        return quantizer_from_dict(self.summary["quantizer"])

    def counts(self, group: str = FIT_SPLIT) -> list[int]:
        return [row["count"] for row in self.summary["stats"][group]]

    def members(self, group: str, level: int) -> LevelMembers:
        if group not in self._members:
            raise KeyError(f"{self.path}: no group {group!r}; groups: {', '.join(self.groups)}")
        if not 1 <= level <= self.n_levels:
            raise KeyError(f"{self.path}: level {level} outside 1..{self.n_levels}")
        raw = self._members[group][str(level)]
        shards, labels = self.summary["shards"], self.summary["labels"]
        return LevelMembers(
            key=list(raw["key"]),
            utt_id=list(raw["utt_id"]),
            label=[labels[i] for i in raw["label"]],
            shard=[shards[i] for i in raw["shard"]],
            flac_offset=np.asarray(raw["flac_offset"], dtype=np.int64),
            flac_size=np.asarray(raw["flac_size"], dtype=np.int64),
        )


def load_level_index(path: str | Path) -> LevelIndex:
    """Read ``levels/<metric>-<quant>-k<K>.json``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no level index (expected the output of 'prep score')")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not a JSON level index ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != LEVELS_FORMAT:
        raise InputError(f"{path}: not a level index (expected format {LEVELS_FORMAT!r})")
    members = document.pop("members")
    return LevelIndex(path=path, summary=document, _members=members)


def read_flac_bytes(store_dir: str | Path, shard: str, offset: int, size: int) -> bytes:
    """The FLAC payload of one member, read straight from its shard."""
    with open(Path(store_dir) / shard, "rb") as f:
        f.seek(int(offset))
        data = f.read(int(size))
    if len(data) != int(size):
        raise InputError(f"{Path(store_dir) / shard}: truncated at offset {offset} (wanted {size} bytes)")
    return data

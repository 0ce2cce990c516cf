"""The report's tables: Table 2 (test WF1 per condition and strategy), the intervals and gaps
between strategies, and Table 3 (normalised validation gaps per level of clean-trained runs).
Each returns Markdown (and CSV rows); they read the runs' recorded files only."""
from __future__ import annotations

import csv
import io
import warnings
from collections import defaultdict

import numpy as np

from shards.errors import InputError
from shards.vocab import METRICS
from trainer.conditions import condition_label
from trainer.report.runs import conditions, feeds_table3, grouped, is_baseline
from trainer.report.stats import Resamples, replicate_score


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    mean = 100 * float(np.mean(values))
    return f"{mean:.2f} ± {100 * float(np.std(values)):.2f}" if len(values) > 1 else f"{mean:.2f}"


def _column_header(label: str, reps: list[list[dict]]) -> str:
    folds = len(reps[0]) if reps else 0
    return f"{label} (n={len(reps)})" if folds <= 1 else f"{label} (n={len(reps)}, {folds} folds)"


def _left_note(left: list[dict]) -> str:
    if not left:
        return ""
    names = ", ".join(str(r["path"].name) for r in left)
    return f"\nLeft out, their seed not finished on every store of the strategy: {names}.\n"


def table_ci(runs: list[dict], metric: str = "wf1", resamples: Resamples | None = None) -> str:
    """Mean [95 % bootstrap interval] (spread over replicates) per condition and strategy, in %."""
    columns, reps, left = grouped(runs)
    resamples = resamples or Resamples(reps)
    header = [f"{metric.upper()} %"] + [_column_header(c, reps[c]) for c in columns]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for condition in conditions(runs):
        cells = []
        for c in columns:
            values = [v for v in (replicate_score(r, condition, metric) for r in reps[c]) if v is not None]
            if not values:
                cells.append("–")
                continue
            ci = resamples.interval(c, condition, metric)
            interval = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
            cells.append(f"{100 * np.mean(values):.1f}{interval} (sd {100 * np.std(values):.1f})")
        md.append(f"| {condition_label(condition)} | " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n" + _left_note(left)


def gap_pairs(columns: list[str], reps: dict[str, list[list[dict]]]) -> list[tuple[str, str]]:
    """The gaps the report shows, (a, b) for b − a: every column against each baseline before it,
    and each non-baseline column against the non-baseline columns before it (a variant against
    the plain strategy)."""
    pairs = []
    for i, a in enumerate(columns):
        a_baseline = is_baseline(reps[a][0][0])
        pairs += [(a, b) for b in columns[i + 1:] if a_baseline or not is_baseline(reps[b][0][0])]
    return pairs


def table_gaps(runs: list[dict], metric: str = "wf1", resamples: Resamples | None = None,
               seeds: bool = False) -> str:
    """The gaps of ``gap_pairs`` in mean score with their paired 95 % bootstrap interval; resolved
    when the interval excludes 0. ``seeds``: each cell shows the utterance-only interval and
    the interval that resamples the runs (seeds within each store) as well, and the second
    decides what is resolved."""
    columns, reps, _ = grouped(runs)
    resamples = resamples or Resamples(reps)
    pairs = gap_pairs(columns, reps)
    if not pairs:
        return "One strategy only: no gaps to compare.\n"
    header = [f"{metric.upper()} gap, points"] + [f"{b} − {a}" for a, b in pairs]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def interval(gap: tuple[float, float, float]) -> str:
        return f"[{100 * gap[1]:+.1f}, {100 * gap[2]:+.1f}]"

    for condition in conditions(runs):
        cells = []
        for a, b in pairs:
            gap = resamples.gap(a, b, condition, metric)
            if gap is None:
                cells.append("–")
                continue
            text = f"{100 * gap[0]:+.1f} {interval(gap)}"
            decisive = gap
            if seeds:
                decisive = resamples.gap(a, b, condition, metric, seeds=True)
                text += f" · seeds {interval(decisive)}"
            resolved = decisive[1] > 0 or decisive[2] < 0
            cells.append(f"**{text}**" if resolved else text)
        md.append(f"| {condition_label(condition)} | " + " | ".join(cells) + " |")
    if seeds:
        note = ("\nFirst interval: paired bootstrap over the test utterances only; 'seeds': the runs resampled as "
                "well (on every store, each strategy's seeds drawn with replacement), which holds the seed-to-seed "
                "variance. Bold: the seed-aware interval excludes 0.\n")
    else:
        note = ("\nBold: resolved, the 95 % interval of the gap (paired bootstrap over the test utterances both "
                "strategies were tested on) excludes 0. '–': not tested on the same utterances.\n")
    return "\n".join(md) + "\n" + note


def has_seeds(runs: list[dict]) -> bool:
    """Whether some strategy has two or more replicates (seeds) to resample."""
    _, reps, _ = grouped(runs)
    return any(len(r) > 1 for r in reps.values())


def table2(runs: list[dict]) -> tuple[str, list[list[str]]]:
    """Markdown text and CSV rows of the Table 2 analogue."""
    columns, reps, left = grouped(runs)
    order = conditions(runs)
    header = ["WF1 %"] + [_column_header(c, reps[c]) for c in columns]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows_csv = [["condition"] + [f"{c} {stat}" for c in columns for stat in ("mean", "std", "runs")]]
    size_cells = [f"{reps[c][0][0]['config'].get('train_size_n', 2):g}N" for c in columns]
    md.append("| Train size | " + " | ".join(size_cells) + " |")
    if any(r["results"].get("steps_total") is not None for r in runs):  # recorded since --max-steps exists
        steps = {c: [r["results"]["steps_total"] for rep in reps[c] for r in rep if r["results"].get("steps_total") is not None]
                 for c in columns}
        md.append("| Steps | " + " | ".join(f"{np.mean(steps[c]):.0f}" if steps[c] else "–" for c in columns) + " |")
        rows_csv.append(["steps"] + [x for c in columns for x in (
            f"{np.mean(steps[c]):.1f}" if steps[c] else "", f"{np.std(steps[c]):.1f}" if steps[c] else "", str(len(steps[c])))])
    for condition in order:
        values = {c: [v for v in (replicate_score(r, condition) for r in reps[c]) if v is not None] for c in columns}
        means = {c: float(np.mean(v)) for c, v in values.items() if v}
        best = max(means.values()) if means else None
        cells = [f"**{_fmt(values[c])}**" if values[c] and means[c] == best else _fmt(values[c]) for c in columns]
        md.append(f"| {condition_label(condition)} | " + " | ".join(cells) + " |")
        rows_csv.append([condition] + [x for c in columns for x in (
            f"{100 * np.mean(values[c]):.4f}" if values[c] else "", f"{100 * np.std(values[c]):.4f}" if values[c] else "",
            str(len(values[c])))])
    return "\n".join(md) + "\n" + _left_note(left), rows_csv


def table3(runs: list[dict]) -> tuple[str, list[list[str]]]:
    """Normalised validation gaps per GMM level of each metric, for the clean-trained runs, from
    the validation scores ``trainer eval`` recorded in their results.json."""
    clean_runs = [r for r in runs if feeds_table3(r)]
    if not clean_runs:
        return "No clean-trained (strategy none) run given: no Table 3.\n", []
    missing = [r for r in clean_runs if "validation" not in r["results"]]
    if missing:
        names = " ".join(str(r["path"]) for r in missing)
        raise InputError(f"{names}: results.json without validation scores per level (written before they were "
                         f"recorded); evaluate again with 'trainer eval {names}'")
    gaps: dict[str, list[list[float]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for run in clean_runs:
        validation = run["results"]["validation"]
        wf1_clean = validation["clean"]["wf1"]
        for entry in validation["levels"]:
            if entry["quant"] != "gmm":
                continue
            labels[entry["metric"]] = entry["metric_label"]
            gaps[entry["metric"]].append([(wf1_clean - w) / wf1_clean if wf1_clean > 0 and w is not None else float("nan")
                                          for w in entry["wf1"]])
    if not gaps:
        return "The store has no GMM level index: run 'prep score STORE --metric M --quant gmm'.\n", []
    k = max(len(r) for rows in gaps.values() for r in rows)
    header = ["Metric"] + [f"Level {lv}" for lv in range(1, k + 1)] + ["Total"]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows_csv = [header]
    for metric in sorted(gaps, key=lambda m: (METRICS.index(m) if m in METRICS else len(METRICS), m)):
        table = np.array(gaps[metric], dtype=float)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a level without validation mixes stays NaN
            mean = np.nanmean(table, axis=0)
        cells = [f"{x:.4f}" if np.isfinite(x) else "–" for x in mean]
        total = float(np.nansum(mean))
        md.append(f"| {labels[metric]}-GMM | " + " | ".join(cells) + f" | {total:.4f} |")
        rows_csv.append([metric] + [f"{x:.6f}" for x in mean] + [f"{total:.6f}"])
    note = f"\nNormalised gap (WF1_clean − WF1_level) / WF1_clean on the validation mixes; mean over {len(clean_runs)} clean-trained run(s).\n"
    return "\n".join(md) + "\n" + note, rows_csv


def csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()



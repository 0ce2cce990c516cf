"""The gaps issue 22 asks about, from recorded runs, as one markdown table per score: each
pair's mean gap in points with its paired 95 % bootstrap interval over test utterances and the
seed-aware one (seeds within each fold resampled too), computed by the report's own
``Resamples`` (``trainer/report/stats.py``), so the figures are the ones ``intervals.md``
shows in its wider tables.

    .venv/bin/python bench/ablation_gaps.py docs/study/ravdess-real/arm-b/* docs/study/ravdess-real/arm-c/*

A pair is ``B-A`` of two column labels as the report prints them (``--pair``, repeatable); the
defaults are the issue's: MetricAug - uniform, MetricAug - superset, stabilised - MetricAug,
stabilised - Fixed SNR. Each pair is compared on the folds where both sides have runs, each
side with the seeds it has there (a study cut short compares what it has; the header says how
many seeds and folds). With one seed on a side, its seed-aware interval holds no seed variance
of that side.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainer.report.runs import conditions, load_runs, replicates  # noqa: E402
from trainer.report.stats import Resamples  # noqa: E402

METRICAUG, UNIFORM, SUPERSET = "STOI-GMM [pooled]", "STOI-GMM uniform levels [pooled]", "Superset draw [pooled]"
STABLE, FIXED = "STOI-GMM LOSS-gap EMA 0.8 [pooled]", "Fixed SNR [pooled]"
DEFAULT_PAIRS = [(UNIFORM, METRICAUG), (SUPERSET, METRICAUG), (METRICAUG, STABLE), (FIXED, STABLE)]


def on_common_stores(runs_a: list[dict], runs_b: list[dict]) -> tuple[list[dict], list[dict]]:
    """Both sides' runs on the stores (folds) where each side has at least one run."""
    stores = lambda runs: {str(r["config"].get("data")) for r in runs}  # noqa: E731
    common = stores(runs_a) & stores(runs_b)
    return ([r for r in runs_a if str(r["config"].get("data")) in common],
            [r for r in runs_b if str(r["config"].get("data")) in common])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (trained and evaluated)")
    parser.add_argument("--pair", action="append", default=None,
                        help="'B|A' for the gap B - A, as the report labels its columns (repeatable)")
    args = parser.parse_args()
    pairs = [tuple(p.split("|", 1))[::-1] for p in args.pair] if args.pair else DEFAULT_PAIRS
    runs = load_runs(args.runs)
    by_label: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_label[run["label"]].append(run)
    missing = sorted({c for pair in pairs for c in pair} - set(by_label))
    if missing:
        parser.exit(2, f"error: no runs labelled {', '.join(missing)}; labels found: {', '.join(sorted(by_label))}\n")
    for metric in ("wf1", "uar"):
        header = [f"{metric.upper()} gap, points"]
        cells: dict[str, list[str]] = defaultdict(list)
        for a, b in pairs:
            runs_a, runs_b = on_common_stores(by_label[a], by_label[b])
            reps = {a: replicates(runs_a)[0], b: replicates(runs_b)[0]}
            resamples = Resamples(reps)
            folds = len(reps[a][0]) if reps[a] else 0
            header.append(f"{b} − {a} ({len(reps[b])} vs {len(reps[a])} seeds × {folds} folds)")
            for condition in conditions(runs_a + runs_b):
                gap = resamples.gap(a, b, condition, metric)
                both = resamples.gap(a, b, condition, metric, seeds=True)
                if gap is None or both is None:
                    cells[condition].append("–")
                    continue
                bold = "**" if both[1] > 0 or both[2] < 0 else ""
                cells[condition].append(f"{bold}{100 * gap[0]:+.1f}{bold} [{100 * gap[1]:+.1f}, {100 * gap[2]:+.1f}]"
                                        f" · seeds [{100 * both[1]:+.1f}, {100 * both[2]:+.1f}]")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for condition, row in cells.items():
            print(f"| {condition} | " + " | ".join(row) + " |")
        print()
    print("First interval: paired bootstrap over test utterances; 'seeds': the runs resampled as well "
          "(each side's seeds within each fold). Bold: the seed-aware interval excludes 0.")


if __name__ == "__main__":
    main()

"""Choose the stabilised feedback's settings (gap score, --gap-smoothing B) on validation data only.

    python bench/feedback_choice.py docs/study/ravdess-real/arm-c/fold0-uniform-s0

Reads one run's epoch records (a run with fixed weights, so that the feedback does not act on
the model it measures): for every epoch, the gap vectors of two disjoint halves of the
validation utterances in every gap score. For each score and each candidate B it smooths each
half's sequence as the trainer would (h_e = B h_(e-1) + (1 - B) g_e) and correlates the halves
across levels, epoch by epoch. The rule, declared before any run of the stabilised variant:
the (score, B) whose smoothed halves agree best (the highest mean split-half r; a tie goes to
the smaller B). Smoothing averages noise away but also lags a model that changes, so the
reliability need not grow with B: the best B is where the two balance. Prints the table and
the choice. No test data is read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainer.protocol import FEEDBACK_BURN_IN, GAP_SCORES, pearson, smooth_halves  # noqa: E402
from trainer.runfolder import read_epochs  # noqa: E402

CANDIDATES = (0.0, 0.5, 0.7, 0.8, 0.9)


def split_half_r(epochs: list[dict], score: str, beta: float) -> float:
    """Mean over epochs (after FEEDBACK_BURN_IN) of the correlation of the two halves' smoothed gaps."""
    halves: list[list[float]] = []
    rs = []
    for e, record in enumerate(epochs, 1):
        halves = smooth_halves(halves, record["gap_halves"][score], beta)
        if e > FEEDBACK_BURN_IN:
            rs.append(pearson(*halves))
    return float(np.nanmean(rs)) if rs else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder (or its record) whose epochs carry gap_halves")
    args = parser.parse_args(argv)
    epochs = read_epochs(args.run)
    if "gap_halves" not in epochs[0]:
        raise SystemExit(f"{args.run}: its epochs carry no gap_halves (trained before the feedback figures existed)")
    table = {score: {beta: split_half_r(epochs, score, beta) for beta in CANDIDATES} for score in GAP_SCORES}
    print(f"{args.run}: {len(epochs)} epochs; mean split-half r of the smoothed gaps (epochs > {FEEDBACK_BURN_IN})\n")
    print("| gap score | " + " | ".join(f"B = {b:g}" for b in CANDIDATES) + " |")
    print("|---|" + "---:|" * len(CANDIDATES))
    for score, row in table.items():
        print(f"| {score} | " + " | ".join(f"{row[b]:.2f}" for b in CANDIDATES) + " |")
    score, beta = max(((s, b) for s in table for b in CANDIDATES), key=lambda sb: (table[sb[0]][sb[1]], -sb[1]))
    print(f"\nchoice: --gap-score {score} --gap-smoothing {beta:g} (mean split-half r {table[score][beta]:.2f}; "
          f"the same score unsmoothed {table[score][0.0]:.2f})")
    print(json.dumps({"gap_score": score, "gap_smoothing": beta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

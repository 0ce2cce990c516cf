"""How good MetricAug's feedback is, per strategy: does it carry information from one epoch to
the next, and do two halves of the validation set agree on it?

Read from the epoch records of every run that validates on levels:

- weights L1: how far the sampling weights move per epoch, sum over levels of |w_(e+1) − w_e|
  (0: held; 2: all the mass changes level);
- gap r, epoch to next: the correlation across levels of one epoch's gap vector (the run's own
  gap score) with the next epoch's: is the ranking of levels by difficulty kept?
- split-half r: the gap vector measured on two disjoint halves of the validation utterances
  (each mix with its utterance), correlated across levels, per gap score (WF1, UAR, paired
  loss), and for the feedback Algorithm 1 actually read (the gaps smoothed over epochs by
  ``--gap-smoothing``). Halves that disagree mean the feedback is mostly noise. Recorded by
  runs trained since the ablations (issue 22); older runs show '–'.

A run is marked when its feedback is unreliable by the rule ``trainer run`` warns on
(``trainer.protocol.feedback_reliability``: the mean split-half r of the run's own gap score
over the epochs after the burn-in, below ``FEEDBACK_RELIABILITY_MIN``).
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from trainer.protocol import (FEEDBACK_BURN_IN, FEEDBACK_JUDGE_EPOCHS, FEEDBACK_RELIABILITY_MIN, GAP_SCORES,
                              feedback_reliability, pearson, weights_l1)
from trainer.report.runs import column_order

SCORE_LABELS = {"wf1": "WF1", "uar": "UAR", "loss": "loss"}


def nanmean(values) -> float:
    """The mean of the finite values (NaN when there are none), without a warning."""
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))


def run_feedback(epochs: list[dict]) -> dict:
    """One run's feedback figures, each a mean over its epochs (NaN where not recorded)."""
    weights = [e.get("weights") or [] for e in epochs]
    moves = [weights_l1(a, b) for a, b in zip(weights, weights[1:]) if a and b]
    gaps = [e.get("gaps") or [] for e in epochs]
    kept = [pearson(a, b) for a, b in zip(gaps, gaps[1:]) if a and b]
    out = {"weights_l1": nanmean(moves) if moves else float("nan"),
           "gap_r_next": nanmean(kept) if kept else float("nan"),
           "feedback_split_half_r": nanmean([e.get("feedback_split_half_r", float("nan")) for e in epochs])}
    for score in GAP_SCORES:
        out[f"split_half_r_{score}"] = nanmean([(e.get("gap_split_half_r") or {}).get(score, float("nan"))
                                                 for e in epochs])
    return out


def run_reliability(run: dict) -> float:
    """A run's feedback reliability as ``trainer run`` judges it: the split-half r of its own gap
    score, mean over the epochs after the burn-in (NaN: too few epochs, or not recorded)."""
    score = run["config"].get("gap_score", "wf1")
    return feedback_reliability([(e.get("gap_split_half_r") or {}).get(score, float("nan")) for e in run["epochs"]])


def per_epoch(epochs: list[dict], key: str) -> np.ndarray:
    """A per-epoch series: the weights' L1 move after each epoch, or a recorded scalar."""
    if key == "weights_l1":
        weights = [e.get("weights") or [] for e in epochs]
        return np.array([weights_l1(a, b) if a and b else np.nan for a, b in zip(weights, weights[1:])], dtype=float)
    return np.array([e.get(key, np.nan) if e.get(key) is not None else np.nan for e in epochs], dtype=float)


def _with_levels(runs: list[dict]) -> dict[str, list[dict]]:
    by_label: dict[str, list[dict]] = defaultdict(list)
    for run in sorted(runs, key=column_order):
        if run["epochs"] and run["epochs"][0].get("val_wf1_levels"):
            by_label[run["label"]].append(run)
    return by_label


def feedback_table(runs: list[dict]) -> str:
    """Markdown: per strategy, the mean over its runs (sd over runs) of each figure."""
    by_label = _with_levels(runs)
    if not by_label:
        return ""
    keys = ["weights_l1", "gap_r_next"] + [f"split_half_r_{s}" for s in GAP_SCORES] + ["feedback_split_half_r"]
    header = (["Strategy", "Runs", "Weights L1 / epoch", "Gap r, epoch to next"]
              + [f"Split-half r, {SCORE_LABELS.get(s, s)} gaps" for s in GAP_SCORES] + ["Split-half r, feedback read"]
              + [f"Runs below r = {FEEDBACK_RELIABILITY_MIN:g}"])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    marked = []
    for label, group in by_label.items():
        figures = [run_feedback(r["epochs"]) for r in group]
        cells = []
        for key in keys:
            values = np.array([f[key] for f in figures], dtype=float)
            finite = values[np.isfinite(values)]
            cells.append(f"{finite.mean():.2f} ({finite.std():.2f})" if finite.size else "–")
        reliability = [(run, run_reliability(run)) for run in group]
        judged = [(run, r) for run, r in reliability if np.isfinite(r)]
        below = [(run, r) for run, r in judged if r < FEEDBACK_RELIABILITY_MIN]
        cells.append(f"{len(below)} of {len(judged)}" + (" ⚠" if below else "") if judged else "–")
        lines.append(f"| {label} | {len(group)} | " + " | ".join(cells) + " |")
        if below:
            marked.append(f"- ⚠ {label}: " + ", ".join(f"{Path(run['path']).name} ({r:.2f})" for run, r in below))
    note = ("\nMeans over epochs, then over runs (sd over runs). Weights L1: sum over levels of |w(e+1) − w(e)|. "
            "Gap r: correlation across levels of consecutive epochs' gap vectors (the run's gap score). Split-half r: "
            "correlation across levels of the gap vectors of two disjoint halves of the validation utterances (each "
            "mix with its utterance); 'feedback read' is the vector Algorithm 1 read (smoothed gaps). 1: the halves "
            "agree; 0: noise. '–': not recorded (runs from before the figures existed) or no weights. "
            f"Runs below r = {FEEDBACK_RELIABILITY_MIN:g}: runs whose split-half r of their own gap score, mean over "
            f"the epochs after the first {FEEDBACK_BURN_IN}, is below it (the rule 'trainer run' warns on; judged on "
            f"runs with at least {FEEDBACK_JUDGE_EPOCHS} such epochs, of the runs counted after 'of').\n")
    if marked:
        note += ("\nRuns whose feedback is below the reliability minimum (their mean split-half r):\n\n"
                 + "\n".join(marked) + "\n")
    return "\n".join(lines) + "\n" + note


def feedback_plot(runs: list[dict], path) -> bool:
    """feedback.png: per strategy, the weights' L1 move and the split-half r of the feedback
    over epochs (mean over runs). False when no run validates on levels."""
    by_label = _with_levels(runs)
    if not by_label:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer.report.plots import _save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, group in by_label.items():
        for ax, key in zip(axes, ("weights_l1", "feedback_split_half_r")):
            series = [per_epoch(r["epochs"], key) for r in group]
            length = min(len(s) for s in series)
            if length == 0 or not np.isfinite(np.concatenate([s[:length] for s in series])).any():
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(np.stack([s[:length] for s in series]), axis=0)
            ax.plot(np.arange(1, length + 1), mean, label=label)
    axes[0].set_title("weights' L1 move after each epoch (mean over runs)", fontsize="small")
    axes[0].set_ylabel("sum |w(e+1) − w(e)|")
    axes[1].set_title("split-half r of the feedback Algorithm 1 read", fontsize="small")
    axes[1].set_ylabel("r across levels")
    axes[1].axhline(0, color="grey", lw=0.5)
    for ax in axes:
        ax.set_xlabel("epoch")
    for ax in axes:  # each panel names the strategies it shows (a strategy without weights has no move)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
    return True

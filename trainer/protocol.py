"""A run's protocol, torch-free: its random streams, the rules that select an epoch, and the
feedback MetricAug reads after every epoch (gaps per level, their smoothing over epochs and
how reliable they are).

Both ``trainer.strategies`` and ``trainer.train`` read these names from here, so neither
names the other's internals, and the report can import them without torch.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from shards.errors import InputError

#: Random streams of a run, each seeded by (seed, stream[, epoch or level]): independent draws
#: that stay the same whatever else changes.
STREAM_LEVEL_DRAW = 1  # which mixes of each level an epoch trains on
STREAM_BATCH_ORDER = 2  # the epoch's batches and their order
STREAM_NORMALISATION = 3  # the clean utterances the feature statistics are estimated on
STREAM_VALIDATION_SUBSET = 7  # --val-per-level: the fixed subset of each level's validation mixes
STREAM_SUPERSET_DRAW = 8  # the superset strategy: which train mixes an epoch trains on
STREAM_SPLIT_HALF = 9  # the two halves of the validation utterances (feedback reliability)
STREAM_VALIDATION_POOL = 10  # no level index, --val-per-level M --levels K: the fixed subset of pooled mixes
#: torch's seed for dropout in epoch e is seed * DROPOUT_SEED_STRIDE + e
DROPOUT_SEED_STRIDE = 100_003

#: Validation sets an epoch can be selected (and early-stopped) on (``--select``).
SELECTION_RULES = {"pooled": "WF1 over the clean validation utterances and every level's validation mixes pooled "
                             "(the authors' rule)",
                   "clean": "WF1 over the clean validation utterances only"}

#: Scores a gap g_k can be measured in (``--gap-score``). wf1 and uar: g_k = score on clean
#: validation − score on level k's mixes; loss: g_k = mean over level k's mixes of the
#: cross-entropy of the mix − that of the same utterance clean (paired by utterance).
GAP_SCORES = {"wf1": "WF1, as the paper",
              "uar": "unweighted average recall: independent of a level's class mix",
              "loss": "paired cross-entropy: mean over a level's mixes of CE(mix) - CE(its clean utterance); "
                      "continuous, and utterance difficulty cancels"}


def check_gap_score(score: str) -> None:
    if score not in GAP_SCORES:
        raise InputError(f"--gap-score {score!r}: expected one of {', '.join(GAP_SCORES)}")


def gaps(metrics: dict, score: str) -> list[float]:
    """The gap vector of one epoch's validation ``metrics`` (``Trainer.evaluate``): for wf1 and
    uar, score on clean validation − score on level k's mixes; for loss the recorded paired
    loss gaps. 0 for a level without mixes."""
    check_gap_score(score)
    if score == "loss":
        return nan_as_zero(metrics["val_loss_gaps"])
    clean = metrics[f"val_{score}_clean"]
    return nan_as_zero([clean - v for v in metrics[f"val_{score}_levels"]])


def nan_as_zero(gaps_now: Sequence[float]) -> list[float]:
    """A level without validation mixes (NaN) reads as gap 0, as Algorithm 1 sees it."""
    return [0.0 if math.isnan(g) else float(g) for g in gaps_now]


def loss_gaps(clean_losses: np.ndarray, level_losses: Sequence[np.ndarray], sources: Sequence[np.ndarray]) -> list[float]:
    """Paired loss gaps: for each level, the mean over its mixes of the mix's cross-entropy minus
    that of its own clean utterance (``sources[k][i]``: the clean index of level k's mix i);
    NaN for a level without mixes."""
    clean = np.asarray(clean_losses, dtype=np.float64)
    out = []
    for losses, src in zip(level_losses, sources):
        losses = np.asarray(losses, dtype=np.float64)
        out.append(float(np.mean(losses - clean[np.asarray(src, dtype=np.int64)])) if losses.size else float("nan"))
    return out


def check_smoothing(beta: float) -> None:
    if not 0.0 <= beta < 1.0:
        raise InputError(f"--gap-smoothing {beta}: expected a number in [0, 1) (0: the paper's raw gaps)")


def smooth(previous: Sequence[float] | None, gaps_now: Sequence[float], beta: float) -> list[float]:
    """h_e = beta * h_(e-1) + (1 - beta) * g_e with h_0 = 0; beta = 0 returns the gaps
    themselves (bit for bit). Algorithm 1 reads h_e / |sum h_e|, so the start at 0 needs no
    bias correction: h_e and h_e / (1 - beta^e) give the same weights."""
    if beta == 0.0:
        return [float(g) for g in gaps_now]
    prev = [0.0] * len(gaps_now) if not previous else previous
    return [beta * float(h) + (1.0 - beta) * float(g) for h, g in zip(prev, gaps_now)]


def smooth_halves(previous: Sequence[Sequence[float]] | None, halves_now: Sequence[Sequence[float]],
                  beta: float) -> list[list[float]]:
    """:func:`smooth` applied to each half's gap vector (NaN read as 0, as the feedback reads it)."""
    return [smooth(previous[h] if previous else None, nan_as_zero(halves_now[h]), beta) for h in (0, 1)]


def weights_l1(before: Sequence[float], after: Sequence[float]) -> float:
    """How far the sampling weights moved: sum over levels of |w_after − w_before| (0 to 2)."""
    return float(np.abs(np.asarray(after, float) - np.asarray(before, float)).sum())


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """Correlation of two gap vectors across levels; NaN when either is constant."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


#: The mean split-half r of the gaps (measured on two halves of the validation
#: utterances, correlated across levels) below which MetricAug's feedback counts as mostly noise:
#: ``trainer run`` warns and the report's feedback table marks the run. r = 1/3 is where the
#: whole validation set's Spearman-Brown reliability 2r/(1 + r) is 0.5, i.e. where half of the
#: spread of the measured gaps across levels is signal. docs/study.md's reliability curve
#: (issue 32) puts RAVDESS's 84 validation utterances (arm C: r 0.08 for WF1 gaps) and single
#: ASED validation speakers below it and ten ASED validation speakers (380 utterances: 0.5) above.
FEEDBACK_RELIABILITY_MIN = 0.33
#: The first epochs, while the model changes fast, do not count towards the reliability ...
FEEDBACK_BURN_IN = 5
#: ... and it is judged once at least this many epochs after them have a split-half r.
FEEDBACK_JUDGE_EPOCHS = 5


def feedback_reliability(split_half_rs: Sequence[float]) -> float:
    """The feedback's reliability from a run's per-epoch split-half r (epoch 1 first): their
    mean over the epochs after FEEDBACK_BURN_IN, NaN (a constant gap vector) left out; NaN
    until FEEDBACK_JUDGE_EPOCHS such epochs have a finite r."""
    after = np.asarray(split_half_rs[FEEDBACK_BURN_IN:], dtype=float)
    after = after[np.isfinite(after)]
    return float(after.mean()) if after.size >= FEEDBACK_JUDGE_EPOCHS else float("nan")


def feedback_unreliable(split_half_rs: Sequence[float]) -> bool:
    """Whether a run's feedback, judged on the epochs so far, is below FEEDBACK_RELIABILITY_MIN."""
    return feedback_reliability(split_half_rs) < FEEDBACK_RELIABILITY_MIN  # NaN: not judged yet


def warn_unreliable_now(split_half_rs: Sequence[float]) -> bool:
    """Whether the last epoch of ``split_half_rs`` is the first at which the feedback is judged
    unreliable: a run warns once, at that epoch (the same epoch after a resume)."""
    return feedback_unreliable(split_half_rs) and not any(
        feedback_unreliable(split_half_rs[:e]) for e in range(len(split_half_rs)))


def split_halves(utt_ids: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """Half 0 or 1 for each validation utterance: a seeded random halving (sizes differ by at
    most one). Every mix goes with its source utterance, so the halves share no utterance."""
    n = len(utt_ids)
    half = np.zeros(n, dtype=np.int64)
    half[rng.permutation(n)[n // 2:]] = 1
    return half

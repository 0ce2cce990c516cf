"""Per-level sampling weights for MetricAug (Wu and Lee, Interspeech 2023, Algorithm 1) and the epoch's draw.

After each epoch the gap g_k = WF1_clean - WF1_k of every degradation level k is turned
into a weight w_k by the authors' Algorithm 1; epoch i+1 then draws N*w_k samples from
level k. `largest_remainder` (shards.apportion) turns weights into integer counts, `plan_epoch_draw` picks
which members of each level are drawn; `plan_stratified_draw` (``--stratify-class``) does so
within (level, class) cells, keeping the clean train set's class prior.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from shards.apportion import largest_remainder  # counts from weights: one function for the whole project
from shards.vocab import EMOTIONS

LEVEL_FLOOR = 0.05  # L in the paper: every level keeps at least this share


def algorithm1(gaps, floor: float = LEVEL_FLOOR) -> np.ndarray:
    """Weights from the gaps, reproducing the authors' Algorithm 1.

    w = g / |sum g|; then repeat: every w_k < floor is set to floor and *stays* there
    (the authors' reference vectors show a floored level is never re-weighted), M' = 1 - (#floored)*floor,
    and each free level gets g_k / sum_{free} g_j * M'; until sum w = 1 and min w >= floor.

    Termination: after the first pass a level is free only while w_k >= floor > 0, i.e.
    g_k > 0, so the sum over free gaps is positive. Each pass either floors no new level
    (then sum w = 1 and min w >= floor: done) or floors at least one more, so at most K
    passes. From the second pass on the largest free level gets >= M'/(#free) > floor
    whenever K*floor < 1, so only the first pass can floor every level. That happens when
    no gap is positive, or when sum g < 0 and every positive g_k < floor*|sum g|; the
    authors' loop then never ends (every level floored, sum = K*floor != 1) and we return
    uniform weights, as the toolkit keeps them.
    """
    g = np.asarray(gaps, dtype=np.float64).reshape(-1)
    K = g.size
    if K == 0:
        raise ValueError("algorithm1 needs at least one level gap")
    if not np.all(np.isfinite(g)):
        raise ValueError(f"gaps must be finite numbers, got {g.tolist()}")
    if not floor >= 0:
        raise ValueError(f"floor must be >= 0, got {floor}")
    if K * floor > 1 + 1e-12:
        raise ValueError(f"{K} levels at floor {floor} need more than the whole (K*floor = {K * floor} > 1)")
    if not np.any(g > 0):
        return np.full(K, 1.0 / K)

    total = g.sum()
    if total != 0:
        w = g / abs(total)
    else:
        # sum g = 0 with some positive gap: the authors divide by zero. The limit of
        # g / |sum g| as the sum -> 0 is +inf for positive gaps and <= 0 otherwise.
        w = np.where(g > 0, np.inf, 0.0)

    held = np.zeros(K, dtype=bool)
    for _ in range(K + 1):  # K passes suffice (see docstring); +1 to see the last one hold
        newly = (w < floor) & ~held
        if not newly.any():
            break
        held |= newly
        free = ~held
        w = np.where(held, floor, 0.0)
        w[free] = g[free] / g[free].sum() * (1.0 - held.sum() * floor)
    else:  # pragma: no cover - excluded by the argument above
        raise RuntimeError(f"algorithm1 did not settle for gaps {g.tolist()}")
    if held.all():
        # the authors' loop would spin forever here (unless K*floor == 1: uniform anyway)
        return np.full(K, 1.0 / K)
    return w


@dataclass
class EpochDraw:
    counts: list[int]                 # samples per level, sums to n
    indices: list[np.ndarray]         # per level: indices into that level's member list
    with_replacement: list[bool]      # per level: drawn with replacement (level too small)
    weights_used: np.ndarray          # weights after moving empty levels' share elsewhere
    messages: list[str] = field(default_factory=list)  # warnings for the log


def plan_epoch_draw(level_sizes: Sequence[int], n: int, weights,
                    rng: np.random.Generator) -> EpochDraw:
    """Which members of each level to train on this epoch: n samples split by `weights`.

    An empty level (common with the Bayesian GMM) cannot be drawn from: its weight is spread
    over the non-empty levels in proportion to their weights. A level with fewer members than
    its count is drawn with replacement; otherwise without."""
    sizes = [int(s) for s in level_sizes]
    w_used, messages = _usable_weights(sizes, n, weights)
    counts = largest_remainder(n, w_used)
    indices, replace = [], []
    for k, (size, count) in enumerate(zip(sizes, counts)):
        count = int(count)
        if count <= size:
            idx = rng.choice(size, count, replace=False) if count else np.empty(0, np.int64)
            replace.append(False)
        else:
            idx = rng.choice(size, count, replace=True)
            replace.append(True)
            messages.append(
                f"level {k} has {size} members but {count} samples are needed: drawing with replacement"
            )
        indices.append(np.asarray(idx, dtype=np.int64))
    return EpochDraw(counts=[int(c) for c in counts], indices=indices,
                     with_replacement=replace, weights_used=w_used, messages=messages)


def _usable_weights(sizes: list[int], n: int, weights) -> tuple[np.ndarray, list[str]]:
    """The level weights checked and renormalised over the non-empty levels, and the message
    that says so when an empty level had weight."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(sizes) != w.size:
        raise ValueError(f"{len(sizes)} level sizes but {w.size} weights")
    if any(s < 0 for s in sizes):
        raise ValueError(f"level sizes must be >= 0, got {sizes}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")

    messages: list[str] = []
    nonempty = np.array([s > 0 for s in sizes])
    if not nonempty.any():
        raise ValueError("every level is empty: nothing to draw augmented samples from")
    w_used = np.where(nonempty, w, 0.0)
    if w_used.sum() <= 0:
        raise ValueError(f"the non-empty levels all have weight 0 (weights {w.tolist()}, sizes {sizes})")
    w_used = w_used / w_used.sum()
    empty = [k for k, s in enumerate(sizes) if s == 0]
    if empty and any(w[k] > 0 for k in empty):
        messages.append(
            f"level(s) {empty} have no members; their weight "
            f"{float(w[empty].sum() / w.sum()):.4f} is redistributed over the other levels"
        )
    return w_used, messages


def plan_stratified_draw(level_labels: Sequence[np.ndarray], n: int, weights, class_counts,
                         rng: np.random.Generator) -> EpochDraw:
    """The epoch's draw with the class prior held: n samples whose classes follow
    ``class_counts`` (the clean train set's, so with n = N each class gets exactly its clean
    count) and whose levels follow ``weights`` within each class.

    ``level_labels[k]``: the class index (``shards.vocab.EMOTIONS``) of each member of level k.
    Class c gets n_c samples (largest remainder of n over ``class_counts``), split over the
    levels by their weights (largest remainder), so cell (k, c) gets about n * w_k * prior_c
    and the epoch's mixes per class are the prior whatever the weights; re-weighting levels
    then no longer re-weights classes.

    Where a cell cannot be drawn from (level k holds no mix of class c; an empty level is the
    extreme case), its share of class c goes to the levels that hold class c, in proportion to
    their weights (equally, where all of those have weight 0): the class keeps its share, and
    only that class's mixes move level. A cell
    with fewer mixes than its count is drawn with replacement (as :func:`plan_epoch_draw` does
    for a small level): moving its shortfall to other levels too would keep the mixes distinct
    but shift the level shares Algorithm 1 set, whereas repeats leave both the class prior and
    the level weights as planned. A class that no level holds (no train mix of it has a level)
    cannot be drawn at all: its share is spread over the other classes by the prior, and the
    messages say so. Members of a cell are drawn uniformly (without replacement when enough)."""
    labels = [np.asarray(lab, dtype=np.int64).reshape(-1) for lab in level_labels]
    sizes = [lab.size for lab in labels]
    w_used, messages = _usable_weights(sizes, n, weights)
    prior = np.asarray(class_counts, dtype=np.float64).reshape(-1)
    C = prior.size
    if any(lab.size and (lab.min() < 0 or lab.max() >= C) for lab in labels):
        raise ValueError(f"level labels must be class indices below {C}")
    cells = np.array([np.bincount(lab, minlength=C) for lab in labels])  # (K, C) members per cell
    held = cells.sum(axis=0) > 0  # classes some level holds
    missing = [c for c in range(C) if prior[c] > 0 and not held[c]]
    if missing:
        messages.append(f"class(es) {', '.join(_class_name(c) for c in missing)} have no train mix in any level: "
                        f"their share {float(prior[missing].sum() / prior.sum()):.4f} is spread over the other classes")
    per_class = largest_remainder(n, np.where(held, prior, 0.0)) if n else np.zeros(C, np.int64)
    counts = np.zeros(cells.shape, dtype=np.int64)  # (K, C) samples per cell
    moved, repeated = [], []
    for c in np.flatnonzero(per_class):
        has = cells[:, c] > 0
        share = w_used * has
        if share.sum() <= 0:  # the class only in levels of weight 0: the prior comes first
            share = has.astype(np.float64)
        counts[:, c] = largest_remainder(int(per_class[c]), share)
        moved += [f"{k + 1} ({_class_name(c)})" for k in np.flatnonzero((w_used > 0) & ~has)]
    indices, replace = [], []
    for k, lab in enumerate(labels):
        parts, repeats = [], False
        for c in np.flatnonzero(counts[k]):
            members, count = np.flatnonzero(lab == c), int(counts[k, c])
            if count > members.size:
                repeats = True
                repeated.append(f"level {k + 1} {_class_name(c)} ({members.size} for {count})")
            parts.append(members[rng.choice(members.size, count, replace=count > members.size)])
        indices.append(np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64))
        replace.append(repeats)
    if moved:
        messages.append(f"level(s) without mixes of a class, their share of it drawn from the class's other levels: "
                        f"{', '.join(moved)}")
    if repeated:
        messages.append(f"drawing with replacement where a level holds fewer mixes of a class than needed: "
                        f"{', '.join(repeated)}")
    return EpochDraw(counts=[int(c) for c in counts.sum(axis=1)], indices=indices,
                     with_replacement=replace, weights_used=w_used, messages=messages)


def _class_name(c: int) -> str:
    return EMOTIONS[c] if c < len(EMOTIONS) else f"class {c}"

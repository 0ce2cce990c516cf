"""Whole counts in proportion to weights."""
from __future__ import annotations

import numpy as np


def largest_remainder(total: int, weights) -> np.ndarray:
    """Integer counts summing exactly to ``total`` in proportion to ``weights``: the floor
    of each share, then one more for the largest remainders (ties go to the lower index).
    The share is ``total * w / sum(w)``, multiplied before dividing: with integer weights it
    is the exact quotient, correctly rounded."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
    share = total * w / w.sum()
    counts = np.floor(share).astype(np.int64)
    left = int(total - counts.sum())
    # a stable sort on -remainder keeps the lower index first among equal remainders
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[:left]] += 1
    return counts

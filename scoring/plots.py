"""Plots of distortion levels (``levels/<metric>-<quant>-k<K>.png``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shards.atomic import atomic_output


def _boundaries_for_plot(quantizer, low: float, high: float, sign: float = 1.0) -> np.ndarray:
    # both quantizers cut value intervals (of the negated values for a lower-is-better metric)
    b = sign * np.asarray(quantizer.boundaries_, dtype=np.float64)
    return b[(b >= low) & (b <= high)]


def _plot_kinds(plt, ax, fit_levels: np.ndarray, kinds: tuple[np.ndarray, list[str]], n_levels: int) -> None:
    """Each level's train mixes as a bar stacked by distortion kind (one colour per kind)."""
    codes, names = kinds
    present = [k for k in range(len(names)) if names[k] and np.any(codes == k)]
    colors = plt.get_cmap("tab10")(np.arange(len(present)) % 10)
    positions = np.arange(1, n_levels + 1)
    bottom = np.zeros(n_levels)
    for color, k in zip(colors, present):
        counts = np.array([np.sum((fit_levels == lv) & (codes == k)) for lv in positions], dtype=np.float64)
        ax.bar(positions, counts, bottom=bottom, color=color, label=names[k])
        bottom += counts
    ax.set_xticks(positions, [str(lv) for lv in positions])
    ax.set_xlabel("level (1 = least distorted)")
    ax.set_ylabel("train superset mixes")
    ax.set_title("distortion kinds per level")
    ax.legend(fontsize="small")


def plot_levels(path: Path, metric: str, quant: str, quantizer, values: np.ndarray, fit_levels: np.ndarray,
                snr: np.ndarray, n_levels: int, boundary_sign: float = 1.0,
                kinds: tuple[np.ndarray, list[str]] | None = None) -> None:
    """Histogram of the train superset's metric values stacked by level, with the quantizer's
    boundaries, and a box plot of the achieved SNR per level. ``values``, ``fit_levels``
    (1..K) and ``snr`` are the train superset's assigned mixes; ``boundary_sign`` -1 for a
    metric quantized negated (lower is better). ``kinds``: (each mix's code, the kind names)
    of a store with distortion kinds: a third panel stacks each level's mixes by kind, one
    colour per kind (a store without kinds: the two panels alone)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_level = [values[fit_levels == lv] for lv in range(1, n_levels + 1)]
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, n_levels))
    labels = [f"level {lv}" for lv in range(1, n_levels + 1)]

    if kinds is None:
        fig, (ax_hist, ax_box) = plt.subplots(1, 2, figsize=(12, 4.5))
    else:
        fig, (ax_hist, ax_box, ax_kind) = plt.subplots(1, 3, figsize=(18, 4.5))
        _plot_kinds(plt, ax_kind, fit_levels, kinds, n_levels)
    low, high = float(values.min()), float(values.max())
    bins = np.linspace(low, high if high > low else low + 1.0, 101)
    # Stacked counts drawn with stairs: a few hundred artists even for a million rows.
    bottom = np.zeros(bins.size - 1)
    for lv, chunk in enumerate(per_level):
        counts, _ = np.histogram(chunk, bins=bins)
        ax_hist.stairs(bottom + counts, bins, baseline=bottom, fill=True, color=colors[lv], label=labels[lv])
        bottom = bottom + counts
    for b in _boundaries_for_plot(quantizer, low, high, boundary_sign):
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

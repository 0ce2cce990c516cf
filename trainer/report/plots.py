"""The report's plots: sampling weights per epoch (MetricAug runs), validation WF1 per level
per epoch, and test WF1 per condition per strategy."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shards.atomic import atomic_output
from trainer.conditions import condition_label
from trainer.report.runs import adapts_weights, column_order, conditions, grouped
from trainer.report.stats import replicate_score

def _save_figure(fig, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})


PANELS_MAX, PANELS_PER_ROW = 12, 4


def _panel_runs(runs: list[dict]) -> list[dict]:
    """At most PANELS_MAX runs for the per-run plots: the lowest seed of each strategy and store
    first, so a large study shows each strategy on each fold before any second seed."""
    ranked = sorted(runs, key=lambda r: (r["config"].get("seed", 0), column_order(r), str(r["config"].get("data")),
                                         str(r["path"])))
    return ranked[:PANELS_MAX]


def _panels(plt, n: int):
    cols = min(n, PANELS_PER_ROW)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def plots(runs: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    adapting = _panel_runs([r for r in runs if adapts_weights(r) and r["epochs"] and r["epochs"][0].get("weights")])
    if adapting:
        fig, axes = _panels(plt, len(adapting))
        for ax, run in zip(axes.flat, adapting):
            weights = np.array([e["weights"] for e in run["epochs"]])
            epochs = [e["epoch"] for e in run["epochs"]]
            ax.stackplot(epochs, weights.T, labels=[f"level {k + 1}" for k in range(weights.shape[1])])
            ax.set_title(f"{run['label']} ({run['path'].name})", fontsize="small")
            ax.set_xlabel("epoch")
            ax.set_ylim(0, 1)
        axes[0][0].set_ylabel("sampling weight")
        axes.flat[len(adapting) - 1].legend(fontsize="x-small", loc="upper right")
        fig.tight_layout()
        _save_figure(fig, out / "weights.png")
        plt.close(fig)
        written.append(out / "weights.png")
    with_levels = _panel_runs([r for r in runs if r["epochs"] and r["epochs"][0]["val_wf1_levels"]])
    if with_levels:
        fig, axes = _panels(plt, len(with_levels))
        for ax, run in zip(axes.flat, with_levels):
            epochs = [e["epoch"] for e in run["epochs"]]
            ax.plot(epochs, [e["val_wf1_clean"] for e in run["epochs"]], color="black", label="clean")
            levels = np.array([e["val_wf1_levels"] for e in run["epochs"]], dtype=float)
            for k in range(levels.shape[1]):
                ax.plot(epochs, levels[:, k], label=f"level {k + 1}")
            ax.set_title(f"{run['label']} ({run['path'].name})", fontsize="small")
            ax.set_xlabel("epoch")
        axes[0][0].set_ylabel("validation WF1")
        axes.flat[len(with_levels) - 1].legend(fontsize="x-small")
        fig.tight_layout()
        _save_figure(fig, out / "val_levels.png")
        plt.close(fig)
        written.append(out / "val_levels.png")
    columns, reps, _ = grouped(runs)
    orders = {label: conditions([r for rep in reps[label] for r in rep]) for label in columns}
    n_conditions = max(len(order) for order in orders.values())
    # The axes widen with the conditions and the legend sits beside them: a study with a dozen
    # conditions (every distortion kind) would otherwise print its labels over one another.
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * n_conditions + 1.5) + 3.5, 4.5), layout="constrained")
    for label, order in orders.items():
        values = np.array([[replicate_score(rep, c) for c in order] for rep in reps[label]], dtype=float)
        ax.errorbar(range(len(order)), 100 * values.mean(0), yerr=100 * values.std(0), marker="o", capsize=3, label=label)
    ax.set_xticks(range(len(order)), [condition_label(c) for c in order], rotation=35, ha="right")  # the last column's, as before
    ax.set_ylabel("test WF1 %")
    ax.set_title("WF1 per test condition (mean ± std over seeds)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    _save_figure(fig, out / "conditions.png")
    plt.close(fig)
    written.append(out / "conditions.png")
    return written

"""``trainer report RUN... --out report/``: the paper's Table 2 and Table 3 from finished runs,
read from their files only (no model is loaded, no store is opened, no device is used).

- Table 2 (``table2.md``, ``table2.csv``): test WF1 per condition (rows Clean, 10 dB, 5 dB,
  0 dB, Unseen) per strategy (columns; MetricAug per metric and quantizer), mean ± std over
  the runs of a strategy (seeds), the best per row in bold, and the training-set size.
- ``intervals.md``: WF1 and UAR with 95 % bootstrap intervals over test utterances, and the
  paired gaps between strategies (``stats``).
- Table 3 (``table3.md``, ``table3.csv``): for clean-trained models (strategy none), the
  normalised gap (WF1_clean − WF1_level) / WF1_clean per level of each metric's GMM levels
  on the validation mixes (recorded by ``trainer eval``), and its total per metric.
- ``selection.md`` (runs trained with ``--test-every-epoch``): the epoch each selection rule
  keeps against the best on test data, and the test spread over the rule's best epochs
  (``selection``).
- ``feedback.md`` and ``feedback.png``: how far the weights move per epoch and how well two
  halves of the validation set agree on the gaps, per strategy (``feedback``).
- Plots: ``weights.png`` (sampling weights per epoch, stacked, for MetricAug runs),
  ``val_levels.png`` (validation WF1 per level per epoch), ``conditions.png`` (test WF1
  against condition per strategy).

The modules: ``runs`` (loading and grouping), ``stats`` (scores and bootstrap), ``tables``,
``plots``, ``selection``.
"""
from __future__ import annotations

from pathlib import Path

from shards.atomic import write_bytes_atomic
from trainer.report.feedback import feedback_plot, feedback_table
from trainer.report.plots import plots
from trainer.report.selection import selection_tables
from trainer.report.runs import grouped, load_runs, replicates, strategy_label
from trainer.report.stats import (Resamples, _scores_from_confusions, bootstrap_ci, bootstrap_gap,
                                  replicate_score)
from trainer.report.tables import csv_bytes, has_seeds, table2, table3, table_ci, table_gaps

__all__ = ["write_report", "load_runs", "plots", "table2", "table3", "table_ci", "table_gaps", "replicates",
           "replicate_score", "bootstrap_ci", "bootstrap_gap", "Resamples", "strategy_label", "_scores_from_confusions"]


def write_report(runs: list[Path], out: Path) -> list[Path]:
    loaded = load_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    t2_md, t2_csv = table2(loaded)
    t3_md, t3_csv = table3(loaded)
    write_bytes_atomic(out / "table2.md", ("# Test WF1 (%) per condition and strategy\n\n" + t2_md).encode())
    write_bytes_atomic(out / "table2.csv", csv_bytes(t2_csv))
    write_bytes_atomic(out / "table3.md", ("# Normalised WF1 gap per GMM level (clean-trained model)\n\n" + t3_md).encode())
    resamples = Resamples(grouped(loaded)[1])  # one bootstrap per strategy and condition, for both scores
    intervals = "".join(
        f"## {metric.upper()}: mean [95 % bootstrap interval over utterances] (sd over seeds), %\n\n"
        f"{table_ci(loaded, metric, resamples)}\n"
        f"### {metric.upper()} gaps between strategies\n\n{table_gaps(loaded, metric, resamples)}\n"
        for metric in ("wf1", "uar"))
    if has_seeds(loaded):
        intervals += "".join(
            f"## {metric.upper()} gaps with the seed variance: seeds and utterances resampled\n\n"
            f"{table_gaps(loaded, metric, resamples, seeds=True)}\n" for metric in ("wf1", "uar"))
    write_bytes_atomic(out / "intervals.md", ("# Test scores with their uncertainty\n\n" + intervals).encode())
    paths = [out / "table2.md", out / "table2.csv", out / "table3.md", out / "intervals.md"]
    selection = selection_tables(loaded)
    if selection:
        write_bytes_atomic(out / "selection.md", ("# The epoch a selection rule keeps, on test data\n\n" + selection).encode())
        paths.append(out / "selection.md")
    feedback = feedback_table(loaded)
    if feedback:
        write_bytes_atomic(out / "feedback.md", ("# How good the feedback is, per strategy\n\n" + feedback).encode())
        paths.append(out / "feedback.md")
        if feedback_plot(loaded, out / "feedback.png"):
            paths.append(out / "feedback.png")
    if t3_csv:
        write_bytes_atomic(out / "table3.csv", csv_bytes(t3_csv))
        paths.append(out / "table3.csv")
    return paths + plots(loaded, out)

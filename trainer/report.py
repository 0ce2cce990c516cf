"""``trainer report RUN... --out report/``: the paper's Table 2 and Table 3 from finished runs.

- Table 2 (``table2.md``, ``table2.csv``): test WF1 per condition (rows Clean, 10 dB, 5 dB,
  0 dB, Unseen) per strategy (columns; MetricAug per metric and quantizer), mean ± std over
  the runs of a strategy (seeds), the best per row in bold, and the training-set size.
- Table 3 (``table3.md``, ``table3.csv``): for clean-trained models (strategy none), the
  normalised gap (WF1_clean − WF1_level) / WF1_clean per level of each metric's GMM levels
  on the validation mixes, and its total per metric.
- Plots: ``weights.png`` (sampling weights per epoch, stacked, for MetricAug runs),
  ``val_levels.png`` (validation WF1 per level per epoch), ``conditions.png`` (test WF1
  against condition per strategy).
"""
from __future__ import annotations

import csv
import io
import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from shards.atomic import atomic_output, write_bytes_atomic
from shards.errors import InputError
from shards.reader import open_store
from shards.vocab import EMOTIONS, METRICS, VALIDATION
from trainer.data import StoreData
from trainer.evaluate import RESULTS, condition_order, load_model
from trainer.predict import classification_scores, predict

CONDITION_LABELS = {"clean": "Clean", "test_snr10": "10 dB", "test_snr5": "5 dB", "test_snr0": "0 dB",
                    "test_unseen": "Unseen"}
STRATEGY_LABELS = {"none": "None", "fixed-snr": "Fixed SNR", "copypaste": "CopyPaste"}
METRIC_LABELS = {"stoi": "STOI", "pesq": "PESQ", "fwsnrseg": "fwSNRseg"}


def strategy_label(config: dict) -> str:
    if config.get("strategy", "metricaug") == "metricaug":
        return f"{METRIC_LABELS.get(config['metric'], config['metric'])}-{config['quant'].upper() if config['quant'] == 'gmm' else config['quant'].title()}"
    return STRATEGY_LABELS.get(config["strategy"], config["strategy"])


def _column_order(label: str) -> tuple:
    baselines = list(STRATEGY_LABELS.values())
    return (0, baselines.index(label)) if label in baselines else (1, label)


def load_runs(runs: list[Path]) -> list[dict]:
    loaded = []
    for run in runs:
        run = Path(run)
        results_path, config_path = run / RESULTS, run / "config.json"
        if not config_path.is_file() or not results_path.is_file():
            raise InputError(f"{run}: no config.json and results.json (train with 'trainer run', evaluate with 'trainer eval')")
        config = json.loads(config_path.read_text())
        epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
        loaded.append({"path": run, "config": config, "results": json.loads(results_path.read_text()),
                       "epochs": epochs, "label": strategy_label(config)})
    return loaded


def _conditions(runs: list[dict]) -> list[str]:
    """Test conditions of the runs in report order (clean, high to low SNR, unseen)."""
    names = {c for run in runs for c in run["results"]["conditions"]}
    return sorted(names, key=condition_order)


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    mean = 100 * float(np.mean(values))
    return f"{mean:.2f} ± {100 * float(np.std(values)):.2f}" if len(values) > 1 else f"{mean:.2f}"


BOOTSTRAP_REPLICATES = 1000


def _scores_from_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """WF1 and UAR of a stack of confusion matrices (B, K, K), rows = true class: the same
    definitions as sklearn's f1_score(average="weighted") and recall over the classes present."""
    tp = np.diagonal(confusions, axis1=1, axis2=2).astype(float)
    support = confusions.sum(axis=2).astype(float)
    predicted = confusions.sum(axis=1).astype(float)
    denominator = support + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    n = support.sum(axis=1, keepdims=True)
    wf1 = (f1 * support / n).sum(axis=1)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    uar = recall.sum(axis=1) / present.sum(axis=1)
    return {"wf1": wf1, "uar": uar}


def replicates(runs: list[dict]) -> tuple[list[list[dict]], list[dict]]:
    """The runs of one strategy as replicates: replicate i pools the i-th run (by seed) of every
    store the strategy was run on. One store (the usual case): each run is a replicate. A
    speaker-fold study (one store per fold): replicate i is seed i over all folds, so its
    scores are over every test utterance once, and the spread over replicates is a spread
    over seeds, not over folds. Runs beyond the last replicate complete on every store are
    returned apart (a study cut short)."""
    by_store: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_store[str(run["config"].get("data"))].append(run)
    stores = sorted(by_store)
    for store in stores:
        by_store[store].sort(key=lambda r: (r["config"].get("seed", 0), str(r["path"])))
    count = min(len(v) for v in by_store.values())
    kept = [[by_store[store][i] for store in stores] for i in range(count)]
    left = [r for store in stores for r in by_store[store][count:]]
    return kept, left


def _outcomes(replicate: list[dict], condition: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, predictions) of a replicate on ``condition``, its runs' test utterances in store
    order; None when a run lacks the condition or its per-utterance outcomes."""
    labels, predictions = [], []
    for run in replicate:
        scores = run["results"]["conditions"].get(condition)
        if not scores or "predictions" not in scores:
            return None
        labels.append(np.asarray(scores["labels"], dtype=np.int64))
        predictions.append(np.asarray(scores["predictions"], dtype=np.int64))
    return np.concatenate(labels), np.concatenate(predictions)


def replicate_score(replicate: list[dict], condition: str, metric: str = "wf1") -> float | None:
    """A replicate's score on ``condition``: the run's own for one run; over the pooled test
    utterances of its runs for several (which needs their per-utterance outcomes)."""
    if len(replicate) == 1:
        scores = replicate[0]["results"]["conditions"].get(condition)
        return float(scores[metric]) if scores else None
    outcomes = _outcomes(replicate, condition)
    if outcomes is None:
        if all(condition in r["results"]["conditions"] for r in replicate):
            paths = " ".join(str(r["path"]) for r in replicate)
            raise InputError(f"runs pooled over stores need per-utterance outcomes: re-evaluate with 'trainer eval {paths}'")
        return None
    k = len(EMOTIONS)
    confusion = np.bincount(outcomes[0] * k + outcomes[1], minlength=k * k).reshape(1, k, k)
    return float(_scores_from_confusions(confusion)[metric][0])


def _bootstrap_scores(reps: list[list[dict]], condition: str, pick: np.ndarray) -> dict[str, np.ndarray] | None:
    """Per bootstrap replicate: the mean over ``reps`` of each score (WF1, UAR) on the resampled
    utterances. Every replicate is resampled with the same ``pick``: they test the same utterances."""
    k = len(EMOTIONS)
    offsets = (np.arange(pick.shape[0]) * k * k)[:, None]
    per_rep = []
    for rep in reps:
        outcomes = _outcomes(rep, condition)
        if outcomes is None or outcomes[0].size != pick.shape[1]:
            return None
        cell = outcomes[0] * k + outcomes[1]
        # one confusion matrix per bootstrap replicate, counted in one bincount
        confusions = np.bincount((cell[pick] + offsets).ravel(), minlength=pick.shape[0] * k * k)
        per_rep.append(_scores_from_confusions(confusions.reshape(pick.shape[0], k, k)))
    return {metric: np.mean([scores[metric] for scores in per_rep], axis=0) for metric in per_rep[0]}


def _universe(reps: list[list[dict]], condition: str) -> tuple | None:
    """What the replicates were tested on: the stores and the true labels, in order. Strategies
    with the same universe are compared utterance by utterance (a paired bootstrap)."""
    if not reps:
        return None
    outcomes = _outcomes(reps[0], condition)
    if outcomes is None:
        return None
    return tuple(str(r["config"].get("data")) for r in reps[0]), outcomes[0].size, outcomes[0].tobytes()


class Resamples:
    """The bootstrap scores of each strategy on each condition, computed once and shared by the
    interval table and every gap. Strategies tested on the same utterances are resampled with
    the same draws (seeded by ``seed``), which pairs them."""

    def __init__(self, reps: dict[str, list[list[dict]]], replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0):
        self.reps, self.replicates, self.seed = reps, replicates, seed
        self._scores: dict[tuple[str, str], tuple | None] = {}

    def scores(self, column: str, condition: str) -> tuple[tuple, dict[str, np.ndarray]] | None:
        """(universe, bootstrap scores per metric) of ``column`` on ``condition``; None without
        per-utterance outcomes (results.json written before they were recorded)."""
        key = (column, condition)
        if key not in self._scores:
            universe = _universe(self.reps[column], condition)
            scores = None
            if universe is not None:
                pick = np.random.default_rng(self.seed).integers(0, universe[1], (self.replicates, universe[1]))
                scores = _bootstrap_scores(self.reps[column], condition, pick)
            self._scores[key] = (universe, scores) if scores is not None else None
        return self._scores[key]

    def interval(self, column: str, condition: str, metric: str) -> tuple[float, float] | None:
        """95 % percentile interval of the column's mean score over its replicates."""
        found = self.scores(column, condition)
        if found is None:
            return None
        low, high = np.percentile(found[1][metric], [2.5, 97.5])
        return float(low), float(high)

    def gap(self, a: str, b: str, condition: str, metric: str) -> tuple[float, float, float] | None:
        """Mean score of ``b`` minus that of ``a`` and its paired 95 % interval; None when they
        were not tested on the same utterances."""
        found_a, found_b = self.scores(a, condition), self.scores(b, condition)
        if found_a is None or found_b is None or found_a[0] != found_b[0]:
            return None
        gap = float(np.mean([replicate_score(r, condition, metric) for r in self.reps[b]])
                    - np.mean([replicate_score(r, condition, metric) for r in self.reps[a]]))
        low, high = np.percentile(found_b[1][metric] - found_a[1][metric], [2.5, 97.5])
        return gap, float(low), float(high)


def bootstrap_ci(reps: list[list[dict]], condition: str, metric: str = "wf1", replicates: int = BOOTSTRAP_REPLICATES,
                 seed: int = 0) -> tuple[float, float] | None:
    """95 % interval of the mean score over ``reps`` on ``condition``: the percentile bootstrap,
    resampling test utterances with replacement."""
    return Resamples({"": reps}, replicates, seed).interval("", condition, metric)


def bootstrap_gap(reps_a: list[list[dict]], reps_b: list[list[dict]], condition: str, metric: str = "wf1",
                  replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> tuple[float, float, float] | None:
    """Mean score of B minus mean score of A on ``condition`` and its 95 % interval, resampling the
    utterances both were tested on (paired). None when they were not tested on the same ones."""
    return Resamples({"a": reps_a, "b": reps_b}, replicates, seed).gap("a", "b", condition, metric)


def _grouped(runs: list[dict]) -> tuple[list[str], dict[str, list[list[dict]]], list[dict]]:
    """Columns in report order, each strategy's replicates, and the runs left out."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["label"]].append(run)
    columns = sorted(groups, key=_column_order)
    reps, left = {}, []
    for c in columns:
        reps[c], extra = replicates(groups[c])
        left += extra
    return columns, reps, left


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
    columns, reps, left = _grouped(runs)
    resamples = resamples or Resamples(reps)
    header = [f"{metric.upper()} %"] + [_column_header(c, reps[c]) for c in columns]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for condition in _conditions(runs):
        cells = []
        for c in columns:
            values = [v for v in (replicate_score(r, condition, metric) for r in reps[c]) if v is not None]
            if not values:
                cells.append("–")
                continue
            ci = resamples.interval(c, condition, metric)
            interval = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
            cells.append(f"{100 * np.mean(values):.1f}{interval} (sd {100 * np.std(values):.1f})")
        md.append(f"| {CONDITION_LABELS.get(condition, condition)} | " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n" + _left_note(left)


def table_gaps(runs: list[dict], metric: str = "wf1", resamples: Resamples | None = None) -> str:
    """Each strategy against each baseline before it (None, Fixed SNR, CopyPaste): the gap in
    mean score with its paired 95 % bootstrap interval; resolved when the interval excludes 0."""
    columns, reps, _ = _grouped(runs)
    resamples = resamples or Resamples(reps)
    pairs = [(a, b) for i, a in enumerate(columns) if a in STRATEGY_LABELS.values() for b in columns[i + 1:]]
    if not pairs:
        return "One strategy only: no gaps to compare.\n"
    header = [f"{metric.upper()} gap, points"] + [f"{b} − {a}" for a, b in pairs]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for condition in _conditions(runs):
        cells = []
        for a, b in pairs:
            gap = resamples.gap(a, b, condition, metric)
            if gap is None:
                cells.append("–")
                continue
            resolved = gap[1] > 0 or gap[2] < 0
            text = f"{100 * gap[0]:+.1f} [{100 * gap[1]:+.1f}, {100 * gap[2]:+.1f}]"
            cells.append(f"**{text}**" if resolved else text)
        md.append(f"| {CONDITION_LABELS.get(condition, condition)} | " + " | ".join(cells) + " |")
    note = ("\nBold: resolved, the 95 % interval of the gap (paired bootstrap over the test utterances both "
            "strategies were tested on) excludes 0. '–': not tested on the same utterances.\n")
    return "\n".join(md) + "\n" + note


def table2(runs: list[dict]) -> tuple[str, list[list[str]]]:
    """Markdown text and CSV rows of the Table 2 analogue."""
    columns, reps, left = _grouped(runs)
    order = _conditions(runs)
    header = ["WF1 %"] + [_column_header(c, reps[c]) for c in columns]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows_csv = [["condition"] + [f"{c} {stat}" for c in columns for stat in ("mean", "std", "runs")]]
    size_cells = [f"{reps[c][0][0]['config'].get('train_size_n', 2):g}N" for c in columns]
    md.append("| Train size | " + " | ".join(size_cells) + " |")
    for condition in order:
        values = {c: [v for v in (replicate_score(r, condition) for r in reps[c]) if v is not None] for c in columns}
        means = {c: float(np.mean(v)) for c, v in values.items() if v}
        best = max(means.values()) if means else None
        cells = [f"**{_fmt(values[c])}**" if values[c] and means[c] == best else _fmt(values[c]) for c in columns]
        md.append(f"| {CONDITION_LABELS.get(condition, condition)} | " + " | ".join(cells) + " |")
        rows_csv.append([condition] + [x for c in columns for x in (
            f"{100 * np.mean(values[c]):.4f}" if values[c] else "", f"{100 * np.std(values[c]):.4f}" if values[c] else "",
            str(len(values[c])))])
    return "\n".join(md) + "\n" + _left_note(left), rows_csv


def table3(runs: list[dict], device: torch.device, workers: int = 0) -> tuple[str, list[list[str]]]:
    """Normalised validation gaps per GMM level of each metric, for the clean-trained runs."""
    clean_runs = [r for r in runs if r["config"].get("strategy") == "none"]
    if not clean_runs:
        return "No clean-trained (strategy none) run given: no Table 3.\n", []
    gaps: dict[str, list[list[float]]] = defaultdict(list)
    for run in clean_runs:
        _, model, featurize, _ = load_model(run["path"], device)
        store = open_store(run["config"]["data"])
        clean_data = StoreData(store, None)
        val_clean = clean_data.clean(VALIDATION)
        wf1_clean = classification_scores(val_clean.labels, predict(model, featurize, val_clean, workers))["wf1"]
        for metric in METRICS:
            try:
                index = store.level_index(metric, "gmm")
            except InputError:
                continue  # this metric was not scored with the GMM
            data = StoreData(store, index)
            row = []
            for level in range(1, index.n_levels + 1):
                samples = data.level_samples(VALIDATION, level)
                if len(samples) == 0:
                    row.append(float("nan"))
                    continue
                wf1 = classification_scores(samples.labels, predict(model, featurize, samples, workers))["wf1"]
                row.append((wf1_clean - wf1) / wf1_clean if wf1_clean > 0 else float("nan"))
            gaps[metric].append(row)
    if not gaps:
        return "The store has no GMM level index: run 'prep score STORE --metric M --quant gmm'.\n", []
    k = max(len(r) for rows in gaps.values() for r in rows)
    header = ["Metric"] + [f"Level {lv}" for lv in range(1, k + 1)] + ["Total"]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows_csv = [header]
    for metric, rows in gaps.items():
        table = np.array(rows, dtype=float)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a level without validation mixes stays NaN
            mean = np.nanmean(table, axis=0)
        cells = [f"{x:.4f}" if np.isfinite(x) else "–" for x in mean]
        total = float(np.nansum(mean))
        md.append(f"| {METRIC_LABELS[metric]}-GMM | " + " | ".join(cells) + f" | {total:.4f} |")
        rows_csv.append([metric] + [f"{x:.6f}" for x in mean] + [f"{total:.6f}"])
    note = f"\nNormalised gap (WF1_clean − WF1_level) / WF1_clean on the validation mixes; mean over {len(clean_runs)} clean-trained run(s).\n"
    return "\n".join(md) + "\n" + note, rows_csv


def _save_figure(fig, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})


PANELS_MAX, PANELS_PER_ROW = 12, 4


def _panel_runs(runs: list[dict]) -> list[dict]:
    """At most PANELS_MAX runs for the per-run plots: the lowest seed of each strategy and store
    first, so a large study shows each strategy on each fold before any second seed."""
    ranked = sorted(runs, key=lambda r: (r["config"].get("seed", 0), _column_order(r["label"]), str(r["config"].get("data")),
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
    metricaug = _panel_runs([r for r in runs if r["config"].get("strategy", "metricaug") == "metricaug"])
    if metricaug:
        fig, axes = _panels(plt, len(metricaug))
        for ax, run in zip(axes.flat, metricaug):
            weights = np.array([e["weights"] for e in run["epochs"]])
            epochs = [e["epoch"] for e in run["epochs"]]
            ax.stackplot(epochs, weights.T, labels=[f"level {k + 1}" for k in range(weights.shape[1])])
            ax.set_title(f"{run['label']} ({run['path'].name})", fontsize="small")
            ax.set_xlabel("epoch")
            ax.set_ylim(0, 1)
        axes[0][0].set_ylabel("sampling weight")
        axes.flat[len(metricaug) - 1].legend(fontsize="x-small", loc="upper right")
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
    columns, reps, _ = _grouped(runs)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label in columns:
        order = _conditions([r for rep in reps[label] for r in rep])
        values = np.array([[replicate_score(rep, c) for c in order] for rep in reps[label]], dtype=float)
        ax.errorbar(range(len(order)), 100 * values.mean(0), yerr=100 * values.std(0), marker="o", capsize=3, label=label)
        ax.set_xticks(range(len(order)), [CONDITION_LABELS.get(c, c) for c in order])
    ax.set_ylabel("test WF1 %")
    ax.set_title("WF1 per test condition (mean ± std over seeds)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save_figure(fig, out / "conditions.png")
    plt.close(fig)
    written.append(out / "conditions.png")
    return written


def _csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def write_report(runs: list[Path], out: Path, device: torch.device, workers: int = 0) -> list[Path]:
    loaded = load_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    t2_md, t2_csv = table2(loaded)
    t3_md, t3_csv = table3(loaded, device, workers)
    write_bytes_atomic(out / "table2.md", ("# Test WF1 (%) per condition and strategy\n\n" + t2_md).encode())
    write_bytes_atomic(out / "table2.csv", _csv_bytes(t2_csv))
    write_bytes_atomic(out / "table3.md", ("# Normalised WF1 gap per GMM level (clean-trained model)\n\n" + t3_md).encode())
    resamples = Resamples(_grouped(loaded)[1])  # one bootstrap per strategy and condition, for both scores
    intervals = "".join(
        f"## {metric.upper()}: mean [95 % bootstrap interval over utterances] (sd over seeds), %\n\n"
        f"{table_ci(loaded, metric, resamples)}\n"
        f"### {metric.upper()} gaps between strategies\n\n{table_gaps(loaded, metric, resamples)}\n"
        for metric in ("wf1", "uar"))
    write_bytes_atomic(out / "intervals.md", ("# Test scores with their uncertainty\n\n" + intervals).encode())
    paths = [out / "table2.md", out / "table2.csv", out / "table3.md", out / "intervals.md"]
    if t3_csv:
        write_bytes_atomic(out / "table3.csv", _csv_bytes(t3_csv))
        paths.append(out / "table3.csv")
    return paths + plots(loaded, out)

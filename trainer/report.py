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


def bootstrap_ci(runs: list[dict], condition: str, metric: str = "wf1", replicates: int = BOOTSTRAP_REPLICATES,
                 seed: int = 0) -> tuple[float, float] | None:
    """95 % interval of the runs' mean score on ``condition``, resampling each run's test
    utterances with replacement (the percentile bootstrap). None when a run holds no
    per-utterance outcomes (results.json written before they were recorded)."""
    k = len(EMOTIONS)
    rng = np.random.default_rng(seed)
    per_run = []
    for run in runs:
        scores = run["results"]["conditions"].get(condition)
        if not scores or "predictions" not in scores:
            return None
        cell = np.asarray(scores["labels"]) * k + np.asarray(scores["predictions"])
        pick = rng.integers(0, cell.size, (replicates, cell.size))
        # one confusion matrix per replicate, counted in one bincount
        offsets = (np.arange(replicates) * k * k)[:, None]
        confusions = np.bincount((cell[pick] + offsets).ravel(), minlength=replicates * k * k).reshape(replicates, k, k)
        per_run.append(_scores_from_confusions(confusions)[metric])
    stats = np.mean(per_run, axis=0)
    low, high = np.percentile(stats, [2.5, 97.5])
    return float(low), float(high)


def table_ci(runs: list[dict], metric: str = "wf1") -> str:
    """Mean [95 % bootstrap interval] (seed spread) per condition and strategy, in %."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["label"]].append(run)
    columns = sorted(groups, key=_column_order)
    header = [f"{metric.upper()} %"] + [f"{c} (n={len(groups[c])})" for c in columns]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for condition in _conditions(runs):
        cells = []
        for c in columns:
            runs_c = [r for r in groups[c] if condition in r["results"]["conditions"]]
            if not runs_c:
                cells.append("–")
                continue
            values = [r["results"]["conditions"][condition][metric] for r in runs_c]
            ci = bootstrap_ci(runs_c, condition, metric)
            interval = f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""
            cells.append(f"{100 * np.mean(values):.1f}{interval} (sd {100 * np.std(values):.1f})")
        md.append(f"| {CONDITION_LABELS.get(condition, condition)} | " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


def table2(runs: list[dict]) -> tuple[str, list[list[str]]]:
    """Markdown text and CSV rows of the Table 2 analogue."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["label"]].append(run)
    columns = sorted(groups, key=_column_order)
    order = _conditions(runs)
    header = ["WF1 %"] + [f"{c} (n={len(groups[c])})" for c in columns]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows_csv = [["condition"] + [f"{c} {stat}" for c in columns for stat in ("mean", "std", "runs")]]
    size_cells = [f"{groups[c][0]['config'].get('train_size_n', 2):g}N" for c in columns]
    md.append("| Train size | " + " | ".join(size_cells) + " |")
    for condition in order:
        values = {c: [r["results"]["conditions"][condition]["wf1"] for r in groups[c] if condition in r["results"]["conditions"]]
                  for c in columns}
        means = {c: float(np.mean(v)) for c, v in values.items() if v}
        best = max(means.values()) if means else None
        cells = [f"**{_fmt(values[c])}**" if values[c] and means[c] == best else _fmt(values[c]) for c in columns]
        md.append(f"| {CONDITION_LABELS.get(condition, condition)} | " + " | ".join(cells) + " |")
        rows_csv.append([condition] + [x for c in columns for x in (
            f"{100 * np.mean(values[c]):.4f}" if values[c] else "", f"{100 * np.std(values[c]):.4f}" if values[c] else "",
            str(len(values[c])))])
    return "\n".join(md) + "\n", rows_csv


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


def plots(runs: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    metricaug = [r for r in runs if r["config"].get("strategy", "metricaug") == "metricaug"]
    if metricaug:
        fig, axes = plt.subplots(1, len(metricaug), figsize=(4.5 * len(metricaug), 3.6), squeeze=False)
        for ax, run in zip(axes[0], metricaug):
            weights = np.array([e["weights"] for e in run["epochs"]])
            epochs = [e["epoch"] for e in run["epochs"]]
            ax.stackplot(epochs, weights.T, labels=[f"level {k + 1}" for k in range(weights.shape[1])])
            ax.set_title(f"{run['label']} ({run['path'].name})", fontsize="small")
            ax.set_xlabel("epoch")
            ax.set_ylim(0, 1)
        axes[0][0].set_ylabel("sampling weight")
        axes[0][-1].legend(fontsize="x-small", loc="upper right")
        fig.tight_layout()
        _save_figure(fig, out / "weights.png")
        plt.close(fig)
        written.append(out / "weights.png")
    with_levels = [r for r in runs if r["epochs"] and r["epochs"][0]["val_wf1_levels"]]
    if with_levels:
        fig, axes = plt.subplots(1, len(with_levels), figsize=(4.5 * len(with_levels), 3.6), squeeze=False)
        for ax, run in zip(axes[0], with_levels):
            epochs = [e["epoch"] for e in run["epochs"]]
            ax.plot(epochs, [e["val_wf1_clean"] for e in run["epochs"]], color="black", label="clean")
            levels = np.array([e["val_wf1_levels"] for e in run["epochs"]], dtype=float)
            for k in range(levels.shape[1]):
                ax.plot(epochs, levels[:, k], label=f"level {k + 1}")
            ax.set_title(f"{run['label']} ({run['path'].name})", fontsize="small")
            ax.set_xlabel("epoch")
        axes[0][0].set_ylabel("validation WF1")
        axes[0][-1].legend(fontsize="x-small")
        fig.tight_layout()
        _save_figure(fig, out / "val_levels.png")
        plt.close(fig)
        written.append(out / "val_levels.png")
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["label"]].append(run)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label in sorted(groups, key=_column_order):
        order = _conditions(groups[label])
        values = np.array([[r["results"]["conditions"][c]["wf1"] for c in order] for r in groups[label]])
        ax.errorbar(range(len(order)), 100 * values.mean(0), yerr=100 * values.std(0), marker="o", capsize=3, label=label)
        ax.set_xticks(range(len(order)), [CONDITION_LABELS.get(c, c) for c in order])
    ax.set_ylabel("test WF1 %")
    ax.set_title("WF1 per test condition (mean ± std over runs)")
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
    intervals = "".join(
        f"## {metric.upper()}: mean [95 % bootstrap interval over utterances] (sd over runs), %\n\n{table_ci(loaded, metric)}\n"
        for metric in ("wf1", "uar"))
    write_bytes_atomic(out / "intervals.md", ("# Test scores with their uncertainty\n\n" + intervals).encode())
    paths = [out / "table2.md", out / "table2.csv", out / "table3.md", out / "intervals.md"]
    if t3_csv:
        write_bytes_atomic(out / "table3.csv", _csv_bytes(t3_csv))
        paths.append(out / "table3.csv")
    return paths + plots(loaded, out)

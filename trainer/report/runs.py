"""Finished runs as the report sees them: their files, their column label, and their grouping
into replicates (one per seed, pooled over the stores of a speaker-fold study)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from shards.errors import InputError
from shards.metrics import builtin_metric_spec
from trainer.conditions import condition_order
from trainer.strategies import BASELINE_ORDER, STRATEGIES
from trainer.runfolder import RESULTS, read_config, read_epochs, read_results

def strategy_label(config: dict) -> str:
    """A run's column: the strategy (MetricAug by metric and quantizer), with the settings
    that make runs incomparable: a UAR gap score, and the selection rule where recorded."""
    name = config.get("strategy", "metricaug")
    if name == "metricaug":
        spec = builtin_metric_spec(config["metric"])  # for runs recorded before config had the label
        metric = config.get("metric_label") or (spec.label if spec else config["metric"])
        label = f"{metric}-{config['quant'].upper() if config['quant'] == 'gmm' else config['quant'].title()}"
        if config.get("gap_score", "wf1") != "wf1":
            label += f" {config['gap_score'].upper()}-gap"
    else:
        label = STRATEGIES[name].label if name in STRATEGIES else name
    if "selected_on" in config:
        label += f" [{config['selected_on']}]"
    return label


def column_order(run: dict) -> tuple:
    """Baselines first in the paper's order, then the MetricAug columns by label."""
    name = run["config"].get("strategy", "metricaug")
    return (0, BASELINE_ORDER.index(name), run["label"]) if name in BASELINE_ORDER else (1, 0, run["label"])


def is_baseline(run: dict) -> bool:
    return run["config"].get("strategy", "metricaug") in BASELINE_ORDER


def load_runs(runs: list[Path]) -> list[dict]:
    """Each run's config, epoch records and results; a run without them is one line naming it
    and what to run."""
    if not runs:
        raise InputError("no run folders given (expected folders written by 'trainer run' and 'trainer eval')")
    loaded, unevaluated = [], []
    for run in runs:
        run = Path(run)
        if not run.is_dir():
            raise InputError(f"{run}: no such run folder")
        config = read_config(run)
        epochs = read_epochs(run)
        if not (run / RESULTS).is_file():
            unevaluated.append(run)
            continue
        loaded.append({"path": run, "config": config, "results": read_results(run), "epochs": epochs,
                       "label": strategy_label(config)})
    if unevaluated:
        names = " ".join(str(r) for r in unevaluated)
        raise InputError(f"{len(unevaluated)} run(s) have no results.json: {names}; evaluate them with 'trainer eval {names}'")
    return loaded


def conditions(runs: list[dict]) -> list[str]:
    """Test conditions of the runs in report order (clean, high to low SNR, unseen)."""
    names = {c for run in runs for c in run["results"]["conditions"]}
    return sorted(names, key=condition_order)


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


def grouped(runs: list[dict]) -> tuple[list[str], dict[str, list[list[dict]]], list[dict]]:
    """Columns in report order, each strategy's replicates, and the runs left out."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run["label"]].append(run)
    columns = sorted(groups, key=lambda c: column_order(groups[c][0]))
    reps, left = {}, []
    for c in columns:
        reps[c], extra = replicates(groups[c])
        left += extra
    return columns, reps, left

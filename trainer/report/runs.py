"""Finished runs as the report sees them: their files, their column label, and their grouping
into replicates (one per seed, pooled over the stores of a speaker-fold study)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from shards.errors import InputError
from trainer.conditions import condition_order
from trainer.frontends import front_end_label
from trainer.strategies import STRATEGIES, Strategy
from trainer.runfolder import RESULTS, read_config, read_epochs, read_results

#: a recorded run's strategy when its config.json predates the setting
DEFAULT_STRATEGY = "metricaug"


def strategy_of(config: dict) -> Strategy | None:
    """The registered strategy of a run (None: a name this version does not know)."""
    return STRATEGIES.get(config.get("strategy", DEFAULT_STRATEGY))


def strategy_label(config: dict) -> str:
    """A run's column: the strategy's own label for the run (MetricAug by metric and quantizer,
    with options that make runs incomparable), its front end unless log-mel, and the selection
    rule where recorded."""
    strategy = strategy_of(config)
    label = strategy.column_label(config) if strategy else config.get("strategy", DEFAULT_STRATEGY)
    if front_end_label(config):
        label += f" · {front_end_label(config)}"
    if "selected_on" in config:
        label += f" [{config['selected_on']}]"
    return label


def column_order(run: dict) -> tuple:
    """Baselines first in the registry's order, then the other columns by label."""
    strategy = strategy_of(run["config"])
    rank = list(STRATEGIES.values()).index(strategy) if strategy else len(STRATEGIES)
    variant = strategy.variant_rank(run["config"]) if strategy else 0
    return (0 if is_baseline(run) else 1, rank, variant, run["label"])


def is_baseline(run: dict) -> bool:
    strategy = strategy_of(run["config"])
    return bool(strategy and strategy.baseline)


def feeds_table3(run: dict) -> bool:
    strategy = strategy_of(run["config"])
    return bool(strategy and strategy.feeds_table3)


def adapts_weights(run: dict) -> bool:
    strategy = strategy_of(run["config"])
    return bool(strategy and strategy.adapts_weights)


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

"""``trainer eval RUN``: the best checkpoint of a run on every test condition of its store.

Conditions, as the paper's Table 2 (``trainer.conditions``): Clean, the seen-noise test sets
at each exact SNR and Unseen. ``RUN/results.json`` holds WF1 and UAR per condition, per-class
F1, confusion matrices and per-utterance outcomes, the identity of the test data scored, and
for a clean-trained run (a strategy that feeds Table 3: none) its validation scores per level of every level index
of the store (what Table 3 of the report reads).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch

from shards.atomic import write_json_atomic
from shards.errors import InputError
from shards.levelindex import list_level_indexes, open_level_index
from shards.reader import Store, open_store
from shards.vocab import CLEAN_SUBSET, EMOTIONS, SUPERSET_SUBSET, VALIDATION
from trainer.conditions import CLEAN_CONDITION, TEST_SPLIT, condition_order
from trainer.data import SampleSet, StoreData, table_samples
from trainer.predict import classification_scores, predict
from trainer.runfolder import RESULTS, check_data_identity
from trainer.runmodel import load_run_model
from trainer.strategies import STRATEGIES


class NoTestSets(InputError):
    """The store holds no test utterances yet (built with ``prep superset`` alone)."""


def test_conditions(store: Store) -> dict[str, SampleSet]:
    """Every test condition the store holds, in report order."""
    table = store.table(["key", "subset", "label", "num_samples"], filters=[("split", "=", TEST_SPLIT)])
    if table.num_rows == 0:
        raise NoTestSets(f"{store.path}: no test utterances (build them with 'prep testsets')")
    out = {}
    for subset in sorted(set(table["subset"].to_pylist())):
        part = table.filter(pc.equal(table["subset"], subset)).sort_by([("key", "ascending")])
        name = CLEAN_CONDITION if subset == CLEAN_SUBSET else subset
        out[name] = table_samples(store, part, subset)
    return dict(sorted(out.items(), key=lambda item: condition_order(item[0])))


def test_identity(store: Store) -> dict:
    """The test data scored, by content (the test shards' samples digested)."""
    return {"split": TEST_SPLIT, "sha256": store.content_sha256(splits=[TEST_SPLIT])}


def load_model(run: Path, device: torch.device):
    """The run's best model and the function that turns waveforms into its normalised input
    (``trainer.runmodel.load_run_model``)."""
    loaded = load_run_model(run, device)
    return loaded.config, loaded.model, loaded.featurize, loaded.kept


def validation_level_scores(store: Store, model, featurize, workers: int) -> dict:
    """WF1 and UAR on the clean validation utterances and on each level's validation mixes of
    every level index of the store. The validation mixes are predicted once; each index only
    groups them."""
    clean = StoreData(store, None).clean(VALIDATION)
    out = {"clean": _scores(clean.labels, predict(model, featurize, clean, workers)), "levels": []}
    indexes = [open_level_index(p) for p in list_level_indexes(store.path)]
    if not indexes:
        return out
    mixes = store.table(["key", "label", "num_samples"], filters=[("subset", "=", SUPERSET_SUBSET),
                                                                    ("split", "=", VALIDATION)])
    samples = table_samples(store, mixes, f"{SUPERSET_SUBSET} {VALIDATION}")
    predicted = dict(zip(mixes["key"].to_pylist(), predict(model, featurize, samples, workers).tolist()))
    label_of = dict(zip(mixes["key"].to_pylist(), samples.labels.tolist()))
    for index in indexes:
        if VALIDATION not in index.groups:
            continue
        per_level = []
        for level in range(1, index.n_levels + 1):
            keys = index.members(VALIDATION, level).key
            per_level.append(_scores(np.array([label_of[k] for k in keys], dtype=np.int64),
                                     np.array([predicted[k] for k in keys], dtype=np.int64)))
        out["levels"].append({"index": index.path.name, "metric": index.metric, "metric_label": index.metric_label,
                              "quant": index.quant, "n_levels": index.n_levels,
                              "wf1": [s["wf1"] for s in per_level], "uar": [s["uar"] for s in per_level],
                              "n": [s["n"] for s in per_level]})
    return out


def _scores(labels: np.ndarray, predictions: np.ndarray) -> dict:
    scores = classification_scores(labels, predictions)
    nan_to_none = lambda v: None if v != v else v  # noqa: E731  (JSON has no NaN)
    return {"wf1": nan_to_none(scores["wf1"]), "uar": nan_to_none(scores["uar"]), "n": scores["n"]}


def evaluate_run(run: str | Path, device: torch.device, workers: int = 0, log=print) -> dict:
    run = Path(run)
    config, model, featurize, kept = load_model(run, device)
    store = open_store(config["data"])
    check_data_identity(store, config.get("data_identity"), run)
    conditions = test_conditions(store)
    results = {"run": str(run), "store": config["data"], "strategy": config.get("strategy", "metricaug"),
               "checkpoint_epoch": kept["epoch"], "steps": kept["steps"], "steps_total": kept["steps_total"],
               "selected_on": config.get("selected_on", "clean"), "classes": list(EMOTIONS), "conditions": {},
               "data_identity": config.get("data_identity"), "test_identity": test_identity(store)}
    results["order"] = list(conditions)  # the report's row order (the JSON keys are sorted)
    for name, samples in conditions.items():
        predictions = predict(model, featurize, samples, workers)
        scores = classification_scores(samples.labels, predictions)
        # per-utterance outcomes: what a bootstrap over utterances resamples (trainer report)
        scores["labels"] = samples.labels.tolist()
        scores["predictions"] = predictions.tolist()
        results["conditions"][name] = scores
        log(f"{name:12s} WF1 {scores['wf1']:.4f}  UAR {scores['uar']:.4f}  ({scores['n']} utterances)")
    strategy = STRATEGIES.get(results["strategy"])
    if strategy is not None and strategy.feeds_table3:  # Table 3 of the report: a clean-trained model's gaps per level
        results["validation"] = validation_level_scores(store, model, featurize, workers)
    write_json_atomic(run / RESULTS, results)
    return results

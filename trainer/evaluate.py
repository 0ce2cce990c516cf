"""``trainer eval RUN``: the best checkpoint of a run on every test condition of its store.

Conditions, as the paper's Table 2: Clean (the clean test utterances), the seen-noise test
sets at each exact SNR (``test_snr10``, ``test_snr5``, ``test_snr0``: MUSAN noise and music)
and Unseen (``test_unseen``: ESC-50 noise). ``RUN/results.json`` holds WF1 and UAR per
condition, per-class F1 and confusion matrices.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.compute as pc
import torch

from shards.atomic import write_json_atomic
from shards.errors import InputError
from shards.reader import Store, open_store
from shards.vocab import CLEAN_SUBSET, EMOTIONS, UNSEEN_SUBSET
from trainer.data import SampleSet, table_samples
from trainer.features import FeatureError, build_front_end
from trainer.model import GRUTFM
from trainer.predict import classification_scores, predict

RESULTS = "results.json"
TEST_SPLIT = "test"
CLEAN_CONDITION = "clean"


def condition_order(name: str) -> tuple:
    """clean, then the seen-noise sets from the highest SNR down, then unseen."""
    if name == CLEAN_CONDITION:
        return (0, 0.0)
    match = re.fullmatch(r"test_snr(m?)(\d+)(?:p(\d+))?", name)
    if match:
        value = float(match.group(2) + ("." + match.group(3) if match.group(3) else ""))
        return (1, -(-value if match.group(1) else value))
    return (2 if name == UNSEEN_SUBSET else 3, 0.0, name)


def test_conditions(store: Store) -> dict[str, SampleSet]:
    """Every test condition the store holds, in report order."""
    table = store.table(["key", "subset", "label", "num_samples"], filters=[("split", "=", TEST_SPLIT)])
    if table.num_rows == 0:
        raise InputError(f"{store.path}: no test utterances (build them with 'prep testsets')")
    out = {}
    for subset in sorted(set(table["subset"].to_pylist())):
        part = table.filter(pc.equal(table["subset"], subset)).sort_by([("key", "ascending")])
        name = CLEAN_CONDITION if subset == CLEAN_SUBSET else subset
        out[name] = table_samples(store, part, subset)
    return dict(sorted(out.items(), key=lambda item: condition_order(item[0])))


def load_model(run: Path, device: torch.device):
    """The run's best model and the function that turns waveforms into its normalised input."""
    config_path, best_path = run / "config.json", run / "best.pt"
    if not config_path.is_file() or not best_path.is_file():
        raise InputError(f"{run}: not a finished run (expected config.json and best.pt written by 'trainer run')")
    config = json.loads(config_path.read_text())
    try:
        front_end = build_front_end(config["features"], checkpoint=config.get("checkpoint"), device=str(device))
    except FeatureError as exc:
        raise InputError(str(exc)) from None
    best = torch.load(best_path, map_location=device, weights_only=True)
    model = GRUTFM(front_end.dim, config["hidden"], len(EMOTIONS)).to(device)
    model.load_state_dict(best["model"])
    mean, std = best["norm_mean"].to(device), best["norm_std"].to(device)

    def featurize(wavs, lengths):
        feats, frames = front_end(wavs.to(device), lengths.to(device))
        return (feats - mean) / std, frames

    return config, model, featurize, int(best["epoch"])


def evaluate_run(run: str | Path, device: torch.device, workers: int = 0, log=print) -> dict:
    run = Path(run)
    config, model, featurize, epoch = load_model(run, device)
    store = open_store(config["data"])
    results = {"run": str(run), "store": config["data"], "strategy": config.get("strategy", "metricaug"),
               "checkpoint_epoch": epoch, "classes": list(EMOTIONS), "conditions": {}}
    conditions = test_conditions(store)
    results["order"] = list(conditions)  # the report's row order (the JSON keys are sorted)
    for name, samples in conditions.items():
        predictions = predict(model, featurize, samples, workers)
        scores = classification_scores(samples.labels, predictions)
        # per-utterance outcomes: what a bootstrap over utterances resamples (trainer report)
        scores["labels"] = samples.labels.tolist()
        scores["predictions"] = predictions.tolist()
        results["conditions"][name] = scores
        log(f"{name:12s} WF1 {scores['wf1']:.4f}  UAR {scores['uar']:.4f}  ({scores['n']} utterances)")
    write_json_atomic(run / RESULTS, results)
    return results

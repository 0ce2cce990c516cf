"""The selection rule (--select), equal compute (--max-steps) and the gap score (--gap-score)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shards.vocab import CLEAN_SUBSET, SUPERSET_SUBSET, VALIDATION
from trainer.cli import app
from trainer.predict import classification_scores
from trainer.protocol import GAP_SCORES, gaps
from trainer.train import TrainConfig, Trainer

runner = CliRunner()

#: a constructed validation history: clean WF1 peaks at epoch 2, pooled WF1 at epoch 4
CLEAN = [0.50, 0.70, 0.60, 0.55, 0.52, 0.51, 0.50, 0.49]
POOLED = [0.40, 0.42, 0.45, 0.60, 0.58, 0.57, 0.56, 0.55]


def scripted_evaluate(history_clean, history_pooled):
    """Trainer.evaluate replaced by a scripted history (the model still trains)."""
    calls = {"n": 0}

    def evaluate(self, model):
        e = calls["n"]
        calls["n"] += 1
        K = self.K
        return {"val_wf1_clean": history_clean[e], "val_uar_clean": history_clean[e],
                "val_wf1_levels": [history_pooled[e]] * K, "val_uar_levels": [history_pooled[e]] * K,
                "val_mixes_levels": [len(s) for s in self.val_levels],
                "val_wf1_pooled": history_pooled[e], "val_uar_pooled": history_pooled[e],
                "val_loss_gaps": [0.0] * K, "gap_halves": {s: [[0.0] * K, [0.0] * K] for s in GAP_SCORES},
                "gap_split_half_r": {s: float("nan") for s in GAP_SCORES}}
    return evaluate


@pytest.mark.parametrize("rule, best_epoch, last_epoch", [("clean", 2, 5), ("pooled", 4, 7)])
def test_the_rule_picks_best_pt_and_stops_early(demo_store, tmp_path, monkeypatch, rule, best_epoch, last_epoch):
    """Patience 3: clean stops 3 epochs after its best (2 -> 5), pooled after its own (4 -> 7)."""
    monkeypatch.setattr(Trainer, "evaluate", scripted_evaluate(CLEAN, POOLED))
    out = tmp_path / rule
    config = TrainConfig(data=str(demo_store), out=str(out), max_epochs=8, patience=3, select=rule, workers=0,
                         batch_size=16)
    state = Trainer(config, log=lambda line: None, progress=False).run()
    assert state.best_epoch == best_epoch and state.epoch == last_epoch
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == best_epoch
    saved = json.loads((out / "config.json").read_text())
    assert saved["select"] == saved["selected_on"] == rule
    records = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    assert [r["val_wf1_pooled"] for r in records] == POOLED[:last_epoch]


def test_resume_with_another_rule_is_refused(demo_store, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--data", str(demo_store), "--out", str(out), "--workers", "0", "-q", "--no-eval", "--max-epochs", "1"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, [*args, "--max-epochs", "2", "--resume", "--select", "clean"])
    assert again.exit_code == 2 and "--resume with other settings (select)" in again.output
    assert again.output.count("\n") == 1


@pytest.fixture()
def store_without_levels(demo_store, tmp_path) -> Path:
    """The demo store as it is before 'prep score': no level index."""
    store = tmp_path / "demo"
    shutil.copytree(demo_store, store, ignore=shutil.ignore_patterns("levels"))
    return store


def validation_keys(store: Path) -> tuple[list[str], list[str]]:
    """The keys of the clean validation utterances and of the superset's validation mixes."""
    from shards.reader import open_store

    def keys(subset):
        table = open_store(store).table(["key"], filters=[("subset", "=", subset), ("split", "=", VALIDATION)])
        return table["key"].to_pylist()
    return keys(CLEAN_SUBSET), keys(SUPERSET_SUBSET)


def test_superset_without_a_level_index_selects_on_the_clean_utterances_and_every_validation_mix(
        store_without_levels, tmp_path, monkeypatch):
    """Pooling needs no levels: every validation mix of the superset with the clean validation
    utterances, each predicted once per epoch, scored as one set, and the log says so."""
    import trainer.train

    evaluated = []  # (keys, labels, predictions) of every set an epoch's validation predicts

    def spy(model, features, samples, workers, cache):
        predictions, losses = real(model, features, samples, workers, cache)
        evaluated.append(([samples.key(i) for i in range(len(samples))], samples.labels.copy(), predictions))
        return predictions, losses
    real = trainer.train.predict_with_loss
    monkeypatch.setattr(trainer.train, "predict_with_loss", spy)
    lines = []
    out = tmp_path / "superset"
    Trainer(TrainConfig(data=str(store_without_levels), out=str(out), strategy="superset", max_epochs=1, workers=0,
                        batch_size=16), log=lines.append, progress=False).run()
    clean, mixes = validation_keys(store_without_levels)
    assert len(mixes) > len(clean) > 0
    assert sorted(k for keys, _, _ in evaluated for k in keys) == sorted(clean + mixes)  # each once
    labels = np.concatenate([lab for _, lab, _ in evaluated])
    predictions = np.concatenate([p for _, _, p in evaluated])
    record = json.loads((out / "epochs.jsonl").read_text().splitlines()[0])
    assert record["val_wf1_pooled"] == pytest.approx(classification_scores(labels, predictions)["wf1"], abs=1e-12)
    assert record["val_wf1_levels"] == []
    config = json.loads((out / "config.json").read_text())
    assert config["selected_on"] == "pooled" and config["val_pool_mixes"] == len(mixes)
    assert config["level_index"] == "" and SUPERSET_SUBSET in config["data_identity"]["subsets"]
    assert any(f"selecting on pooled (no level index: the clean validation utterances and every validation mix of "
               f"the superset ({len(mixes)}), pooled)" in line for line in lines)


def test_without_a_level_index_val_per_level_caps_the_pool_as_k_levels_would(store_without_levels, tmp_path):
    """--val-per-level M with --levels K: a fixed, seeded K x M of the validation mixes, the same
    for the same seed; M alone: every mix, and the note says what --levels would do."""
    _, mixes = validation_keys(store_without_levels)

    def pool(seed: int, **options) -> tuple[list[str], str]:
        t = Trainer(TrainConfig(data=str(store_without_levels), out=str(tmp_path / "unused"), strategy="superset",
                                workers=0, seed=seed, **options), log=lambda line: None, progress=False)
        return [t.val_pool.key(i) for i in range(len(t.val_pool))], t.pool_note

    capped, note = pool(0, val_per_level=3, levels=2)
    assert len(set(capped)) == 6 and set(capped) <= set(mixes) and "(--val-per-level 3 x --levels 2)" in note
    assert pool(0, val_per_level=3, levels=2)[0] == capped and pool(1, val_per_level=3, levels=2)[0] != capped
    every, note = pool(0, val_per_level=3)
    assert sorted(every) == sorted(mixes) and "add --levels K to pool K x 3" in note


def test_pooled_falls_back_to_clean_without_levels_or_validation_mixes_and_says_so(store_without_levels, tmp_path,
                                                                                  monkeypatch):
    from trainer.data import SampleSet, StoreData

    subset = StoreData.subset
    monkeypatch.setattr(StoreData, "subset", lambda self, name, split: SampleSet.concat([])
                        if (name, split) == (SUPERSET_SUBSET, VALIDATION) else subset(self, name, split))
    lines = []
    out = tmp_path / "none"
    Trainer(TrainConfig(data=str(store_without_levels), out=str(out), strategy="none", max_epochs=1, workers=0),
            log=lines.append, progress=False).run()
    assert json.loads((out / "config.json").read_text())["selected_on"] == "clean"
    assert any("selecting on pooled (no level index and no validation mixes: the clean validation set)" in line
               for line in lines)


def test_max_steps_stops_at_exactly_s_steps_and_records_them(demo_store, tmp_path):
    out = tmp_path / "steps"
    config = TrainConfig(data=str(demo_store), out=str(out), max_epochs=50, batch_size=16, max_steps=11, workers=0)
    trainer = Trainer(config, log=lambda line: None, progress=False)
    per_epoch = -(-2 * trainer.N // 16)
    assert per_epoch < 11 < 2 * per_epoch  # the second epoch stops part-way
    state = trainer.run()
    records = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    assert state.steps == 11 and [r["steps"] for r in records] == [per_epoch, 11]
    assert records[1]["samples"] <= 16 * (11 - per_epoch)  # the partial epoch trained on its steps' samples
    assert all(np.isfinite(r["val_wf1_pooled"]) for r in records)  # validated at the end of the partial epoch
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    # results.json and Table 2 carry the steps
    from trainer.evaluate import evaluate_run

    results = evaluate_run(out, torch.device("cpu"), log=lambda line: None)
    assert results["steps_total"] == 11 and results["steps"] in (per_epoch, 11)
    from trainer.report import load_runs, table2

    md, rows = table2(load_runs([out]))
    assert "| Steps | 11 |" in md and rows[1][:2] == ["steps", "11.0"]


def test_uar_gaps_rank_levels_apart_from_wf1_gaps_when_class_mixes_differ():
    """Level 1: mostly sad mixes, all predicted sad (high WF1, low UAR). Level 2: balanced,
    half right (WF1 and UAR 0.5). WF1 calls level 2 the harder; UAR calls level 1."""
    clean_labels = np.repeat([0, 1, 2, 3], 10)
    clean = classification_scores(clean_labels, clean_labels)  # perfect on clean
    level1_labels = np.array([3] * 36 + [0, 1, 2, 0])
    level1 = classification_scores(level1_labels, np.full(40, 3))
    level2_labels = np.repeat([0, 1, 2, 3], 10)
    level2 = classification_scores(level2_labels, np.where(np.arange(40) % 2 == 0, level2_labels, (level2_labels + 1) % 4))
    metrics = {"val_wf1_clean": clean["wf1"], "val_uar_clean": clean["uar"],
               "val_wf1_levels": [level1["wf1"], level2["wf1"]], "val_uar_levels": [level1["uar"], level2["uar"]]}
    wf1_gaps, uar_gaps = gaps(metrics, "wf1"), gaps(metrics, "uar")
    assert wf1_gaps[1] > wf1_gaps[0] and uar_gaps[0] > uar_gaps[1]
    assert uar_gaps == pytest.approx([1 - level1["uar"], 1 - level2["uar"]])


def test_a_uar_gap_run_feeds_algorithm1_the_uar_gaps(demo_store, tmp_path):
    from trainer.weights import algorithm1

    out = tmp_path / "uar"
    config = TrainConfig(data=str(demo_store), out=str(out), max_epochs=2, gap_score="uar", workers=0, batch_size=16)
    Trainer(config, log=lambda line: None, progress=False).run()
    first, second = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    # a level without validation mixes (NaN) has gap 0, as with WF1
    expected = [0.0 if np.isnan(u) else first["val_uar_clean"] - u for u in first["val_uar_levels"]]
    assert first["gaps"] == pytest.approx(expected)
    assert second["weights"] == pytest.approx([float(w) for w in algorithm1(expected, config.floor)])


def test_test_every_epoch_records_test_scores_and_changes_nothing_else(demo_store, tmp_path):
    """The diagnostic adds test_wf1 / test_uar per condition to each epoch record and leaves
    the training untouched (every other key equal to a run without it, apart from seconds);
    at the kept epoch its scores are the ones trainer eval writes for best.pt."""
    def run(name: str, *extra: str) -> list[dict]:
        out = tmp_path / name
        args = ["run", "--data", str(demo_store), "--out", str(out), "--workers", "0", "-q", "--max-epochs", "3",
                "--batch-size", "16", *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]

    plain, watched = run("plain"), run("watched", "--test-every-epoch")
    test_keys = {"test_wf1", "test_uar"}
    for a, b in zip(plain, watched, strict=True):
        assert set(b) - set(a) == test_keys
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k not in test_keys | {"seconds"}}
    results = json.loads((tmp_path / "watched" / "results.json").read_text())
    kept = watched[results["checkpoint_epoch"] - 1]
    assert sorted(kept["test_wf1"]) == sorted(results["order"])  # (epochs.jsonl sorts its keys)
    for name, scores in results["conditions"].items():
        assert kept["test_wf1"][name] == pytest.approx(scores["wf1"], abs=1e-12)
        assert kept["test_uar"][name] == pytest.approx(scores["uar"], abs=1e-12)


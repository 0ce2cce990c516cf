"""`trainer report` from small recorded runs: Table 2 values, the best per row, the plots."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.report import load_runs, plots, table2

CONDITIONS = ["clean", "test_snr10", "test_snr5", "test_snr0", "test_unseen"]


def record_run(folder: Path, strategy: str, wf1: list[float], seed: int, size: float, k: int = 3,
               features: str = "logmel") -> Path:
    folder.mkdir(parents=True)
    config = {"strategy": strategy, "metric": "stoi", "quant": "gmm", "seed": seed, "train_size_n": size,
              "data": "unused", "hidden": 16, "features": features}
    (folder / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(seed)
    epochs = []
    for e in range(1, 5):
        weights = rng.dirichlet(np.ones(k)).tolist() if strategy == "metricaug" else []
        epochs.append({"epoch": e, "loss": 1.0 / e, "val_wf1_clean": 0.5, "val_wf1_levels": rng.random(k).tolist(),
                       "weights": weights, "gaps": [0.0] * k, "drawn": [], "seconds": 1.0})
    (folder / "epochs.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    results = {"conditions": {c: {"wf1": w, "uar": w, "n": 10} for c, w in zip(CONDITIONS, wf1)}}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_table2_means_stds_best_marks_and_sizes(tmp_path):
    runs = [
        record_run(tmp_path / "none-0", "none", [0.60, 0.50, 0.45, 0.40, 0.55], 0, 1),
        record_run(tmp_path / "none-1", "none", [0.62, 0.52, 0.47, 0.42, 0.57], 1, 1),
        record_run(tmp_path / "ma-0", "metricaug", [0.61, 0.60, 0.58, 0.56, 0.60], 0, 2),
        record_run(tmp_path / "ma-1", "metricaug", [0.63, 0.60, 0.58, 0.56, 0.60], 1, 2),
        record_run(tmp_path / "fixed-0", "fixed-snr", [0.605, 0.59, 0.59, 0.55, 0.59], 0, 7),
    ]
    loaded = load_runs(runs)
    md, rows = table2(loaded)
    lines = md.splitlines()
    assert lines[0] == "| WF1 % | None (n=2) | Fixed SNR (n=1) | STOI-GMM (n=2) |"
    assert lines[2] == "| Train size | 1N | 7N | 2N |"
    assert [line.split(" | ")[0] for line in lines[3:]] == ["| Clean", "| 10 dB", "| 5 dB", "| 0 dB", "| Unseen"]
    assert lines[3] == "| Clean | 61.00 ± 1.00 | 60.50 | **62.00 ± 1.00** |"
    assert lines[5] == "| 5 dB | 46.00 ± 1.00 | **59.00** | 58.00 ± 0.00 |"
    by_condition = {r[0]: r for r in rows[1:]}
    assert rows[0][:4] == ["condition", "None mean", "None std", "None runs"]
    assert float(by_condition["test_snr0"][1]) == pytest.approx(41.0) and by_condition["test_snr0"][3] == "2"


def test_runs_on_another_front_end_get_their_own_column(tmp_path):
    runs = [record_run(tmp_path / "none-mel", "none", [0.60] * 5, 0, 1),
            record_run(tmp_path / "none-ege", "none", [0.50] * 5, 0, 1, features="egemaps"),
            record_run(tmp_path / "ma-ege", "metricaug", [0.55] * 5, 0, 2, features="egemaps")]
    header = table2(load_runs(runs))[0].splitlines()[0]
    assert header == "| WF1 % | None (n=1) | None · egemaps (n=1) | STOI-GMM · egemaps (n=1) |"


def test_plots_are_written_as_png(tmp_path):
    runs = [record_run(tmp_path / "none", "none", [0.6] * 5, 0, 1),
            record_run(tmp_path / "ma", "metricaug", [0.62] * 5, 0, 2)]
    out = tmp_path / "report"
    out.mkdir()
    written = plots(load_runs(runs), out)
    assert [p.name for p in written] == ["weights.png", "val_levels.png", "conditions.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_bootstrap_scores_match_sklearn_and_intervals_cover_the_estimate():
    from sklearn.metrics import f1_score, recall_score

    from trainer.report import _scores_from_confusions, bootstrap_ci

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 4, 200))
    confusion = np.zeros((1, 4, 4), int)
    np.add.at(confusion[0], (labels, predictions), 1)
    fast = _scores_from_confusions(confusion)
    assert fast["wf1"][0] == pytest.approx(f1_score(labels, predictions, average="weighted"), abs=1e-12)
    assert fast["uar"][0] == pytest.approx(recall_score(labels, predictions, average="macro"), abs=1e-12)

    run = {"config": {"data": "s"}, "results": {"conditions": {"clean": {"labels": labels.tolist(), "predictions": predictions.tolist()}}}}
    low, high = bootstrap_ci([[run]], "clean")
    assert low < fast["wf1"][0] < high and 0.05 < high - low < 0.25  # about ±7 points for 200 utterances
    assert bootstrap_ci([[run]], "clean") == (low, high)  # seeded
    assert bootstrap_ci([[{"config": {}, "results": {"conditions": {"clean": {"wf1": 0.5}}}}]], "clean") is None


def outcome_run(folder: Path, strategy: str, store: str, seed: int, labels: np.ndarray, predictions: np.ndarray) -> Path:
    """A recorded run with per-utterance outcomes on every condition (the same ones)."""
    folder.mkdir(parents=True)
    config = {"strategy": strategy, "metric": "stoi", "quant": "gmm", "seed": seed, "train_size_n": 1,
              "data": store, "hidden": 16, "features": "logmel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "epochs.jsonl").write_text(json.dumps({"epoch": 1, "loss": 1.0, "val_wf1_clean": 0.5, "val_wf1_levels": [],
                                                     "weights": [], "gaps": [], "drawn": [], "seconds": 1.0}) + "\n")
    from sklearn.metrics import f1_score, recall_score

    scores = {"wf1": f1_score(labels, predictions, average="weighted"), "uar": recall_score(labels, predictions, average="macro"),
              "n": int(labels.size), "labels": labels.tolist(), "predictions": predictions.tolist()}
    (folder / "results.json").write_text(json.dumps({"conditions": {c: scores for c in CONDITIONS}}))
    return folder


def test_a_fold_study_pools_each_seed_over_the_folds_and_says_which_gaps_are_resolved(tmp_path):
    """Two stores (folds) x two seeds: a replicate is one seed over both folds, scored on the
    pooled utterances; the gap of a clearly better strategy is resolved, a tie is not."""
    from sklearn.metrics import f1_score

    from trainer.report import bootstrap_gap, replicate_score, replicates, table_gaps

    rng = np.random.default_rng(5)
    labels = {store: rng.integers(0, 4, 150) for store in ("fold0", "fold1")}
    runs, predictions = [], {}
    for strategy, accuracy in (("none", 0.45), ("fixed-snr", 0.45), ("metricaug", 0.8)):
        for store in ("fold0", "fold1"):
            for seed in (0, 1):
                y = labels[store]
                guess = np.where(rng.random(y.size) < accuracy, y, rng.integers(0, 4, y.size))
                predictions[strategy, store, seed] = guess
                runs.append(outcome_run(tmp_path / f"{store}-{strategy}-s{seed}", strategy, store, seed, y, guess))
    # a seed finished on one fold only is left out, and said so
    runs.append(outcome_run(tmp_path / "fold0-none-s2", "none", "fold0", 2, labels["fold0"], labels["fold0"]))
    loaded = load_runs(runs)
    by_label = {}
    for run in loaded:
        by_label.setdefault(run["label"], []).append(run)
    reps, left = replicates(by_label["None"])
    assert [[r["path"].name for r in rep] for rep in reps] == [["fold0-none-s0", "fold1-none-s0"], ["fold0-none-s1", "fold1-none-s1"]]
    assert [r["path"].name for r in left] == ["fold0-none-s2"]
    pooled = f1_score(np.concatenate([labels["fold0"], labels["fold1"]]),
                      np.concatenate([predictions["none", "fold0", 1], predictions["none", "fold1", 1]]), average="weighted")
    assert replicate_score(reps[1], "clean") == pytest.approx(pooled, abs=1e-12)

    md, _ = table2(loaded)
    assert md.splitlines()[0] == "| WF1 % | None (n=2, 2 folds) | Fixed SNR (n=2, 2 folds) | STOI-GMM (n=2, 2 folds) |"
    assert "Left out, their seed not finished on every store of the strategy: fold0-none-s2." in md

    none, fixed, metricaug = (replicates(by_label[c])[0] for c in ("None", "Fixed SNR", "STOI-GMM"))
    gap, low, high = bootstrap_gap(none, metricaug, "clean")
    expected = np.mean([replicate_score(r, "clean") for r in metricaug]) - np.mean([replicate_score(r, "clean") for r in none])
    assert gap == pytest.approx(expected) and 0 < low < gap < high
    gap, low, high = bootstrap_gap(none, fixed, "clean")
    assert low < 0 < high  # same accuracy: not resolved
    assert bootstrap_gap(none, none, "clean")[1:] == (0.0, 0.0)
    assert bootstrap_gap(none, [[r] for r in none[0]], "clean") is None  # not the same utterances

    gaps = table_gaps(loaded).splitlines()
    assert gaps[0] == "| WF1 gap, points | Fixed SNR − None | STOI-GMM − None | STOI-GMM − Fixed SNR |"
    clean = gaps[2].split(" | ")
    assert clean[0] == "| Clean" and not clean[1].startswith("**") and clean[2].startswith("**")


RECORDED = Path(__file__).parent / "data" / "recorded_runs"


def test_the_report_reads_files_only_and_writes_the_tables_of_the_model_running_report(tmp_path):
    """Recorded runs without checkpoints or store: the same Table 2, Table 3 and intervals as the
    earlier report that ran the models, in a process that never imports torch."""
    import subprocess
    import sys

    runs = sorted(p for p in RECORDED.iterdir() if p.is_dir() and p.name != "expected")
    assert not any((r / "best.pt").exists() for r in runs)
    code = ("import sys; from pathlib import Path; from trainer.report import write_report; "
            f"write_report([Path(p) for p in {[str(r) for r in runs]!r}], Path({str(tmp_path)!r})); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # no model, no device: torch is never imported
    for name in ("table2.md", "table2.csv", "table3.md", "table3.csv", "intervals.md"):
        assert (tmp_path / name).read_text() == (RECORDED / "expected" / name).read_text(), name


def test_a_report_over_runs_without_results_or_epochs_is_one_line(tmp_path):
    from shards.errors import InputError
    from trainer.report import write_report

    with pytest.raises(InputError, match="no run folders given"):
        write_report([], tmp_path / "out")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.json").write_text(json.dumps({"strategy": "none"}))
    with pytest.raises(InputError, match="no finished epoch") as err:
        write_report([fresh], tmp_path / "out")
    assert "\n" not in str(err.value)
    (fresh / "epochs.jsonl").write_text(json.dumps({"epoch": 1}) + "\n")
    with pytest.raises(InputError, match=r"1 run\(s\) have no results.json: .*trainer eval") as err:
        write_report([fresh], tmp_path / "out")
    old = record_run(tmp_path / "old-none", "none", [0.6] * 5, 0, 1)  # results without validation scores
    with pytest.raises(InputError, match="evaluate again with 'trainer eval"):
        write_report([old], tmp_path / "out")


def test_selection_tables_compare_the_rules_on_test_scores_recorded_every_epoch():
    """A constructed history: clean validation peaks at epoch 2 (test 0.40), pooled at epoch 4
    (test 0.60, the oracle): the pooled rule has no regret, the clean rule 20 points."""
    from trainer.report.selection import rule_outcome, selection_tables

    clean = [0.50, 0.70, 0.60, 0.55, 0.52, 0.51]
    pooled = [0.40, 0.42, 0.45, 0.60, 0.58, 0.57]
    test = [0.30, 0.40, 0.50, 0.60, 0.55, 0.50]
    epochs = [{"epoch": i + 1, "val_wf1_clean": c, "val_wf1_pooled": p,
               "test_wf1": {"clean": t + 0.1, "test_unseen": t - 0.1}}
              for i, (c, p, t) in enumerate(zip(clean, pooled, test))]
    by_pooled, by_clean = rule_outcome(epochs, "pooled"), rule_outcome(epochs, "clean")
    assert by_pooled["kept_epoch"] == 4 and by_pooled["kept"] == pytest.approx(0.60)
    assert by_clean["kept_epoch"] == 2 and by_clean["kept"] == pytest.approx(0.40)
    assert by_pooled["oracle"] == by_clean["oracle"] == pytest.approx(0.60)
    # pooled's 5 best are epochs 4, 5, 6, 3, 2 (test .60 .55 .50 .50 .40); clean's 2, 3, 4, 5, 6
    assert by_pooled["top_spread"] == pytest.approx(0.20) and by_clean["top_spread"] == pytest.approx(0.20)
    assert by_pooled["kept_by_condition"] == pytest.approx({"clean": 0.70, "test_unseen": 0.50})
    runs = [{"label": "STOI-GMM [pooled]", "epochs": epochs}, {"label": "None", "epochs": epochs[:3]},
            {"label": "not watched", "epochs": [{k: v for k, v in e.items() if k != "test_wf1"} for e in epochs]}]
    text = selection_tables(runs)
    assert "Runs with test scores after every epoch: 2." in text and "not watched" not in text
    assert "| STOI-GMM [pooled] | pooled | 1 | 6 | 4 (0) | 60.0 (0.0) | 60.0 (0.0) | 0.0 (0.0) |" in text
    assert "| STOI-GMM [pooled] | clean | 1 | 6 | 2 (0) | 40.0 (0.0) | 60.0 (0.0) | 20.0 (0.0) |" in text
    assert "| STOI-GMM [pooled] | pooled | 70.0 | 50.0 |" in text
    assert selection_tables(runs[2:]) == ""


def test_the_seed_aware_interval_holds_the_seed_variance(tmp_path):
    """Constructed runs whose seeds disagree (MetricAug's seed 0 far better than its seed 1):
    the interval that resamples seeds as well as utterances is wider than the utterance-only
    one and contains the gap of each seed alone; the report shows both. On two folds, a
    pseudo-replicate draws its seed per fold: still wider."""
    from trainer.report import bootstrap_gap, replicate_score, replicates, write_report

    rng = np.random.default_rng(11)
    labels = {store: rng.integers(0, 4, 200) for store in ("fold0", "fold1")}
    runs = []
    for strategy, accuracies in (("fixed-snr", (0.5, 0.5)), ("metricaug", (0.85, 0.45))):
        for store in ("fold0", "fold1"):
            for seed, accuracy in enumerate(accuracies):
                y = labels[store]
                guess = np.where(rng.random(y.size) < accuracy, y, (y + 1 + rng.integers(0, 3, y.size)) % 4)
                runs.append(outcome_run(tmp_path / f"{store}-{strategy}-s{seed}", strategy, store, seed, y, guess))
    loaded = load_runs(runs)
    none = replicates([r for r in loaded if r["config"]["strategy"] == "fixed-snr"])[0]
    metricaug = replicates([r for r in loaded if r["config"]["strategy"] == "metricaug"])[0]
    gap, low, high = bootstrap_gap(none, metricaug, "clean")
    _, seed_low, seed_high = bootstrap_gap(none, metricaug, "clean", seeds=True)
    assert seed_high - seed_low > 2 * (high - low)
    assert low < gap < high
    # one store: each seed's own gap lies inside the seed-aware interval, not the utterance-only one
    one = [[rep[0]] for rep in none], [[rep[0]] for rep in metricaug]
    _, low, high = bootstrap_gap(*one, "clean")
    _, seed_low, seed_high = bootstrap_gap(*one, "clean", seeds=True)
    base = np.mean([replicate_score(r, "clean") for r in one[0]])
    for rep in one[1]:
        alone = replicate_score(rep, "clean") - base
        assert seed_low <= alone <= seed_high and not low <= alone <= high
    intervals = (tmp_path / "report" / "intervals.md")
    write_report(runs, tmp_path / "report")
    text = intervals.read_text()
    assert "seeds and utterances resampled" in text and " · seeds [" in text

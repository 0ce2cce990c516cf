"""The ablations of MetricAug's feedback (uniform levels, a plain superset draw), the stabilised
feedback (paired loss gaps, gap smoothing) and the feedback's quality figures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shards.reader import open_store
from shards.vocab import SUPERSET_SUBSET, TRAIN
from trainer.cli import app
from trainer.protocol import loss_gaps, pearson, smooth, split_halves
from trainer.strategies import STRATEGIES, StrategyContext, UniformLevels, get_strategy
from trainer.weights import algorithm1

runner = CliRunner()


def run_args(store: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(store), "--out", str(out), "--workers", "0", "--quiet", "--batch-size", "16",
            "--no-eval", "--val-per-level", "12", *extra]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]


def test_uniform_keeps_one_over_k_whatever_the_gaps():
    strategy = UniformLevels()
    rng = np.random.default_rng(0)
    for k in (2, 5, 9):
        cases = [rng.normal(size=k) for _ in range(50)] + [np.zeros(k), np.full(k, -1.0), np.eye(k)[0] * 100]
        for gaps in cases:
            assert strategy.next_weights(list(gaps), [1.0 / k] * k, 0.05) == [1.0 / k] * k
    assert not strategy.adapts_weights and strategy.baseline and strategy.draws_levels


def test_superset_draws_n_mixes_uniformly_from_every_train_mix(demo_store):
    """Over many seeded epochs each level's share of the drawn mixes matches its share of the
    train superset (mixes without a level included), within 0.01 (about 4 binomial sd)."""
    from trainer.data import StoreData

    store = open_store(demo_store)
    index = store.level_index("stoi", "gmm")
    data = StoreData(store, index)
    train_clean = data.clean(TRAIN)
    ctx = StrategyContext(data=data, train_clean=train_clean, N=len(train_clean), K=index.n_levels, floor=0.05,
                          rng=lambda *parts: np.random.default_rng([3, *parts]))
    strategy = get_strategy("superset")
    strategy.prepare(ctx)
    mixes = store.table(["key"], filters=[("subset", "=", SUPERSET_SUBSET), ("split", "=", TRAIN)])["key"].to_pylist()
    level_of = {key: level for level in range(1, index.n_levels + 1) for key in index.members(TRAIN, level).key}
    expected = np.bincount([level_of.get(k, 0) for k in mixes], minlength=index.n_levels + 1) / len(mixes)
    counts = np.zeros(index.n_levels + 1)
    epochs = 300
    for epoch in range(1, epochs + 1):
        drawn = strategy.epoch_samples(ctx, epoch, [])
        keys = [drawn.samples.key(i) for i in range(len(drawn.samples))]
        clean, mixed = keys[:ctx.N], keys[ctx.N:]
        assert clean == [train_clean.key(i) for i in range(ctx.N)]
        assert len(mixed) == ctx.N == len(set(mixed)) and set(mixed) <= set(mixes)  # N distinct train mixes
        counts += np.bincount([level_of.get(k, 0) for k in mixed], minlength=index.n_levels + 1)
    share = counts / counts.sum()
    assert np.abs(share - expected).max() < 0.01, (share, expected)
    # the same seed and epoch draw the same mixes; another epoch draws others
    again = strategy.epoch_samples(ctx, 7, [])
    assert [again.samples.key(i) for i in range(len(again.samples))] == \
        [strategy.epoch_samples(ctx, 7, []).samples.key(i) for i in range(len(again.samples))]


class _Clips:
    """A clip source whose sample i is a constant waveform of value i (the model reads it)."""

    def __init__(self, n: int):
        self.keys = [f"s{i}" for i in range(n)]

    def audio(self, i: int) -> np.ndarray:
        return np.full(400, float(i), dtype=np.float32)


class _FixedLogits(torch.nn.Module):
    """Returns the constructed logits of each sample, found from the value its waveform holds."""

    def __init__(self, logits: np.ndarray):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(logits, dtype=torch.float32), requires_grad=False)

    def forward(self, feats, frames):
        return self.table[feats[:, 0, 0].round().long()]


def test_loss_gaps_from_constructed_logits():
    from trainer.data import SampleSet
    from trainer.predict import predict_with_loss

    # 2 clean utterances (labels 0, 1) and 3 mixes: two of utterance 0, one of utterance 1
    logits = np.array([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],   # the clean utterances
                       [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0],   # level 1: mixes of utterance 0
                       [0.0, 0.0, 3.0, 0.0]])                        # level 2: a mix of utterance 1
    labels = np.array([0, 1, 0, 0, 1])
    samples = SampleSet([_Clips(5)], np.zeros(5, np.int64), np.arange(5), labels, np.full(5, 400))
    featurize = lambda wavs, lengths: (wavs[:, :1, None], torch.ones(len(wavs), dtype=torch.long))  # noqa: E731
    predictions, losses = predict_with_loss(_FixedLogits(logits), featurize, samples, workers=0)

    def ce(row, label):  # cross-entropy by hand: log-sum-exp minus the label's logit
        return float(np.log(np.exp(logits[row]).sum()) - logits[row, label])

    assert predictions.tolist() == [0, 1, 0, 0, 2]
    assert losses == pytest.approx([ce(r, labels[r]) for r in range(5)], abs=1e-6)
    gaps = loss_gaps(losses[:2], [losses[2:4], losses[4:]], [np.array([0, 0]), np.array([1])])
    expected_1 = np.mean([ce(2, 0) - ce(0, 0), ce(3, 0) - ce(0, 0)])
    expected_2 = ce(4, 1) - ce(1, 1)
    assert gaps == pytest.approx([expected_1, expected_2], abs=1e-6)
    assert np.isnan(loss_gaps(losses[:2], [np.empty(0)], [np.empty(0, np.int64)])[0])  # a level without mixes


def test_smoothing_zero_is_the_gaps_and_beta_gives_the_moving_average():
    g = [[0.3, -0.1, 0.2], [0.1, 0.4, -0.2], [0.0, 0.2, 0.5]]
    h = None
    for gaps in g:
        h = smooth(h, gaps, 0.0)
        assert h == gaps  # bit for bit
    beta, h, by_hand = 0.6, None, np.zeros(3)
    for gaps in g:
        h = smooth(h, gaps, beta)
        by_hand = beta * by_hand + (1 - beta) * np.array(gaps)
        assert h == pytest.approx(by_hand.tolist(), abs=1e-15)
    # starting at 0 needs no bias correction: Algorithm 1 is blind to a positive scale
    corrected = by_hand / (1 - beta ** len(g))
    assert algorithm1(by_hand).tolist() == pytest.approx(algorithm1(corrected).tolist(), abs=1e-12)


def test_split_half_reliability_is_one_on_identical_halves_and_near_zero_on_shuffled_ones():
    from trainer.data import SampleSet
    from trainer.train import _half_gaps

    rng = np.random.default_rng(1)
    n, levels = 40, 5

    def level_set(labels):
        return SampleSet([_Clips(1)], np.zeros(labels.size, np.int64), np.zeros(labels.size, np.int64), labels,
                         np.ones(labels.size, np.int64))

    # utterance i and i + n are copies: each half sees the same outcomes
    clean_labels = np.tile(rng.integers(0, 4, n), 2)
    clean_pred = np.tile(rng.integers(0, 4, n), 2)
    clean_loss = np.tile(rng.random(n), 2)
    sources, sets, outcomes = [], [], []
    for k in range(levels):
        src = np.tile(np.arange(n), 2) + np.repeat([0, n], n)  # one mix of every utterance
        accuracy = 0.9 - 0.15 * k
        pred_first = np.where(rng.random(n) < accuracy, clean_labels[:n], rng.integers(0, 4, n))
        loss_first = rng.random(n) + k
        sources.append(src)
        sets.append(level_set(clean_labels[src]))
        outcomes.append((np.tile(pred_first, 2), np.tile(loss_first, 2)))
    halves = np.repeat([0, 1], n)
    a, b = (_half_gaps(clean_labels, (clean_pred, clean_loss), sets, outcomes, sources, halves == h) for h in (0, 1))
    for score in ("wf1", "uar", "loss"):
        assert a[score] == pytest.approx(b[score]) and pearson(a[score], b[score]) == pytest.approx(1.0)

    # independent random outcomes, halves drawn at random: the halves' agreement is chance
    rs = []
    for trial in range(200):
        labels = rng.integers(0, 4, 2 * n)
        sets, outcomes, sources = [], [], []
        for k in range(levels):
            src = np.arange(2 * n)
            sources.append(src)
            sets.append(level_set(labels))
            outcomes.append((rng.integers(0, 4, 2 * n), rng.random(2 * n)))
        half = split_halves([f"u{i}" for i in range(2 * n)], np.random.default_rng(trial))
        a, b = (_half_gaps(labels, (rng.integers(0, 4, 2 * n), rng.random(2 * n)), sets, outcomes, sources, half == h)
                for h in (0, 1))
        rs.append(pearson(a["loss"], b["loss"]))
    assert abs(np.mean(rs)) < 0.1 and np.std(rs) > 0.3


def test_runs_record_the_feedback_and_the_weights_follow_it(demo_store, tmp_path):
    """--gap-smoothing 0 gives today's weights bit for bit (Algorithm 1 of the epoch's gaps); B > 0
    Algorithm 1 of the moving average of the recorded gaps; every record carries the quality figures."""
    plain, smoothed = tmp_path / "plain", tmp_path / "smoothed"
    result = runner.invoke(app, run_args(demo_store, plain, "--max-epochs", "2"))
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, run_args(demo_store, smoothed, "--max-epochs", "3", "--gap-score", "loss",
                                         "--gap-smoothing", "0.7"))
    assert result.exit_code == 0, result.output
    rows = records(plain)
    for before, after in zip(rows, rows[1:]):
        assert after["weights"] == [float(w) for w in algorithm1(before["gaps"])]  # exactly
        assert before["feedback"] == before["gaps"]
        assert before["weights_l1"] == pytest.approx(np.abs(np.subtract(after["weights"], before["weights"])).sum())
    rows = records(smoothed)
    h = np.zeros(len(rows[0]["gaps"]))
    for before, after in zip(rows, rows[1:]):
        assert before["gaps"] == [0.0 if np.isnan(g) else g for g in before["val_loss_gaps"]]  # a level without mixes: 0
        h = 0.7 * h + 0.3 * np.array(before["gaps"])
        assert before["feedback"] == pytest.approx(h.tolist(), abs=1e-15)
        assert after["weights"] == pytest.approx(algorithm1(h).tolist(), abs=1e-12)
    for row in rows:
        assert set(row["gap_split_half_r"]) == {"wf1", "uar", "loss"}
        assert len(row["gap_halves"]["loss"]) == 2 and len(row["gap_halves"]["loss"][0]) == len(row["gaps"])
        assert "feedback_split_half_r" in row
    config = json.loads((smoothed / "config.json").read_text())
    assert config["gap_score"] == "loss" and config["gap_smoothing"] == 0.7
    # a resume with another smoothing is refused
    result = runner.invoke(app, run_args(demo_store, smoothed, "--max-epochs", "4", "--gap-score", "loss", "--resume"))
    assert result.exit_code == 2 and "gap_smoothing" in result.output


def test_the_ablations_train_and_their_runs_are_named_by_the_strategy(demo_store, tmp_path):
    from trainer.report.runs import strategy_label

    for name in ("uniform", "superset"):
        out = tmp_path / name
        result = runner.invoke(app, run_args(demo_store, out, "--strategy", name, "--max-epochs", "2"))
        assert result.exit_code == 0, result.output
        config = json.loads((out / "config.json").read_text())
        assert config["train_size_n"] == 2
        for row in records(out):
            assert row["samples"] == 2 * config["n_train"]
            if name == "uniform":
                assert row["weights"] == [1 / config["n_levels"]] * config["n_levels"] and row["weights_l1"] == 0
            else:
                assert row["weights"] == [] and row["drawn"] == []
        assert strategy_label(config) == {"uniform": "STOI-GMM uniform levels [pooled]",
                                          "superset": "Superset draw [pooled]"}[name]


def test_run_help_lists_the_ablations_and_the_feedback_options():
    result = runner.invoke(app, ["run", "--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in ("uniform", "superset", "--gap-smoothing", "loss"):
        assert name in text, name
    assert "--gap-score <wf1|uar|loss>" in text and "<none|fixed-snr|copypaste|superset|uniform|metricaug>" in text


def test_strategies_own_their_report_roles():
    """The report's baselines, Table 3 and weight plots follow the strategies' attributes."""
    assert [n for n, s in STRATEGIES.items() if s.baseline] == ["none", "fixed-snr", "copypaste", "superset", "uniform"]
    assert [n for n, s in STRATEGIES.items() if s.feeds_table3] == ["none"]
    assert [n for n, s in STRATEGIES.items() if s.adapts_weights] == ["metricaug"]
    metricaug = STRATEGIES["metricaug"]
    config = {"metric": "stoi", "quant": "gmm", "gap_score": "loss", "gap_smoothing": 0.8}
    assert metricaug.column_label(config) == "STOI-GMM LOSS-gap EMA 0.8"
    assert metricaug.variant_rank(config) == 2 and metricaug.variant_rank({"metric": "stoi", "quant": "gmm"}) == 0

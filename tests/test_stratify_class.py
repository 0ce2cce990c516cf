"""The class-stratified level draw (--stratify-class): the epoch's mixes keep the clean train
set's class prior whatever the level weights, and without the option the draw is the paper's."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shards.apportion import largest_remainder
from shards.reader import open_store
from shards.vocab import EMOTIONS, TRAIN
from trainer.cli import app
from trainer.protocol import STREAM_LEVEL_DRAW
from trainer.strategies import STRATEGIES, StrategyContext, get_strategy
from trainer.weights import plan_epoch_draw, plan_stratified_draw

runner = CliRunner()
C = len(EMOTIONS)


def weight_cases(K: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Extreme weights (all on one level, one level at the floor, the rest equal) and random ones."""
    cases = [np.eye(K)[k] for k in range(K)]
    cases += [np.where(np.arange(K) == k, 1 - 0.05 * (K - 1), 0.05) for k in range(K)]
    cases += [rng.dirichlet(np.full(K, 0.3)) for _ in range(40)]
    return cases


def test_every_epoch_draws_exactly_the_clean_class_counts_whatever_the_weights():
    """Levels with very different class mixes (level 1 mostly neutral, level 5 mostly sad, as STOI
    levels are) and some empty (level, class) cells: with n = N every epoch's mixes hold exactly the
    clean count of each class (tolerance 0), for extreme and random weights; within each class the
    levels follow the weights (largest remainder over the levels that hold the class)."""
    rng = np.random.default_rng(0)
    K = 5
    mix = np.array([[0.1, 0.2, 0.6, 0.1], [0.25, 0.25, 0.25, 0.25], [0.3, 0.3, 0.2, 0.2],
                    [0.2, 0.1, 0.2, 0.5], [0.0, 0.05, 0.05, 0.9]])  # level 5 holds no angry mix
    sizes = [400, 300, 300, 200, 60]
    level_labels = [rng.choice(C, size, p=p) for size, p in zip(sizes, mix)]
    class_counts = np.array([30, 25, 50, 15])  # the clean train set: N = 120
    N = int(class_counts.sum())
    cells = np.array([np.bincount(lab, minlength=C) for lab in level_labels])
    plain_deviation = 0.0
    for epoch, w in enumerate(weight_cases(K, rng)):
        draw = plan_stratified_draw(level_labels, N, w, class_counts, np.random.default_rng([5, epoch]))
        drawn = np.zeros((K, C), dtype=np.int64)
        for k, idx in enumerate(draw.indices):
            assert idx.size == draw.counts[k] and (idx < sizes[k]).all()
            drawn[k] = np.bincount(level_labels[k][idx], minlength=C)
        assert (drawn.sum(axis=0) == class_counts).all(), (w, drawn)  # the prior, exactly
        assert sum(draw.counts) == N
        for c in range(C):
            share = np.where(cells[:, c] > 0, w, 0.0)
            if share.sum() == 0:  # only levels of weight 0 hold the class: they share it equally
                share = (cells[:, c] > 0).astype(float)
            assert (drawn[:, c] == largest_remainder(int(class_counts[c]), share)).all()
        # the plain draw of the same weights re-weights the classes
        plain = plan_epoch_draw(sizes, N, w, np.random.default_rng([5, epoch]))
        classes = np.bincount(np.concatenate([level_labels[k][i] for k, i in enumerate(plain.indices)]), minlength=C)
        plain_deviation = max(plain_deviation, np.abs(classes / N - class_counts / N).max())
    assert plain_deviation > 0.3  # the test would see a draw that does not stratify


def test_a_cell_without_mixes_moves_its_share_to_the_class_s_other_levels_and_a_small_cell_repeats():
    level_labels = [np.array([0] * 50 + [1] * 50), np.array([1] * 3 + [0] * 0), np.array([0] * 40 + [1] * 40)]
    # level 2 holds no mix of class 0 and only 3 of class 1
    draw = plan_stratified_draw(level_labels, 100, [0.25, 0.5, 0.25], [60, 40, 0, 0], np.random.default_rng(1))
    drawn = np.array([np.bincount(lab[idx], minlength=C) for lab, idx in zip(level_labels, draw.indices)])
    assert drawn.sum(axis=0).tolist() == [60, 40, 0, 0]
    assert drawn[:, 0].tolist() == [30, 0, 30]  # class 0: level 2's half split by the other weights
    assert drawn[:, 1].tolist() == [10, 20, 10]  # class 1: by the weights, level 2 with replacement
    assert draw.with_replacement == [False, True, False]
    assert len(set(draw.indices[0].tolist())) == 40  # enough members: no repeats
    text = " ".join(draw.messages)
    assert "2 (angry)" in text and "level 2 happy (3 for 20)" in text


def test_a_class_no_level_holds_is_spread_over_the_others_and_said():
    level_labels = [np.array([0, 1] * 20), np.array([1] * 30)]
    draw = plan_stratified_draw(level_labels, 40, [0.5, 0.5], [10, 10, 20, 0], np.random.default_rng(2))
    drawn = sum(np.bincount(lab[idx], minlength=C) for lab, idx in zip(level_labels, draw.indices))
    assert drawn.tolist() == [20, 20, 0, 0] and "neutral" in draw.messages[0]


def context(store_path: Path, stratify: bool, seed: int = 3):
    from trainer.data import StoreData

    store = open_store(store_path)
    index = store.level_index("stoi", "gmm")
    data = StoreData(store, index)
    train_clean = data.clean(TRAIN)
    return StrategyContext(data=data, train_clean=train_clean, N=len(train_clean), K=index.n_levels, floor=0.05,
                           rng=lambda *parts: np.random.default_rng([seed, *parts]), stratify_class=stratify)


@pytest.mark.parametrize("name", ["metricaug", "uniform"])
def test_the_demo_store_s_stratified_epochs_keep_the_clean_prior(demo_store, name):
    """Over many seeded epochs with extreme and random weights, each epoch's drawn mixes hold the
    clean train set's class counts: the drawn class shares match the clean prior with tolerance 0,
    every epoch (the demo store has an empty level and levels of different class mixes)."""
    ctx = context(demo_store, True)
    strategy = get_strategy(name)
    strategy.prepare(ctx)
    prior = np.bincount(ctx.train_clean.labels, minlength=C)
    rng = np.random.default_rng(11)
    nonempty = np.array(ctx.data.train_level_sizes) > 0
    cases = [w for w in weight_cases(ctx.K, rng) if (w * nonempty).sum() > 0]  # all on an empty level: no draw
    assert len(cases) > 45
    for epoch, w in enumerate(cases, start=1):
        drawn = strategy.epoch_samples(ctx, epoch, list(w))
        mixes = drawn.samples.labels[ctx.N:]
        assert len(mixes) == ctx.N and (np.bincount(mixes, minlength=C) == prior).all(), (w, drawn.messages)


def test_without_the_option_the_draw_is_the_plain_level_draw(demo_store):
    """The default path is the paper's draw as before: plan_epoch_draw of the level sizes on the
    run's level-draw stream, nothing else."""
    ctx = context(demo_store, False)
    strategy = get_strategy("metricaug")
    strategy.prepare(ctx)
    w = [0.4, 0.3, 0.1, 0.1, 0.1][: ctx.K]
    for epoch in (1, 2, 17):
        drawn = strategy.epoch_samples(ctx, epoch, w)
        stream = np.random.default_rng([3, STREAM_LEVEL_DRAW, epoch])  # the run's level-draw stream
        plan = plan_epoch_draw(ctx.data.train_level_sizes, ctx.N, w, stream)
        expected = [ctx.train_clean.key(i) for i in range(ctx.N)]
        for k, idx in enumerate(plan.indices):
            level = ctx.data.level_samples(TRAIN, k + 1, idx)
            expected += [level.key(i) for i in range(len(level))]
        assert [drawn.samples.key(i) for i in range(len(drawn.samples))] == expected
        assert drawn.drawn == plan.counts


def test_the_option_is_listed_recorded_labelled_and_part_of_a_run_s_settings(demo_store, tmp_path):
    from trainer.report.runs import strategy_label

    help_text = " ".join(runner.invoke(app, ["run", "--help"], terminal_width=400).output.split())
    assert "--stratify-class" in help_text and "class prior" in help_text
    out = tmp_path / "stratified"
    args = ["run", "--data", str(demo_store), "--out", str(out), "--workers", "0", "--quiet", "--batch-size", "16",
            "--no-eval", "--val-per-level", "4", "--max-epochs", "1"]
    result = runner.invoke(app, [*args, "--stratify-class"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["stratify_class"] is True
    assert strategy_label(config) == "STOI-GMM · stratified [pooled]"
    assert strategy_label({**config, "strategy": "uniform"}) == "STOI-GMM uniform levels · stratified [pooled]"
    assert strategy_label({**config, "stratify_class": False}) == "STOI-GMM [pooled]"
    assert STRATEGIES["metricaug"].variant_rank(config) == 1
    record = json.loads((out / "epochs.jsonl").read_text().splitlines()[0])
    assert sum(record["drawn"]) == config["n_train"]
    # a resume without the option is another setting
    again = runner.invoke(app, [*args, "--max-epochs", "2", "--resume"])
    assert again.exit_code == 2 and "stratify_class" in again.output and again.output.count("\n") == 1
    # a strategy that draws no levels: one line, exit 2
    none = runner.invoke(app, [*args[:4], str(tmp_path / "none"), *args[5:], "--strategy", "none", "--stratify-class"])
    assert none.exit_code == 2 and none.output.count("\n") == 1 and "uniform, metricaug" in none.output

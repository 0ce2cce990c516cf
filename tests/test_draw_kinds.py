"""The superset draw kept to some distortion kinds (trainer run --strategy superset
--draw-kinds): arm E's noise-only draw on a superset of every kind. Every drawn mix is of a
kind asked for, read from the table's kind column (a store without it: the noise type); the
default is today's draw bit for bit; the option is recorded, labelled and refused in one line
where it cannot apply."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mixer.cli import app as prep_app
from shards.reader import open_store
from shards.vocab import SUPERSET_SUBSET, TABLE, TRAIN
from test_superset import make_tiny_corpus, superset_cmd
from trainer.cli import app
from trainer.protocol import STREAM_SUPERSET_DRAW
from trainer.strategies import STRATEGIES, StrategyContext, get_strategy, parse_draw_kinds

runner = CliRunner()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(a store of noise, music and babble mixes; a default store of noise and music, no kind column)."""
    root = tmp_path_factory.mktemp("draw-kinds")
    msp, musan = make_tiny_corpus(root, per_split=(6, 4, 0))
    built = []
    for name, extra in (("kinds", ("--kinds", "noise,music,babble")), ("plain", ())):
        result = runner.invoke(prep_app, superset_cmd(msp, musan, root / name, "--jobs", "1", "--metrics", "stoi",
                                                      *extra))
        assert result.exit_code == 0, result.output
        built.append(root / name / "msp")
    return built


def context(store: Path, draw_kinds: str = "", seed: int = 4) -> StrategyContext:
    from trainer.data import StoreData

    data = StoreData(open_store(store), None)
    train_clean = data.clean(TRAIN)
    return StrategyContext(data=data, train_clean=train_clean, N=len(train_clean), K=0, floor=0.05,
                           rng=lambda *parts: np.random.default_rng([seed, *parts]),
                           draw_kinds=parse_draw_kinds(draw_kinds))


def kind_of_key(store: Path) -> dict[str, str]:
    """The kind of every train superset mix, from the table (the noise type where no kind column)."""
    rows = pq.read_table(store / TABLE).to_pylist()
    return {r["key"]: r.get("kind") or r["noise_type"] for r in rows
            if r["subset"] == SUPERSET_SUBSET and r["split"] == TRAIN}


def drawn_keys(ctx: StrategyContext, epoch: int) -> list[str]:
    strategy = get_strategy("superset")
    strategy.prepare(ctx)
    samples = strategy.epoch_samples(ctx, epoch, []).samples
    return [samples.key(i) for i in range(ctx.N, len(samples))]


def test_every_drawn_mix_is_of_a_kind_asked_for_and_every_such_mix_can_be_drawn(stores):
    store = stores[0]
    kinds = kind_of_key(store)
    assert set(kinds.values()) == {"noise", "music", "babble"}  # the draw has something to leave out
    for wanted in ("noise,music", "babble", "music"):
        ctx = context(store, wanted)
        seen = set()
        for epoch in range(1, 40):
            keys = drawn_keys(ctx, epoch)
            assert len(keys) == ctx.N
            assert {kinds[k] for k in keys} <= set(wanted.split(","))
            seen.update(keys)
        assert seen == {k for k, kind in kinds.items() if kind in wanted.split(",")}  # 39 epochs reach them all


def test_without_the_option_the_draw_is_today_s_draw_bit_for_bit(stores):
    """Default off: N mixes chosen uniformly from every train superset mix on the run's
    superset-draw stream, as before the option existed."""
    for store in stores:
        ctx = context(store)
        data = ctx.data
        every = data.subset(SUPERSET_SUBSET, TRAIN)
        for epoch in (1, 2, 9):
            pick = np.random.default_rng([4, STREAM_SUPERSET_DRAW, epoch]).choice(len(every), ctx.N, replace=False)
            assert drawn_keys(ctx, epoch) == [every.key(i) for i in pick]


def test_a_store_without_the_kind_column_draws_by_noise_type(stores):
    plain = stores[1]
    assert "kind" not in pq.read_schema(plain / TABLE).names
    kinds = kind_of_key(plain)
    keys = drawn_keys(context(plain, "music"), 1)
    assert keys and {kinds[k] for k in keys} == {"music"}
    with pytest.raises(Exception, match="holds no train superset mix of kind babble .its kinds: noise, music"):
        drawn_keys(context(plain, "babble"), 1)


def test_the_kinds_are_recorded_once_each_in_registry_order():
    assert parse_draw_kinds("") == ""
    assert parse_draw_kinds("music, noise,music") == "noise,music"
    assert parse_draw_kinds("reverb+noise,babble,noise") == "noise,babble,reverb+noise"
    with pytest.raises(Exception, match="expected distortion kinds"):
        parse_draw_kinds("noise,,music")


def test_the_option_is_listed_recorded_labelled_and_refused_in_one_line(stores, tmp_path):
    from trainer.report.runs import strategy_label

    help_text = " ".join(runner.invoke(app, ["run", "--help"], terminal_width=400).output.split())
    assert "--draw-kinds" in help_text and "kind column" in help_text
    store = stores[0]
    out = tmp_path / "noise-only"
    args = ["run", "--data", str(store), "--out", str(out), "--strategy", "superset", "--workers", "0", "--quiet",
            "--batch-size", "4", "--no-eval", "--max-epochs", "1"]
    result = runner.invoke(app, [*args, "--draw-kinds", "music,noise"])
    assert result.exit_code == 0, result.output
    assert "of noise, music)" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["draw_kinds"] == "noise,music"
    assert strategy_label(config) == "Superset draw · noise, music only [pooled]"
    assert strategy_label({**config, "draw_kinds": ""}) == "Superset draw [pooled]"
    assert STRATEGIES["superset"].variant_rank(config) == 1 and STRATEGIES["superset"].variant_rank({}) == 0
    # a resume without the option is another setting
    again = runner.invoke(app, [*args, "--max-epochs", "2", "--resume"])
    assert again.exit_code == 2 and "draw_kinds" in again.output and again.output.count("\n") == 1
    # a kind the store does not hold, and a strategy that draws no superset mixes: one line, exit 2
    absent = runner.invoke(app, [*args[:4], str(tmp_path / "reverb"), *args[5:], "--draw-kinds", "noise,reverb"])
    assert absent.exit_code == 2 and absent.output.count("\n") == 1
    assert "--draw-kinds noise,reverb" in absent.output and "kind reverb (its kinds: noise, music, babble)" in absent.output
    none = runner.invoke(app, [*args[:4], str(tmp_path / "none"), *args[5:], "--strategy", "none",
                               "--draw-kinds", "noise"])
    assert none.exit_code == 2 and none.output.count("\n") == 1 and "the option is for superset" in none.output
    assert not (tmp_path / "reverb").exists() and not (tmp_path / "none").exists()

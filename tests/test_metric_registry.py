"""A metric added through the registry alone (shards.metrics.register_metric) reaches every
place a metric is used: the build's workers compute it, the table has its column, the
sample JSON its field, ``prep score`` fits its levels (in its own direction) and the level
index records its label and direction."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mixer.cli import app
from shards.levelindex import open_level_index
from shards.metrics import MetricSpec, metric_names, register_metric, unregister_metric
from shards.reader import open_store
from shards.store import table_schema
from shards.vocab import TABLE


def noise_energy_db(clean: np.ndarray, mixes: list[np.ndarray], fs: int) -> list[tuple[float, str]]:
    """The toy metric: energy of what the mix adds to the clean signal, in dB (lower is better)."""
    return [(float(10 * np.log10(np.mean((mix.astype(np.float64) - clean) ** 2) + 1e-12)), "") for mix in mixes]


TOY = MetricSpec("noisedb", function=f"{__name__}:noise_energy_db", label="Noise energy (dB)",
                 higher_is_better=False, column="noise_energy_db")


@pytest.fixture
def toy_metric():
    register_metric(TOY)
    yield TOY
    unregister_metric(TOY.name)


def test_registering_a_metric_adds_its_column_and_name(toy_metric):
    assert toy_metric.name in metric_names()
    names = table_schema().names
    assert names[-2:] == [toy_metric.column, "errors"]
    unregister_metric(toy_metric.name)
    assert toy_metric.column not in table_schema().names and toy_metric.name not in metric_names()
    register_metric(toy_metric)  # the fixture removes it again


def test_a_metric_registered_twice_differently_is_refused(toy_metric):
    register_metric(toy_metric)  # the same spec again: nothing happens
    with pytest.raises(ValueError, match="registered already"):
        register_metric(MetricSpec(toy_metric.name, function=f"{__name__}:noise_energy_db", label="other"))
    with pytest.raises(ValueError, match="column 'stoi'"):
        register_metric(MetricSpec("stoi2", function=f"{__name__}:noise_energy_db", label="x", column="stoi"))


def test_toy_metric_through_build_table_and_levels(toy_metric, tmp_path):
    runner = CliRunner()
    corpus = tmp_path / "corpus"
    steps = [
        ["demo-corpus", str(corpus), "--utterances-per-class", "8"],
        # two workers: the metric must reach processes that never saw the registration
        ["superset", "--corpus", "demo", "--root", str(corpus), "--out", str(tmp_path), "--bins", "3",
         "--metrics", f"stoi,{toy_metric.name}", "--jobs", "2", "--utts-per-shard", "4", "--quiet"],
        ["score", str(tmp_path / "demo"), "--metric", toy_metric.name, "--quant", "all", "--levels", "3",
         "--min-per-level", "1"],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"prep {' '.join(args)}: {result.output}"

    store = tmp_path / "demo"
    table = pq.read_table(store / TABLE)
    assert toy_metric.column in table.column_names and toy_metric.name not in table.column_names
    rows = table.to_pydict()
    mixes = np.array([s == "superset" for s in rows["subset"]])
    values = np.array(rows[toy_metric.column])
    assert mixes.sum() == 8 * 4 * 3 * 2 + 2 * 4 * 3 * 2  # (train 8 + validation 2) x 4 classes x 3 bins x 2 types
    assert np.all(np.isfinite(values[mixes])) and np.all(np.isnan(values[~mixes]))
    # louder noise at lower SNR: the toy metric falls as the SNR rises
    assert np.corrcoef(np.array(rows["snr_achieved"])[mixes], values[mixes])[0, 1] < -0.9
    key = rows["key"][int(np.flatnonzero(mixes)[0])]
    fields = open_store(store).read_fields([key])[0]
    assert fields[toy_metric.column] == pytest.approx(values[int(np.flatnonzero(mixes)[0])])

    for quant in ("gmm", "uniform"):
        path = store / "levels" / f"{toy_metric.name}-{quant}-k3.json"
        document = json.loads(path.read_text())
        assert document["metric_label"] == "Noise energy (dB)" and document["higher_is_better"] is False
        index = open_level_index(path)
        assert index.metric == toy_metric.name
        assert index.metric_label == "Noise energy (dB)" and index.higher_is_better is False
        assert sum(index.counts("train")) == 8 * 4 * 3 * 2
        means = [row["metric_mean"] for row in document["stats"]["train"] if row["count"]]
        # lower is better: level 1 (least distorted) holds the lowest noise energy
        assert means == sorted(means), (quant, means)
        members = index.members("train", 1)
        assert np.all(members.value <= index.members("train", 3).value.min())


def test_builtin_level_index_records_label_and_direction(demo_store):
    index = open_store(demo_store).level_index("stoi", "gmm")
    assert index.metric_label == "STOI" and index.higher_is_better is True
    assert index.summary["metric_label"] == "STOI"


def test_an_older_level_index_takes_the_builtin_label(demo_store, tmp_path):
    source = open_store(demo_store).level_index("stoi", "uniform")
    document = dict(source.summary)
    del document["metric_label"], document["higher_is_better"]
    (tmp_path / source.path.name).write_text(json.dumps(document))
    (tmp_path / source.members_path.name).write_bytes(source.members_path.read_bytes())
    index = open_level_index(tmp_path / source.path.name)
    assert index.metric_label == "STOI" and index.higher_is_better is True


def test_prep_score_refuses_an_unregistered_metric(demo_store):
    result = CliRunner().invoke(app, ["score", str(demo_store), "--metric", "noisedb"])
    assert result.exit_code == 2 and "'noisedb' is not one of 'stoi', 'pesq', 'fwsnrseg'" in result.output

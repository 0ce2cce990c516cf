"""Distortion levels: the quantizers (scoring.quantize) and ``prep score`` (scoring.levels)."""
from __future__ import annotations

import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.mixture import BayesianGaussianMixture

from scoring.levels import LevelSizeWarning, render_level_table, run_scoring
from scoring.quantize import (
    GMMQuantizer,
    UniformQuantizer,
    load_quantizer,
    make_quantizer,
    quantizer_from_dict,
)
from shards.atomic import sha256_file
from shards.errors import InputError, StoreError
from shards.levelindex import open_level_index
from shards.reader import open_store
from shards.vocab import STORE_FORMAT

K = 5


def metric_like(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Values shaped like each metric's distribution over a 0-30 dB superset."""
    rng = np.random.default_rng(seed)
    snr = rng.uniform(0, 30, n)
    if name == "stoi":
        return np.clip(0.55 + 0.43 * (1 - np.exp(-(snr + 3) / 8)) + rng.normal(0, 0.03, n), 0, 1)
    if name == "pesq":
        return np.clip(1.04 + 3.6 * (snr / 30) ** 1.5 + rng.normal(0, 0.3, n), 1.04, 4.64)
    return np.clip(0.8 * snr - 2 + rng.normal(0, 2.5, n), -10, 35)  # fwsnrseg


# ----------------------------------------------------------------------------------
# quantizers
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("quant", ["uniform", "gmm"])
def test_json_round_trip_predicts_the_same(quant, tmp_path):
    train = metric_like("stoi", 3000, seed=1)
    new = np.r_[metric_like("stoi", 1000, seed=2), -5.0, 0.0, 1.0, 7.0]
    quantizer = make_quantizer(quant).fit(train)
    text = quantizer.to_json()
    assert "NaN" not in text
    again = quantizer_from_dict(json.loads(text))
    assert type(again) is type(quantizer) and again.get_params() == quantizer.get_params()
    np.testing.assert_array_equal(again.predict(train), quantizer.predict(train))
    np.testing.assert_array_equal(again.predict(new), quantizer.predict(new))
    from_file = load_quantizer(quantizer.save(tmp_path / "q.json"))
    np.testing.assert_array_equal(from_file.predict(new), quantizer.predict(new))
    assert again.to_json() == text  # saving a loaded quantizer changes nothing


def test_gmm_round_trip_keeps_the_mixture_exactly():
    x = metric_like("pesq", 2000, seed=3)
    quantizer = GMMQuantizer().fit(x)
    again = GMMQuantizer.from_json(quantizer.to_json())
    X = x.reshape(-1, 1)
    np.testing.assert_array_equal(again.mixture_.predict_proba(X), quantizer.mixture_.predict_proba(X))


@pytest.mark.parametrize("metric", ["stoi", "pesq", "fwsnrseg"])
@pytest.mark.parametrize("quant", ["uniform", "gmm"])
def test_level_one_is_the_highest_metric(metric, quant):
    x = metric_like(metric, 4000, seed=4)
    levels = make_quantizer(quant).fit_predict(x)
    assert set(np.unique(levels)) <= set(range(1, K + 1))
    assert levels[np.argmax(x)] == 1 and levels[np.argmin(x)] == K
    means = [x[levels == lv].mean() for lv in range(1, K + 1) if np.any(levels == lv)]
    assert np.all(np.diff(means) < 0), means
    if quant == "gmm":
        q = GMMQuantizer().fit(x)
        assert np.all(np.diff(q.level_means_) < 0)


@pytest.mark.parametrize("n", [5, 7, 13, 1001, 1003])
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_uniform_sizes_differ_by_at_most_one(n, decimals):
    x = metric_like("fwsnrseg", n, seed=n)
    if decimals is not None:
        x = np.round(x, decimals)  # many ties, some across level cuts
    quantizer = UniformQuantizer(K).fit(x)
    sizes = np.bincount(quantizer.labels_, minlength=K + 1)[1:]
    assert sizes.sum() == n and sizes.max() - sizes.min() <= 1
    assert list(sizes) == sorted(sizes, reverse=True)  # the extra samples go to the first levels
    np.testing.assert_array_equal(sizes, quantizer.level_sizes_)
    # ranks descending: every value in level l is >= every value in level l + 1
    for lv in range(1, K):
        assert x[quantizer.labels_ == lv].min() >= x[quantizer.labels_ == lv + 1].max()


def test_uniform_ties_follow_input_order():
    x = np.full(12, 0.5)
    quantizer = UniformQuantizer(K).fit(x)
    np.testing.assert_array_equal(quantizer.labels_, [1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5])
    # all tied: every boundary is 0.5 and predict puts 0.5 in the least distorted level
    np.testing.assert_array_equal(quantizer.predict([0.5, 0.6, 0.4]), [1, 1, K])


def test_uniform_boundaries_and_their_side():
    x = np.arange(10, dtype=float)  # levels {9,8} {7,6} {5,4} {3,2} {1,0}
    quantizer = UniformQuantizer(K).fit(x)
    np.testing.assert_array_equal(quantizer.boundaries_, [7.5, 5.5, 3.5, 1.5])
    np.testing.assert_array_equal(quantizer.predict(x), quantizer.labels_)
    # a value equal to a boundary falls in the less distorted level (smaller number)
    np.testing.assert_array_equal(quantizer.predict([7.5, 7.4999, 100.0, -100.0, 1.5]), [1, 2, 1, 5, 4])


def test_gmm_reproduces_sklearn_with_the_authors_settings():
    x = metric_like("stoi", 5000, seed=5)
    direct = BayesianGaussianMixture(n_components=5, random_state=2022, max_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        components = direct.fit(x.reshape(-1, 1)).predict(x.reshape(-1, 1))
    # the component with the highest mean is level 1
    rank = np.argsort(np.argsort(-direct.means_.ravel(), kind="stable"), kind="stable") + 1
    quantizer = GMMQuantizer()
    assert (quantizer.n_levels, quantizer.random_state, quantizer.max_iter) == (5, 2022, 100)
    levels = quantizer.fit_predict(x)
    np.testing.assert_array_equal(quantizer.predict_component(x), components)  # sklearn's own mixture
    np.testing.assert_array_equal(quantizer.component_order_, np.argsort(-direct.means_.ravel(), kind="stable"))
    # levels are value intervals cut where neighbouring posteriors cross: they agree with
    # sklearn's most probable component wherever that assignment is itself contiguous
    agree = np.mean(levels == rank[components])
    assert agree > 0.95, agree


def test_gmm_seed_and_component_count_are_options():
    x = metric_like("fwsnrseg", 2000, seed=6)
    quantizer = GMMQuantizer(n_levels=3, random_state=7, max_iter=50).fit(x)
    assert quantizer.mixture_.n_components == 3 and quantizer.mixture_.random_state == 7
    assert set(np.unique(quantizer.predict(x))) <= {1, 2, 3}


@pytest.mark.parametrize("quant", ["uniform", "gmm"])
def test_quantizers_refuse_nan(quant):
    with pytest.raises(ValueError, match="finite"):
        make_quantizer(quant).fit(np.array([0.1, np.nan, 0.3, 0.4, 0.5, 0.6]))
    fitted = make_quantizer(quant).fit(metric_like("stoi", 200))
    with pytest.raises(ValueError, match="finite"):
        fitted.predict([0.5, np.inf])
    with pytest.raises(ValueError):
        make_quantizer("median")


# ----------------------------------------------------------------------------------
# prep score on a small synthetic store
# ----------------------------------------------------------------------------------
LABELS = ("angry", "happy", "neutral", "sad")
TEST_SUBSETS = [("test_snr0", 0.0, "noise"), ("test_snr0", 0.0, "music"), ("test_snr5", 5.0, "noise"),
                ("test_snr5", 5.0, "music"), ("test_snr10", 10.0, "noise"), ("test_snr10", 10.0, "music")]


def seal_store(store: Path) -> None:
    """Write the manifest a build would (table checksum, every shard's size), so that the
    store opens; call again after changing the table on purpose."""
    shards = [{"name": p.stem, "path": f"shards/{p.name}", "bytes": p.stat().st_size}
              for p in sorted((store / "shards").glob("*.tar"))]
    manifest = {"format": STORE_FORMAT, "table": {"file": "metadata.parquet", "sha256": sha256_file(store / "metadata.parquet")},
                "shards": shards, "samples": pq.read_metadata(store / "metadata.parquet").num_rows}
    (store / "manifest.json").write_text(json.dumps(manifest))


def score_store(store, metric, **kwargs) -> list[Path]:
    return [p for r in run_scoring(store, metric, **kwargs) for p in r.paths]


def build_store(store: Path, seed: int = 0, n_train: int = 24, n_val: int = 6, n_test: int = 6,
                nan_keys: tuple[str, ...] = (), shuffle: bool = False) -> pa.Table:
    """A store with real tar shards (random FLAC-sized payloads) and its metadata.parquet."""
    rng = np.random.default_rng(seed)
    rows = []
    utts = [(f"utt{i:03d}", "train" if i < n_train else "validation" if i < n_train + n_val else "test")
            for i in range(n_train + n_val + n_test)]
    for u, (utt_id, split) in enumerate(utts):
        rows.append(dict(key=f"{utt_id}-clean", subset="clean", split=split, utt_id=utt_id, noise_type="", snr=np.nan))
        if split == "test":
            for subset, snr, kind in TEST_SUBSETS:
                rows.append(dict(key=f"{utt_id}-{subset}-{kind}", subset=subset, split="test", utt_id=utt_id,
                                 noise_type=kind, snr=snr))
            rows.append(dict(key=f"{utt_id}-unseen", subset="test_unseen", split="test", utt_id=utt_id,
                             noise_type="unseen", snr=float(rng.uniform(0, 30))))
        else:
            for b in range(15):
                for kind in ("noise", "music"):
                    rows.append(dict(key=f"{utt_id}-b{b:02d}-{kind}", subset="superset", split=split, utt_id=utt_id,
                                     noise_type=kind, snr=float(rng.uniform(2 * b, 2 * b + 2))))
    for i, row in enumerate(rows):
        row["label"] = LABELS[int(row["utt_id"][3:]) % 4]
        row["shard"] = f"shards/{row['subset']}-{i // 100:06d}.tar"

    # the shards: each member's FLAC payload is random bytes we can recognise later
    payloads = {}
    (store / "shards").mkdir(parents=True, exist_ok=True)
    for shard in sorted({r["shard"] for r in rows}):
        with tarfile.open(store / shard, "w", format=tarfile.USTAR_FORMAT) as tar:
            for row in (r for r in rows if r["shard"] == shard):
                for ext, data in (("flac", rng.bytes(int(rng.integers(50, 400)))), ("json", b"{}")):
                    info = tarfile.TarInfo(f"{row['key']}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    if ext == "flac":
                        payloads[row["key"]] = data
        with tarfile.open(store / shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                row = next(r for r in rows if r["key"] == key)
                row[f"{ext}_offset"], row[f"{ext}_size"] = member.offset_data, member.size

    n = len(rows)
    snr = np.array([r["snr"] for r in rows])
    is_mix = np.array([r["subset"] != "clean" for r in rows])
    s = np.nan_to_num(snr, nan=0.0)
    metrics = {
        "stoi": np.clip(0.55 + 0.43 * (1 - np.exp(-(s + 3) / 8)) + rng.normal(0, 0.03, n), 0, 1),
        "pesq": np.clip(1.04 + 3.6 * (s / 30) ** 1.5 + rng.normal(0, 0.3, n), 1.04, 4.64),
        "fwsnrseg": np.clip(0.8 * s - 2 + rng.normal(0, 2.5, n), -10, 35),
    }
    keys = [r["key"] for r in rows]
    for name, values in metrics.items():
        values[~is_mix] = np.nan
        for key in nan_keys:
            values[keys.index(key)] = np.nan
    columns = {
        "key": pa.array(keys),
        "subset": pa.array([r["subset"] for r in rows]),
        "split": pa.array([r["split"] for r in rows]),
        "shard": pa.array([r["shard"] for r in rows]),
        "flac_offset": pa.array([r["flac_offset"] for r in rows], pa.int64()),
        "flac_size": pa.array([r["flac_size"] for r in rows], pa.int64()),
        "json_offset": pa.array([r["json_offset"] for r in rows], pa.int64()),
        "json_size": pa.array([r["json_size"] for r in rows], pa.int64()),
        "utt_id": pa.array([r["utt_id"] for r in rows]),
        "speaker": pa.array(["spk"] * n),
        "label": pa.array([r["label"] for r in rows]),
        "noise_type": pa.array([r["noise_type"] for r in rows]),
        "noise_file": pa.array([""] * n),
        "noise_offset": pa.array(np.zeros(n, np.int64)),
        "snr_target": pa.array(snr),
        "snr_achieved": pa.array(snr + np.where(is_mix, 0.001, np.nan)),
        "gain": pa.array(np.ones(n)),
        "num_samples": pa.array(np.full(n, 16000, np.int64)),
        **{name: pa.array(values) for name, values in metrics.items()},
        "errors": pa.array([""] * n),
    }
    table = pa.table(columns)
    if shuffle:
        table = table.take(pa.array(rng.permutation(n)))
    pq.write_table(table, store / "metadata.parquet")
    seal_store(store)
    (store / "payloads.json").write_text(json.dumps({k: v.hex() for k, v in payloads.items()}))
    return table


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "demo"
    build_store(path, nan_keys=("utt000-b03-noise", "utt001-b00-music", "utt025-b01-noise", "utt031-test_snr5-music"))
    return path


@pytest.fixture(scope="module")
def scored(store) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LevelSizeWarning)
        results = run_scoring(store, "stoi", quant="all")
    return {r.summary["quant"]: r for r in results}


def test_score_store_writes_json_parquet_png(store, scored):
    for quant in ("gmm", "uniform"):
        paths = scored[quant].paths
        assert [p.name for p in paths] == [f"stoi-{quant}-k5.json", f"stoi-{quant}-k5.parquet", f"stoi-{quant}-k5.png"]
        assert all(p.parent == store / "levels" and p.stat().st_size > 0 for p in paths)
        assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        index = open_level_index(paths[0])
        assert index.groups == ["train", "validation", "test_snr0", "test_snr5", "test_snr10", "test_unseen"]
        table = render_level_table(index.summary)
        assert table.splitlines()[0].startswith(f"stoi / {quant} / K=5") and len(table.splitlines()) == 5 + 3 + 6
        class_header = table.splitlines()[7]
        assert class_header.split()[:3] == ["class", "%", "train"] and "validation sad" in class_header


def test_score_store_is_idempotent(store, scored):
    before = {p: p.read_bytes() for r in scored.values() for p in r.paths}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LevelSizeWarning)
        paths = score_store(store, "stoi", quant="all")
    assert sorted(paths) == sorted(before)
    for path in paths:
        if path.suffix != ".png":
            assert path.read_bytes() == before[path], path


def test_levels_do_not_depend_on_row_order(tmp_path, scored):
    """Rows are processed in key order: a shuffled table gives the same index."""
    build_store(tmp_path / "demo", shuffle=True,
                nan_keys=("utt000-b03-noise", "utt001-b00-music", "utt025-b01-noise", "utt031-test_snr5-music"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LevelSizeWarning)
        (result,) = run_scoring(tmp_path / "demo", "stoi", quant="gmm")
    mine = json.loads(result.paths[0].read_text())
    reference = json.loads(scored["gmm"].paths[0].read_text())
    for doc in (mine, reference):
        del doc["store"]["metadata_sha256"]
    assert mine == reference


def test_nan_metrics_are_left_out_and_counted(store, scored):
    table = pq.read_table(store / "metadata.parquet")
    n_train = sum(1 for s, sp in zip(table["subset"].to_pylist(), table["split"].to_pylist()) if s == "superset" and sp == "train")
    for quant, result in scored.items():
        summary = result.summary
        assert summary["missing"] == {"train": 2, "validation": 1, "test_snr0": 0, "test_snr5": 1,
                                      "test_snr10": 0, "test_unseen": 0}
        assert summary["fit"] == {"subset": "superset", "split": "train", "count": n_train - 2, "missing": 2}
        assert summary["quantizer"]["fitted"]["n_fit_"] == n_train - 2
        index = open_level_index(result.paths[0])
        listed = [k for g in index.groups for lv in range(1, 6) for k in index.members(g, lv).key]
        assert "utt000-b03-noise" not in listed and "utt031-test_snr5-music" not in listed
        assert "utt031-test_snr5-noise" in listed
        n_mix = sum(1 for s in table["subset"].to_pylist() if s != "clean")
        assert len(listed) == len(set(listed)) == n_mix - 4
        assert all(not k.endswith("-clean") for k in listed)
        assignments = pq.read_table(result.paths[1])
        assert assignments.num_rows == n_mix - 4 and sorted(assignments["key"].to_pylist()) == sorted(listed)


def test_index_entries_resolve_to_the_right_samples(store, scored):
    table = pq.read_table(store / "metadata.parquet")
    by_key = {row["key"]: row for row in table.to_pylist()}
    payloads = json.loads((store / "payloads.json").read_text())
    for result in scored.values():
        index = open_level_index(result.paths[0])
        quantizer = quantizer_from_dict(index.summary["quantizer"])
        reader = open_store(store)
        for group in index.groups:
            counts = index.counts(group)
            for level in range(1, index.n_levels + 1):
                members = index.members(group, level)
                assert len(members) == counts[level - 1]
                assert members.key == sorted(members.key)
                for i, key in enumerate(members.key):
                    row = by_key[key]
                    assert (members.label[i], members.utt_id[i]) == (row["label"], row["utt_id"])
                    assert members.value[i] == row["stoi"]
                # the store reads each member's audio bytes through the level members
                clips = reader.clips(members)
                assert [clips.read_bytes(i).hex() for i in range(len(clips))] == [payloads[k] for k in members.key]
                for i, key in enumerate(members.key):
                    row = by_key[key]
                    if group != "train" or result.summary["quant"] == "gmm":
                        # outside the uniform train ranking, levels come from the saved quantizer
                        assert quantizer.predict([row["stoi"]])[0] == level


def test_level_statistics_and_uniform_train_sizes(store, scored):
    uniform = scored["uniform"].summary
    train_counts = [row["count"] for row in uniform["stats"]["train"]]
    assert max(train_counts) - min(train_counts) <= 1
    for quant, result in scored.items():
        rows = result.summary["stats"]["train"]
        means = [row["metric_mean"] for row in rows if row["count"]]
        assert means == sorted(means, reverse=True)
        for row in rows:
            if row["count"]:
                assert row["metric_min"] <= row["metric_mean"] <= row["metric_max"]
                assert abs(sum(row["noise_share"].values()) - 1) < 1e-9
                assert set(row["noise_share"]) == {"music", "noise", "unseen"}
                assert row["noise_share"]["unseen"] == 0
        unseen = result.summary["stats"]["test_unseen"]
        assert all(row["noise_share"]["unseen"] == 1 for row in unseen if row["count"])
        # each level's class shares are those of its members
        members = pq.read_table(result.paths[1]).to_pylist()
        for group in ("train", "validation"):
            for row in result.summary["stats"][group]:
                labels = [m["label"] for m in members if m["group"] == group and m["level"] == row["level"]]
                for label, share in row["label_share"].items():
                    assert share == (pytest.approx(labels.count(label) / len(labels)) if labels else None)


def test_small_levels_warn(store, tmp_path):
    with pytest.warns(LevelSizeWarning, match="sample it with replacement"):
        (result,) = run_scoring(store, "pesq", quant="uniform", min_train_per_level=10_000, out_dir=tmp_path)
    assert len(result.summary["warnings"]) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", LevelSizeWarning)
        run_scoring(store, "pesq", quant="uniform", min_train_per_level=1, out_dir=tmp_path)


@pytest.mark.parametrize("metric", ["stoi", "pesq", "fwsnrseg"])
def test_every_metric_puts_level_one_on_top(store, tmp_path, metric):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LevelSizeWarning)
        results = run_scoring(store, metric, quant="all", out_dir=tmp_path)
    for result in results:
        rows = result.summary["stats"]["train"]
        assert rows[0]["metric_max"] == max(r["metric_max"] for r in rows if r["count"])
        nonempty = [r for r in rows if r["count"]]
        assert nonempty[-1]["metric_min"] == min(r["metric_min"] for r in nonempty)
        snr = [r["snr_mean"] for r in nonempty]
        assert snr[0] > snr[-1]  # less distorted levels hold the higher SNRs


def test_pesq_failure_value_is_left_out(tmp_path):
    build_store(tmp_path / "demo")
    table = pq.read_table(tmp_path / "demo" / "metadata.parquet")
    pesq = table["pesq"].to_numpy().copy()
    pesq[np.flatnonzero(np.array(table["subset"].to_pylist()) == "superset")[:3]] = -1.0
    table = table.set_column(table.schema.get_field_index("pesq"), "pesq", pa.array(pesq))
    pq.write_table(table, tmp_path / "demo" / "metadata.parquet")
    seal_store(tmp_path / "demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LevelSizeWarning)
        (result,) = run_scoring(tmp_path / "demo", "pesq", quant="uniform")
    assert result.summary["missing"]["train"] == 3


def test_user_errors_raise_input_error(tmp_path, store):
    with pytest.raises(InputError, match="store directory not found"):
        score_store(tmp_path / "missing", "stoi")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="no manifest.json"):
        score_store(tmp_path / "empty", "stoi")
    with pytest.raises(InputError, match="--metric"):
        score_store(store, "sisdr")
    with pytest.raises(InputError, match="--quant"):
        score_store(store, "stoi", quant="kmeans")

    table = pq.read_table(store / "metadata.parquet")
    all_nan = tmp_path / "all_nan"
    all_nan.mkdir()
    idx = table.schema.get_field_index("stoi")
    pq.write_table(table.set_column(idx, "stoi", pa.array(np.full(table.num_rows, np.nan))), all_nan / "metadata.parquet")
    seal_store(all_nan)
    with pytest.raises(InputError, match="no finite 'stoi'"):
        score_store(all_nan, "stoi")
    no_column = tmp_path / "no_column"
    no_column.mkdir()
    pq.write_table(table.drop_columns(["fwsnrseg"]), no_column / "metadata.parquet")
    seal_store(no_column)
    with pytest.raises(InputError, match="missing column.*fwsnrseg"):
        score_store(no_column, "fwsnrseg")
    with pytest.raises(InputError, match="not a level index"):
        (tmp_path / "bad.json").write_text("{}")
        open_level_index(tmp_path / "bad.json")


def test_cli_prints_the_table_and_exits_2_on_user_errors(store, tmp_path):
    import typer
    from typer.testing import CliRunner

    from scoring.cli_score import score

    app = typer.Typer()
    app.command("score")(score)
    app.command("other")(lambda: None)  # a multi-command app, like prep
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(store), "--metric", "fwsnrseg", "--quant", "uniform",
                                 "--levels", "4", "--out-dir", str(tmp_path), "--min-per-level", "100000"])
    assert result.exit_code == 0, result.output
    assert "fwsnrseg / uniform / K=4" in result.output
    assert f"wrote {tmp_path / 'fwsnrseg-uniform-k4.json'}" in result.output
    assert "warning: fwsnrseg-uniform-k4: level 1 holds" in result.output
    assert (tmp_path / "fwsnrseg-uniform-k4.png").is_file()
    missing = runner.invoke(app, ["score", str(tmp_path / "nope"), "--metric", "stoi"])
    assert missing.exit_code == 2 and "error: " in missing.output


def test_a_store_that_does_not_match_its_manifest_is_refused(tmp_path):
    build_store(tmp_path / "demo")
    run_scoring(tmp_path / "demo", "stoi", quant="uniform", plot=False)  # sound: scores
    table = pq.read_table(tmp_path / "demo" / "metadata.parquet")
    pq.write_table(table.slice(1), tmp_path / "demo" / "metadata.parquet")  # a row lost after the build
    with pytest.raises(StoreError, match="metadata.parquet differs.*prep verify"):
        run_scoring(tmp_path / "demo", "stoi", quant="uniform", plot=False)
    build_store(tmp_path / "demo")
    shard = sorted((tmp_path / "demo" / "shards").glob("*.tar"))[0]
    shard.unlink()
    with pytest.raises(StoreError, match=f"{shard.name} is missing"):
        run_scoring(tmp_path / "demo", "stoi", quant="uniform", plot=False)


def test_level_members_file_is_checked_and_read_by_level(store, scored):
    index = open_level_index(scored["gmm"].paths[0])
    whole = index.assignments()
    for group in index.groups:
        for level in range(1, index.n_levels + 1):
            members = index.members(group, level)
            expected = whole.filter(pa.compute.and_(pa.compute.equal(whole["group"], group),
                                                    pa.compute.equal(whole["level"], level)))
            assert sorted(members.key) == sorted(expected["key"].to_pylist()) == members.key
    document = json.loads(index.path.read_text())
    assert "members" not in document and document["members_rows"] == whole.num_rows
    assert len(index.path.read_bytes()) < 20_000  # the JSON holds no members, whatever the store size
    damaged = tmp_path_copy = index.path.parent / "copy"
    damaged.mkdir(exist_ok=True)
    for path in scored["gmm"].paths[:2]:
        (tmp_path_copy / path.name).write_bytes(path.read_bytes())
    members_copy = tmp_path_copy / scored["gmm"].paths[1].name
    pq.write_table(pq.read_table(members_copy).slice(1), members_copy)
    with pytest.raises(InputError, match="sha256 differs"):
        open_level_index(tmp_path_copy / scored["gmm"].paths[0].name)


@pytest.mark.parametrize("quant", ["uniform", "gmm"])
def test_quantizers_are_scikit_learn_estimators(quant):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    quantizer = make_quantizer(quant, n_levels=3)
    with pytest.raises(NotFittedError):
        quantizer.predict([0.5])
    values = metric_like("stoi", 300)
    fitted = quantizer.fit(values)
    twin = clone(fitted)  # same hyper-parameters, no fitted state
    assert twin.get_params() == fitted.get_params() and not hasattr(twin, "n_fit_")
    assert np.array_equal(twin.fit(values).predict(values), fitted.predict(values))
    twin.set_params(n_levels=4)
    assert twin.fit(values).predict(values).max() == 4
    with pytest.raises(ValueError):
        twin.set_params(bins=4)
    assert sorted(set(fitted.fit_predict(values).tolist())) == [1, 2, 3]



def assert_contiguous_levels(values: np.ndarray, levels: np.ndarray, k: int) -> None:
    """Level 1 holds the highest values and adjacent non-empty levels do not overlap."""
    present = [lv for lv in range(1, k + 1) if np.any(levels == lv)]
    assert present[0] == levels[np.argmax(values)]
    for upper, lower in zip(present[:-1], present[1:]):
        assert upper < lower
        assert values[levels == lower].max() <= values[levels == upper].min(), (upper, lower)


@pytest.mark.parametrize("metric", ["stoi", "pesq", "fwsnrseg"])
@pytest.mark.parametrize("quant", ["uniform", "gmm"])
def test_levels_are_ordered_value_intervals_for_every_k_and_seed(metric, quant):
    x = metric_like(metric, 1500, seed=11)
    for k in range(2, 11):
        for seed in ((0, 10, 2022) if quant == "gmm" else (0,)):
            params = {"random_state": seed} if quant == "gmm" else {}
            quantizer = make_quantizer(quant, n_levels=k, **params)
            levels = quantizer.fit(x).predict(x)
            assert_contiguous_levels(x, levels, k)
            fresh = metric_like(metric, 300, seed=12)  # new values are placed by the same intervals
            combined = np.concatenate([x, fresh])
            assert_contiguous_levels(combined, np.concatenate([levels, quantizer.predict(fresh)]), k)


def test_a_wide_component_cannot_take_both_tails():
    """Two narrow clusters inside one wide spread: assigning by the most probable component
    lets the wide component's level sit on both sides of a narrow one; intervals do not."""
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(2.0, 0.05, 800), rng.normal(3.0, 0.05, 800), rng.normal(2.5, 1.0, 600)])
    quantizer = GMMQuantizer(n_levels=4, random_state=0).fit(x)
    by_component = quantizer.level_of_component_[quantizer.predict_component(x)]
    with pytest.raises(AssertionError):
        assert_contiguous_levels(x, by_component, 4)  # the flaw being fixed
    levels = quantizer.predict(x)
    assert_contiguous_levels(x, levels, 4)
    assert set(levels[x > 4.0]) == {1} and set(levels[x < 1.0]) == {4}


def test_empty_levels_and_convergence_are_reported_with_advice(store, tmp_path):
    with pytest.warns(LevelSizeWarning) as caught:
        (result,) = run_scoring(store, "stoi", quant="gmm", n_levels=10, max_iter=2, out_dir=tmp_path,
                                min_train_per_level=1, plot=False)
    text = " ".join(str(w.message) for w in caught)
    assert "did not converge in 2 iterations" in text and "--max-iter" in text
    counts = [row["count"] for row in result.summary["stats"]["train"]]
    if 0 in counts:
        assert "holds no train samples" in text and "fewer --levels" in text
    rendered = render_level_table(result.summary)
    assert "not converged after 2 iterations" in rendered

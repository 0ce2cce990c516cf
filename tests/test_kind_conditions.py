"""The other distortion kinds past the superset: levels across kinds (``prep score`` shows
each level's share of each kind, the plot colours them), the test conditions per kind
(``prep testsets --kinds``: unseen rooms, babble of the test split's other speakers, far
field; Table 2 names them from the registry), the static baseline per kind (``prep fixed-snr
--kinds``: fixed rooms by a stated rule), and the defaults byte for byte as before."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mixer.cli import app
from shards.reader import open_store
from shards.vocab import MANIFEST, SOURCE_SUBSETS, TABLE
from test_distortions import _synthetic_rirs
from earlier_code import prep_at, store_digests
from test_superset import SR, make_tiny_corpus, superset_cmd

runner = CliRunner()
TEST_KINDS = "babble,reverb,reverb+noise"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(store: Path) -> list[dict]:
    return pq.read_table(store / TABLE).to_pylist()


def _stage(name: str, msp: Path, musan: Path, out: Path, *extra: str) -> str:
    result = runner.invoke(app, [name, "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan), "--out",
                                 str(out), "--utts-per-shard", "2", "--jobs", "1", "--quiet", "--metrics", "stoi",
                                 *extra])
    assert result.exit_code == 0, result.output
    return result.output


def _unseen_folder(root: Path) -> Path:
    rng = np.random.default_rng(3)
    root.mkdir()
    for j in range(2):
        sf.write(root / f"u{j}.wav", (rng.standard_normal(SR * 3) * 0.1).astype(np.float32), SR, subtype="PCM_16")
    return root


def _hall_rirs(folder: Path) -> Path:
    """Two rooms larger than the train rooms (T60 1.2 and 1.6 s), other draws."""
    rng = np.random.default_rng(11)
    folder.mkdir(parents=True)
    for name, t60 in (("hall-small", 1.2), ("hall-large", 1.6)):
        n = int(SR * t60 * 1.1)
        tail = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / SR / t60) * 0.05
        tail[: int(0.01 * SR)] = 0.0
        tail[int(0.008 * SR)] = 0.7
        sf.write(folder / f"{name}.wav", tail.astype(np.float32), SR, subtype="FLOAT")
    return folder


# --- the defaults: byte for byte the stores they were ---------------------------------------

#: The code before test sets and the static baseline had kinds.
BEFORE_KIND_TESTSETS = "b2ff57e"


def test_default_testsets_and_fixed_snr_are_byte_identical_to_the_stores_before_the_kinds(tmp_path):
    """The default test sets (an unseen folder) and Fixed-SNR mixes (--metrics stoi, 2
    utterances per shard) as audio: the same shards, table, rejects and manifest as the code
    before they had kinds writes on this machine."""
    msp, musan = make_tiny_corpus(tmp_path)
    unseen = _unseen_folder(tmp_path / "unseen")
    common = ["--corpus", "msp", "--root", str(msp), "--noise-root", str(musan), "--utts-per-shard", "2", "--jobs", "1",
              "--quiet", "--metrics", "stoi", "--mixes", "audio"]
    testsets = ["testsets", *common, "--unseen-root", str(unseen), "--unseen-layout", "folder"]
    for stage in (testsets, ["fixed-snr", *common]):
        prep_at(BEFORE_KIND_TESTSETS, [*stage, "--out", str(tmp_path / "before")], tmp_path)
    _stage("testsets", msp, musan, tmp_path / "now", "--mixes", "audio", "--unseen-root", str(unseen),
           "--unseen-layout", "folder")
    _stage("fixed-snr", msp, musan, tmp_path / "now", "--mixes", "audio")
    before, now = tmp_path / "before" / "msp", tmp_path / "now" / "msp"
    assert store_digests(now, tmp_path / "now") == store_digests(before, tmp_path / "before")
    assert "kind" not in pq.read_schema(now / TABLE).names
    assert {r["subset"] for r in _rows(now)} - set(SOURCE_SUBSETS) == {"clean", "test_snr0", "test_snr5", "test_snr10",
                                                                      "test_unseen", "fixed_snr"}


# --- a store of every kind: superset, test sets per kind, the static baseline ----------------

@pytest.fixture(scope="module")
def kinds_store(tmp_path_factory):
    """A superset of babble and reverb (train rooms: two synthetic ones), the test sets of
    every other kind (test rooms: two other synthetic ones), the static baseline per kind."""
    root = tmp_path_factory.mktemp("kind-tests")
    msp, musan = make_tiny_corpus(root, per_split=(6, 4, 4))
    train_rooms = _synthetic_rirs(root / "train-rooms")
    test_rooms = _hall_rirs(root / "test-rooms")
    out = root / "out"
    result = runner.invoke(app, superset_cmd(msp, musan, out, "--jobs", "1", "--metrics", "stoi", "--kinds",
                                             "noise,music,babble,reverb,reverb+noise", "--rir-root", str(train_rooms)))
    assert result.exit_code == 0, result.output
    _stage("testsets", msp, musan, out, "--kinds", f"noise,music,{TEST_KINDS}", "--test-rir-root", str(test_rooms))
    _stage("fixed-snr", msp, musan, out, "--kinds", f"noise,music,{TEST_KINDS}", "--rir-root", str(train_rooms))
    return out / "msp", (msp, musan), train_rooms, test_rooms


def test_every_kind_gets_its_test_conditions_from_the_registry(kinds_store):
    store, *_ = kinds_store
    rows = [r for r in _rows(store) if r["split"] == "test" and r["subset"] != "clean"]
    subsets = {}
    for r in rows:
        subsets.setdefault(r["subset"], set()).add(r["kind"])
    assert subsets == {"test_snr0": {"noise", "music"}, "test_snr5": {"noise", "music"},
                       "test_snr10": {"noise", "music"}, "test_babble0": {"babble"}, "test_babble5": {"babble"},
                       "test_babble10": {"babble"}, "test_reverb": {"reverb"}, "test_farfield5": {"reverb+noise"}}
    tests = {r["utt_id"] for r in _rows(store) if r["subset"] == "clean" and r["split"] == "test"}
    for subset in ("test_babble5", "test_reverb"):
        assert sorted(r["utt_id"] for r in rows if r["subset"] == subset) == sorted(tests)
    for r in rows:
        if r["kind"] in ("babble", "reverb+noise"):
            assert r["snr_target"] == {"test_babble0": 0.0, "test_babble5": 5.0, "test_babble10": 10.0,
                                       "test_farfield5": 5.0}[r["subset"]]
    assert {r["noise_type"] for r in rows if r["subset"] == "test_farfield5"} == {"noise", "music"}


def test_test_rooms_are_never_the_superset_rooms(kinds_store):
    store, (msp, musan), train_rooms, _ = kinds_store
    rows = _rows(store)
    train_ids = {r["rir_id"] for r in rows if r["subset"] == "superset" and r["rir_id"]}
    test_ids = {r["rir_id"] for r in rows if r["split"] == "test" and r["rir_id"]}
    assert train_ids and test_ids and not train_ids & test_ids
    assert {r["rir_file"] for r in rows if r["split"] == "test" and r["rir_id"]} <= {"hall-small.wav", "hall-large.wav"}
    # a test room the superset used is refused, one line naming the file
    result = runner.invoke(app, ["testsets", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan),
                                 "--out", str(store.parent), "--quiet", "--kinds", "reverb", "--test-rir-root",
                                 str(train_rooms)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "train-rooms/" in lines[0] and "never used for training" in lines[0]
    result = runner.invoke(app, ["testsets", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan),
                                 "--out", str(store.parent), "--quiet", "--kinds", "reverb"])
    assert result.exit_code == 2 and "--test-rir-root" in result.output


def test_babble_test_talkers_are_other_speakers_of_the_test_split(kinds_store):
    store, *_ = kinds_store
    rows = _rows(store)
    clean = {r["utt_id"]: r for r in rows if r["subset"] == "clean"}
    babble = [r for r in rows if r["kind"] == "babble" and r["split"] == "test"]
    assert babble
    for r in babble:
        talkers = json.loads(r["talker_ids"])
        assert talkers and all(clean[t]["split"] == "test" and clean[t]["speaker"] != r["speaker"] for t in talkers)
    fixed = [r for r in rows if r["kind"] == "babble" and r["subset"] == "fixed_snr"]
    assert fixed and all(clean[t]["split"] == "train" and clean[t]["speaker"] != r["speaker"]
                         for r in fixed for t in json.loads(r["talker_ids"]))


def test_the_static_baseline_has_each_kind_at_fixed_severities_in_fixed_rooms(kinds_store):
    from mixer.distortions import fixed_rooms
    from mixer.rir import prepare

    store, (msp, musan), train_rooms, test_rooms = kinds_store
    rows = [r for r in _rows(store) if r["subset"] == "fixed_snr"]
    train = {r["utt_id"] for r in rows}
    by_kind = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    n = len(train)
    assert {k: len(v) for k, v in by_kind.items()} == {"noise": 3 * n, "music": 3 * n, "babble": 3 * n,
                                                       "reverb": 2 * n, "reverb+noise": 6 * n}
    assert {r["snr_target"] for r in by_kind["babble"]} == {0.0, 5.0, 10.0}
    rooms, _ = prepare(train_rooms)
    assert len(rooms) == 2  # fewer than three: every room
    assert {r["rir_id"] for r in by_kind["reverb"]} == {r.rir_id for r in rooms}
    # the rule: sorted by T60, evenly spaced ranks (lowest, median, highest of more)
    fake = [type("R", (), {"t60_s": t, "rir_file": f"r{i}"})() for i, t in enumerate([0.9, 0.3, float("nan"), 0.5, 0.7])]
    assert [r.rir_file for r in fixed_rooms(fake)] == ["r1", "r4", "r2"]
    assert [r.rir_file for r in fixed_rooms(fake[:4], 3)] == ["r1", "r0", "r2"]  # ranks 0, 1.5 -> 2, 3
    # rooms other than the superset's are refused, one line naming the superset's plan
    result = runner.invoke(app, ["fixed-snr", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan),
                                 "--out", str(store.parent), "--quiet", "--kinds", "reverb", "--rir-root",
                                 str(test_rooms)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "superset.json" in result.output


def test_kind_test_sets_render_the_same_bits_from_their_recipes(kinds_store, tmp_path):
    store, (msp, musan), _, test_rooms = kinds_store
    _stage("testsets", msp, musan, tmp_path, "--kinds", TEST_KINDS, "--test-rir-root", str(test_rooms),
           "--mixes", "recipe")
    keys = [r["key"] for r in _rows(tmp_path / "msp") if r["split"] == "test" and r["kind"] in TEST_KINDS.split(",")]
    assert keys
    audio, recipe = open_store(store), open_store(tmp_path / "msp")
    for x, y in zip(audio.read_audio(keys), recipe.read_audio(keys)):
        assert np.array_equal(x, y)


def test_simulated_test_rooms_are_at_rt60s_the_superset_does_not_draw(tmp_path):
    pytest.importorskip("pyroomacoustics")
    msp, musan = make_tiny_corpus(tmp_path / "corpus", per_split=(4, 2, 2))
    out = tmp_path / "out"
    result = runner.invoke(app, superset_cmd(msp, musan, out, "--jobs", "1", "--metrics", "stoi", "--kinds", "reverb",
                                             "--sim-rooms", "1", "--sim-rt60", "0.2,0.3"))
    assert result.exit_code == 0, result.output
    inside = runner.invoke(app, ["testsets", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan),
                                 "--out", str(out), "--quiet", "--kinds", "reverb", "--test-sim-rt60", "0.25"])
    assert inside.exit_code == 2 and "0.25" in inside.output and len(inside.output.strip().splitlines()) == 1
    _stage("testsets", msp, musan, out, "--kinds", "reverb", "--test-sim-rt60", "0.4", "--test-sim-rooms", "1")
    rows = _rows(out / "msp")
    train = {r["rir_file"] for r in rows if r["subset"] == "superset"}
    test = {r["rir_file"] for r in rows if r["subset"] == "test_reverb_rt0p4"}
    assert len(test) == 1 and not train & test
    assert not {r["rir_id"] for r in rows if r["subset"] == "superset"} & {r["rir_id"] for r in rows
                                                                            if r["subset"] == "test_reverb_rt0p4"}


# --- levels across kinds -------------------------------------------------------------------

def test_prep_score_fits_one_quantizer_over_every_kind_and_shows_each_kind_share(kinds_store, tmp_path):
    store, *_ = kinds_store
    result = runner.invoke(app, ["score", str(store), "--metric", "stoi", "--levels", "2", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("level"))
    for kind in ("noise", "music", "babble", "reverb", "reverb+noise"):
        assert f" {kind} %" in header
    train = [r for r in _rows(store) if r["subset"] == "superset" and r["split"] == "train"]
    summary = json.loads((tmp_path / "stoi-gmm-k2.json").read_text())
    assert summary["fit"]["count"] == len(train)  # one quantizer over the mixes of every kind
    kinds = {r["kind"] for r in train}
    for row in summary["stats"]["train"]:
        if row["count"]:
            assert set(row["kind_share"]) >= kinds and abs(sum(row["kind_share"].values()) - 1) < 1e-9
    assert "test_babble5" in summary["groups"] and "test_reverb" in summary["groups"]
    # the shares printed are the recorded ones
    level1 = re.split(r"\s{2,}", next(line for line in lines if line.split()[:1] == ["1"]).strip())
    columns = re.split(r"\s{2,}", header.strip())
    for kind in kinds:
        share = summary["stats"]["train"][0]["kind_share"][kind]
        assert level1[columns.index(f"{kind} %")] == f"{100 * share:.1f}"


def test_prep_score_of_a_store_without_kinds_reports_noise_types_as_before(tmp_path):
    msp, musan = make_tiny_corpus(tmp_path)
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path / "out", "--jobs", "1", "--metrics", "stoi"))
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["score", str(tmp_path / "out" / "msp"), "--metric", "stoi", "--levels", "2"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if line.lstrip().startswith("level"))
    assert header.split() == ["level", "train", "stoi", "min", "mean", "max", "SNR", "dB", "music", "%", "noise", "%",
                              "validation"]
    summary = json.loads((tmp_path / "out" / "msp" / "levels" / "stoi-gmm-k2.json").read_text())
    assert all("kind_share" not in row for rows in summary["stats"].values() for row in rows)


# --- the report -----------------------------------------------------------------------------

def test_table2_and_the_plots_list_the_kind_conditions_by_their_registry_names(kinds_store, tmp_path):
    from test_report import record_run
    from trainer.conditions import condition_label, condition_order
    from trainer.report import load_runs, plots, table2

    store, *_ = kinds_store
    subsets = sorted({r["subset"] for r in _rows(store) if r["split"] == "test"} - {"clean"}) + ["clean"]
    order = sorted(subsets, key=condition_order)
    assert order == ["clean", "test_snr10", "test_snr5", "test_snr0", "test_babble10", "test_babble5", "test_babble0",
                     "test_reverb", "test_farfield5"]
    assert [condition_label(c) for c in order[4:]] == ["Babble 10 dB", "Babble 5 dB", "Babble 0 dB",
                                                      "Reverberation, unseen rooms", "Far field 5 dB"]
    assert condition_label("test_reverb_rt1p5") == "Reverberation RT60 1.5 s"
    assert condition_order("test_reverb") < condition_order("test_reverb_rt1") < condition_order("test_reverb_rt1p5")
    conditions = list(reversed(order))  # the report orders them, not the run
    runs = []
    for seed in (0, 1):
        run = record_run(tmp_path / f"none-{seed}", "none", [0.5] * 5, seed, 1)
        (run / "results.json").write_text(json.dumps({"conditions": {
            c: {"wf1": 0.5 + 0.01 * i, "uar": 0.5, "n": 10} for i, c in enumerate(conditions)}}))
        runs.append(run)
    md, rows = table2(load_runs(runs))
    names = [line.split(" | ")[0][2:] for line in md.splitlines()[3:] if line.startswith("| ")]
    assert names == ["Clean", "10 dB", "5 dB", "0 dB", "Babble 10 dB", "Babble 5 dB", "Babble 0 dB",
                     "Reverberation, unseen rooms", "Far field 5 dB"]
    assert [r[0] for r in rows[1:]] == order
    (tmp_path / "plots").mkdir()
    assert (tmp_path / "plots" / "conditions.png") in plots(load_runs(runs), tmp_path / "plots")


# --- prep materialize: no worker taken for a leaking one ------------------------------------

def test_materializing_a_part_releases_what_the_worker_decoded_and_mapped(kinds_store, tmp_path):
    from mixer.build import BuildSummary  # noqa: F401  (the build's module, as a worker imports it)
    from mixer.materialize import materialize_part
    from shards import reader

    store, (msp, musan), _, test_rooms = kinds_store
    _stage("testsets", msp, musan, tmp_path / "r", "--kinds", TEST_KINDS, "--test-rir-root", str(test_rooms),
           "--mixes", "recipe")
    src = tmp_path / "r" / "msp"
    parts = [e["name"] for e in json.loads((src / MANIFEST).read_text())["shards"] if e.get("layout") == "recipe"]
    (tmp_path / "a" / "shards").mkdir(parents=True)
    assert materialize_part(str(src), str(tmp_path / "a"), parts[0]) > 0
    assert reader._DECODED_CLEAN.nbytes == 0 and not reader._NOISE_MAPS and not reader._STORED_RIRS

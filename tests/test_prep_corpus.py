"""``prep corpus``: what a corpus gives, seen before anything is mixed. On every registered
adapter its counts are the adapter's; on IEMOCAP and CREMA-D (real label files, generated
audio) they are what a build of the same options then stores. And ``prep superset --help``
lists both corpora with their options."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mixer.cli import app
from mixer.corpora import EMOTION_ADAPTERS, EMOTION_CORPORA, meld
from mixer.demo_corpus import write_demo_corpus
from shards.vocab import CLEAN_SUBSET, REJECTS, SAMPLE_RATE, TABLE
from test_corpora import MELD_HEADER, meld_row, write_csv, write_mp4
from test_crema_d import make_crema_d_root
from test_iemocap import make_iemocap_root, write_low_noise
from test_ravdess import make_tiny_musan

runner = CliRunner()


def prep_corpus(*args: str) -> dict:
    result = runner.invoke(app, ["corpus", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# ------------------------------------------------------------------ a root for every adapter
def _demo(shared: Path, tmp: Path) -> Path:
    write_demo_corpus(tmp / "demo", utterances_per_class=(2, 1, 1), speakers=(2, 1, 1), noise_files=1,
                      music_files=1, esc50_clips_per_category=1)
    return tmp / "demo"


def _msp(shared: Path, tmp: Path) -> Path:
    return _demo(shared, tmp) / "msp"


def _csv(shared: Path, tmp: Path) -> Path:
    rows = [[str(write_low_noise(tmp / "csv" / f"{i}.wav", seed=i)), label, split, f"s{i % 2}"]
            for i, (label, split) in enumerate([("angry", "train"), ("sad", "train"), ("happy", "validation"),
                                                 ("neutral", "test"), ("bored", "train")])]
    return write_csv(tmp / "csv" / "corpus.csv", ["path", "label", "split", "speaker"], rows)


def _meld(shared: Path, tmp: Path) -> Path:
    root = tmp / "MELD.Raw"
    rows = {"train": [meld_row(1, 0, 0, "anger"), meld_row(2, 0, 1, "fear"), meld_row(3, 0, 2, "joy")],
            "dev": [meld_row(1, 0, 0, "sadness")], "test": [meld_row(1, 1, 0, "neutral")]}
    for split, split_rows in rows.items():
        label_name, media_name, _ = meld.SPLIT_LAYOUT[split]
        write_csv(root / label_name, MELD_HEADER, split_rows)
        (root / media_name).mkdir(parents=True)
    write_mp4(root / "train_splits" / "dia0_utt0.mp4", 0.8)  # dia0_utt2 (joy) has no media: a reject
    write_mp4(root / "dev_splits_complete" / "dia0_utt0.mp4", 0.6)
    write_mp4(root / "output_repeated_splits_test" / "dia1_utt0.mp4", 0.6)
    return root


def _shared_audio(name: str):
    return lambda shared, tmp: shared / "audio" / name


ROOTS = {
    "msp": _msp,
    "meld": _meld,
    "emodb": _shared_audio("emodb"),
    "ravdess": _shared_audio("ravdess"),
    "ased": _shared_audio("ased"),
    "iemocap": lambda shared, tmp: make_iemocap_root(shared / "corpora" / "iemocap", tmp / "iemocap"),
    "crema_d": lambda shared, tmp: make_crema_d_root(shared / "corpora" / "crema_d", tmp / "crema_d"),
    "csv": _csv,
    "demo": _demo,
}


def test_every_registered_corpus_has_a_case_here():
    assert set(ROOTS) == set(EMOTION_ADAPTERS)


@pytest.mark.parametrize("corpus", list(ROOTS))
def test_prep_corpus_reports_what_the_adapter_gives(corpus, shared_dir, tmp_path):
    root = ROOTS[corpus](shared_dir, tmp_path)
    summary = prep_corpus("--corpus", corpus, "--root", str(root))
    utts, rejects = EMOTION_CORPORA[corpus](root)
    assert summary["corpus"] == corpus and summary["total"]["utterances"] == len(utts) > 0
    assert summary["rejects"]["count"] == len(rejects)
    assert {r["reason"]: r["count"] for r in summary["rejects"]["reasons"]} == Counter(r.reason for r in rejects)
    for split, group in summary["splits"].items():
        mine = [u for u in utts if u.split == split]
        assert group["utterances"] == len(mine) == sum(group["classes"].values())
        assert group["classes"] == dict(Counter(u.label for u in mine))
        assert group["speakers"] == sorted({u.speaker for u in mine})
        if corpus != "meld":  # mp4: PyAV's stated length, checked below
            seconds = sum(sf.info(u.path).duration for u in mine)
            assert group["seconds"] == pytest.approx(seconds, abs=1e-3)
    assert set(summary["splits"]) == {u.split for u in utts}
    if corpus == "meld":
        assert summary["splits"]["train"]["seconds"] == pytest.approx(0.8, abs=0.1)
        reasons = {r["reason"] for r in summary["rejects"]["reasons"]}
        assert any("media file not found" in r for r in reasons)


def test_prep_corpus_text_names_splits_speakers_durations_and_rejects(shared_dir, tmp_path):
    root = make_iemocap_root(shared_dir / "corpora" / "iemocap", tmp_path / "iemocap", seconds=0.5)
    result = runner.invoke(app, ["corpus", "--corpus", "iemocap", "--root", str(root), "--happy", "hap",
                                 "--test-session", "1", "--validation-session", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (f"corpus iemocap at {root} (happy=hap, dialogs=all, test_session=1, "
                        "validation_session=2)")
    table = {line.split()[0]: line.split()[1:] for line in lines[1:6]}
    assert table["split"] == ["utterances", "angry", "happy", "neutral", "sad", "speakers", "audio"]
    assert table["all"][:2] == ["4490", "1103"] and table["all"][2] == "595"
    assert table["test"][-3:] == ["2", f"{int(table['test'][0]) * 0.5 / 3600:.2f}", "h"]
    assert "speakers test: Ses01_F, Ses01_M" in lines
    assert "speakers validation: Ses02_F, Ses02_M" in lines
    assert "rejects: 5549" in lines
    excited = next(line for line in lines if "'exc' (excited)" in line)
    assert excited.split()[0] == "1041"


def test_a_bad_option_of_prep_corpus_is_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["corpus", "--corpus", "crema_d", "--root", str(tmp_path), "--labels", "face"])
    assert result.exit_code == 2 and result.output.strip() == "error: --labels 'face': expected one of intended, voice"
    result = runner.invoke(app, ["corpus", "--corpus", "crema_d", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'AudioWAV'}: folder not found (expected {_crema_layout()})"
    result = runner.invoke(app, ["corpus", "--corpus", "wav2vec", "--root", str(tmp_path)])
    assert result.exit_code == 2 and result.output.strip().startswith("error: --corpus 'wav2vec': expected one of")


def _crema_layout() -> str:
    from mixer.corpora.crema_d import LAYOUT

    return LAYOUT


def test_prep_superset_help_lists_iemocap_and_crema_d_with_their_options():
    result = runner.invoke(app, ["superset", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "iemocap" in text and "crema_d" in text
    for flag in ("--happy", "--dialogs", "--test-session", "--validation-session", "--labels", "--test-actors"):
        assert flag in text
    assert "iemocap: the session (1-5) held out for test (default 5)" in text
    assert "one of hap+exc, hap (default hap+exc)" in text and "one of intended, voice (default intended)" in text


# ------------------------------------------------------------------ counts equal to a build
def _build(corpus: str, root: Path, out: Path, musan: Path, options: list[str]) -> Path:
    common = ["--corpus", corpus, "--root", str(root), "--noise-root", str(musan), "--noise-types", "noise",
              "--out", str(out), "--limit", "2", "--metrics", "", "--jobs", "1", "--quiet", *options]
    for stage in (["superset", "--bins", "1"], ["testsets", "--snrs", "0"]):
        result = runner.invoke(app, [*stage, *common])
        assert result.exit_code == 0, result.output
    return out / corpus


@pytest.mark.parametrize(("corpus", "options", "taken"), [
    ("iemocap", ["--happy", "hap", "--test-session", "2", "--validation-session", "3", "--dialogs", "script"],
     {"happy": "hap", "dialogs": "script", "test_session": 2, "validation_session": 3}),
    ("crema_d", ["--labels", "voice", "--test-actors", "1090,1091", "--validation-actors", "1001"],
     {"labels": "voice", "test_actors": [1090, 1091], "validation_actors": [1001]}),
])
def test_prep_corpus_counts_equal_what_a_build_stores(corpus, options, taken, shared_dir, tmp_path):
    root = ROOTS[corpus](shared_dir, tmp_path)
    summary = prep_corpus("--corpus", corpus, "--root", str(root), "--limit", "2", *options)
    assert summary["options"] == taken and summary["limit"] == 2
    assert {split: group["utterances"] for split, group in summary["splits"].items()} == {
        "train": 2, "validation": 2, "test": 2}
    store = _build(corpus, root, tmp_path / "out", make_tiny_musan(tmp_path / "musan"), options)
    table = pq.read_table(store / TABLE, columns=["subset", "split", "label", "speaker", "num_samples"]).to_pylist()
    clean = [row for row in table if row["subset"] == CLEAN_SUBSET]
    for split, group in summary["splits"].items():
        rows = [row for row in clean if row["split"] == split]
        assert group["classes"] == dict(Counter(row["label"] for row in rows))
        assert group["speakers"] == sorted({row["speaker"] for row in rows})
        assert group["seconds"] == pytest.approx(sum(row["num_samples"] for row in rows) / SAMPLE_RATE)
    with open(store / REJECTS, newline="") as f:
        stored = Counter(row["reason"] for row in csv.DictReader(f))
    assert stored == {r["reason"]: r["count"] for r in summary["rejects"]["reasons"]}


def test_a_file_whose_header_cannot_be_read_is_counted_with_the_rejects(tmp_path):
    good = write_low_noise(tmp_path / "good.wav")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    table = write_csv(tmp_path / "corpus.csv", ["path", "label", "split"],
                      [[str(good), "sad", "train"], [str(broken), "angry", "train"]])
    summary = prep_corpus("--corpus", "csv", "--root", str(table))
    assert summary["total"]["utterances"] == 1 and summary["splits"]["train"]["classes"] == {"sad": 1}
    [reason] = summary["rejects"]["reasons"]
    assert reason["reason"].startswith("unreadable audio header") and reason["examples"] == [str(broken)]


def test_the_options_line_shows_runs_of_ids_as_ranges():
    from mixer.corpus_summary import options_text

    assert options_text({"labels": "voice", "test_actors": [1003, 1001, 1002, 1010, 1011], "speakers": ["03", "08"],
                         "test_session": 5}) == "labels=voice, test_actors=1001-1003,1010,1011, speakers=03,08, test_session=5"

"""The RAVDESS adapter: names kept and rejected, actor splits, bad roots, the real shared
copies (actors 01-16), and ``prep superset --corpus ravdess`` reaching it."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mixer.cli import app
from mixer.corpora import EMOTION_CORPORA, ravdess
from mixer.records import safe_id
from shards.errors import InputError
from shards.vocab import EMOTIONS, MANIFEST, REJECTS, SPLITS, TABLE

SR = 16000
runner = CliRunner()


def write_audio(path: Path, seconds: float = 0.3, freq: float = 180.0, seed: int = 0) -> Path:
    """A short voiced tone; the format follows the extension (.wav PCM_16, .flac)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wav = sum(np.sin(2 * np.pi * freq * k * t + rng.random()) / k for k in range(1, 6))
    wav = 0.15 * wav * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    sf.write(str(path), wav.astype(np.float32), SR, subtype="PCM_16")
    return path


def reasons_by_name(rejects) -> dict[str, str]:
    return {Path(r.file).name: r.reason for r in rejects}


KEPT = {
    # name: (split under the defaults, label, speaker)
    "Actor_01/03-01-05-01-01-01-01.wav": ("test", "angry", "01"),
    "Actor_01/03-01-01-01-02-02-01.flac": ("test", "neutral", "01"),
    "Actor_06/03-01-04-02-02-02-06.wav": ("validation", "sad", "06"),
    "Actor_12/03-01-03-02-01-02-12.flac": ("train", "happy", "12"),
    "Actor_23/03-01-05-02-01-01-23.wav": ("train", "angry", "23"),
}
REJECTED = {
    # file: a fragment of its reason
    "Actor_01/03-01-02-01-01-01-01.wav": "(calm) not among the 4 classes",
    "Actor_01/03-01-06-02-01-01-01.wav": "(fearful) not among the 4 classes",
    "Actor_01/03-01-07-01-01-01-01.wav": "(disgust) not among the 4 classes",
    "Actor_01/03-01-08-01-01-01-01.wav": "(surprised) not among the 4 classes",
    "Actor_01/03-02-03-01-01-01-01.wav": "(song)",
    "Actor_01/01-01-03-01-01-01-01.mp4": "(audio-video) is not audio-only",
    "Actor_01/02-01-03-01-01-01-01.wav": "(video-only) is not audio-only",
    "Actor_01/03-01-03-01-01-01-05.wav": "actor 05 in the name but the file is in Actor_01",
    "Actor_01/recording.wav": "RAVDESS's pattern",
    "Actor_01/03-01-05-01-01-01.wav": "RAVDESS's pattern",
    "Actor_01/notes.txt": "RAVDESS's pattern",
    "Actor_01/03-01-05-01-01-01-01.txt": "not an audio file",
    "Actor_01/03-01-09-01-01-01-01.wav": "unknown emotion code '09'",
    "Actor_01/04-01-03-01-01-01-01.wav": "unknown modality '04'",
    "Actor_01/03-01-03-03-01-01-01.wav": "unknown intensity '03'",
    "Actor_01/03-01-03-01-01-01-25.wav": "unknown actor '25'",
    "stray/03-01-05-01-01-01-09.wav": "outside an Actor_NN folder",
}


@pytest.fixture()
def layout(tmp_path) -> Path:
    """Actor folders one level below ``root`` (as the unpacked zip) with kept and rejected files."""
    root = tmp_path / "ravdess"
    base = root / "Audio_Speech_Actors_01-24"
    for i, name in enumerate(KEPT):
        write_audio(base / name, seed=i)
    for name in REJECTED:
        path = base / name
        if path.suffix in (".wav", ".flac"):
            write_audio(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not audio")
    (base / "Actor_01" / "._03-01-05-01-01-01-01.wav").write_bytes(b"macOS resource fork")  # hidden: ignored
    (root / "README.txt").write_text("RAVDESS speech audio")  # outside the actor folders, not audio: ignored
    return root


def test_ravdess_keeps_four_classes_and_rejects_every_other_file(layout):
    utts, rejects = ravdess.prepare(layout)
    got = {u.utt_id: (u.split, u.label, u.speaker) for u in utts}
    assert got == {Path(name).stem: want for name, want in KEPT.items()}
    assert [u.utt_id for u in utts] == sorted(got)
    assert all(u.corpus == "ravdess" and u.utt_id == safe_id(u.utt_id) for u in utts)
    assert all(Path(u.path).is_file() and Path(u.path).is_absolute() for u in utts)
    by_name = reasons_by_name(rejects)
    assert len(rejects) == len(REJECTED) and set(by_name) == {Path(n).name for n in REJECTED}
    for name, fragment in REJECTED.items():
        assert fragment in by_name[Path(name).name], (name, by_name[Path(name).name])
    # the actor folders themselves may be the root too
    utts2, rejects2 = ravdess.prepare(layout / "Audio_Speech_Actors_01-24")
    assert [u.utt_id for u in utts2] == [u.utt_id for u in utts]
    assert len(rejects2) == len(rejects)


def test_ravdess_emotion_codes_name_the_vocab_classes():
    assert sorted(ravdess.EMOTION_CODES.values()) == sorted(EMOTIONS)
    assert set(ravdess.EMOTION_CODES) | set(ravdess.UNUSED_EMOTION_CODES) == {f"{i:02d}" for i in range(1, 9)}
    assert EMOTION_CORPORA["ravdess"] is ravdess.prepare


def test_ravdess_split_options(layout):
    utts, _ = ravdess.prepare(layout, test_actors={12}, validation_actors=[1, 23])
    assert {u.speaker: u.split for u in utts} == {"12": "test", "01": "validation", "23": "validation", "06": "train"}
    utts, _ = ravdess.prepare(layout, test_actors=(6,), validation_actors=())
    assert Counter(u.split for u in utts) == {"test": 1, "train": 4}
    assert {u.split for u in utts} <= set(SPLITS)
    with pytest.raises(InputError, match="01 given for both test and validation"):
        ravdess.prepare(layout, test_actors=(1, 2), validation_actors=(1, 3))
    for bad in ((0,), (25,), ("01",), (1.0,)):
        with pytest.raises(InputError, match="expected integers 1-24"):
            ravdess.prepare(layout, test_actors=bad)


def test_ravdess_defaults_are_speaker_independent_and_gender_balanced():
    test, validation = set(ravdess.DEFAULT_TEST_ACTORS), set(ravdess.DEFAULT_VALIDATION_ACTORS)
    train = set(range(1, 25)) - test - validation
    assert not test & validation and len(train) == 16
    for actors in (test, validation, train):  # odd male, even female
        assert sum(a % 2 for a in actors) * 2 == len(actors)


def test_ravdess_duplicate_stem_is_one_utterance(tmp_path):
    root = tmp_path / "r"
    write_audio(root / "Actor_02" / "03-01-03-01-01-01-02.wav")
    write_audio(root / "Actor_02" / "03-01-03-01-01-01-02.flac")
    utts, rejects = ravdess.prepare(root)
    assert [u.utt_id for u in utts] == ["03-01-03-01-01-01-02"]
    assert len(rejects) == 1 and "duplicate utterance id" in rejects[0].reason


def test_ravdess_bad_roots_are_one_line_input_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError) as err:
        ravdess.prepare(missing)
    message = str(err.value)
    assert "\n" not in message and str(missing) in message and "does not exist" in message and "Actor_01/" in message
    empty = tmp_path / "empty"
    write_audio(empty / "loose" / "03-01-05-01-01-01-01.wav")
    with pytest.raises(InputError) as err:
        ravdess.prepare(empty)
    message = str(err.value)
    assert "\n" not in message and str(empty) in message and "no Actor_NN folder" in message


def test_ravdess_real_shared_copies(shared_dir):
    root = shared_dir / "audio" / "ravdess"
    utts, rejects = ravdess.prepare(root)
    assert rejects == []
    assert len(utts) == 448
    assert Counter(u.label for u in utts) == {"neutral": 64, "happy": 128, "sad": 128, "angry": 128}
    speakers = {f"{a:02d}" for a in range(1, 17)}
    assert {u.speaker for u in utts} == speakers
    per_actor = Counter((u.speaker, u.label) for u in utts)
    assert all(per_actor[s, label] == (4 if label == "neutral" else 8) for s in speakers for label in EMOTIONS)
    assert all(Path(u.path).parent.name == f"Actor_{u.speaker}" for u in utts)
    assert len({u.utt_id for u in utts}) == 448 and [u.utt_id for u in utts] == sorted(u.utt_id for u in utts)
    # default split: test 01-04, validation 05-08, train 09-16 (of the 24 actors: 09-24)
    actors_of = {split: {u.speaker for u in utts if u.split == split} for split in ("train", "validation", "test")}
    assert actors_of == {"test": {"01", "02", "03", "04"}, "validation": {"05", "06", "07", "08"},
                         "train": {f"{a:02d}" for a in range(9, 17)}}
    assert Counter(u.split for u in utts) == {"train": 224, "validation": 112, "test": 112}
    # any split chosen keeps the actors of each split disjoint
    utts, _ = ravdess.prepare(root, test_actors=range(13, 17), validation_actors={11, 12})
    actors_of = {split: {u.speaker for u in utts if u.split == split} for split in ("train", "validation", "test")}
    assert actors_of["test"] == {"13", "14", "15", "16"} and actors_of["validation"] == {"11", "12"}
    assert not (actors_of["train"] & actors_of["validation"] or actors_of["train"] & actors_of["test"]
                or actors_of["validation"] & actors_of["test"])


def make_tiny_musan(root: Path) -> Path:
    """Two noise and two music files in MUSAN's layout."""
    rng = np.random.default_rng(7)
    for kind in ("noise", "music"):
        for j in range(2):
            path = root / kind / "part" / f"{kind}-{j:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "noise":
                wav = 0.1 * rng.standard_normal(3 * SR)
            else:
                t = np.arange(3 * SR) / SR
                wav = 0.2 * np.sin(2 * np.pi * 220 * (j + 1) * t)
            sf.write(str(path), wav.astype(np.float32), SR, subtype="PCM_16")
    return root


def test_prep_superset_reaches_the_ravdess_adapter(tmp_path):
    root = tmp_path / "ravdess"
    names = [  # 3 train (actors 09, 10), 2 validation (05, 06), 1 test (01), 1 reject
        "Actor_09/03-01-05-01-01-01-09.wav", "Actor_09/03-01-04-01-01-01-09.flac", "Actor_10/03-01-03-02-02-01-10.wav",
        "Actor_05/03-01-01-01-01-01-05.flac", "Actor_06/03-01-05-02-01-02-06.wav",
        "Actor_01/03-01-04-01-02-01-01.wav", "Actor_10/03-01-02-01-01-01-10.wav",
    ]
    for i, name in enumerate(names):
        write_audio(root / name, seconds=1.2, freq=120 + 30 * i, seed=i)
    musan = make_tiny_musan(tmp_path / "musan")
    out = tmp_path / "out"
    result = runner.invoke(app, ["superset", "--corpus", "ravdess", "--root", str(root), "--noise-root", str(musan),
                                 "--out", str(out), "--limit", "2", "--metrics", "stoi", "--bins", "1",
                                 "--jobs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    store = out / "ravdess"
    table = pq.read_table(store / TABLE).to_pydict()
    # --limit 2: the first 2 utterances (by id) of train and of validation; clean once + 1 bin x 2 types each
    assert table["subset"].count("clean") == 4 and table["subset"].count("superset") == 8
    clean = {table["utt_id"][i]: (table["split"][i], table["label"][i])
             for i, s in enumerate(table["subset"]) if s == "clean"}
    assert clean == {
        "03-01-03-02-02-01-10": ("train", "happy"), "03-01-04-01-01-01-09": ("train", "sad"),
        "03-01-01-01-01-01-05": ("validation", "neutral"), "03-01-05-02-01-02-06": ("validation", "angry"),
    }
    manifest = json.loads((store / MANIFEST).read_text())
    assert manifest["corpus"] == "ravdess"
    with open(store / REJECTS, newline="") as f:
        rejected = list(csv.DictReader(f))
    assert any(r["file"].endswith("03-01-02-01-01-01-10.wav") and "(calm)" in r["reason"] for r in rejected)


def test_prep_superset_ravdess_root_without_actor_folders_is_one_line(tmp_path):
    root = tmp_path / "not-ravdess"
    write_audio(root / "clip.wav")
    result = runner.invoke(app, ["superset", "--corpus", "ravdess", "--root", str(root),
                                 "--noise-root", str(tmp_path), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 2, result.output
    expected = f"error: {root.resolve()}: no Actor_NN folder with files found (expected {ravdess.LAYOUT})"
    assert result.output.strip() == expected


def test_prep_superset_on_the_shared_copies(shared_dir, tmp_path):
    musan = make_tiny_musan(tmp_path / "musan")
    root = shared_dir / "audio" / "ravdess"
    result = runner.invoke(app, ["superset", "--corpus", "ravdess", "--root", str(root), "--noise-root", str(musan),
                                 "--out", str(tmp_path / "out"), "--limit", "2", "--metrics", "stoi", "--bins", "1",
                                 "--jobs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "out" / "ravdess" / TABLE).to_pydict()
    clean = [i for i, s in enumerate(table["subset"]) if s == "clean"]
    assert len(clean) == 4 and table["subset"].count("superset") == 8
    # the first two ids of each split: the actor comes last in a name, so the first neutral
    # statement of actors 05, 06 (validation) and 09, 10 (train)
    assert {table["utt_id"][i]: (table["split"][i], table["speaker"][i], table["label"][i]) for i in clean} == {
        "03-01-01-01-01-01-05": ("validation", "05", "neutral"),
        "03-01-01-01-01-01-06": ("validation", "06", "neutral"),
        "03-01-01-01-01-01-09": ("train", "09", "neutral"),
        "03-01-01-01-01-01-10": ("train", "10", "neutral"),
    }

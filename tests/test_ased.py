"""The ASED adapter: names kept and rejected, speaker splits, the real shared copy (50
speakers), and ``prep superset --corpus ased`` reaching it."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mixer.cli import app
from mixer.corpora import EMOTION_CORPORA, ased, split_options
from shards.errors import InputError

SR = 16000


def write_audio(path: Path, seconds: float = 0.2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(str(path), (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), SR, subtype="PCM_16")
    return path


KEPT = {
    # file: (split under the defaults, label, speaker, gender)
    "01Neutral/n1-01-01-01-03.wav": ("test", "neutral", "03", "female"),
    "03Happy/h3-02-01-02-15.wav": ("validation", "happy", "15", "male"),
    "04Sad/S4-04-02-01-29.wav": ("train", "sad", "29", "female"),  # the release's one upper-case name
    "05Angry/a5-07-02-02-65.flac": ("train", "angry", "65", "male"),
}
REJECTED = {
    # file: a fragment of its reason
    "02Fearful/f2-01-01-01-01.wav": "(fear) not among the 4 classes",
    "01Neutral/n2-01-01-01-01.wav": "goes with number 1, not 2",
    "01Neutral/a5-01-01-01-01.wav": "the file is in 01Neutral",
    "01Neutral/x1-01-01-01-01.wav": "unknown emotion letter",
    "01Neutral/n1-01-01-03-01.wav": "unknown gender '03'",
    "01Neutral/n1-01-01-01-66.wav": "unknown speaker '66'",
    "01Neutral/recording.wav": "ASED's pattern",
    "01Neutral/n1-01-01-01-01.txt": "not an audio file",
    "stray/n1-01-01-01-02.wav": "outside an emotion folder",
}


@pytest.fixture()
def tiny_ased(tmp_path: Path) -> Path:
    root = tmp_path / "ASED_V1"
    for name in [*KEPT, *REJECTED]:
        if name.endswith(".txt"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("not audio")
        else:
            write_audio(root / name)
    return root


def test_names_are_kept_or_rejected_with_their_reason(tiny_ased):
    utts, rejects = ased.prepare(tiny_ased)
    got = {(Path(u.path).parent.name + "/" + Path(u.path).name): (u.split, u.label, u.speaker, u.gender) for u in utts}
    assert got == KEPT
    reasons = {str(Path(r.file).relative_to(tiny_ased)): r.reason for r in rejects}
    assert set(reasons) == set(REJECTED)
    for name, fragment in REJECTED.items():
        assert fragment in reasons[name], (name, reasons[name])
    assert {u.utt_id for u in utts} >= {"s4-04-02-01-29"}  # ids are lower case, so the upper-case name is one id


def test_split_options_move_speakers_and_refuse_overlap(tiny_ased):
    utts, _ = ased.prepare(tiny_ased, test_speakers=(15,), validation_speakers=(3, 29))
    assert {u.speaker: u.split for u in utts} == {"03": "validation", "15": "test", "29": "validation", "65": "train"}
    with pytest.raises(InputError, match="given for both test and validation"):
        ased.prepare(tiny_ased, test_speakers=(3,), validation_speakers=(3,))
    with pytest.raises(InputError, match="is not one of ASED.s speakers"):
        ased.prepare(tiny_ased, test_speakers=(70,))
    with pytest.raises(InputError, match="expected ASED's folder"):
        ased.prepare(tiny_ased / "missing")
    assert {o.flag for o in split_options("ased")} == {"--test-speakers", "--validation-speakers"}


def test_prep_reads_ased_split_options_and_refuses_bad_ones(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["superset", "--corpus", "ased", "--root", str(tmp_path), "--test-speakers", "one"])
    assert result.exit_code == 2 and "--test-speakers 'one': expected comma-separated int values" in result.output
    assert "ased" in runner.invoke(app, ["superset", "--help"]).output


def test_the_shared_copy(shared_dir):
    root = shared_dir / "audio" / "ased"
    utts, rejects = EMOTION_CORPORA["ased"](root)
    assert len(utts) == 1364
    assert Counter(u.label for u in utts) == {"neutral": 372, "happy": 336, "sad": 320, "angry": 336}
    assert len(rejects) == 360
    assert {r.reason for r in rejects} == {"emotion 'f' (fear) not among the 4 classes used"}
    assert all(Path(r.file).parent.name == "02Fearful" for r in rejects)
    speakers = {u.speaker for u in utts}
    assert len(speakers) == 49 and "40" not in speakers  # speaker 40 recorded fear only
    assert any(Path(r.file).name.endswith("-40.flac") for r in rejects)
    upper = [u for u in utts if Path(u.path).name == "S4-04-02-01-29.flac"]
    assert len(upper) == 1 and upper[0].label == "sad" and upper[0].speaker == "29"
    by_split: dict[str, set[str]] = {}
    for u in utts:
        by_split.setdefault(u.split, set()).add(u.speaker)
    assert by_split["test"] == {f"{s:02d}" for s in range(1, 11)}
    assert by_split["validation"] == {f"{s:02d}" for s in range(11, 21)}
    assert not (by_split["train"] & (by_split["test"] | by_split["validation"]))
    assert len(by_split["train"]) == 29
    assert {u.gender for u in utts} == {"female", "male"}

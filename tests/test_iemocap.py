"""The IEMOCAP adapter on IEMOCAP's real label files in ../shared/corpora/iemocap (skipped
when absent): the four classes with and without excited merged into happy, session splits,
speakers and genders, missing audio, and the label files read as released. The audio is a
short generated wav linked at every turn's real path."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mixer.cli import app
from mixer.corpora import EMOTION_ADAPTERS, EMOTION_CORPORA, fold_group, iemocap
from shards.errors import InputError
from shards.vocab import EMOTIONS

SR = 16000
SESSIONS = (1, 2, 3, 4, 5)
#: The issue's (and shared/README's) four-class counts per session with excited merged into happy.
FOUR_CLASS_PER_SESSION = {1: 1085, 2: 1023, 3: 1151, 4: 1031, 5: 1241}


def write_low_noise(path: Path, seconds: float = 0.1, seed: int = 0) -> Path:
    """A short 16 kHz 16-bit wav of low noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = 0.01 * np.random.default_rng(seed).standard_normal(int(seconds * SR))
    sf.write(str(path), noise.astype(np.float32), SR, subtype="PCM_16")
    return path


def turn_lines(label_file: Path) -> list[tuple[int, str, str]]:
    """(line number, turn id, label) of every turn line of a released label file."""
    found = []
    for number, line in enumerate(label_file.read_text().splitlines(), start=1):
        if line.startswith("["):
            fields = line.split("\t")
            found.append((number, fields[1], fields[2]))
    return found


def make_iemocap_root(real: Path, root: Path, sessions=SESSIONS, seconds: float = 0.1) -> Path:
    """``root`` in the release's layout: each session's real EmoEvaluation folder linked, and
    one generated wav linked at every turn's audio path."""
    wav = write_low_noise(root.parent / f"{root.name}-turn.wav", seconds)
    for session in sessions:
        dialog = root / f"Session{session}" / "dialog"
        dialog.mkdir(parents=True)
        (dialog / "EmoEvaluation").symlink_to(real / f"Session{session}" / "dialog" / "EmoEvaluation")
        for label_file in sorted((dialog / "EmoEvaluation").glob("*.txt")):
            folder = root / f"Session{session}" / "sentences" / "wav" / label_file.stem
            folder.mkdir(parents=True)
            for _, turn, _ in turn_lines(label_file):
                (folder / f"{turn}.wav").symlink_to(wav)
    return root


@pytest.fixture(scope="module")
def real_labels(shared_dir) -> Path:
    path = shared_dir / "corpora" / "iemocap"
    if not (path / "Session1" / "dialog" / "EmoEvaluation").is_dir():
        pytest.skip(f"needs IEMOCAP's label files at {path}")
    return path


@pytest.fixture(scope="module")
def iemocap_root(real_labels, tmp_path_factory) -> Path:
    return make_iemocap_root(real_labels, tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release")


def released_turns(real_labels: Path) -> list[tuple[int, str, int, str, str]]:
    """(session, label file name, line number, turn id, label) of every turn in the release."""
    return [(session, f.name, number, turn, label)
            for session in SESSIONS
            for f in sorted((real_labels / f"Session{session}" / "dialog" / "EmoEvaluation").glob("*.txt"))
            for number, turn, label in turn_lines(f)]


def assert_one_line_errors(prepare, root: Path, cases: list[tuple[dict, str]]) -> None:
    """Each (options, message): ``prepare(root, **options)`` raises InputError ``<root>: <message>``."""
    for options, message in cases:
        with pytest.raises(InputError) as err:
            prepare(root, **options)
        assert str(err.value) == f"{root.resolve()}: {message}"


def session_of(speaker: str) -> int:
    return int(re.match(r"^Ses(\d\d)_[FM]$", speaker).group(1))


def test_four_class_counts_per_session_with_excited_merged_into_happy(iemocap_root, real_labels):
    utts, rejects = iemocap.prepare(iemocap_root)
    per_session = Counter(session_of(u.speaker) for u in utts)
    assert dict(per_session) == FOUR_CLASS_PER_SESSION and len(utts) == 5531
    turns = released_turns(real_labels)
    labels = Counter(label for *_, label in turns)
    assert len(turns) == 10039 == len(utts) + len(rejects)
    by_class = Counter(u.label for u in utts)
    assert by_class == {"angry": labels["ang"], "happy": labels["hap"] + labels["exc"], "neutral": labels["neu"],
                        "sad": labels["sad"]}
    assert (by_class["angry"], labels["hap"], labels["exc"], by_class["neutral"], by_class["sad"]) == (
        1103, 595, 1041, 1708, 1084)
    assert set(by_class) == set(EMOTIONS)
    # every other label is a reject naming it, at its line
    rejected = {r.file: r.reason for r in rejects}
    for session, name, number, turn, label in turns:
        if label not in ("ang", "hap", "exc", "neu", "sad"):
            assert f"label '{label}'" in rejected[f"{name} line {number}"]
    assert "(frustration) not among the 4 classes used" in rejected[next(
        f"{name} line {number}" for _, name, number, _, label in turns if label == "fru")]
    ids = [u.utt_id for u in utts]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(u.corpus == "iemocap" and Path(u.path).is_file() for u in utts)


def test_happy_alone_makes_every_excited_turn_a_reject(iemocap_root, real_labels):
    utts, rejects = iemocap.prepare(iemocap_root, happy="hap")
    assert len(utts) == 4490
    excited = {(name, number) for _, name, number, _, label in released_turns(real_labels) if label == "exc"}
    excited_rejects = [r for r in rejects if "'exc' (excited)" in r.reason]
    assert {(r.file.split(" line ")[0], int(r.file.split(" line ")[1])) for r in excited_rejects} == excited
    assert all("happy=hap" in r.reason for r in excited_rejects)
    merged, _ = iemocap.prepare(iemocap_root)
    assert len(merged) - len(utts) == len(excited) == 1041
    assert Counter(u.label for u in utts)["happy"] == 595


def test_leave_one_session_out_keeps_every_speaker_in_one_split(iemocap_root):
    for test in SESSIONS:
        validation = test % 5 + 1
        utts, _ = iemocap.prepare(iemocap_root, test_session=test, validation_session=validation)
        speakers = {split: {u.speaker for u in utts if u.split == split} for split in ("train", "validation", "test")}
        assert speakers["test"] == {f"Ses{test:02d}_F", f"Ses{test:02d}_M"}
        assert speakers["validation"] == {f"Ses{validation:02d}_F", f"Ses{validation:02d}_M"}
        assert len(speakers["train"]) == 6
        assert not (speakers["train"] & speakers["validation"] or speakers["train"] & speakers["test"]
                    or speakers["validation"] & speakers["test"])
        assert {session_of(u.speaker) for u in utts if u.split == "train"} == set(SESSIONS) - {test, validation}
    defaults, _ = iemocap.prepare(iemocap_root)
    assert {u.speaker for u in defaults if u.split == "test"} == {"Ses05_F", "Ses05_M"}  # default test 5
    assert {u.speaker for u in defaults if u.split == "validation"} == {"Ses04_F", "Ses04_M"}  # validation 4


def test_the_speaker_is_the_turns_gender_letter_not_the_dialogs(iemocap_root):
    utts, _ = iemocap.prepare(iemocap_root)
    by_id = {u.utt_id: u for u in utts}
    for u in utts:
        letter = u.utt_id.rsplit("_", 1)[1][0]
        assert u.speaker == f"{u.utt_id[:5]}_{letter}"
        assert u.gender == {"F": "female", "M": "male"}[letter]
    # a man's turn in a dialog where the woman wore the markers (Ses01F_...), and the other way round
    man_in_f_dialog = next(u for i, u in by_id.items() if i.startswith("Ses01F_") and "_M0" in i)
    woman_in_m_dialog = next(u for i, u in by_id.items() if i.startswith("Ses01M_") and "_F0" in i)
    assert (man_in_f_dialog.speaker, man_in_f_dialog.gender) == ("Ses01_M", "male")
    assert (woman_in_m_dialog.speaker, woman_in_m_dialog.gender) == ("Ses01_F", "female")
    assert len({u.speaker for u in utts}) == 10
    # the audio path: Session<N>/sentences/wav/<turn id without its last part>/<turn>.wav
    u = by_id["Ses01F_impro01_F000"]
    assert Path(u.path).relative_to(iemocap_root).as_posix() == (
        "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")


def test_dialogs_improvised_or_scripted(iemocap_root):
    every, _ = iemocap.prepare(iemocap_root)
    impro, impro_rejects = iemocap.prepare(iemocap_root, dialogs="impro")
    script, _ = iemocap.prepare(iemocap_root, dialogs="script")
    assert len(impro) + len(script) == len(every)
    assert impro and all("_impro" in u.utt_id for u in impro) and all("_script" in u.utt_id for u in script)
    left_out = [r for r in impro_rejects if "left out by dialogs=impro" in r.reason]
    assert left_out and all(r.reason.startswith("script dialog") for r in left_out)


def test_a_turn_whose_wav_is_missing_is_a_reject(real_labels, tmp_path):
    root = make_iemocap_root(real_labels, tmp_path / "release", sessions=(1,))
    missing = root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_F000.wav"
    missing.unlink()
    utts, rejects = iemocap.prepare(root)
    assert len(utts) == FOUR_CLASS_PER_SESSION[1] - 1
    assert "Ses01F_impro01_F000" not in {u.utt_id for u in utts}
    [reject] = [r for r in rejects if r.file == str(missing)]
    assert reject.reason.startswith("audio not found")
    assert {u.split for u in utts} == {"train"}  # only Session1 here: it trains


LABEL_FILE = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[1.0000 - 2.5000]\tSes02M_impro09_M000\tang\t[1.5000, 4.0000, 4.0000]
C-E1:\tAnger;\t()
A-E1:\tval 1; act 4; dom  4;\t()

[3.0000 - 4.0000]\tSes02M_impro09_F000\texc\t[4.0000, 4.0000, 3.0000]
C-E1:\tExcited;\t(loud)

[4.5000 - 5.0000]\tSes02M_impro09_M000\tsad\t[2.0000, 2.0000, 2.0000]
a stray remark
[5.0000 - 6.0000]\tSes03M_impro09_F001\tneu\t[3.0000, 3.0000, 3.0000]
[6.0000 - 7.0000]\tSes02M_impro09_X002\tneu\t[3.0000, 3.0000, 3.0000]
[7.0000 - 8.0000]\tSes02M_impro09_F003\txyz\t[3.0000, 3.0000, 3.0000]
[8.0000 - 9.0000\tSes02M_impro09_F004\tneu\t[3.0000, 3.0000, 3.0000]
"""


def test_a_label_file_is_read_as_released_and_every_odd_line_is_a_reject(tmp_path):
    root = tmp_path / "release"
    labels = root / "Session2" / "dialog" / "EmoEvaluation"
    labels.mkdir(parents=True)
    (labels / "Ses02M_impro09.txt").write_text(LABEL_FILE)
    (labels / "Attribute").mkdir()  # the release's per-evaluator folders are not read
    (labels / "Attribute" / "Ses02M_impro09_atr.txt").write_text("Ses02M_impro09_M000 :act 4; :val 1;\n")
    for turn in ("Ses02M_impro09_M000", "Ses02M_impro09_F000"):
        write_low_noise(root / "Session2" / "sentences" / "wav" / "Ses02M_impro09" / f"{turn}.wav")
    utts, rejects = iemocap.prepare(root)
    assert [(u.utt_id, u.label, u.speaker, u.gender, u.split) for u in utts] == [
        ("Ses02M_impro09_F000", "happy", "Ses02_F", "female", "train"),
        ("Ses02M_impro09_M000", "angry", "Ses02_M", "male", "train"),
    ]
    reasons = {r.file: r.reason for r in rejects}
    assert reasons["Ses02M_impro09.txt line 10"].startswith("duplicate turn id 'Ses02M_impro09_M000'")
    assert reasons["Ses02M_impro09.txt line 11"].startswith("line not understood")
    assert "names session 3 in Session2's labels" in reasons["Ses02M_impro09.txt line 12"]
    assert "does not follow IEMOCAP's pattern" in reasons["Ses02M_impro09.txt line 13"]
    assert reasons["Ses02M_impro09.txt line 14"] == "label 'xyz' not among the 4 classes used"
    assert reasons["Ses02M_impro09.txt line 15"].startswith("line not understood")
    assert len(rejects) == 6  # header, evaluator and blank lines are not rejects


def test_bad_options_and_roots_are_one_line_input_errors(iemocap_root, tmp_path):
    assert_one_line_errors(iemocap.prepare, iemocap_root, [
        ({"happy": "joy"}, "happy='joy': expected one of hap+exc, hap"),
        ({"dialogs": "both"}, "dialogs='both': expected one of all, impro, script"),
        ({"test_session": 6}, "test session 6 is not one of IEMOCAP's sessions (expected integers 1-5)"),
        ({"test_session": 4}, "session(s) 4 given for both test and validation"),
    ])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no Session<N>/dialog/EmoEvaluation/\\*.txt label file found"):
        iemocap.prepare(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        iemocap.prepare(tmp_path / "nowhere")


def test_registered_with_its_options_and_its_fold_groups():
    assert EMOTION_ADAPTERS["iemocap"] is iemocap and EMOTION_CORPORA["iemocap"] is iemocap.prepare
    assert {o.flag for o in iemocap.SPLIT_OPTIONS} == {"--happy", "--dialogs", "--test-session", "--validation-session"}
    assert fold_group("iemocap")("Ses03_M") == "Ses03"
    assert fold_group("emodb")("03") == "03"  # a corpus without fold groups folds over its speakers


@pytest.mark.parametrize(("args", "message"), [
    (["--happy", "joy"], "error: --happy 'joy': expected one of hap+exc, hap"),
    (["--dialogs", "all,impro"], "error: --dialogs 'all,impro': expected one of all, impro, script"),
    (["--test-session", "five"], "error: --test-session 'five': expected one int value"),
    (["--labels", "voice"], "error: --labels applies to --corpus crema_d, not iemocap"),
])
def test_a_bad_iemocap_option_on_the_command_line_is_one_line_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(app, ["superset", "--corpus", "iemocap", "--root", str(tmp_path), *args])
    assert result.exit_code == 2
    assert result.output.strip() == message

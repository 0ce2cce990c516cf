"""The CREMA-D adapter on CREMA-D's real tables in ../shared/corpora/crema_d (skipped when
absent): intended labels from the file names, the raters' voice vote with its ties as
rejects, actor splits and genders. The audio is a short generated wav linked at every clip's
real path (AudioWAV/<FileName>.wav)."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mixer.cli import app
from mixer.corpora import EMOTION_ADAPTERS, crema_d, fold_group
from shards.errors import InputError
from test_iemocap import assert_one_line_errors, write_low_noise

LINKED = ("processedResults", "VideoDemographics.csv")
INTENDED = {"ANG": "angry", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
VOTES = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}


def summary_rows(real: Path) -> list[dict[str, str]]:
    with open(real / "processedResults" / "summaryTable.csv", newline="") as f:
        return list(csv.DictReader(f))


def make_crema_d_root(real: Path, root: Path, names: list[str] | None = None, seconds: float = 0.1) -> Path:
    """``root`` in the release's layout: the real tables linked, one generated wav linked at
    ``AudioWAV/<name>.wav`` for each of ``names`` (default: every clip summaryTable.csv lists)."""
    wav = write_low_noise(root.parent / f"{root.name}-clip.wav", seconds)
    (root / "AudioWAV").mkdir(parents=True)
    for name in LINKED:
        (root / name).symlink_to(real / name)
    for name in names if names is not None else [r["FileName"] for r in summary_rows(real)]:
        (root / "AudioWAV" / f"{name}.wav").symlink_to(wav)
    return root


@pytest.fixture(scope="module")
def real_tables(shared_dir) -> Path:
    path = shared_dir / "corpora" / "crema_d"
    if not (path / "processedResults" / "summaryTable.csv").is_file():
        pytest.skip(f"needs CREMA-D's tables at {path}")
    return path


@pytest.fixture(scope="module")
def crema_root(real_tables, tmp_path_factory) -> Path:
    return make_crema_d_root(real_tables, tmp_path_factory.mktemp("crema_d") / "CREMA-D")


def test_intended_labels_keep_4900_clips_of_the_four_classes(crema_root, real_tables):
    utts, rejects = crema_d.prepare(crema_root)
    names = [r["FileName"] for r in summary_rows(real_tables)]
    intended = Counter(name.split("_")[2] for name in names)
    by_class = Counter(u.label for u in utts)
    assert by_class == {label: intended[code] for code, label in INTENDED.items()}
    assert (by_class["angry"], by_class["happy"], by_class["sad"], by_class["neutral"]) == (1271, 1271, 1271, 1087)
    assert len(utts) == 4900 and len(utts) + len(rejects) == len(names) == 7442
    assert Counter(r.reason for r in rejects) == {
        "intended emotion 'DIS' (disgust) not among the 4 classes used": intended["DIS"],
        "intended emotion 'FEA' (fear) not among the 4 classes used": intended["FEA"],
    }
    for u in utts:
        actor, _, code, _ = u.utt_id.split("_")
        assert u.label == INTENDED[code] and u.speaker == actor and u.corpus == "crema_d"
        assert Path(u.path) == crema_root.resolve() / "AudioWAV" / f"{u.utt_id}.wav"


def test_voice_labels_are_the_raters_vote_and_a_tie_is_a_reject(crema_root, real_tables):
    utts, rejects = crema_d.prepare(crema_root, labels="voice")
    rows = summary_rows(real_tables)
    vote_of = {r["FileName"]: r["VoiceVote"] for r in rows}
    assert len(utts) == sum(vote in VOTES for vote in vote_of.values()) == 5606
    assert all(u.label == VOTES[vote_of[u.utt_id]] for u in utts)
    ties = {name: vote for name, vote in vote_of.items() if ":" in vote}
    tie_rejects = {Path(r.file).stem: r.reason for r in rejects if "tie" in r.reason}
    assert len(ties) == 644 and set(tie_rejects) == set(ties)
    for name, vote in ties.items():
        assert tie_rejects[name].startswith(f"voice vote tie '{vote}' (")
    assert "voice vote tie 'N:S' (neutral, sad): no single perceived emotion" in tie_rejects.values()
    others = Counter(r.reason for r in rejects if "tie" not in r.reason)
    assert others == {"voice vote 'D' (disgust) not among the 4 classes used": Counter(vote_of.values())["D"],
                      "voice vote 'F' (fear) not among the 4 classes used": Counter(vote_of.values())["F"]}
    # the vote and the intended emotion agree for 3,099 of the clips
    names = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}
    assert sum(names.get(vote) == name.split("_")[2] for name, vote in vote_of.items()) == 3099


def test_no_actor_in_two_splits_and_genders_from_the_demographics(crema_root, real_tables):
    with open(real_tables / "VideoDemographics.csv", newline="") as f:
        sex = {row["ActorID"]: row["Sex"].lower() for row in csv.DictReader(f)}
    for options in ({}, {"test_actors": range(1080, 1092), "validation_actors": (1001, 1050)}):
        utts, _ = crema_d.prepare(crema_root, **options)
        actors = {split: {u.speaker for u in utts if u.split == split} for split in ("train", "validation", "test")}
        assert not (actors["train"] & actors["validation"] or actors["train"] & actors["test"]
                    or actors["validation"] & actors["test"])
        assert sum(len(a) for a in actors.values()) == 91
        assert all(u.gender == sex[u.speaker] for u in utts)
    assert actors["validation"] == {"1001", "1050"} and actors["test"] == {str(a) for a in range(1080, 1092)}
    defaults, _ = crema_d.prepare(crema_root)
    assert {u.speaker for u in defaults if u.split == "test"} == {str(a) for a in crema_d.DEFAULT_TEST_ACTORS}
    assert {u.speaker for u in defaults if u.split == "validation"} == {
        str(a) for a in crema_d.DEFAULT_VALIDATION_ACTORS}
    test_sexes = Counter(sex[str(a)] for a in crema_d.DEFAULT_TEST_ACTORS)
    assert test_sexes == {"female": 11, "male": 7}  # as the docstring states


def test_without_demographics_the_gender_is_empty(real_tables, tmp_path):
    root = tmp_path / "CREMA-D"
    write_low_noise(root / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    utts, rejects = crema_d.prepare(root)
    assert [(u.utt_id, u.label, u.gender, u.split) for u in utts] == [("1001_DFA_ANG_XX", "angry", "", "test")]
    assert not rejects


def test_voice_labels_reject_clips_the_table_lacks_and_rows_whose_clip_is_missing(real_tables, tmp_path):
    names = [r["FileName"] for r in summary_rows(real_tables)]
    root = make_crema_d_root(real_tables, tmp_path / "CREMA-D", names[1:])  # the first clip's audio is missing
    write_low_noise(root / "AudioWAV" / "1092_DFA_ANG_XX.wav")  # an actor the release does not have
    write_low_noise(root / "AudioWAV" / "1091_DFA_ANG_ZZ.wav")  # an unknown level
    (root / "AudioWAV" / "1001_DFA_ANG_XX.mp3").write_bytes(b"")
    utts, rejects = crema_d.prepare(root, labels="voice")
    reasons = {Path(r.file).name if "/" in r.file else r.file: r.reason for r in rejects}
    assert reasons["summaryTable.csv line 2"] == f"audio not found (expected AudioWAV/{names[0]}.wav)"
    assert reasons["1092_DFA_ANG_XX.wav"] == "unknown actor '1092' (CREMA-D has 1001-1091)"
    assert reasons["1091_DFA_ANG_ZZ.wav"].startswith("name does not follow CREMA-D's pattern")
    assert reasons["1001_DFA_ANG_XX.mp3"] == "not a .wav file"
    assert names[0] not in {u.utt_id for u in utts}
    # a clip the table does not list has no vote
    extra = root / "AudioWAV" / "1091_DFA_ANG_LO.wav"
    write_low_noise(extra)
    _, rejects = crema_d.prepare(root, labels="voice")
    assert {r.file: r.reason for r in rejects}[str(extra.resolve())].startswith("no row in processedResults/summaryTable.csv")


def test_bad_options_and_roots_are_one_line_input_errors(crema_root, tmp_path):
    assert_one_line_errors(crema_d.prepare, crema_root, [
        ({"labels": "face"}, "labels='face': expected one of intended, voice"),
        ({"test_actors": (1001, 7)}, "test actor 7 is not one of CREMA-D's actors (expected integers 1001-1091)"),
        ({"validation_actors": (1001,)}, "actor(s) 1001 given for both test and validation"),
    ])
    (tmp_path / "no-audio").mkdir()
    with pytest.raises(InputError, match="AudioWAV: folder not found"):
        crema_d.prepare(tmp_path / "no-audio")
    (tmp_path / "no-table" / "AudioWAV").mkdir(parents=True)
    with pytest.raises(InputError, match="summaryTable.csv: CREMA-D summary table not found"):
        crema_d.prepare(tmp_path / "no-table", labels="voice")


def test_registered_with_its_options_folding_over_actors():
    assert EMOTION_ADAPTERS["crema_d"] is crema_d
    assert {o.flag for o in crema_d.SPLIT_OPTIONS} == {"--labels", "--test-actors", "--validation-actors"}
    assert fold_group("crema_d")("1042") == "1042"


def test_crema_d_options_on_the_command_line(tmp_path):
    result = CliRunner().invoke(app, ["superset", "--corpus", "crema_d", "--root", str(tmp_path), "--labels", "face"])
    assert result.exit_code == 2 and result.output.strip() == "error: --labels 'face': expected one of intended, voice"
    result = CliRunner().invoke(app, ["superset", "--corpus", "crema_d", "--root", str(tmp_path),
                                      "--test-session", "1"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --test-session applies to --corpus iemocap, not crema_d"

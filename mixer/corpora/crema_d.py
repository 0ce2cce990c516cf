"""CREMA-D: the Crowd-sourced Emotional Multimodal Actors Dataset (audio).

Expected layout (``root`` is the release's folder, the clone of its repository)::

    root/
      AudioWAV/1001_DFA_ANG_XX.wav ...             7,442 clips of 91 actors
      processedResults/summaryTable.csv            per clip: FileName, VoiceVote, VoiceLevel, FaceVote, ...
      VideoDemographics.csv                        per actor: ActorID, Age, Sex, Race, Ethnicity

A name ``<actor>_<sentence>_<EMO>_<level>`` holds the actor (1001-1091), the sentence (one of
12, e.g. ``DFA``), the emotion the actor was asked for (ANG, DIS, FEA, HAP, NEU, SAD) and its
intensity (LO, MD, HI, or XX unspecified).

``labels="intended"`` (the default) labels a clip with the emotion in its name: angry, happy,
neutral and sad are kept (1,271 each, neutral 1,087: 4,900 clips), disgust and fear are
rejects with their reason. ``labels="voice"`` labels a clip with what the raters heard from
the audio alone, ``summaryTable.csv``'s VoiceVote (A, D, F, H, N, S), whatever was intended:
a vote for disgust or fear and a tie between emotions (``N:S``) are rejects naming the vote,
as is a clip the table does not list and a row whose clip is missing. The vote agrees with
the intended emotion for 3,099 of the 7,442 clips.

The speaker is the actor (``"1001"``); their gender is ``VideoDemographics.csv``'s Sex
(``female``/``male``; "" when the table is absent). A name that does not follow the pattern,
a file in ``AudioWAV/`` that is not a .wav and an actor outside 1001-1091 are rejects too.

CREMA-D has no official split, so actors are split (speaker-independent): ``test_actors``
(default 1001-1018: 11 women, 7 men) and ``validation_actors`` (default 1019-1027: 4 women,
5 men); the other 64 actors train (28 women, 36 men).

Citation: H. Cao, D. G. Cooper, M. K. Keutmann, R. C. Gur, A. Nenkova and R. Verma, "CREMA-D:
Crowd-sourced Emotional Multimodal Actors Dataset", IEEE Transactions on Affective Computing
5(4), 2014. Licence: Open Database License (ODbL) 1.0, contents under the Database Contents
License 1.0.
"""
from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from shards.errors import InputError

from ..records import Reject, Utterance, safe_id
from ._common import SplitOption, held_out_ids, read_label_csv, require_dir, row_place

AUDIO_DIR = "AudioWAV"
SUMMARY_TABLE = "processedResults/summaryTable.csv"
DEMOGRAPHICS = "VideoDemographics.csv"
#: The name's emotion -> the class kept; DIS and FEA are rejects.
EMOTION_CODES = {"ANG": "angry", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
UNUSED_EMOTION_CODES = {"DIS": "disgust", "FEA": "fear"}
#: summaryTable's VoiceVote letter -> the class kept; D and F are rejects, a tie joins letters with ':'.
VOTE_LETTERS = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
UNUSED_VOTE_LETTERS = {"D": "disgust", "F": "fear"}
VOTE_NAMES = {**VOTE_LETTERS, **UNUSED_VOTE_LETTERS}
TIE_SEPARATOR = ":"
INTENDED, VOICE = "intended", "voice"
LABEL_CHOICES = (INTENDED, VOICE)
NAME_PATTERN = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>LO|MD|HI|XX)$")
ACTORS = range(1001, 1092)
DEFAULT_TEST_ACTORS = tuple(range(1001, 1019))
DEFAULT_VALIDATION_ACTORS = tuple(range(1019, 1028))
#: What ``prep`` offers: --labels intended --test-actors 1001,...,1018 --validation-actors 1019,...,1027
SPLIT_OPTIONS = (
    SplitOption("labels", "the label of a clip (intended: the emotion in its name; voice: the raters' vote on "
                "the audio, summaryTable.csv's VoiceVote)", choices=LABEL_CHOICES),
    SplitOption("test_actors", "actors (1001-1091) held out for test", int),
    SplitOption("validation_actors", "actors (1001-1091) held out for validation", int),
)
LAYOUT = "AudioWAV/ holding files like 1001_DFA_ANG_XX.wav, processedResults/summaryTable.csv, VideoDemographics.csv"


def _genders(root: Path) -> dict[str, str]:
    """Actor id -> "female"/"male" from the demographics table; empty when it is absent."""
    path = root / DEMOGRAPHICS
    if not path.is_file():
        return {}
    table = read_label_csv(path, ["ActorID", "Sex"], what="demographics table")
    return {row["ActorID"]: row["Sex"].lower() for _, row in table if row["Sex"].lower() in ("female", "male")}


def _name_reason(path: Path, match: re.Match | None) -> str | None:
    """Why a file in AudioWAV/ is not a CREMA-D clip, or None."""
    if path.suffix.lower() != ".wav":
        return "not a .wav file"
    if match is None:
        return "name does not follow CREMA-D's pattern <actor>_<sentence>_<EMO>_<level> (e.g. 1001_DFA_ANG_XX.wav)"
    if match["emotion"] not in EMOTION_CODES and match["emotion"] not in UNUSED_EMOTION_CODES:
        return f"unknown emotion code '{match['emotion']}' in a CREMA-D name"
    if int(match["actor"]) not in ACTORS:
        return f"unknown actor '{match['actor']}' (CREMA-D has 1001-1091)"
    return None


def _vote_reason(vote: str) -> str | None:
    """Why a VoiceVote gives no class, or None."""
    if TIE_SEPARATOR in vote:
        letters = vote.split(TIE_SEPARATOR)
        names = ", ".join(VOTE_NAMES.get(x, "unknown") for x in letters)
        return f"voice vote tie '{vote}' ({names}): no single perceived emotion"
    if vote in UNUSED_VOTE_LETTERS:
        return f"voice vote '{vote}' ({UNUSED_VOTE_LETTERS[vote]}) not among the 4 classes used"
    if vote not in VOTE_LETTERS:
        return f"unknown voice vote '{vote}' (expected one of {', '.join(sorted(VOTE_NAMES))} or a tie such as N:S)"
    return None


def _voice_votes(root: Path, clips: dict[str, Path]) -> tuple[dict[str, str], list[Reject]]:
    """Clip name -> VoiceVote from the summary table, and a reject for each row whose clip is
    missing or that repeats a clip."""
    table = read_label_csv(root / SUMMARY_TABLE, ["FileName", "VoiceVote"], what="CREMA-D summary table")
    votes: dict[str, str] = {}
    rejects = list(table.rejects)
    for line, row in table:
        name = row["FileName"]
        if name in votes:
            rejects.append(Reject(row_place(table, line), f"clip '{name}' listed twice in {table.path.name}"))
        elif name not in clips:
            rejects.append(Reject(row_place(table, line), f"audio not found (expected {AUDIO_DIR}/{name}.wav)"))
        else:
            votes[name] = row["VoiceVote"]
    return votes, rejects


def prepare(
    root: str | Path,
    *,
    labels: str = INTENDED,
    test_actors: Collection[int] = DEFAULT_TEST_ACTORS,
    validation_actors: Collection[int] = DEFAULT_VALIDATION_ACTORS,
    corpus: str = "crema_d",
) -> tuple[list[Utterance], list[Reject]]:
    """Clips of the four classes (by ``labels``), split by actor; a reject for every other clip."""
    root = require_dir(root, f"CREMA-D's folder holding {LAYOUT}")
    if labels not in LABEL_CHOICES:
        raise InputError(f"{root}: labels={labels!r}: expected one of {', '.join(LABEL_CHOICES)}")
    test, validation = held_out_ids(test_actors, validation_actors, ACTORS, "actor", "CREMA-D", root)
    audio_dir = root / AUDIO_DIR
    if not audio_dir.is_dir():
        raise InputError(f"{audio_dir}: folder not found (expected {LAYOUT})")
    rejects: list[Reject] = []
    clips: dict[str, Path] = {}
    for path in sorted(audio_dir.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        reason = _name_reason(path, NAME_PATTERN.match(path.stem))
        if reason is not None:
            rejects.append(Reject(str(path), reason))
        else:
            clips[path.stem] = path
    votes: dict[str, str] = {}
    if labels == VOICE:
        votes, table_rejects = _voice_votes(root, clips)
        rejects += table_rejects
    genders = _genders(root)

    utterances: list[Utterance] = []
    for name, path in clips.items():
        match = NAME_PATTERN.match(name)
        if labels == VOICE:
            if name not in votes:
                rejects.append(Reject(str(path), f"no row in {SUMMARY_TABLE} (labels=voice needs its VoiceVote)"))
                continue
            reason = _vote_reason(votes[name])
            label = VOTE_LETTERS.get(votes[name])
        else:
            code = match["emotion"]
            reason = (f"intended emotion '{code}' ({UNUSED_EMOTION_CODES[code]}) not among the 4 classes used"
                      if code in UNUSED_EMOTION_CODES else None)
            label = EMOTION_CODES.get(code)
        if reason is not None:
            rejects.append(Reject(str(path), reason))
            continue
        actor = int(match["actor"])
        utterances.append(Utterance(
            utt_id=safe_id(name),
            path=str(path),
            label=label,
            split="test" if actor in test else "validation" if actor in validation else "train",
            speaker=match["actor"],
            corpus=corpus,
            gender=genders.get(match["actor"], ""),
        ))
    utterances.sort(key=lambda u: u.utt_id)
    return utterances, rejects

"""RAVDESS: the Ryerson Audio-Visual Database of Emotional Speech and Song (speech audio).

Expected layout (``root`` is the folder holding the actor folders or any folder above them,
such as where ``Audio_Speech_Actors_01-24.zip`` was unpacked; ``Actor_NN`` folders are
searched at any depth)::

    root/
      Actor_01/03-01-01-01-01-01-01.wav ...
      ...
      Actor_24/03-01-08-02-02-02-24.wav

Any audio extension soundfile reads is taken (``.wav`` as distributed, ``.flac`` for
resampled copies). A name ``MM-VV-EE-II-SS-RR-AA`` holds seven two-digit fields: modality
(01 audio-video, 02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion
(01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
intensity (01 normal, 02 strong), statement (01 "Kids are talking by the door", 02 "Dogs are
sitting by the door"), repetition (01, 02) and actor (01-24; odd male, even female).

Kept: audio-only speech of neutral, happy, sad and angry (both intensities). Every other file
in an actor folder is a reject with its reason: another emotion, song, a video modality, a
name that does not follow the pattern, an actor field that disagrees with the folder, a
file that is not audio. Audio files outside ``Actor_NN`` folders are rejects too; other files
there (a README, the zip) are left alone. Per actor the four classes hold 28 files: 4 neutral
(normal intensity only) and 8 each of happy, sad and angry; 672 in all over the 24 actors.

RAVDESS has no official split, so actors are split (speaker-independent): ``test_actors``
(default 1-4) and ``validation_actors`` (default 5-8), two male and two female each; every
other actor trains (9-24: 16 actors, 8 male and 8 female). The speaker is the actor ("01"),
the utterance id the file's stem (``03-01-05-01-02-01-12``); a second file with the same stem
(a .wav beside its .flac) is a reject.

Citation: S. R. Livingstone and F. A. Russo, "The Ryerson Audio-Visual Database of Emotional
Speech and Song (RAVDESS): A dynamic, multimodal set of facial and vocal expressions in North
American English", PLoS ONE 13(5): e0196391, 2018. Licence CC BY-NC-SA 4.0.
"""
from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from shards.errors import InputError

from ..records import Reject, Utterance, safe_id
from ._common import SOUNDFILE_EXTENSIONS, SplitOption, index_files, require_dir

EMOTION_CODES = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}
UNUSED_EMOTION_CODES = {"02": "calm", "06": "fearful", "07": "disgust", "08": "surprised"}
MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
NAME_PATTERN = re.compile(
    r"^(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>\d\d)-(?P<intensity>\d\d)"
    r"-(?P<statement>\d\d)-(?P<repetition>\d\d)-(?P<actor>\d\d)$"
)
ACTOR_DIR_PATTERN = re.compile(r"^actor_(\d\d)$", re.IGNORECASE)
ACTORS = range(1, 25)
DEFAULT_TEST_ACTORS = (1, 2, 3, 4)
DEFAULT_VALIDATION_ACTORS = (5, 6, 7, 8)
#: What ``prep`` offers: --test-actors 1,2,3,4 --validation-actors 5,6,7,8
SPLIT_OPTIONS = (
    SplitOption("test_actors", "actors (1-24) held out for test", int),
    SplitOption("validation_actors", "actors (1-24) held out for validation", int),
)
LAYOUT = "Actor_01/ ... Actor_24/ holding files like 03-01-05-01-02-01-12.wav"


def _actor_set(actors: Collection[int], option: str, root: Path) -> frozenset[int]:
    values = set()
    for actor in actors:
        if isinstance(actor, bool) or not isinstance(actor, int) or actor not in ACTORS:
            raise InputError(f"{root}: {option} {actor!r} is not a RAVDESS actor (expected integers 1-24)")
        values.add(actor)
    return frozenset(values)


def _name_problem(match: re.Match) -> str | None:
    """Why a name that has the seven fields still is not a RAVDESS name, or None."""
    if match["modality"] not in MODALITIES:
        return f"unknown modality '{match['modality']}'"
    if match["channel"] not in VOCAL_CHANNELS:
        return f"unknown vocal channel '{match['channel']}'"
    if match["emotion"] not in EMOTION_CODES and match["emotion"] not in UNUSED_EMOTION_CODES:
        return f"unknown emotion code '{match['emotion']}'"
    for field in ("intensity", "statement", "repetition"):
        if match[field] not in ("01", "02"):
            return f"unknown {field} '{match[field]}'"
    if int(match["actor"]) not in ACTORS:
        return f"unknown actor '{match['actor']}' (RAVDESS has 01-24)"
    return None


def _reject_reason(path: Path, folder_actor: str) -> str | None:
    """Why the file at ``path`` (in the folder of actor ``folder_actor``) is left out, or None."""
    match = NAME_PATTERN.match(path.stem)
    if match is None:
        return "name does not follow RAVDESS's pattern MM-VV-EE-II-SS-RR-AA (e.g. 03-01-05-01-02-01-12.wav)"
    problem = _name_problem(match)
    if problem is not None:
        return f"{problem} in a RAVDESS name"
    if match["modality"] != "03":
        return f"modality {match['modality']} ({MODALITIES[match['modality']]}) is not audio-only (03)"
    if path.suffix.lower() not in SOUNDFILE_EXTENSIONS:
        return f"not an audio file (expected one of {', '.join(SOUNDFILE_EXTENSIONS)})"
    if match["channel"] != "01":
        return f"vocal channel {match['channel']} ({VOCAL_CHANNELS[match['channel']]}): only speech (01) is used"
    code = match["emotion"]
    if code not in EMOTION_CODES:
        return f"emotion '{code}' ({UNUSED_EMOTION_CODES[code]}) not among the 4 classes used"
    if match["actor"] != folder_actor:
        return f"actor {match['actor']} in the name but the file is in Actor_{folder_actor}"
    return None


def prepare(
    root: str | Path,
    *,
    test_actors: Collection[int] = DEFAULT_TEST_ACTORS,
    validation_actors: Collection[int] = DEFAULT_VALIDATION_ACTORS,
    corpus: str = "ravdess",
) -> tuple[list[Utterance], list[Reject]]:
    """Audio-only speech of the four classes, split by actor; a reject for every other file."""
    root = require_dir(root, f"the RAVDESS folder holding {LAYOUT}")
    test = _actor_set(test_actors, "test actor", root)
    validation = _actor_set(validation_actors, "validation actor", root)
    overlap = test & validation
    if overlap:
        listed = ", ".join(f"{a:02d}" for a in sorted(overlap))
        raise InputError(f"{root}: actor(s) {listed} given for both test and validation")

    files = sorted(p for paths in index_files(root).values() for p in paths)
    in_actor_dirs = [p for p in files if ACTOR_DIR_PATTERN.match(p.parent.name)]
    if not in_actor_dirs:
        raise InputError(f"{root}: no Actor_NN folder with files found (expected {LAYOUT})")

    utterances: list[Utterance] = []
    rejects: list[Reject] = []
    seen: dict[str, Path] = {}
    for path in files:
        folder = ACTOR_DIR_PATTERN.match(path.parent.name)
        if folder is None:
            if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
                rejects.append(Reject(str(path), "audio file outside an Actor_NN folder"))
            continue
        reason = _reject_reason(path, folder.group(1))
        if reason is not None:
            rejects.append(Reject(str(path), reason))
            continue
        utt_id = safe_id(path.stem)
        if utt_id in seen:
            rejects.append(Reject(str(path), f"duplicate utterance id '{utt_id}' (also {seen[utt_id]})"))
            continue
        seen[utt_id] = path
        match = NAME_PATTERN.match(path.stem)
        actor = int(match["actor"])
        if actor in test:
            split = "test"
        elif actor in validation:
            split = "validation"
        else:
            split = "train"
        utterances.append(
            Utterance(
                utt_id=utt_id,
                path=str(path),
                label=EMOTION_CODES[match["emotion"]],
                split=split,
                speaker=match["actor"],
                corpus=corpus,
            )
        )
    utterances.sort(key=lambda u: u.utt_id)
    return utterances, rejects

"""ASED: the Amharic Speech Emotion Dataset (v1).

Expected layout (``root`` is the folder holding the five emotion folders, or any folder above
them; files are searched at any depth)::

    root/
      01Neutral/n1-01-01-01-01.wav ...
      02Fearful/f2-...
      03Happy/h3-...
      04Sad/s4-...
      05Angry/a5-07-02-02-65.wav

A name ``<e><n>-<sentence>-<repetition>-<gender>-<speaker>`` holds the emotion letter and its
number (n1 neutral, f2 fear, h3 happy, s4 sad, a5 angry), the sentence (01-07, numbered within
each emotion), the repetition, the gender (01 female, 02 male) and the speaker (two digits).
Names are read case-insensitively (the release has ``S4-04-02-01-29``). Any audio extension
soundfile reads is taken (``.wav`` as released, ``.flac`` for copies).

Kept: neutral, happy, sad and angry. Fear is a reject with its reason, as is a name that does
not follow the pattern, an emotion number that disagrees with its letter, a file whose
emotion disagrees with its folder, a second file with the same name and a file that is not
audio. The speaker is the name's speaker field ("07"); the gender is the name's field per
file (``female``/``male``; a few speakers' files disagree, so it is recorded per file, not
per speaker).

The text is not independent of the emotion: most sentences were written for one emotion
and spoken only in it (the release's 25 emotion-tied sentences; two are spoken in all five),
so within a speaker the words predict the label for most files. A speaker-independent split
does not remove that: test speakers say the same sentences as train speakers.

ASED has no official split, so speakers are split (speaker-independent): ``test_speakers``
(default 1-10) and ``validation_speakers`` (default 11-20); every other speaker trains (21-65
in the full release of 65 speakers; 21-50 in the 50-speaker copy this project is tested on).
Ten validation speakers give a validation set large enough for MetricAug's feedback to agree
with itself (``docs/study.md``, arm D).

Citation: E. A. Retta et al., "A New Amharic Speech Emotion Dataset and Classification
Benchmark", ACM Transactions on Asian and Low-Resource Language Information Processing 22(1),
2022.
"""
from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from shards.errors import InputError

from ..records import Reject, Utterance, safe_id
from ._common import SOUNDFILE_EXTENSIONS, SplitOption, held_out_ids, index_files, require_dir

#: The name's emotion letter -> (its number, the label; None where the class is not used).
EMOTION_LETTERS = {"n": ("1", "neutral"), "f": ("2", None), "h": ("3", "happy"), "s": ("4", "sad"),
                   "a": ("5", "angry")}
UNUSED_EMOTIONS = {"f": "fear"}
FOLDER_PATTERN = re.compile(r"^0([1-5])[a-z]+$", re.IGNORECASE)  # 01Neutral ... 05Angry
NAME_PATTERN = re.compile(
    r"^(?P<emotion>[a-z])(?P<number>\d)-(?P<sentence>\d\d)-(?P<repetition>\d\d)"
    r"-(?P<gender>\d\d)-(?P<speaker>\d\d)$", re.IGNORECASE
)
GENDERS = {"01": "female", "02": "male"}
SPEAKERS = range(1, 66)  # the release's 65 speakers
DEFAULT_TEST_SPEAKERS = tuple(range(1, 11))
DEFAULT_VALIDATION_SPEAKERS = tuple(range(11, 21))
#: What ``prep`` offers: --test-speakers 1,...,10 --validation-speakers 11,...,20
SPLIT_OPTIONS = (
    SplitOption("test_speakers", "speakers (1-65) held out for test", int),
    SplitOption("validation_speakers", "speakers (1-65) held out for validation", int),
)
LAYOUT = "01Neutral/ 02Fearful/ 03Happy/ 04Sad/ 05Angry/ holding files like n1-01-01-01-01.wav"


def _reject_reason(path: Path, match: re.Match | None) -> str | None:
    """Why ``path`` (an audio file in an emotion folder) is left out, or None."""
    if match is None:
        return "name does not follow ASED's pattern <e><n>-<sentence>-<repetition>-<gender>-<speaker> (e.g. n1-01-01-01-01.wav)"
    letter = match["emotion"].lower()
    if letter not in EMOTION_LETTERS:
        return f"unknown emotion letter '{match['emotion']}' in an ASED name"
    number, label = EMOTION_LETTERS[letter]
    if match["number"] != number:
        return f"emotion '{letter}' goes with number {number}, not {match['number']}"
    folder = FOLDER_PATTERN.match(path.parent.name)
    if folder is not None and folder.group(1) != number:
        return f"emotion '{letter}{number}' in the name but the file is in {path.parent.name}"
    if match["gender"] not in GENDERS:
        return f"unknown gender '{match['gender']}' (expected 01 female or 02 male)"
    if int(match["speaker"]) not in SPEAKERS:
        return f"unknown speaker '{match['speaker']}' (ASED has 01-65)"
    if label is None:
        return f"emotion '{letter}' ({UNUSED_EMOTIONS[letter]}) not among the 4 classes used"
    return None


def prepare(
    root: str | Path,
    *,
    test_speakers: Collection[int] = DEFAULT_TEST_SPEAKERS,
    validation_speakers: Collection[int] = DEFAULT_VALIDATION_SPEAKERS,
    corpus: str = "ased",
) -> tuple[list[Utterance], list[Reject]]:
    """Utterances of the four classes, split by speaker; a reject for every other file."""
    root = require_dir(root, f"ASED's folder holding {LAYOUT}")
    test, validation = held_out_ids(test_speakers, validation_speakers, SPEAKERS, "speaker", "ASED", root)

    files = sorted(p for paths in index_files(root).values() for p in paths)
    in_emotion_dirs = [p for p in files if FOLDER_PATTERN.match(p.parent.name)]
    if not in_emotion_dirs:
        raise InputError(f"{root}: no emotion folder with files found (expected {LAYOUT})")

    utterances: list[Utterance] = []
    rejects: list[Reject] = []
    seen: dict[str, Path] = {}
    for path in files:
        if not FOLDER_PATTERN.match(path.parent.name):
            if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
                rejects.append(Reject(str(path), "audio file outside an emotion folder (01Neutral ... 05Angry)"))
            continue
        if path.suffix.lower() not in SOUNDFILE_EXTENSIONS:
            rejects.append(Reject(str(path), f"not an audio file (expected one of {', '.join(SOUNDFILE_EXTENSIONS)})"))
            continue
        match = NAME_PATTERN.match(path.stem)
        reason = _reject_reason(path, match)
        if reason is not None:
            rejects.append(Reject(str(path), reason))
            continue
        utt_id = safe_id(path.stem.lower())
        if utt_id in seen:
            rejects.append(Reject(str(path), f"duplicate utterance id '{utt_id}' (also {seen[utt_id]})"))
            continue
        seen[utt_id] = path
        speaker = int(match["speaker"])
        split = "test" if speaker in test else "validation" if speaker in validation else "train"
        utterances.append(
            Utterance(
                utt_id=utt_id,
                path=str(path),
                label=EMOTION_LETTERS[match["emotion"].lower()][1],
                split=split,
                speaker=match["speaker"],
                corpus=corpus,
                gender=GENDERS[match["gender"]],
            )
        )
    utterances.sort(key=lambda u: u.utt_id)
    return utterances, rejects

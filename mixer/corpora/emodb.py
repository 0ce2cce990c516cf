"""Berlin Database of Emotional Speech (EmoDB).

Expected layout (``root`` may be either folder)::

    root/
      wav/03a01Wa.wav ...

A name holds the speaker (characters 0-1), the text (2-4), the emotion letter (5) and the
version (6). Letters used: W anger -> angry, F happiness -> happy, N neutral, T sadness -> sad;
L boredom, E disgust and A fear become rejects. EmoDB has no official split, so speakers are
split: ``test_speakers`` and ``validation_speakers`` (defaults: one female and one male speaker
each), every other speaker trains. Speakers 03, 10, 11, 12, 15 are male, 08, 09, 13, 14, 16 female.

Citation: F. Burkhardt, A. Paeschke, M. Rolfes, W. Sendlmeier and B. Weiss, "A database of
German emotional speech", Interspeech 2005.
"""
from __future__ import annotations

import re
from pathlib import Path

from shards.errors import InputError

from ..records import Reject, Utterance
from ._common import SplitOption, require_dir

EMOTION_LETTERS = {"W": "angry", "F": "happy", "N": "neutral", "T": "sad"}
UNUSED_LETTERS = {"L": "boredom", "E": "disgust", "A": "fear"}
NAME_PATTERN = re.compile(r"^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])$")
DEFAULT_TEST_SPEAKERS = ("15", "16")
DEFAULT_VALIDATION_SPEAKERS = ("12", "13")
#: What ``prep`` offers: --test-speakers 15,16 --validation-speakers 12,13
SPLIT_OPTIONS = (
    SplitOption("test_speakers", "speakers (two-digit ids) held out for test"),
    SplitOption("validation_speakers", "speakers (two-digit ids) held out for validation"),
)


def find_wav_dir(root: Path) -> Path:
    if (root / "wav").is_dir():
        return root / "wav"
    if any(NAME_PATTERN.match(p.stem) for p in root.glob("*.wav")):
        return root
    raise InputError(f"{root / 'wav'}: folder not found (expected EmoDB's wav/ with files like 03a01Wa.wav)")


def prepare(
    root: str | Path,
    *,
    test_speakers: tuple[str, ...] = DEFAULT_TEST_SPEAKERS,
    validation_speakers: tuple[str, ...] = DEFAULT_VALIDATION_SPEAKERS,
    corpus: str = "emodb",
) -> tuple[list[Utterance], list[Reject]]:
    """Utterances of the four classes, split by speaker; a reject for every other file."""
    root = require_dir(root, "EmoDB's folder holding wav/ (or wav/ itself)")
    overlap = set(test_speakers) & set(validation_speakers)
    if overlap:
        raise InputError(f"{root}: speaker(s) {', '.join(sorted(overlap))} given for both test and validation")
    wav_dir = find_wav_dir(root)
    utterances: list[Utterance] = []
    rejects: list[Reject] = []
    for path in sorted(wav_dir.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() != ".wav":
            rejects.append(Reject(str(path), "not a .wav file"))
            continue
        match = NAME_PATTERN.match(path.stem)
        if match is None:
            rejects.append(Reject(str(path), "name does not follow EmoDB's pattern (e.g. 03a01Wa.wav)"))
            continue
        letter = match["emotion"]
        if letter not in EMOTION_LETTERS:
            if letter in UNUSED_LETTERS:
                reason = f"emotion '{letter}' ({UNUSED_LETTERS[letter]}) not among the 4 classes used"
            else:
                reason = f"unknown emotion letter '{letter}'"
            rejects.append(Reject(str(path), reason))
            continue
        speaker = match["speaker"]
        if speaker in test_speakers:
            split = "test"
        elif speaker in validation_speakers:
            split = "validation"
        else:
            split = "train"
        utterances.append(
            Utterance(
                utt_id=path.stem,
                path=str(path),
                label=EMOTION_LETTERS[letter],
                split=split,
                speaker=speaker,
                corpus=corpus,
            )
        )
    utterances.sort(key=lambda u: u.utt_id)
    return utterances, rejects

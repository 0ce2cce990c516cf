"""Babble talkers from a folder of speech recordings (``--babble-root DIR``), instead of the
corpus's own utterances.

Layout: MUSAN's ``speech/`` part, ``DIR/speech/<source>/*.wav`` (e.g. ``speech/librivox/``,
``speech/us-gov/``); every audio file below ``DIR/speech`` is one talker (a MUSAN speech file
is one reader). Each file is read whole at 16 kHz mono (:func:`mixer.audio.load_audio`) and put
on the 16-bit grid as a clean utterance is (:func:`mixer.mixing.fit_pcm16`); one that is
unreadable, empty, silent or holds NaN or infinite samples is a reject with its reason.

A recording's id is the sha256 (first 16 hex digits) of those 16-bit samples as float32: a
recipe store holds each recording once under that key (``shards.vocab.babble_key``),
whichever stage named it, and an audio build refuses a file whose samples changed since it
was listed.

Train and test talkers never overlap, by one rule that needs no option: a recording is held
out for the test sets when sha256("babble-test|<id>"), read as a fraction, is below
:data:`TEST_SHARE` (about one file in five, decided by the content alone, so the same file is
on the same side in every stage, under every seed and whatever else the folder holds). The
superset and the static baseline draw their talkers from the other files.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixer.audio import AudioError, load_audio
from mixer.corpora._common import list_audio
from mixer.mixing import fit_pcm16
from mixer.records import Reject
from shards.errors import InputError
from shards.vocab import SAMPLE_RATE

#: The folder below ``--babble-root`` whose files are the talkers (MUSAN's layout).
SPEECH_DIR = "speech"
#: The share of the recordings held out for the test sets (see the module doc).
TEST_SHARE = 0.2
#: Which recordings a stage draws from.
TRAIN_ROLE, TEST_ROLE = "train", "test"


@dataclass(frozen=True, slots=True)
class BabbleFile:
    babble_id: str  # sha256 of the 16 kHz 16-bit samples (as float32), 16 hex digits
    babble_file: str  # path relative to the babble root
    path: str
    num_samples: int  # at 16 kHz


def load_babble(path: str | Path) -> np.ndarray:
    """A recording's samples as every babble mixes them: 16 kHz mono, on the 16-bit grid
    (float32). AudioError says why not."""
    return fit_pcm16(load_audio(path, SAMPLE_RATE))[0]


def babble_digest(pcm: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pcm, dtype="<f4").tobytes()).hexdigest()[:16]


def role_of(babble_id: str) -> str:
    """TEST_ROLE for a recording held out for the test sets, else TRAIN_ROLE (module doc)."""
    digest = hashlib.sha256(f"babble-test|{babble_id}".encode()).digest()
    return TEST_ROLE if int.from_bytes(digest[:8], "big") / 2.0**64 < TEST_SHARE else TRAIN_ROLE


def prepare(root: str | Path) -> tuple[list[BabbleFile], list[Reject]]:
    """Every usable recording below ``root/speech`` (sorted by relative path) and the rejects."""
    root = Path(root).expanduser()
    folder = root / SPEECH_DIR
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found (expected --babble-root in MUSAN's layout: "
                         f"{SPEECH_DIR}/<source>/*.wav)")
    files, rejects = [], []
    for path in list_audio(folder):
        try:
            pcm = load_babble(path)
        except AudioError as exc:
            rejects.append(Reject(str(path), f"babble talker: {exc.reason}"))
            continue
        files.append(BabbleFile(babble_digest(pcm), path.relative_to(root).as_posix(), str(path), int(pcm.size)))
    if not files:
        raise InputError(f"{folder}: no usable speech recording ({len(rejects)} rejected; expected audio files)")
    return files, rejects


def for_role(files: list[BabbleFile], role: str, root: str | Path) -> tuple[BabbleFile, ...]:
    """The recordings a stage of ``role`` draws from; none is an InputError naming the root."""
    picked = tuple(f for f in files if role_of(f.babble_id) == role)
    if not picked:
        raise InputError(f"{root}: none of its {len(files)} speech recordings is a {role} talker (about "
                         f"{TEST_SHARE:.0%} of them, chosen by content, are held out for the test sets; add recordings)")
    return picked

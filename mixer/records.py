"""Plain records shared by the corpus adapters, the superset planner and the shards.

Every adapter returns ``(records, rejects)``: a list of :class:`Utterance` (or
:class:`NoiseFile`) and a list of :class:`Reject` rows that end up in ``rejects.csv``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

#: The four emotion classes of the paper, in label-index order.
EMOTIONS: tuple[str, ...] = ("angry", "happy", "neutral", "sad")
#: Canonical split names (MSP "Test1" -> "test", "Test2" -> "test2"; MELD "dev" -> "validation").
SPLITS: tuple[str, ...] = ("train", "validation", "test", "test2")
#: Noise kinds: MUSAN noise/music/speech, and "unseen" for test-only noise (ESC-50).
NOISE_KINDS: tuple[str, ...] = ("noise", "music", "speech", "unseen")


class InputError(Exception):
    """A user's input is unusable as a whole (missing root, label file without the
    expected columns). The CLI prints ``str(err)`` on one line and exits with code 2."""


@dataclass(frozen=True)
class Utterance:
    utt_id: str  # unique within the corpus, no '.' or '/' (it becomes part of a shard key)
    path: str  # audio or media file (wav, flac, mp4, ...)
    label: str  # one of EMOTIONS
    split: str  # one of SPLITS
    speaker: str = ""
    corpus: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NoiseFile:
    noise_id: str  # unique within its noise corpus
    path: str
    kind: str  # one of NOISE_KINDS
    num_frames: int  # length in frames at the file's own sample rate
    sample_rate: int

    @property
    def num_samples_16k(self) -> int:
        return int(self.num_frames * 16000 // self.sample_rate)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Reject:
    file: str
    reason: str


def safe_id(text: str) -> str:
    """Make an id usable as a WebDataset key: webdataset splits a member name at its
    first '.', and '/' would make a folder."""
    return "".join(c if (c.isalnum() or c in "-_") else "_" for c in text)

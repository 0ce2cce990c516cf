"""Plain records shared by the corpus adapters, the superset planner and the shards.

Every adapter returns ``(records, rejects)``: a list of :class:`Utterance` (or
:class:`NoiseFile`) and a list of :class:`Reject` rows that end up in ``rejects.csv``.
"""
from __future__ import annotations

from dataclasses import dataclass

from shards.vocab import SAMPLE_RATE, safe_id  # noqa: F401  (safe_id: imported by the adapters from here)


@dataclass(frozen=True)
class Utterance:
    utt_id: str  # unique within the corpus, no '.' or '/' (it becomes part of a shard key)
    path: str  # audio or media file (wav, flac, mp4, ...)
    label: str  # one of shards.vocab.EMOTIONS
    split: str  # one of shards.vocab.SPLITS
    speaker: str = ""
    corpus: str = ""
    gender: str = ""  # "female"/"male" where the corpus says; not stored in the table


@dataclass(frozen=True)
class NoiseFile:
    noise_id: str  # unique within its noise corpus
    path: str
    kind: str  # one of shards.vocab.NOISE_KINDS
    num_frames: int  # length in frames at the file's own sample rate
    sample_rate: int

    @property
    def num_samples_16k(self) -> int:
        return int(self.num_frames * SAMPLE_RATE // self.sample_rate)


@dataclass(frozen=True)
class Reject:
    file: str
    reason: str

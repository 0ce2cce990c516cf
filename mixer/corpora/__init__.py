"""Corpus adapters: each ``prepare(root, ...)`` returns ``(records, rejects)``.

Emotion corpora give :class:`~mixer.records.Utterance` rows, noise corpora
:class:`~mixer.records.NoiseFile` rows; both sorted by id so plans built from them are
reproducible. Every label row or file left out is a :class:`~mixer.records.Reject`.
"""
from __future__ import annotations

from collections.abc import Callable

from . import ased, crema_d, csv_corpus, demo, emodb, esc50, folder, iemocap, meld, msp, musan, ravdess
from ._common import LabelCount, SplitOption, counting_label_rows

#: The emotion corpora: the one list (``prep --corpus`` offers these, with each adapter's
#: ``SPLIT_OPTIONS``; ``bench/study.py`` folds over its ``fold_group`` where it has one). A new
#: corpus is a module here with ``prepare`` and one entry.
EMOTION_ADAPTERS = {
    "msp": msp,
    "meld": meld,
    "emodb": emodb,
    "ravdess": ravdess,
    "ased": ased,
    "iemocap": iemocap,
    "crema_d": crema_d,
    "csv": csv_corpus,
    "demo": demo,
}
EMOTION_CORPORA = {name: adapter.prepare for name, adapter in EMOTION_ADAPTERS.items()}

NOISE_CORPORA = {
    "musan": musan.prepare,
    "esc50": esc50.prepare,
    "folder": folder.prepare,
}



def split_options(corpus: str) -> tuple[SplitOption, ...]:
    """The split options of an emotion corpus's adapter (none for a corpus with official splits)."""
    return tuple(getattr(EMOTION_ADAPTERS[corpus], "SPLIT_OPTIONS", ()))


def _speaker_is_its_own_group(speaker: str) -> str:
    return speaker


def fold_group(corpus: str) -> Callable[[str], str]:
    """speaker -> the group a study's fold holds out together: the adapter's ``fold_group``
    (IEMOCAP: the session, so a fold tests both its speakers), else the speaker itself."""
    return getattr(EMOTION_ADAPTERS[corpus], "fold_group", _speaker_is_its_own_group)


__all__ = ["ased", "crema_d", "fold_group", "iemocap", "EMOTION_ADAPTERS", "EMOTION_CORPORA", "SplitOption", "split_options", "NOISE_CORPORA", "LabelCount", "counting_label_rows", "csv_corpus", "demo", "emodb", "esc50", "folder", "meld", "msp", "musan", "ravdess"]

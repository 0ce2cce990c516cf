"""Corpus adapters: each ``prepare(root, ...)`` returns ``(records, rejects)``.

Emotion corpora give :class:`~mixer.records.Utterance` rows, noise corpora
:class:`~mixer.records.NoiseFile` rows; both sorted by id so plans built from them are
reproducible. Every label row or file left out is a :class:`~mixer.records.Reject`.
"""
from __future__ import annotations

from . import csv_corpus, demo, emodb, esc50, folder, meld, msp, musan, ravdess
from ._common import LabelCount, counting_label_rows

EMOTION_CORPORA = {
    "msp": msp.prepare,
    "meld": meld.prepare,
    "emodb": emodb.prepare,
    "ravdess": ravdess.prepare,
    "csv": csv_corpus.prepare,
    "demo": demo.prepare,
}

NOISE_CORPORA = {
    "musan": musan.prepare,
    "esc50": esc50.prepare,
    "folder": folder.prepare,
}

__all__ = ["EMOTION_CORPORA", "NOISE_CORPORA", "LabelCount", "counting_label_rows", "csv_corpus", "demo", "emodb", "esc50", "folder", "meld", "msp", "musan", "ravdess"]

"""MELD (Multimodal EmotionLines Dataset), audio taken from the MELD.Raw mp4 files.

Expected layout (MELD.Raw with its three archives extracted next to the label files)::

    root/
      train_sent_emo.csv   dev_sent_emo.csv   test_sent_emo.csv
      train_splits/dia{D}_utt{U}.mp4                  (from train.tar.gz)
      dev_splits_complete/dia{D}_utt{U}.mp4           (from dev.tar.gz)
      output_repeated_splits_test/dia{D}_utt{U}.mp4   (from test.tar.gz)

A split's label file and media folder are also found one level down, in ``root/<split>/``
(``root/train/train_splits/`` is how some copies are unpacked). The label files need the
columns ``Dialogue_ID, Utterance_ID, Emotion, Speaker``; they are UTF-8 with quoted fields that
hold commas (the utterance text, ``StartTime``/``EndTime``), which the csv module handles.
Classes used: anger -> angry, joy -> happy, neutral -> neutral, sadness -> sad; surprise, fear and
disgust rows become rejects. Splits: train -> train, dev -> validation, test -> test.

Citation: S. Poria, D. Hazarika, N. Majumder, G. Naik, E. Cambria and R. Mihalcea, "MELD: A
Multimodal Multi-Party Dataset for Emotion Recognition in Conversations", ACL 2019.
"""
from __future__ import annotations

from pathlib import Path

from shards.errors import InputError

from ..records import Reject, Utterance
from ._common import index_files, read_label_csv, require_dir, row_place

EMOTION_NAMES = {"anger": "angry", "joy": "happy", "neutral": "neutral", "sadness": "sad"}
UNUSED_EMOTIONS = ("surprise", "fear", "disgust")
#: MELD split -> (label file, media folder, canonical split)
SPLIT_LAYOUT = {
    "train": ("train_sent_emo.csv", "train_splits", "train"),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete", "validation"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test", "test"),
}
REQUIRED_COLUMNS = ("Dialogue_ID", "Utterance_ID", "Emotion", "Speaker")


def _find(root: Path, split: str, name: str, *, is_dir: bool) -> Path | None:
    for candidate in (root / name, root / split / name, root / "MELD.Raw" / name):
        if (candidate.is_dir() if is_dir else candidate.is_file()):
            return candidate
    return None


def prepare(
    root: str | Path,
    *,
    splits: tuple[str, ...] = ("train", "dev", "test"),
    check_files: bool = True,
    corpus: str = "meld",
) -> tuple[list[Utterance], list[Reject]]:
    """Utterances of the four classes from the label files of ``splits`` (MELD's names:
    train, dev, test). ``check_files=False`` skips looking for the mp4 files (to count labels
    without the media at hand)."""
    root = require_dir(root, "the MELD.Raw folder holding *_sent_emo.csv and the split folders")
    unknown = [s for s in splits if s not in SPLIT_LAYOUT]
    if unknown:
        raise InputError(f"{root}: unknown MELD split(s) {', '.join(unknown)}; expected some of train, dev, test")

    utterances: list[Utterance] = []
    rejects: list[Reject] = []
    for split in splits:
        label_name, media_name, canonical = SPLIT_LAYOUT[split]
        label_path = _find(root, split, label_name, is_dir=False) or root / label_name
        table = read_label_csv(label_path, REQUIRED_COLUMNS)
        rejects += table.rejects
        media_dir = _find(root, split, media_name, is_dir=True)
        if media_dir is None:
            if check_files:
                raise InputError(
                    f"{root / media_name}: media folder not found (expected MELD.Raw's {media_name}/"
                    f"dia{{D}}_utt{{U}}.mp4, extracted from {split}.tar.gz)"
                )
            media_dir = root / media_name
        media = index_files(media_dir) if check_files else {}
        seen: dict[str, int] = {}
        for line, row in table:
            place = row_place(table, line)
            try:
                dialogue, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
            except ValueError:
                rejects.append(
                    Reject(
                        place,
                        f"Dialogue_ID '{row['Dialogue_ID']}' / Utterance_ID '{row['Utterance_ID']}' not integers",
                    )
                )
                continue
            file_name = f"dia{dialogue}_utt{utt}.mp4"
            found = media.get(file_name, [])
            path = found[0] if found else media_dir / file_name
            utt_id = f"{split}_dia{dialogue}_utt{utt}"
            if utt_id in seen:
                first = f"first at line {seen[utt_id]}"
                rejects.append(Reject(str(path), f"duplicate utterance id '{utt_id}' ({first}; {place})"))
                continue
            seen[utt_id] = line
            emotion = row["Emotion"].lower()
            if emotion not in EMOTION_NAMES:
                if emotion in UNUSED_EMOTIONS:
                    reason = f"emotion '{emotion}' not among the 4 classes used"
                else:
                    reason = f"unknown emotion '{row['Emotion']}'"
                rejects.append(Reject(str(path), f"{reason} ({place})"))
                continue
            if check_files and not found:
                rejects.append(Reject(str(path), f"media file not found ({place})"))
                continue
            utterances.append(
                Utterance(
                    utt_id=utt_id,
                    path=str(path),
                    label=EMOTION_NAMES[emotion],
                    split=canonical,
                    speaker=row["Speaker"],
                    corpus=corpus,
                )
            )
    utterances.sort(key=lambda u: u.utt_id)
    return utterances, rejects

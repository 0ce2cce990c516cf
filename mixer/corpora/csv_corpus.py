"""Any emotion corpus listed in a CSV file.

Expected file::

    path,label,split[,speaker][,id]
    clips/a.wav,angry,train,spk1
    /data/b.flac,sadness,dev,spk2

``path`` is relative to the CSV's folder or absolute; any format ``load_audio`` reads works
(wav, flac, mp3, mp4, ...). ``label`` is one of angry, happy, neutral, sad or a common alias
(anger, ang, joy, happiness, hap, neu, sadness, ...; case is ignored); other labels become rejects.
``split``: train, validation (also dev, val, valid, development), test (also test1), test2.
``id`` is optional; without it the id is the path relative to the CSV's folder, without
extension, made ``safe_id``-clean.
"""
from __future__ import annotations

from pathlib import Path

from shards.errors import InputError
from shards.vocab import EMOTIONS

from ..records import Reject, Utterance, safe_id
from ._common import read_label_csv, row_place

LABEL_ALIASES = {
    "angry": "angry", "anger": "angry", "ang": "angry", "mad": "angry",
    "happy": "happy", "happiness": "happy", "hap": "happy", "joy": "happy", "joyful": "happy",
    "neutral": "neutral", "neu": "neutral", "neutrality": "neutral",
    "sad": "sad", "sadness": "sad",
}
SPLIT_ALIASES = {
    "train": "train", "training": "train", "tr": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "development": "validation",
    "test": "test", "test1": "test", "tst": "test", "eval": "test",
    "test2": "test2",
}
REQUIRED_COLUMNS = ("path", "label", "split")


def prepare(
    csv_path: str | Path, *, check_files: bool = True, corpus: str = "csv"
) -> tuple[list[Utterance], list[Reject]]:
    """Utterances listed in ``csv_path`` (the CSV file itself, or a folder holding exactly one
    ``*.csv``); a reject for each row with an unknown label or split, a missing file or a
    repeated id."""
    csv_path = Path(csv_path).expanduser()
    if csv_path.is_dir():
        found = sorted(csv_path.glob("*.csv"))
        if len(found) != 1:
            raise InputError(
                f"{csv_path}: expected one CSV file with columns {', '.join(REQUIRED_COLUMNS)} "
                f"(found {len(found)} .csv files); pass the file itself"
            )
        csv_path = found[0]
    elif not csv_path.exists():
        raise InputError(f"{csv_path}: does not exist (expected a CSV with columns {', '.join(REQUIRED_COLUMNS)})")
    csv_path = csv_path.resolve()
    base = csv_path.parent
    table = read_label_csv(csv_path, REQUIRED_COLUMNS, what="corpus CSV", lower_header=True)
    has_speaker = "speaker" in table.header
    has_id = "id" in table.header

    utterances: list[Utterance] = []
    rejects: list[Reject] = list(table.rejects)
    seen: dict[str, int] = {}
    for line, row in table:
        place = row_place(table, line)
        if not row["path"]:
            rejects.append(Reject(place, "empty path"))
            continue
        given = Path(row["path"]).expanduser()
        path = given if given.is_absolute() else base / given
        label = LABEL_ALIASES.get(row["label"].lower())
        if label is None:
            rejects.append(
                Reject(
                    str(path),
                    f"label '{row['label']}' not among the 4 classes used ({', '.join(EMOTIONS)}) ({place})",
                )
            )
            continue
        split = SPLIT_ALIASES.get(row["split"].lower())
        if split is None:
            rejects.append(Reject(str(path), f"unknown split '{row['split']}' ({place})"))
            continue
        if has_id and row["id"]:
            utt_id = safe_id(row["id"])
        else:
            try:
                rel = path.relative_to(base)
            except ValueError:
                rel = Path(*path.parts[1:])  # absolute path elsewhere: drop the anchor
            utt_id = safe_id(str(rel.with_suffix("")))
        if utt_id in seen:
            first = f"first at line {seen[utt_id]}"
            rejects.append(Reject(str(path), f"duplicate utterance id '{utt_id}' ({first}; {place})"))
            continue
        seen[utt_id] = line
        if check_files and not path.is_file():
            rejects.append(Reject(str(path), f"audio file not found ({place})"))
            continue
        utterances.append(
            Utterance(
                utt_id=utt_id,
                path=str(path),
                label=label,
                split=split,
                speaker=row["speaker"] if has_speaker else "",
                corpus=corpus,
            )
        )
    utterances.sort(key=lambda u: u.utt_id)
    return utterances, rejects

"""MSP-Podcast (release 1.8 or later).

Expected layout::

    root/
      Audios/MSP-PODCAST_0001_0008.wav ...     (sub-folders are searched too; "Audio/" accepted)
      Labels/labels_consensus.csv             (1.8 ships it misspelt "labels_concensus.csv")

The label file needs the columns ``FileName, EmoClass, Split_Set``; ``SpkrID`` is used when
present. Classes used: A angry, H happy, N neutral, S sad; the others (C contempt, U surprise,
D disgust, F fear, O other, X no agreement) become rejects so every row is accounted for.
Splits: Train -> train, Validation (Development in later releases) -> validation,
Test1 -> test, Test2 -> test2.

Citation: R. Lotfian and C. Busso, "Building naturalistic emotionally balanced speech corpus by
retrieving emotional speech from existing podcast recordings", IEEE Transactions on Affective
Computing 10(4), 2019.
"""
from __future__ import annotations

from pathlib import Path

from shards.errors import InputError

from ..records import Reject, Utterance, safe_id
from ._common import index_files, read_label_csv, require_dir, row_place

CLASS_CODES = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
UNUSED_CLASS_CODES = {
    "C": "contempt", "U": "surprise", "D": "disgust", "F": "fear", "O": "other", "X": "no agreement",
}
SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "development": "validation",
    "test1": "test",
    "test2": "test2",
}
LABEL_FILE_NAMES = ("labels_consensus.csv", "labels_concensus.csv")
AUDIO_DIR_NAMES = ("Audios", "Audio", "audios", "audio")
REQUIRED_COLUMNS = ("FileName", "EmoClass", "Split_Set")


def find_label_file(root: Path) -> Path:
    for folder in (root / "Labels", root / "labels", root):
        for name in LABEL_FILE_NAMES:
            if (folder / name).is_file():
                return folder / name
    raise InputError(
        f"{root / 'Labels' / LABEL_FILE_NAMES[0]}: label file not found (also looked for "
        f"{LABEL_FILE_NAMES[1]} and in {root}); expected a CSV with columns {', '.join(REQUIRED_COLUMNS)}"
    )


def find_audio_dir(root: Path) -> Path:
    for name in AUDIO_DIR_NAMES:
        if (root / name).is_dir():
            return root / name
    raise InputError(f"{root / AUDIO_DIR_NAMES[0]}: audio folder not found (expected MSP-Podcast's Audios/*.wav)")


def prepare(
    root: str | Path,
    *,
    labels_file: str | Path | None = None,
    corpus: str = "msp",
    check_files: bool = True,
) -> tuple[list[Utterance], list[Reject]]:
    """Utterances of the four classes with their official split, and a reject per other row.

    ``labels_file`` overrides the search under ``root/Labels``. ``check_files=False`` skips
    looking for the audio (to count labels without the audio at hand)."""
    root = require_dir(root, "the MSP-Podcast folder holding Audios/ and Labels/")
    table = read_label_csv(
        Path(labels_file) if labels_file is not None else find_label_file(root), REQUIRED_COLUMNS
    )
    has_speaker = "SpkrID" in table.header
    audio_dir = find_audio_dir(root) if check_files else root / AUDIO_DIR_NAMES[0]
    audio_index = index_files(audio_dir) if check_files else {}

    utterances: list[Utterance] = []
    rejects: list[Reject] = list(table.rejects)
    first_line: dict[str, int] = {}
    for line, row in table:
        place = row_place(table, line)
        name = row["FileName"]
        if not name:
            rejects.append(Reject(place, "empty FileName"))
            continue
        if not name.lower().endswith(".wav"):
            name_with_suffix = name + ".wav"  # some releases list ids without the extension
        else:
            name_with_suffix = name
        candidates = audio_index.get(name_with_suffix, [])
        path = candidates[0] if candidates else audio_dir / name_with_suffix
        utt_id = safe_id(Path(name_with_suffix).stem)
        if utt_id in first_line:
            rejects.append(
                Reject(str(path), f"duplicate utterance id '{utt_id}' (first at line {first_line[utt_id]}; {place})")
            )
            continue
        first_line[utt_id] = line
        code = row["EmoClass"].upper()
        if code not in CLASS_CODES:
            if code in UNUSED_CLASS_CODES:
                reason = f"emotion '{code}' ({UNUSED_CLASS_CODES[code]}) not among the 4 classes used"
            elif not code:
                reason = "no EmoClass"
            else:
                reason = f"unknown emotion code '{row['EmoClass']}'"
            rejects.append(Reject(str(path), f"{reason} ({place})"))
            continue
        split = SPLIT_NAMES.get(row["Split_Set"].lower())
        if split is None:
            rejects.append(Reject(str(path), f"split '{row['Split_Set']}' not used ({place})"))
            continue
        if check_files:
            if not candidates:
                rejects.append(Reject(str(path), f"audio file not found ({place})"))
                continue
            if len(candidates) > 1:
                others = ", ".join(str(c) for c in candidates[1:])
                reason = f"file name found more than once under {audio_dir} (also {others}) ({place})"
                rejects.append(Reject(str(path), reason))
                continue
        utterances.append(
            Utterance(
                utt_id=utt_id,
                path=str(path),
                label=CLASS_CODES[code],
                split=split,
                speaker=row.get("SpkrID", "") if has_speaker else "",
                corpus=corpus,
            )
        )
    utterances.sort(key=lambda u: u.utt_id)
    return utterances, rejects

"""Room impulse responses for the ``reverb`` and ``reverb+noise`` kinds (``--rir-root DIR``).

Every audio file below the root is one RIR, read whole: any sample rate and channel count,
channel 0 used, resampled to 16 kHz by the store's resampler (:func:`mixer.audio.load_audio`).
A file that is unreadable, empty, silent, holds NaN or infinite samples, or is longer than
:data:`MAX_RIR_SECONDS` is a reject with its reason.

T60 and DRR per RIR: from a ``rooms.csv`` beside the files when it lists the file (columns
``file`` (the name without extension), ``t60_500_1k_s``, ``drr_db``), otherwise estimated
from the 16 kHz samples:

- T60 by Schroeder backward integration: the energy decay curve
  ``EDC(t) = sum_{u >= t} h(u)^2`` in dB re its start, a least-squares line over the part
  between -5 and -25 dB (T20; -5 to -15 dB, T10, where the decay never reaches -25 dB),
  extrapolated to -60 dB.
- DRR: the energy within +-2.5 ms of the largest absolute sample (the direct sound) over
  the energy of every other sample, in dB.

An RIR's id is the sha256 (first 16 hex digits) of its 16 kHz float32 samples: a recipe
store holds each RIR once under that key, whichever stage or folder named it.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixer.audio import AudioError, load_audio
from mixer.records import Reject
from shards.errors import InputError
from shards.vocab import SAMPLE_RATE

#: An RIR longer than this (at its own rate) is a reject: a room's decay to -60 dB takes
#: about 2.3 s in a concert hall; a longer file is most likely not an impulse response.
MAX_RIR_SECONDS = 5.0
#: Half-width of the window around the largest sample that counts as direct sound.
DIRECT_WINDOW_S = 0.0025
#: rooms.csv: the columns read (the file's stem, T60, DRR).
ROOMS_CSV = "rooms.csv"
ROOMS_COLUMNS = ("file", "t60_500_1k_s", "drr_db")
_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}


@dataclass(frozen=True, slots=True)
class RirFile:
    rir_id: str  # sha256 of the 16 kHz float32 samples, 16 hex digits
    rir_file: str  # path relative to the RIR root
    path: str
    num_samples: int  # at 16 kHz
    t60_s: float
    drr_db: float
    stats_from: str  # "rooms.csv" or "estimated"


def load_rir(path: str | Path) -> np.ndarray:
    """An RIR's samples: channel 0, resampled to 16 kHz, float32. AudioError says why not."""
    return load_audio(path, SAMPLE_RATE, channel=0, max_seconds=MAX_RIR_SECONDS)


def rir_digest(rir: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rir, dtype="<f4").tobytes()).hexdigest()[:16]


def schroeder_t60(rir: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """T60 in seconds by Schroeder backward integration (T20, else T10); NaN when the decay
    does not reach -15 dB."""
    energy = np.asarray(rir, dtype=np.float64) ** 2
    edc = np.cumsum(energy[::-1])[::-1]
    if edc[0] <= 0:
        return float("nan")
    with np.errstate(divide="ignore"):
        edc_db = 10.0 * np.log10(edc / edc[0])
    for low in (-25.0, -15.0):
        span = np.flatnonzero((edc_db <= -5.0) & (edc_db >= low))
        if span.size >= 2 and edc_db.min() <= low:
            slope = np.polyfit(span / sr, edc_db[span], 1)[0]
            if slope < 0:
                return float(-60.0 / slope)
    return float("nan")


def direct_to_reverberant_db(rir: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """DRR in dB: the energy within DIRECT_WINDOW_S of the largest absolute sample over the rest."""
    energy = np.asarray(rir, dtype=np.float64) ** 2
    peak = int(np.argmax(energy))
    half = int(round(DIRECT_WINDOW_S * sr))
    direct = float(energy[max(peak - half, 0):peak + half + 1].sum())
    rest = float(energy.sum()) - direct
    return float(10.0 * np.log10(direct / rest)) if rest > 0 else float("inf")


def _rooms(folder: Path) -> dict[str, tuple[float, float]]:
    """file stem -> (T60, DRR) from ``folder/rooms.csv``, or {} when there is none."""
    path = folder / ROOMS_CSV
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ROOMS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: no column {', '.join(missing)} (expected {', '.join(ROOMS_COLUMNS)})")
        rooms = {}
        for line, row in enumerate(reader, start=2):
            try:
                rooms[row["file"]] = (float(row["t60_500_1k_s"]), float(row["drr_db"]))
            except (TypeError, ValueError):
                raise InputError(f"{path} line {line}: expected numbers in t60_500_1k_s and drr_db") from None
    return rooms


def prepare(root: str | Path, name_prefix: str = "") -> tuple[list[RirFile], list[Reject]]:
    """Every RIR below ``root`` (sorted by relative path; ``rir_file`` is that path after
    ``name_prefix``) and the rejects."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: RIR root not found (expected a folder of room impulse response files, --rir-root)")
    rirs, rejects = [], []
    rooms_by_folder: dict[Path, dict] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _AUDIO_SUFFIXES):
        try:
            rir = load_rir(path)
        except AudioError as exc:
            rejects.append(Reject(str(path), f"room impulse response: {exc.reason}"))
            continue
        if path.parent not in rooms_by_folder:
            rooms_by_folder[path.parent] = _rooms(path.parent)
        listed = rooms_by_folder[path.parent].get(path.stem)
        t60, drr, source = (*listed, ROOMS_CSV) if listed else (schroeder_t60(rir), direct_to_reverberant_db(rir),
                                                               "estimated")
        rirs.append(RirFile(rir_digest(rir), name_prefix + path.relative_to(root).as_posix(), str(path), int(rir.size),
                            t60, drr, source))
    if not rirs:
        raise InputError(f"{root}: no usable room impulse response ({len(rejects)} rejected; expected audio files)")
    return rirs, rejects

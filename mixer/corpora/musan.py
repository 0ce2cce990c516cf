"""MUSAN: music, speech and noise.

Expected layout::

    root/
      noise/free-sound/noise-free-sound-0001.wav ...   -> kind "noise"
      music/fma/music-fma-0000.wav ...                 -> kind "music"
      speech/librivox/speech-librivox-0000.wav ...     -> kind "speech" (only when asked for)

Files are found recursively under each kind's folder; the ANNOTATIONS/LICENSE text files are
not audio and are skipped. ``noise_id`` is the file's stem (MUSAN's stems are unique, e.g.
``noise-free-sound-0001``), or its path relative to ``root`` where stems repeat. Lengths come
from the headers; a file whose header is unreadable, empty or truncated becomes a reject.

Citation: D. Snyder, G. Chen and D. Povey, "MUSAN: A Music, Speech, and Noise Corpus",
arXiv:1510.08484, 2015.
"""
from __future__ import annotations

from pathlib import Path

from shards.errors import InputError

from ..records import NoiseFile, Reject
from ._common import list_audio, noise_records, require_dir, unique_ids

MUSAN_KINDS = ("noise", "music", "speech")


def prepare(
    root: str | Path, *, kinds: tuple[str, ...] = ("noise", "music")
) -> tuple[list[NoiseFile], list[Reject]]:
    """Noise records of ``kinds`` (any of noise, music, speech), sorted by noise_id."""
    root = require_dir(root, "the MUSAN folder holding noise/, music/ (and speech/)")
    unknown = [k for k in kinds if k not in MUSAN_KINDS]
    if unknown:
        raise InputError(
            f"{root}: unknown MUSAN kind(s) {', '.join(unknown)}; expected some of {', '.join(MUSAN_KINDS)}"
        )
    files: list[tuple[Path, str]] = []
    for kind in kinds:
        folder = root / kind
        if not folder.is_dir():
            raise InputError(f"{folder}: folder not found (expected MUSAN's {kind}/<source>/*.wav)")
        files.extend((path, kind) for path in list_audio(folder))
    ids = unique_ids([p for p, _ in files], root)
    return noise_records((ids[p], p, kind) for p, kind in files)

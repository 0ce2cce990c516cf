"""Any folder of audio files used as noise.

Expected layout: audio files anywhere below ``root`` (wav, flac, ogg, mp3, aiff, ...; the
formats soundfile reads, since noise is cut from files without decoding them whole). Hidden
files are skipped. Files of another audio container (mp4, m4a, aac, opus, webm, ...) become
rejects asking for conversion; other files (text, images) are not audio and are skipped.
``noise_id`` is the path relative to ``root`` without extension, made ``safe_id``-clean.
"""
from __future__ import annotations

from pathlib import Path

from shards.errors import InputError
from shards.vocab import NOISE_KINDS

from ..records import NoiseFile, Reject, safe_id
from ._common import SOUNDFILE_EXTENSIONS, index_files, noise_records, require_dir

UNSUPPORTED_CONTAINERS = (".mp4", ".m4a", ".aac", ".opus", ".webm", ".mkv", ".mov", ".wma")


def prepare(
    root: str | Path,
    *,
    kind: str = "noise",
    extensions: tuple[str, ...] = SOUNDFILE_EXTENSIONS,
) -> tuple[list[NoiseFile], list[Reject]]:
    """Every audio file under ``root`` as a noise record of ``kind`` (noise, music, speech or
    unseen), sorted by noise_id."""
    if kind not in NOISE_KINDS:
        raise InputError(f"{root}: unknown noise kind '{kind}'; expected one of {', '.join(NOISE_KINDS)}")
    root = require_dir(root, "a folder of audio files")
    wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    index = index_files(root, wanted | set(UNSUPPORTED_CONTAINERS))
    paths = sorted(p for group in index.values() for p in group)
    rejects: list[Reject] = []
    files: list[tuple[str, Path, str]] = []
    ids: dict[str, Path] = {}
    for path in paths:
        if path.suffix.lower() not in wanted:
            rejects.append(Reject(str(path), f"{path.suffix} files are not read as noise; convert to wav or flac"))
            continue
        noise_id = safe_id(str(path.relative_to(root).with_suffix("")))
        if noise_id in ids:  # a.wav next to a.flac
            noise_id = safe_id(str(path.relative_to(root)))
        ids[noise_id] = path
        files.append((noise_id, path, kind))
    records, header_rejects = noise_records(files)
    return records, rejects + header_rejects

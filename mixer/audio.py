"""Audio input: every file is read as 16 kHz mono float32.

Resampling uses soxr (the library librosa uses by default), downmixing takes the
channel mean. Containers soundfile cannot read (mp4, m4a, mp3, ...) are decoded
in-process with PyAV, whose wheels carry their own ffmpeg libraries.
"""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from shards.vocab import SAMPLE_RATE as TARGET_SR

#: A file whose peak amplitude is below this is treated as silent (about -100 dBFS).
SILENCE_PEAK = 1e-5

_AV_SUFFIXES = {".mp4", ".m4a", ".mp3", ".aac", ".mkv", ".webm", ".mov", ".opus"}


class AudioError(Exception):
    """A file cannot be used as audio; ``reason`` goes to rejects.csv."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def resample(wav: np.ndarray, from_sr: int, to_sr: int = TARGET_SR) -> np.ndarray:
    if from_sr == to_sr:
        return np.ascontiguousarray(wav, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(wav, dtype=np.float32), from_sr, to_sr, quality="HQ").astype(np.float32)


def _to_mono(data: np.ndarray) -> np.ndarray:
    if data.ndim == 2:
        data = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.asarray(data, dtype=np.float32)


def _decode_av(path: Path) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=TARGET_SR)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray()[0])
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray()[0])
    except AudioError:
        raise
    except Exception as exc:  # PyAV raises many error types for broken media
        raise AudioError(path, f"unreadable media ({type(exc).__name__}: {exc})") from None
    if not chunks:
        raise AudioError(path, "empty audio (no decoded samples)")
    return np.concatenate(chunks).astype(np.float32), TARGET_SR


def _riff_shortfall(path: Path) -> str | None:
    """Why a RIFF/WAVE file is truncated, or None. libsndfile quietly reads whatever part of
    a cut-off data chunk is there, so the header's declared size is checked against the file's."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None  # not plain RIFF/WAVE (RF64, other formats): left to the decoder
            pos = 12
            for _ in range(64):  # a handful of chunks before "data" in practice
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                pos += 8
                if chunk_id == b"data":
                    # 0 and 0xFFFFFFFF are what streaming writers leave when the length was unknown
                    if chunk_size in (0, 0xFFFFFFFF) or pos + chunk_size <= size:
                        return None
                    return f"truncated file (header declares {chunk_size} data bytes, {size - pos} present)"
                pos += chunk_size + (chunk_size & 1)
                f.seek(pos)
    except OSError:
        return None
    return None


def _check(path, wav: np.ndarray) -> np.ndarray:
    if wav.size == 0:
        raise AudioError(path, "empty audio (0 samples)")
    if not np.all(np.isfinite(wav)):
        raise AudioError(path, "audio holds NaN or infinite samples")
    if float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise AudioError(path, "silent audio (peak below -100 dBFS)")
    return wav


def load_audio(path: str | Path, sr: int = TARGET_SR) -> np.ndarray:
    """Whole file as mono float32 at ``sr``. Raises :class:`AudioError` for unreadable,
    truncated, empty or silent files."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.suffix.lower() in _AV_SUFFIXES:
        data, native_sr = _decode_av(path)
    else:
        try:
            data, native_sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioError(path, f"unreadable audio ({exc})") from None
        shortfall = _riff_shortfall(path)
        if shortfall:
            raise AudioError(path, shortfall)
        data = _to_mono(data)
    return _check(path, resample(data, native_sr, sr))


def audio_info(path: str | Path) -> tuple[int, int]:
    """(frames, sample_rate) from the header alone."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioError(path, f"unreadable audio header ({exc})") from None
    if info.frames <= 0:
        raise AudioError(path, "empty audio (0 frames)")
    shortfall = _riff_shortfall(path)
    if shortfall:
        raise AudioError(path, shortfall)
    return int(info.frames), int(info.samplerate)


def read_segment(path: str | Path, start: int, num_samples: int, sr: int = TARGET_SR) -> np.ndarray:
    """``num_samples`` samples at ``sr`` starting at sample ``start`` (in the ``sr`` time base),
    reading only that part of the file. Shorter than asked when the file ends first."""
    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as f:
            native_sr = f.samplerate
            native_start = (start * native_sr) // sr
            # a few extra native frames so the resampler has what it needs at the far edge
            native_count = math.ceil(num_samples * native_sr / sr) + (0 if native_sr == sr else 16)
            f.seek(min(native_start, f.frames))
            data = f.read(native_count, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(path, f"unreadable audio ({exc})") from None
    seg = resample(_to_mono(data), native_sr, sr)
    return seg[:num_samples]

"""Reading audio files as the store holds audio: mono float32 at 16 kHz.

Downmixing takes the channel mean; resampling uses soxr (what librosa uses by default) at
its high quality. ``prep`` adds its corpus checks on top (``mixer.audio``: truncation,
silence, media containers); the trainer reads loose files with :func:`read_audio_file`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from shards.vocab import SAMPLE_RATE


def to_mono(data: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) samples as one float32 channel (the mean)."""
    if data.ndim == 2:
        data = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.asarray(data, dtype=np.float32)


def resample(wav: np.ndarray, from_sr: int, to_sr: int = SAMPLE_RATE) -> np.ndarray:
    if from_sr == to_sr:
        return np.ascontiguousarray(wav, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(wav, dtype=np.float32), from_sr, to_sr, quality="HQ").astype(np.float32)


def decode_soundfile(path: str | Path) -> tuple[np.ndarray, int, int]:
    """(samples as (frames, channels) float32, sample rate, frames the header states) of a
    file soundfile reads; soundfile's errors pass through."""
    with sf.SoundFile(str(path)) as f:
        stated, rate = f.frames, f.samplerate
        data = f.read(dtype="float32", always_2d=True)
    return data, rate, stated


def read_audio_file(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A loose audio file (any format soundfile reads) as mono float32 at ``sr``.
    ValueError says why a file is unusable."""
    try:
        data, rate, _ = decode_soundfile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ValueError(f"not readable as audio ({exc})") from None
    wav = to_mono(data)
    if not np.all(np.isfinite(wav)):
        raise ValueError("audio holds NaN or infinite samples")
    return resample(wav, rate, sr)

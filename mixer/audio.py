"""Audio input: every file is read as 16 kHz mono float32.

Decoding, downmixing (the channel mean) and resampling (soxr) are the store's own
(:mod:`shards.audio`); this module adds the corpus checks (truncation, silence,
non-finite samples) and the media containers. Containers soundfile cannot read (mp4, m4a, mp3, ...) are decoded
in-process with PyAV, whose wheels carry their own ffmpeg libraries.
"""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from shards.audio import decode_soundfile, resample, to_mono
from shards.vocab import SAMPLE_RATE as TARGET_SR

#: A file whose peak amplitude is below this is treated as silent (about -100 dBFS).
SILENCE_PEAK = 1e-5
SILENT_REASON = "silent audio (peak below -100 dBFS)"
#: A file that decodes to fewer frames than its container states, by more than this share
#: of the stated length or this many seconds (whichever is more), is truncated. The slack
#: covers encoder padding and length estimates from a bitrate (mp3 without a Xing header).
SHORTFALL_SHARE = 0.01
SHORTFALL_SECONDS = 0.1
#: Blocks (frames) in which :func:`scan_audio` reads a file end to end.
SCAN_BLOCK = 1 << 16

_AV_SUFFIXES = {".mp4", ".m4a", ".mp3", ".aac", ".mkv", ".webm", ".mov", ".opus"}


class AudioError(Exception):
    """A file cannot be used as audio; ``reason`` goes to rejects.csv."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _decode_av(path: Path) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream")
            stream = container.streams.audio[0]
            native_sr = stream.rate
            stated = _av_stated_frames(container, stream)
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=TARGET_SR)
            chunks = []
            decoded = 0
            for frame in container.decode(stream):
                decoded += frame.samples
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
    shortfall = _length_shortfall(stated, decoded, native_sr)
    if shortfall:
        raise AudioError(path, shortfall)
    return np.concatenate(chunks).astype(np.float32), TARGET_SR


def _av_stated_frames(container, stream) -> int | None:
    """The length in frames the container states for ``stream`` (mp4/m4a: the track header;
    mp3: the Xing/VBRI frame count, else ffmpeg's estimate from the bitrate), or None."""
    rate = stream.rate
    if not rate:
        return None
    if stream.duration is not None and stream.time_base is not None:
        return int(round(float(stream.duration * stream.time_base) * rate))
    # the container's duration (AV_TIME_BASE, microseconds) is the longest stream's: only
    # the audio's own when there is no other (a webm's video may outlast its audio)
    if container.duration is not None and len(container.streams) == 1:
        return int(round(container.duration / 1_000_000 * rate))
    return None


def _length_shortfall(stated: int | None, decoded: int, rate: int) -> str | None:
    """Why a file that decoded to ``decoded`` frames is truncated, or None: it is when the
    container states a length and ``decoded`` falls short of it by more than the slack."""
    if not stated or stated <= 0 or not rate:
        return None
    slack = max(SHORTFALL_SHARE * stated, SHORTFALL_SECONDS * rate)
    if stated - decoded <= slack:
        return None
    return (f"truncated file (the container states {stated / rate:.3f} s, "
            f"only {decoded / rate:.3f} s decode)")


def _ogg_shortfall(path: Path) -> str | None:
    """Why an Ogg file (Vorbis, Opus, FLAC in Ogg) is truncated, or None. Ogg keeps no
    total length up front, and libsndfile takes the length from the last page it finds, so
    a cut-off file reads as a shorter, complete one; but a complete stream's last page
    carries the end-of-stream flag and ends exactly at the end of the file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if f.read(4) != b"OggS":
                return None
            # a page is at most 27 + 255 + 255 * 255 bytes: the last one starts in this tail
            start = max(0, size - 65536 - 307)
            f.seek(start)
            tail = f.read()
    except OSError:
        return None
    pos = tail.rfind(b"OggS")
    while pos >= 0:
        head = tail[pos : pos + 27]
        if len(head) == 27 and head[4] == 0:  # stream structure version 0
            segments = head[26]
            table = tail[pos + 27 : pos + 27 + segments]
            end = start + pos + 27 + segments + sum(table)
            if len(table) == segments and end == size:
                if head[5] & 0x04:
                    return None
                return "truncated file (the last Ogg page is not marked end-of-stream)"
        pos = tail.rfind(b"OggS", 0, pos)
    return "truncated file (the last Ogg page is cut off)"


def _first_nonfinite(data: np.ndarray) -> int | None:
    """Index of the first frame holding NaN or inf, or None."""
    bad = ~np.isfinite(data)
    if not bad.any():
        return None
    if bad.ndim == 2:
        bad = bad.any(axis=1)
    return int(np.argmax(bad))


def _nonfinite_reason(frame: int, rate: int) -> str:
    return f"audio holds NaN or infinite samples (first at {frame / rate:.3f} s)"


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
        raise AudioError(path, SILENT_REASON)
    return wav


def load_audio(path: str | Path, sr: int = TARGET_SR, channel: int | None = None,
               max_seconds: float | None = None) -> np.ndarray:
    """Whole file as mono float32 at ``sr``. Raises :class:`AudioError` for unreadable,
    truncated, empty or silent files and for NaN or infinite samples. The level is left as
    decoded: a float file may go beyond +-1 (see :func:`mixer.mixing.fit_pcm16`).
    ``channel``: that channel alone (0: the first) instead of the channels' mean (media
    containers are always downmixed); ``max_seconds``: a longer file is refused."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.suffix.lower() in _AV_SUFFIXES:
        data, native_sr = _decode_av(path)
        shortfall = _ogg_shortfall(path)  # .opus: Ogg states no length up front
        if shortfall:
            raise AudioError(path, shortfall)
    else:
        try:
            data, native_sr, stated = decode_soundfile(path)
        except Exception as exc:
            raise AudioError(path, f"unreadable audio ({exc})") from None
        shortfall = _riff_shortfall(path) or _ogg_shortfall(path) or _length_shortfall(stated, len(data), native_sr)
        if shortfall:
            raise AudioError(path, shortfall)
        data = to_mono(data) if channel is None else np.ascontiguousarray(data[:, min(channel, data.shape[1] - 1)])
    if max_seconds is not None and len(data) > max_seconds * native_sr:
        raise AudioError(path, f"too long ({len(data) / native_sr:.3f} s, the limit is {max_seconds:g} s)")
    bad = _first_nonfinite(data)
    if bad is not None:
        raise AudioError(path, _nonfinite_reason(bad, native_sr))
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
    shortfall = _riff_shortfall(path) or _ogg_shortfall(path)
    if shortfall:
        raise AudioError(path, shortfall)
    return int(info.frames), int(info.samplerate)


def scan_audio(path: str | Path) -> tuple[int, int]:
    """(frames, sample_rate) of a file read from end to end in blocks (memory stays flat).
    Raises :class:`AudioError` for what :func:`audio_info` refuses, and for a file that
    decodes to fewer frames than its header states (a cut-off mp3), holds NaN or infinite
    samples, or is silent. A plain integer PCM WAV can hold neither NaN nor a hidden cut
    (its header is checked), so it is read only up to its first audible block."""
    path = Path(path)
    frames, rate = audio_info(path)
    decoded, audible = 0, False
    try:
        with sf.SoundFile(str(path)) as f:
            integer_wav = f.format in ("WAV", "WAVEX") and f.subtype.startswith("PCM")
            # read() returns what decoded; blocks() would pad a cut-off file to its stated length
            while len(block := f.read(SCAN_BLOCK, dtype="float32", always_2d=True)):
                bad = _first_nonfinite(block)
                if bad is not None:
                    raise AudioError(path, _nonfinite_reason(decoded + bad, rate))
                decoded += len(block)
                if not audible and float(np.max(np.abs(block), initial=0.0)) >= SILENCE_PEAK:
                    audible = True
                    if integer_wav:
                        return frames, rate
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(path, f"unreadable audio ({exc})") from None
    shortfall = _length_shortfall(frames, decoded, rate)
    if shortfall:
        raise AudioError(path, shortfall)
    if decoded == 0:
        raise AudioError(path, "empty audio (no decoded samples)")
    if not audible:
        raise AudioError(path, SILENT_REASON)
    return frames, rate


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
    bad = _first_nonfinite(data)
    if bad is not None:  # the file changed since the scan (scan_audio refuses such files)
        raise AudioError(path, _nonfinite_reason(native_start + bad, native_sr))
    seg = resample(to_mono(data), native_sr, sr)
    return seg[:num_samples]

"""The arithmetic that turns a mix's recipe into its samples: one home for the build and
every reader. A recipe is (clean utterance, noise, ``noise_offset``, ``noise_gain``,
``gain``); its samples are ``quantize_pcm16((clean + noise_gain * noise) * gain)`` with the
noise cut at ``noise_offset`` (or repeated when shorter than the utterance). The build
(``mixer.mixing.mix_at_snr``) renders a mix with :func:`render_mix`; a recipe store's reader
renders it with :func:`mix_recipe` from the stored clean FLAC and the stored 16-bit noise,
so the mix that was scored is the mix every reader gets, bit for bit. Pure functions on
numpy arrays: no files, no state.
"""
from __future__ import annotations

import numpy as np

INT16_SCALE = 32768.0
#: Largest float that survives 16-bit PCM without clipping.
FULL_SCALE = 32767.0 / 32768.0


class MixError(Exception):
    """This mix cannot be made (e.g. the noise segment is silent or empty)."""


def quantize_pcm16(wav: np.ndarray) -> np.ndarray:
    """Round to the 16-bit grid (what a PCM_16 FLAC/WAV stores), as float32."""
    ints = np.clip(np.round(np.asarray(wav, dtype=np.float64) * INT16_SCALE), -32768, 32767)
    return (ints / INT16_SCALE).astype(np.float32)


def pcm16_to_float(pcm: np.ndarray) -> np.ndarray:
    """16-bit integer samples as the float32 values a PCM_16 file decodes to (x / 32768)."""
    return (np.asarray(pcm, dtype=np.float32) / np.float32(INT16_SCALE)).astype(np.float32, copy=False)


def float_to_pcm16(wav: np.ndarray) -> np.ndarray:
    """float32 samples already on the 16-bit grid (see :func:`quantize_pcm16`) as int16."""
    return np.clip(np.round(np.asarray(wav, dtype=np.float64) * INT16_SCALE), -32768, 32767).astype(np.int16)


def noise_stretch(noise: np.ndarray, num_samples: int, offset: int = 0) -> np.ndarray:
    """The noise stretch laid under an utterance of ``num_samples``: cut at ``offset`` when
    long enough, otherwise the whole noise repeated end to end (the authors' code repeats
    short noise). Keeps the dtype: cutting a long int16 noise first and converting only the
    stretch keeps a read cheap."""
    noise = np.asarray(noise)
    if noise.size == 0:
        raise MixError("noise segment is empty")
    if noise.size - offset >= num_samples:
        return noise[offset : offset + num_samples]
    reps = -(-num_samples // noise.size)
    return np.tile(noise, reps)[:num_samples]


def fit_noise(noise: np.ndarray, num_samples: int, offset: int = 0) -> np.ndarray:
    """:func:`noise_stretch` of a float noise, as float32."""
    return noise_stretch(np.asarray(noise, dtype=np.float32), num_samples, offset)


def _render(s: np.ndarray, n: np.ndarray, noise_gain: float, gain: float) -> np.ndarray:
    """``quantize_pcm16((s + noise_gain * n) * gain)`` computed in place in ``n`` (float64, owned):
    the same operations in the same order as :func:`quantize_pcm16` of the mix, so the same
    bits, with fewer passes over memory (a read renders every mix of an epoch)."""
    if s.shape != n.shape:
        raise ValueError(f"speech and noise differ in length: {s.shape} vs {n.shape}")
    n *= noise_gain
    n += s
    if gain != 1.0:  # x * 1.0 is x exactly
        n *= gain
    n *= INT16_SCALE
    np.rint(n, out=n)  # what np.round does with no decimals: half to even
    np.clip(n, -32768, 32767, out=n)
    out = n.astype(np.float32)  # integers up to 2**15: exact in float32
    out *= np.float32(1.0 / INT16_SCALE)  # a power of two: exact, as the float64 division is
    return out


def render_mix(clean: np.ndarray, noise: np.ndarray, noise_gain: float, gain: float) -> np.ndarray:
    """``quantize_pcm16((clean + noise_gain * noise) * gain)`` in float64: the stored mix of a
    clean signal and a noise stretch of its length."""
    return _render(np.asarray(clean, dtype=np.float64), np.array(noise, dtype=np.float64), noise_gain, gain)


def _as_float64(wav: np.ndarray) -> np.ndarray:
    """Samples as float64; 16-bit integers as a PCM_16 file decodes them (x / 32768, exact)."""
    wav = np.asarray(wav)
    if wav.dtype == np.int16:
        out = wav.astype(np.float64)
        out *= 1.0 / INT16_SCALE
        return out
    return wav.astype(np.float64)


def mix_recipe(clean: np.ndarray, noise_pcm16: np.ndarray, noise_offset: int, noise_gain: float,
               gain: float) -> np.ndarray:
    """A recipe's samples: ``clean`` (float32 on the 16-bit grid as decoded from the store, or
    its int16 samples) mixed with the stored 16-bit noise cut at ``noise_offset``:
    :func:`render_mix` of the clean signal and the noise stretch as a PCM_16 file decodes it."""
    n = _as_float64(noise_stretch(noise_pcm16, int(np.asarray(clean).size), int(noise_offset)))
    return _render(_as_float64(clean), n, float(noise_gain), float(gain))

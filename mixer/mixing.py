"""SNR mixing as in the MetricAug paper (Wu and Lee, Interspeech 2023): ``mix = s + g*n`` with ``g`` chosen so that
``10*log10(P_s / (g^2 * P_n)) = snr_db``, powers being mean squares over the utterance.

Everything a shard stores is 16-bit, so mixing works on the 16-bit-quantised clean
utterance and the achieved SNR is measured on the quantised mix that is written: the
metrics and the recorded SNR describe exactly the bytes a reader gets back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shards.mixing import (  # noqa: F401  (the arithmetic lives on the ground floor)
    FULL_SCALE, INT16_SCALE, MixError, fit_noise, noise_stretch, quantize_pcm16, render_mix,
)

#: A noise segment quieter than this (mean square) cannot set an SNR.
MIN_NOISE_POWER = 1e-12


@dataclass(frozen=True)
class Mix:
    wav: np.ndarray  # float32, exactly representable in 16-bit PCM
    noise_gain: float  # g
    gain: float  # applied to speech and noise together to avoid clipping (1.0 if none)
    snr_achieved: float  # dB, measured on the stored (quantised) mix


def fit_pcm16(wav: np.ndarray) -> tuple[np.ndarray, float]:
    """``wav`` on the 16-bit grid, and the gain applied to it. A signal the grid can hold
    is only rounded (gain 1.0, the bytes of :func:`quantize_pcm16`). One that would clip (a
    float file beyond +-1, a resampler overshooting near full scale) is scaled as a whole
    to full scale instead, as :func:`mix_at_snr` does with a mix, and the gain returned so
    that it can be recorded: never clipped."""
    x = np.asarray(wav, dtype=np.float64)
    ints = np.round(x * INT16_SCALE)
    if ints.size == 0 or (ints.max() <= 32767 and ints.min() >= -32768):
        return quantize_pcm16(wav), 1.0
    gain = FULL_SCALE / float(np.max(np.abs(x)))
    return quantize_pcm16(x * gain), gain


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> Mix:
    """Mix ``noise`` (same length as ``speech``) under ``speech`` at ``snr_db``."""
    s = np.asarray(speech, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    if s.shape != n.shape:
        raise ValueError(f"speech and noise differ in length: {s.shape} vs {n.shape}")
    p_s = float(np.mean(s * s))
    p_n = float(np.mean(n * n))
    if p_n < MIN_NOISE_POWER:
        raise MixError("noise segment is silent")
    g = float(np.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0))))
    peak = float(np.max(np.abs(s + g * n)))
    # scale speech and noise together: the SNR stays as asked, only the level drops
    gain = FULL_SCALE / peak if peak > FULL_SCALE else 1.0
    stored = render_mix(s, n, g, gain)  # the one recipe arithmetic (shards.mixing), as every reader renders it
    residual = stored.astype(np.float64) - gain * s
    snr_achieved = 10.0 * np.log10(np.sum((gain * s) ** 2) / max(float(np.sum(residual**2)), 1e-300))
    return Mix(wav=stored, noise_gain=g, gain=gain, snr_achieved=float(snr_achieved))

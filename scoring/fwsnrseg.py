"""Frequency-weighted segmental SNR (fwSNRseg), vectorized and with per-utterance reuse.

Y. Hu and P. C. Loizou, "Evaluation of Objective Quality Measures for Speech Enhancement",
IEEE TASLP 16(1), 2008 (and Loizou, "Speech Enhancement: Theory and Practice", 2007, whose
Matlab ``comp_fwseg`` this follows). Per frame: magnitude spectra of clean and degraded
(Hann window of 30 ms, 75 % overlap), each normalised to unit sum over the bins below Nyquist,
filtered into 25 Gaussian-shaped critical bands; the band SNR ``10 log10(C^2 / (C - D)^2)``
is averaged with weights ``C^0.2`` (gamma = 0.2), clamped to [-10, 35] dB, then averaged
over frames.

The numbers follow pysepm's ``fwSNRseg(clean, degraded, fs)`` (the reference implementation) to floating-point rounding, including its details: ``eps`` added to both
signals, ``int(len/skip - win/skip)`` frames, the Nyquist bin dropped, squared error floored at
``eps``. Everything that depends on the clean signal alone lives in :class:`FwSnrSegReference`.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sp_fft

__all__ = ["FwSnrSegReference", "fwsnrseg"]

EPS = np.finfo(np.float64).eps
GAMMA = 0.2  # exponent of the clean band energy used as the weight
MIN_SNR_DB, MAX_SNR_DB = -10.0, 35.0
_FRAMES_PER_CHUNK = 128  # ~1 MB of zero-padded frames per FFT call
# Critical bands of Loizou's comp_fwseg: centre frequencies and bandwidths in Hz.
CENTRE_FREQS = np.array([
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717,
    904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
    2446.71, 2701.97, 2978.04, 3276.17, 3597.63,
])
BANDWIDTHS = np.array([
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256,
    127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255,
    276.072, 298.126, 321.465, 346.136,
])


class _Framing:
    """Frame geometry, window and critical-band filters for one (fs, frame_len, overlap)."""

    def __init__(self, fs: int, frame_len: float, overlap: float):
        # Same expressions as the reference so that rounding picks the same integers.
        self.win_len = int(round(frame_len * fs))
        self.hop = int(np.floor((1 - overlap) * frame_len * fs))
        if self.win_len < 1 or self.hop < 1:
            raise ValueError(f"frame_len={frame_len}, overlap={overlap} at fs={fs} give no frames")
        self.nfft = int(2 ** np.ceil(np.log2(2 * self.win_len)))
        self.n_bins = self.nfft // 2  # bins 0 .. nfft/2 - 1; the Nyquist bin is dropped
        n = np.arange(1, self.win_len + 1)
        self.window = 0.5 * (1 - np.cos(2 * np.pi * n / (self.win_len + 1)))

        # Gaussian band shapes in bins, cut below their -30 dB points, scaled so that wider
        # bands get proportionally smaller peaks.
        max_freq = fs / 2
        bins = np.arange(self.n_bins)
        centre_bin = np.floor(CENTRE_FREQS / max_freq * self.n_bins)
        width_bins = BANDWIDTHS / max_freq * self.n_bins
        norm = np.log(BANDWIDTHS[0]) - np.log(BANDWIDTHS)
        filters = np.exp(
            -11 * ((bins[None, :] - centre_bin[:, None]) / width_bins[:, None]) ** 2
            + norm[:, None]
        )
        filters *= filters > np.exp(-30.0 / (2.0 * 2.303))
        # Only the bins some band touches take part in the band product.
        used = np.flatnonzero(filters.any(axis=0))
        self.bin_lo, self.bin_hi = int(used[0]), int(used[-1]) + 1
        self.filters_t = np.ascontiguousarray(filters[:, self.bin_lo : self.bin_hi].T)

    def n_frames(self, n_samples: int) -> int:
        return int(n_samples / self.hop - self.win_len / self.hop)

    def band_energies(self, x: np.ndarray, n_frames: int) -> np.ndarray:
        """(n,) signal -> (frames, 25) critical-band energies of the sum-normalised spectrum."""
        x = np.asarray(x, dtype=np.float64) + EPS
        frames = sliding_window_view(x, self.win_len)[: n_frames * self.hop : self.hop]
        energies = np.empty((n_frames, len(CENTRE_FREQS)))
        # Frames go through in cache-sized chunks: whole-signal temporaries (several MB each)
        # cost more in page faults and cache misses than the FFT itself.
        padded = np.zeros((min(n_frames, _FRAMES_PER_CHUNK), self.nfft))
        for start in range(0, n_frames, _FRAMES_PER_CHUNK):
            stop = min(start + _FRAMES_PER_CHUNK, n_frames)
            chunk = padded[: stop - start]
            np.multiply(frames[start:stop], self.window, out=chunk[:, : self.win_len])
            mag = np.abs(sp_fft.rfft(chunk, axis=-1)[:, : self.n_bins])
            band = np.matmul(mag[:, self.bin_lo : self.bin_hi], self.filters_t,
                             out=energies[start:stop])
            # Normalising the spectrum to unit sum is linear, so it is applied after the band
            # product (one division per band instead of one per bin).
            band /= np.sum(mag, axis=1, keepdims=True)
        return energies



@lru_cache(maxsize=32)
def _framing(fs: int, frame_len: float, overlap: float) -> _Framing:
    return _Framing(fs, frame_len, overlap)


class FwSnrSegReference:
    """The clean side of fwSNRseg for one utterance, scored against many degraded versions."""

    def __init__(self, clean: np.ndarray, fs: int, frame_len: float = 0.03, overlap: float = 0.75):
        clean = np.asarray(clean)
        if clean.ndim != 1:
            raise ValueError(f"clean must be 1-D, got shape {clean.shape}")
        if int(fs) != fs or fs <= 0:
            raise ValueError(f"fs must be a positive integer, got {fs!r}")
        self.fs = int(fs)
        self.n_samples = clean.shape[0]
        self._framing = _framing(self.fs, float(frame_len), float(overlap))
        self.n_frames = self._framing.n_frames(self.n_samples)
        if self.n_frames < 1:
            raise ValueError(
                f"signal of {self.n_samples} samples is shorter than one "
                f"{self._framing.win_len}-sample frame"
            )
        clean_energy = self._framing.band_energies(clean, self.n_frames)  # (frames, 25)
        self._clean_energy = clean_energy
        self._clean_energy_sq = clean_energy * clean_energy
        weights = clean_energy**GAMMA
        self._weights = weights / np.sum(weights, axis=1, keepdims=True)

    def score(self, degraded: np.ndarray) -> float:
        """fwSNRseg in dB of one degraded signal (same shape as the clean one)."""
        y = np.asarray(degraded)
        if y.shape != (self.n_samples,):
            raise ValueError(
                f"degraded must have the clean signal's shape {(self.n_samples,)}, got {y.shape}"
            )
        energy = self._framing.band_energies(y, self.n_frames)
        error = energy - self._clean_energy
        error *= error
        np.maximum(error, EPS, out=error)
        snr_db = np.log10(self._clean_energy_sq / error)
        snr_db *= 10
        frame_snr = np.einsum("fb,fb->f", self._weights, snr_db)
        np.clip(frame_snr, MIN_SNR_DB, MAX_SNR_DB, out=frame_snr)
        return float(np.mean(frame_snr))

    def score_many(self, degraded: Sequence[np.ndarray]) -> np.ndarray:
        """Scores of several degraded versions, shape (len(degraded),), float64."""
        return np.array([self.score(y) for y in degraded], dtype=np.float64)


def fwsnrseg(
    clean: np.ndarray, degraded: np.ndarray, fs: int, frame_len: float = 0.03,
    overlap: float = 0.75,
) -> float:
    """Frequency-weighted segmental SNR (dB) of ``degraded`` against ``clean``, as pysepm's
    ``fwSNRseg``. Raises ValueError when the shapes differ or the signal is shorter than a frame.
    """
    clean = np.asarray(clean)
    degraded = np.asarray(degraded)
    if clean.shape != degraded.shape:
        raise ValueError(f"clean and degraded differ in shape: {clean.shape} vs {degraded.shape}")
    return FwSnrSegReference(clean, fs, frame_len, overlap).score(degraded)

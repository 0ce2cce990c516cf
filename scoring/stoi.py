"""Short-Time Objective Intelligibility, vectorized and with per-utterance reuse.

STOI: C. H. Taal, R. C. Hendriks, R. Heusdens and J. Jensen, "An Algorithm for Intelligibility
Prediction of Time-Frequency Weighted Noisy Speech", IEEE TASLP 19(7), 2011.
Extended STOI (ESTOI): J. Jensen and C. H. Taal, "An Algorithm for Predicting the
Intelligibility of Speech Masked by Modulated Noise Maskers", IEEE TASLP 24(11), 2016.

The numbers follow pystoi 0.4.1 (the reference implementation) to within
floating-point rounding: same Octave-compatible resampler to 10 kHz, same silent-frame removal
(decided from the clean signal only, applied to both), same 256-sample Hann STFT with 512-point
FFT, same 15 one-third-octave bands and 30-frame segments. What differs is the arrangement:
everything that depends only on the clean signal is computed once in :class:`StoiReference`, and
the degraded side runs without Python loops over frames, bands or segments.

One deliberate deviation: pystoi's ESTOI adds ``EPS * randn`` before normalising, which only
matters for segments whose envelope is exactly constant (e.g. digital silence); there we use
a zero vector instead of a random one so that results are deterministic.
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sp_fft
from scipy.signal import resample_poly

from ._resample import BlockResampler

__all__ = ["STOI_FS", "StoiReference", "stoi", "TOO_SHORT_VALUE"]

STOI_FS = 10000  # internal sampling rate of STOI
FRAME_LEN = 256  # analysis window, samples at 10 kHz
HOP = FRAME_LEN // 2
NFFT = 512
NUM_BANDS = 15
MIN_FREQ = 150.0  # centre of the lowest one-third-octave band, Hz
SEGMENT_LEN = 30  # frames per intermediate-intelligibility segment (384 ms)
BETA_DB = -15.0  # lower signal-to-distortion bound of the clipping step
DYN_RANGE_DB = 40.0  # frames more than this below the loudest clean frame are dropped
EPS = np.finfo(np.float64).eps
# pystoi returns this (with a RuntimeWarning) when fewer than 30 frames survive silence removal.
TOO_SHORT_VALUE = 1e-5

_CLIP_FACTOR = 1.0 + 10.0 ** (-BETA_DB / 20.0)
# Matlab's hanning(N): the N interior points of an (N+2)-point Hann window.
_HANN = np.hanning(FRAME_LEN + 2)[1:-1]
_HANN_HEAD = np.ascontiguousarray(_HANN[:HOP])
_HANN_TAIL = np.ascontiguousarray(_HANN[HOP:])
_RESAMPLE_CHUNK = 8  # mixes resampled per resample_poly call (bounds memory for long clips)


def _third_octave_matrix() -> tuple[np.ndarray, int, int]:
    """Band matrix (15, bins) restricted to the FFT bins it touches, plus that bin range.

    Band edges are snapped to the nearest FFT bin and the upper edge bin is excluded, as in
    Taal's reference Matlab code.
    """
    freqs = np.linspace(0, STOI_FS, NFFT + 1)[: NFFT // 2 + 1]
    k = np.arange(NUM_BANDS, dtype=float)
    low = MIN_FREQ * np.power(2.0, (2 * k - 1) / 6)
    high = MIN_FREQ * np.power(2.0, (2 * k + 1) / 6)
    obm = np.zeros((NUM_BANDS, len(freqs)))
    for band in range(NUM_BANDS):  # 15 iterations, once at import
        lo_bin = int(np.argmin(np.square(freqs - low[band])))
        hi_bin = int(np.argmin(np.square(freqs - high[band])))
        obm[band, lo_bin:hi_bin] = 1.0
    used = np.flatnonzero(obm.any(axis=0))
    first, last = int(used[0]), int(used[-1]) + 1
    # Transposed and contiguous so that (frames, bins) @ (bins, bands) is one GEMM.
    return np.ascontiguousarray(obm[:, first:last].T), first, last


_OBM_T, _BIN_LO, _BIN_HI = _third_octave_matrix()


@lru_cache(maxsize=None)
def _octave_resampling_window(fs_out: int, fs_in: int) -> np.ndarray:
    """Kaiser-windowed sinc anti-aliasing filter of Octave's ``resample`` (60 dB rejection).

    Normalised to unit sum, as pystoi passes it to ``scipy.signal.resample_poly``.
    """
    g = math.gcd(fs_out, fs_in)
    up, down = fs_out // g, fs_in // g
    stopband_cutoff = 1.0 / (2 * max(up, down))
    roll_off_width = stopband_cutoff / 10
    rejection_db = 60.0
    half_len = math.ceil((rejection_db - 8) / (28.714 * roll_off_width))
    t = np.arange(-half_len, half_len + 1, dtype=float)
    ideal = 2 * up * stopband_cutoff * np.sinc(2 * stopband_cutoff * t)
    beta = 0.1102 * (rejection_db - 8.7)  # Kaiser's formula for rejection > 50 dB
    h = np.kaiser(2 * half_len + 1, beta) * ideal
    h = h / np.sum(h)
    h.setflags(write=False)
    return h


def _resample_to_stoi_fs(x: np.ndarray, fs: int) -> np.ndarray:
    """Resample along the last axis to 10 kHz exactly as pystoi does (float64 out)."""
    if fs == STOI_FS:
        return np.asarray(x, dtype=np.float64)
    # resample_poly copies the window before scaling it, so the cached array stays intact.
    return resample_poly(x, STOI_FS, fs, axis=-1, window=_octave_resampling_window(STOI_FS, fs))


@lru_cache(maxsize=None)
def _block_resampler(fs: int) -> BlockResampler | None:
    resampler = BlockResampler(STOI_FS, fs, _octave_resampling_window(STOI_FS, fs))
    return resampler if resampler.usable else None


def _resample_rows_fast(x: np.ndarray, fs: int) -> np.ndarray:
    """(m, n) -> (m, n10): same filter as pystoi, evaluated as GEMMs where that is possible.

    Used for the degraded signals only: differences from resample_poly are summation-order
    rounding (~1e-16 relative), far below what moves STOI at 1e-12. The clean signal goes
    through resample_poly itself because its frame energies decide the silent-frame mask.
    """
    if fs == STOI_FS:
        return np.asarray(x, dtype=np.float64)
    resampler = _block_resampler(fs)
    if resampler is None:
        return _resample_to_stoi_fs(x, fs)
    return resampler(x)


def _check_fs(fs) -> int:
    if int(fs) != fs or fs <= 0:
        raise ValueError(f"fs must be a positive integer, got {fs!r}")
    return int(fs)


def _blocks(x10: np.ndarray, n_blocks: int) -> np.ndarray:
    """View (..., n_blocks, HOP) of consecutive half-frames of a 10 kHz signal."""
    return x10[..., : n_blocks * HOP].reshape(*x10.shape[:-1], n_blocks, HOP)


class StoiReference:
    """The clean side of STOI / ESTOI for one utterance, scored against many degraded versions.

    ``StoiReference(clean, fs).score(degraded)`` equals ``pystoi.stoi(clean, degraded, fs)``;
    ``score_many`` does the same for a list of degraded signals of the clean signal's length
    and resamples them together.
    """

    def __init__(self, clean: np.ndarray, fs: int, extended: bool = False):
        clean = np.asarray(clean)
        if clean.ndim != 1:
            raise ValueError(f"clean must be 1-D, got shape {clean.shape}")
        self.fs = _check_fs(fs)
        self.extended = bool(extended)
        self.n_samples = clean.shape[0]

        x10 = _resample_to_stoi_fs(clean, self.fs)
        self._n_10k = x10.shape[0]
        # Frame starts 0, 128, ... strictly below len - 256 (pystoi's range()).
        n_frames = max(0, -(-(self._n_10k - FRAME_LEN) // HOP))
        if n_frames == 0:
            self._kept = np.zeros(0, dtype=np.intp)
        else:
            blocks = _blocks(x10, n_frames + 1)
            frames = np.concatenate(
                [blocks[:n_frames] * _HANN_HEAD, blocks[1 : n_frames + 1] * _HANN_TAIL], axis=1
            )
            # Computed exactly as pystoi does, so that no frame flips across the threshold.
            energy_db = 20 * np.log10(np.linalg.norm(frames, axis=1) + EPS)
            self._kept = np.flatnonzero((np.max(energy_db) - DYN_RANGE_DB - energy_db) < 0)
        self._n_frames_total = n_frames
        # k kept frames overlap-add to (k+1) half-frames; the STFT of that has k-1 frames.
        self.n_stft_frames = max(0, len(self._kept) - 1)
        self.n_segments = self.n_stft_frames - SEGMENT_LEN + 1
        self.enough_frames = self.n_segments >= 1
        if not self.enough_frames:
            return

        x_env = self._band_envelope(x10)  # (bands, frames)
        x_seg = sliding_window_view(x_env, SEGMENT_LEN, axis=-1)  # (bands, J, 30) view
        if self.extended:
            self._x_hat = _row_col_normalize(x_seg)
        else:
            x_norm = np.sqrt(np.einsum("bjk,bjk->bj", x_seg, x_seg))
            self._x_norm = x_norm
            self._x_clip = x_seg * _CLIP_FACTOR
            centred = x_seg - np.mean(x_seg, axis=-1, keepdims=True)
            centred /= (np.sqrt(np.einsum("bjk,bjk->bj", centred, centred)) + EPS)[..., None]
            self._x_hat = centred

    # -- shared pipeline ---------------------------------------------------------------------
    def _band_envelope(self, y10: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
        """One signal at 10 kHz -> (bands, stft frames) one-third-octave envelopes.

        Applies the clean-derived silent-frame mask, overlap-adds the kept windowed frames
        (hop = half a frame, so each output half-frame is a head plus the previous tail) and
        takes the STFT of the result, all without building the intermediate signal.
        ``frames`` is an optional (frames, NFFT) work buffer whose columns from FRAME_LEN on
        are zero; it is reused across the mixes of one utterance.
        """
        kept = self._kept
        blocks = _blocks(y10, self._n_frames_total + 1)
        ola = blocks[kept] * _HANN_HEAD  # heads of the kept frames
        ola[1:] += blocks[kept[:-1] + 1] * _HANN_TAIL  # plus the tail of the frame before
        n = self.n_stft_frames
        if frames is None:
            frames = self._frame_buffer()
        np.multiply(ola[:n], _HANN_HEAD, out=frames[:, :HOP])
        np.multiply(ola[1 : n + 1], _HANN_TAIL, out=frames[:, HOP:FRAME_LEN])
        # Input already zero-padded to NFFT: rfft needs no padding copy of its own.
        spec = sp_fft.rfft(frames, axis=-1)[:, _BIN_LO:_BIN_HI]
        parts = spec.view(np.float64)  # (frames, 2 * bins): re, im, re, im, ...
        np.square(parts, out=parts)
        power = parts[:, 0::2] + parts[:, 1::2]
        env = np.sqrt(power @ _OBM_T)  # (frames, bands)
        return env.T

    def _frame_buffer(self) -> np.ndarray:
        return np.zeros((self.n_stft_frames, NFFT))

    def _score_envelope(self, y_env: np.ndarray) -> float:
        """Mean correlation over bands and segments for one (bands, frames) envelope."""
        y_seg = sliding_window_view(y_env, SEGMENT_LEN, axis=-1)
        n_terms = self.n_segments * (1 if self.extended else NUM_BANDS)
        if self.extended:
            y_hat = _row_col_normalize(y_seg)
            return float(np.einsum("bjk,bjk->", y_hat, self._x_hat) / SEGMENT_LEN / n_terms)
        # Scale each degraded band segment to the clean one's energy, clip to a -15 dB SDR.
        y_norm = np.sqrt(np.einsum("bjk,bjk->bj", y_seg, y_seg))
        y_prime = y_seg * (self._x_norm / (y_norm + EPS))[..., None]
        np.minimum(y_prime, self._x_clip, out=y_prime)
        y_prime -= np.mean(y_prime, axis=-1, keepdims=True)
        y_len = np.sqrt(np.einsum("bjk,bjk->bj", y_prime, y_prime)) + EPS
        corr = np.einsum("bjk,bjk->bj", y_prime, self._x_hat) / y_len
        return float(np.sum(corr) / n_terms)

    def _too_short(self) -> float:
        warnings.warn(
            "Not enough STFT frames to compute intermediate intelligibility measure after "
            f"removing silent frames ({self.n_stft_frames} < {SEGMENT_LEN}). Returning 1e-5.",
            RuntimeWarning,
            stacklevel=3,
        )
        return TOO_SHORT_VALUE

    def _check_degraded(self, degraded) -> np.ndarray:
        y = np.asarray(degraded)
        if y.shape != (self.n_samples,):
            raise ValueError(
                f"degraded must have the clean signal's shape {(self.n_samples,)}, got {y.shape}"
            )
        return y

    # -- public ------------------------------------------------------------------------------
    def score(self, degraded: np.ndarray) -> float:
        """STOI (or ESTOI) of one degraded signal against the clean one."""
        return float(self.score_many([degraded])[0])

    def score_many(self, degraded: Sequence[np.ndarray]) -> np.ndarray:
        """Scores of several degraded versions, shape (len(degraded),), float64."""
        ys = [self._check_degraded(y) for y in degraded]
        out = np.empty(len(ys))
        if not ys:
            return out
        if not self.enough_frames:
            out[:] = self._too_short()
            return out
        dtype = np.result_type(*ys, np.float32)
        frames = self._frame_buffer()
        for start in range(0, len(ys), _RESAMPLE_CHUNK):
            chunk = np.stack(ys[start : start + _RESAMPLE_CHUNK]).astype(dtype, copy=False)
            for i, y10 in enumerate(_resample_rows_fast(chunk, self.fs)):
                out[start + i] = self._score_envelope(self._band_envelope(y10, frames))
        return out


def _row_col_normalize(seg: np.ndarray) -> np.ndarray:
    """ESTOI normalisation of (bands, J, 30) segments: zero-mean, unit-norm rows (each band's
    30-frame trajectory), then zero-mean, unit-norm columns (each frame's band spectrum)."""
    rows = seg - np.mean(seg, axis=-1, keepdims=True)
    rows *= _safe_inverse(np.sqrt(np.einsum("bjk,bjk->bj", rows, rows)))[..., None]
    rows -= np.mean(rows, axis=0, keepdims=True)
    rows *= _safe_inverse(np.sqrt(np.einsum("bjk,bjk->jk", rows, rows)))[None]
    return rows


def _safe_inverse(norm: np.ndarray) -> np.ndarray:
    """1/norm, with 0 where the norm is 0 (a constant vector normalises to zero, not NaN)."""
    inv = np.zeros_like(norm)
    np.divide(1.0, norm, out=inv, where=norm > 0)
    return inv


def stoi(clean: np.ndarray, degraded: np.ndarray, fs: int, extended: bool = False) -> float:
    """STOI (or ESTOI if ``extended``) of ``degraded`` against ``clean``, as pystoi.stoi.

    Returns 1e-5 with a RuntimeWarning when fewer than 30 STFT frames remain after silent-frame
    removal (pystoi's behaviour). Raises ValueError when the shapes differ.
    """
    clean = np.asarray(clean)
    degraded = np.asarray(degraded)
    if clean.shape != degraded.shape:
        raise ValueError(f"clean and degraded differ in shape: {clean.shape} vs {degraded.shape}")
    return StoiReference(clean, fs, extended).score(degraded)

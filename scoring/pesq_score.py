"""Wide-band PESQ (ITU-T P.862.2, on top of P.862) through the ``pesq`` package.

ITU-T Recommendation P.862.2 (2007), "Wideband extension to Recommendation P.862 for the
assessment of wideband telephone networks and speech codecs". The score is the MOS-LQO of
``pesq.pesq(fs, clean, degraded, 'wb')``; inputs are passed as given (reference values are
computed from the float32 arrays), so the result is bit-identical to calling pesq directly.
"""
from __future__ import annotations

import math

import numpy as np
import pesq as _pesq

__all__ = ["PESQ_WB_FS", "pesq_wb"]

PESQ_WB_FS = 16000  # the only rate at which P.862.2 wide-band mode is defined


def pesq_wb(clean: np.ndarray, degraded: np.ndarray, fs: int = PESQ_WB_FS) -> tuple[float, str]:
    """Wide-band PESQ of ``degraded`` against ``clean``.

    Returns ``(score, "")``, or ``(nan, reason)`` when PESQ cannot score the pair (wrong sample
    rate, empty / non-finite / all-zero input, no utterance found, signal too short, ...).
    Never raises for such inputs and never substitutes a made-up value.
    """
    if fs != PESQ_WB_FS:
        # Checked here because pesq prints its usage text to stdout before raising.
        return math.nan, f"wide-band PESQ needs fs={PESQ_WB_FS}, got {fs}"
    clean = np.asarray(clean)
    degraded = np.asarray(degraded)
    for name, x in (("clean", clean), ("degraded", degraded)):
        if x.ndim != 1 or x.size == 0:
            return math.nan, f"{name} must be a non-empty 1-D array, got shape {x.shape}"
        if not np.all(np.isfinite(x)):
            return math.nan, f"{name} has non-finite samples"
    if not np.any(clean) and not np.any(degraded):
        # pesq divides both by their joint peak, which would be 0.
        return math.nan, "both signals are all zeros"
    try:
        value = float(_pesq.pesq(fs, clean, degraded, "wb"))
    except Exception as exc:  # pesq's NoUtterancesError, BufferTooShortError, ValueError, ...
        return math.nan, _describe(exc)
    if not math.isfinite(value):
        return math.nan, f"pesq returned {value}"
    return value, ""


def _describe(exc: Exception) -> str:
    """'NoUtterancesError: No utterances detected' (pesq's messages are bytes)."""
    parts = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in exc.args]
    message = "; ".join(p for p in parts if p)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__

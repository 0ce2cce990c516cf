"""Distortion metrics of noisy mixes against their clean utterance: the superset workers' entry.

STOI (Taal et al. 2011), wide-band PESQ (ITU-T P.862.2) and fwSNRseg (Hu & Loizou 2008); see
the MetricAug paper (Wu and Lee, Interspeech 2023). The superset scores each clean utterance against its 30 mixes, so the
clean-side work of STOI and fwSNRseg (resampling, silent-frame mask, spectra, band energies,
weights) is done once per utterance and shared by all of its mixes.

A metric that cannot score a mix gives NaN and a reason in ``errors``; nothing in here raises
for an unscorable mix (too short, silent, non-finite, wrong length, PESQ finding no utterance).
Invalid arguments (an unknown metric name, clean not 1-D) still raise ValueError.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

from shards.vocab import METRICS, SAMPLE_RATE

from .fwsnrseg import FwSnrSegReference
from .pesq_score import pesq_wb
from .stoi import SEGMENT_LEN, StoiReference

__all__ = ["METRICS", "score_mixes", "score_mix"]

def score_mixes(
    clean: np.ndarray,
    mixes: Iterable[np.ndarray],
    fs: int = SAMPLE_RATE,
    metrics: Sequence[str] = METRICS,
) -> list[dict]:
    """Score every mix against ``clean``.

    Returns one dict per mix with keys "stoi", "pesq", "fwsnrseg" (float; NaN when not requested
    or when the metric failed) and "errors" ("" or "metric: reason; metric: reason").
    """
    requested = _check_metrics(metrics)
    clean = np.asarray(clean)
    if clean.ndim != 1:
        raise ValueError(f"clean must be 1-D, got shape {clean.shape}")
    mixes = [np.asarray(m) for m in mixes]
    results = [{"stoi": math.nan, "pesq": math.nan, "fwsnrseg": math.nan} for _ in mixes]
    errors: list[list[str]] = [[] for _ in mixes]

    # Problems that no metric can get past are reported once per requested metric.
    clean_problem = _signal_problem(clean, "clean")
    if clean_problem is None and not np.any(clean):
        clean_problem = "clean is all zeros"
    usable = []
    for i, mix in enumerate(mixes):
        problem = clean_problem
        if problem is None and mix.shape != clean.shape:
            problem = f"mix shape {mix.shape} differs from clean shape {clean.shape}"
        if problem is None:
            problem = _signal_problem(mix, "mix")
        if problem is None:
            usable.append(i)
        else:
            for name in requested:
                errors[i].append(f"{name}: {problem}")

    if usable:
        batch = [mixes[i] for i in usable]
        if "stoi" in requested:
            _fill(results, errors, usable, "stoi", lambda: _stoi_scores(clean, batch, fs))
        if "fwsnrseg" in requested:
            _fill(results, errors, usable, "fwsnrseg",
                  lambda: FwSnrSegReference(clean, fs).score_many(batch))
        if "pesq" in requested:
            for i in usable:
                value, reason = pesq_wb(clean, mixes[i], fs)
                results[i]["pesq"] = value
                if reason:
                    errors[i].append(f"pesq: {reason}")

    for result, errs in zip(results, errors):
        result["errors"] = "; ".join(sorted(errs, key=_metric_order))
    return results


def score_mix(
    clean: np.ndarray, mix: np.ndarray, fs: int = SAMPLE_RATE, metrics: Sequence[str] = METRICS
) -> dict:
    """``score_mixes`` for a single mix."""
    return score_mixes(clean, [mix], fs, metrics)[0]


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {METRICS}")
    return tuple(m for m in METRICS if m in metrics)


def _signal_problem(x: np.ndarray, name: str) -> str | None:
    if x.ndim != 1 or x.size == 0:
        return f"{name} must be a non-empty 1-D array, got shape {x.shape}"
    if not np.issubdtype(x.dtype, np.number):
        return f"{name} has non-numeric dtype {x.dtype}"
    if not np.all(np.isfinite(x)):
        return f"{name} has non-finite samples"
    return None


def _stoi_scores(clean: np.ndarray, batch: list[np.ndarray], fs: int) -> np.ndarray:
    reference = StoiReference(clean, fs)
    if not reference.enough_frames:
        # pystoi would return 1e-5 here; a made-up score has no place in the superset.
        raise _Unscorable(
            f"only {reference.n_stft_frames} STFT frames after silent-frame removal "
            f"(needs {SEGMENT_LEN}; clean speech too short or too quiet)"
        )
    return reference.score_many(batch)


class _Unscorable(Exception):
    """The clean signal rules out a metric for all of its mixes."""


def _fill(
    results: list[dict],
    errors: list[list[str]],
    indices: list[int],
    name: str,
    compute: Callable[[], np.ndarray],
) -> None:
    """Store ``compute()`` (one value per index) under ``name``; on failure NaN and the reason."""
    try:
        values = compute()
        reason = ""
    except Exception as exc:  # one bad utterance must not stop a superset worker
        values = np.full(len(indices), math.nan)
        reason = str(exc) if isinstance(exc, _Unscorable) else f"{type(exc).__name__}: {exc}"
    for i, value in zip(indices, values):
        value = float(value)
        if reason:
            errors[i].append(f"{name}: {reason}")
        elif not math.isfinite(value):
            errors[i].append(f"{name}: result is {value}")
            value = math.nan
        results[i][name] = value


def _metric_order(error: str) -> int:
    name = error.split(":", 1)[0]
    return METRICS.index(name) if name in METRICS else len(METRICS)

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

import importlib
import math
from typing import Callable, Iterable, Sequence

import numpy as np

from shards.metrics import MetricSpec, metric_names, metric_spec
from shards.vocab import METRICS, SAMPLE_RATE

from .fwsnrseg import FwSnrSegReference
from .pesq_score import pesq_wb
from .stoi import SEGMENT_LEN, StoiReference

__all__ = ["METRICS", "Unscorable", "score_mixes", "score_mix", "stoi_scores", "pesq_scores", "fwsnrseg_scores"]


class Unscorable(Exception):
    """Raised by a metric's function when the clean signal rules the metric out for all of
    its mixes; the message is the reason, as it stands."""


# ----------------------------------------------------------------------------------
# the built-in metrics' functions (declared in shards.metrics)
# ----------------------------------------------------------------------------------
def stoi_scores(clean: np.ndarray, mixes: list[np.ndarray], fs: int) -> list[tuple[float, str]]:
    reference = StoiReference(clean, fs)
    if not reference.enough_frames:
        # pystoi would return 1e-5 here; a made-up score has no place in the superset.
        raise Unscorable(
            f"only {reference.n_stft_frames} STFT frames after silent-frame removal "
            f"(needs {SEGMENT_LEN}; clean speech too short or too quiet)"
        )
    return [(float(value), "") for value in reference.score_many(mixes)]


def fwsnrseg_scores(clean: np.ndarray, mixes: list[np.ndarray], fs: int) -> list[tuple[float, str]]:
    return [(float(value), "") for value in FwSnrSegReference(clean, fs).score_many(mixes)]


def pesq_scores(clean: np.ndarray, mixes: list[np.ndarray], fs: int) -> list[tuple[float, str]]:
    return [pesq_wb(clean, mix, fs) for mix in mixes]


# ----------------------------------------------------------------------------------
# scoring mixes with every requested metric
# ----------------------------------------------------------------------------------
def score_mixes(
    clean: np.ndarray,
    mixes: Iterable[np.ndarray],
    fs: int = SAMPLE_RATE,
    metrics: Sequence[str] | None = None,
) -> list[dict]:
    """Score every mix against ``clean`` with ``metrics`` (default: every registered one).

    Returns one dict per mix with a key per registered metric (float; NaN when not requested
    or when the metric failed) and "errors" ("" or "metric: reason; metric: reason").
    """
    requested = _check_metrics(metric_names() if metrics is None else metrics)
    clean = np.asarray(clean)
    if clean.ndim != 1:
        raise ValueError(f"clean must be 1-D, got shape {clean.shape}")
    mixes = [np.asarray(m) for m in mixes]
    results = [{name: math.nan for name in metric_names()} for _ in mixes]
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
        for name in requested:
            _fill(results, errors, usable, metric_spec(name), clean, batch, fs)

    order = metric_names()
    for result, errs in zip(results, errors):
        result["errors"] = "; ".join(sorted(errs, key=lambda error: _metric_order(error, order)))
    return results


def score_mix(
    clean: np.ndarray, mix: np.ndarray, fs: int = SAMPLE_RATE, metrics: Sequence[str] | None = None
) -> dict:
    """``score_mixes`` for a single mix."""
    return score_mixes(clean, [mix], fs, metrics)[0]


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    known = metric_names()
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {known}")
    return tuple(m for m in known if m in metrics)


def _signal_problem(x: np.ndarray, name: str) -> str | None:
    if x.ndim != 1 or x.size == 0:
        return f"{name} must be a non-empty 1-D array, got shape {x.shape}"
    if not np.issubdtype(x.dtype, np.number):
        return f"{name} has non-numeric dtype {x.dtype}"
    if not np.all(np.isfinite(x)):
        return f"{name} has non-finite samples"
    return None


def metric_function(spec: MetricSpec) -> Callable[[np.ndarray, list[np.ndarray], int], list[tuple[float, str]]]:
    """The scoring function a spec names ("module:attribute"), imported on first use (in a
    build worker too)."""
    function = _FUNCTIONS.get(spec.function)
    if function is None:
        module_name, _, attribute = spec.function.partition(":")
        function = getattr(importlib.import_module(module_name), attribute)
        _FUNCTIONS[spec.function] = function
    return function


_FUNCTIONS: dict[str, Callable] = {}


def _fill(
    results: list[dict],
    errors: list[list[str]],
    indices: list[int],
    spec: MetricSpec,
    clean: np.ndarray,
    batch: list[np.ndarray],
    fs: int,
) -> None:
    """Store the metric's value for each mix at ``indices``; on failure NaN and the reason."""
    name = spec.name
    try:
        scored = list(metric_function(spec)(clean, batch, fs))
        if len(scored) != len(indices):
            raise ValueError(f"{len(scored)} values for {len(indices)} mixes")
    except Exception as exc:  # one bad utterance must not stop a superset worker
        reason = str(exc) if isinstance(exc, Unscorable) else f"{type(exc).__name__}: {exc}"
        scored = [(math.nan, reason)] * len(indices)
    for i, (value, reason) in zip(indices, scored):
        value = float(value)
        if reason:
            errors[i].append(f"{name}: {reason}")
        elif not math.isfinite(value):
            errors[i].append(f"{name}: result is {value}")
            value = math.nan
        results[i][name] = value


def _metric_order(error: str, order: tuple[str, ...]) -> int:
    name = error.split(":", 1)[0]
    return order.index(name) if name in order else len(order)

"""How many torch threads the training process uses.

DataLoader workers decode FLAC on their own cores, so while they run the training process
keeps the cores they leave (oversubscribed cores slow a small model's step by orders of
magnitude); when no worker runs (a validation pass whose features are all cached) it takes
every core. An explicit ``--threads N`` or ``OMP_NUM_THREADS`` (what a scheduler or
``bench/study.py`` running several runs side by side sets) is used as given, everywhere.
"""
from __future__ import annotations

import os
from typing import Mapping


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def env_threads(environ: Mapping[str, str] = os.environ) -> int | None:
    """OMP_NUM_THREADS as a positive int; None when unset or not one (OpenMP ignores it then)."""
    value = environ.get("OMP_NUM_THREADS", "").strip().split(",")[0]
    return int(value) if value.isdigit() and int(value) > 0 else None


def thread_plan(requested: int, workers: int, cores: int | None = None,
                environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """(threads while DataLoader workers decode, threads while none runs).
    ``requested`` > 0 (``--threads``) wins, then OMP_NUM_THREADS, else the cores."""
    if requested > 0:
        return requested, requested
    fixed = env_threads(environ)
    if fixed is not None:
        return fixed, fixed
    cores = available_cores() if cores is None else cores
    return max(1, cores - max(0, workers)), max(1, cores)

"""How many torch threads and DataLoader workers the training process uses, and how much memory
its feature cache may take.

DataLoader workers decode FLAC on their own cores, so the training process keeps the cores
they leave: oversubscribed cores slow a small model's step by orders of magnitude (each of
the GRU's per-frame operations waits at an OpenMP barrier for a thread that another process
holds). An explicit ``--threads N`` or ``OMP_NUM_THREADS`` (what a scheduler, or
``bench/study.py`` running several runs side by side, sets) is used as given.

Default workers (``--workers -1``): on a GPU one per core up to 8, which keep the device fed;
on the CPU none, so the model gets every core. With the fixed inputs in the feature cache an
epoch decodes only the mixes it drew, a small share of a CPU epoch (in ``bench/trainer_step.py``
a RAVDESS MetricAug epoch at H = 16 took 4.6 s on 2 threads without workers against 7.2 s on
1 thread with 2 workers).
"""
from __future__ import annotations

import os
from typing import Mapping

from shards.cores import usable_cores


#: Default cap of the feature cache in MiB (``--cache-mb``): a RAVDESS or EmoDB fold (clean train
#: utterances, clean validation and every level's validation mixes: about 230-300 MiB of log-mel).
DEFAULT_CACHE_MB = 1024


def default_workers(device_type: str, cores: int | None = None) -> int:
    """DataLoader workers when ``--workers`` is not given: on ``cuda`` one per core up to 8,
    on ``cpu`` 0 (the cores go to the model's threads)."""
    if device_type == "cpu":
        return 0
    cores = usable_cores() if cores is None else cores
    return max(1, min(8, cores))


def env_threads(environ: Mapping[str, str] = os.environ) -> int | None:
    """OMP_NUM_THREADS as a positive int (its first entry); None when unset or not one
    (OpenMP ignores such a value too)."""
    value = environ.get("OMP_NUM_THREADS", "").strip().split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def thread_plan(requested: int, workers: int, cores: int | None = None,
                environ: Mapping[str, str] = os.environ) -> int:
    """torch threads of the training process: ``requested`` (``--threads``) when > 0, else
    OMP_NUM_THREADS when set, else the cores the ``workers`` leave (at least one)."""
    if requested > 0:
        return requested
    fixed = env_threads(environ)
    if fixed is not None:
        return fixed
    cores = usable_cores() if cores is None else cores
    return max(1, cores - max(0, workers))

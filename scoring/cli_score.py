"""``prep score OUT/<corpus> --metric M [--quant gmm|uniform|all] [--levels K]``.

The ``prep`` app (``mixer.cli``) registers :func:`score` as its ``score`` command.
"""
from __future__ import annotations

import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from scoring.levels import DEFAULT_MIN_TRAIN_PER_LEVEL, LevelSizeWarning, render_level_table, run_scoring
from scoring.quantize import AUTHORS_MAX_ITER, AUTHORS_RANDOM_STATE
from shards.cli import fail
from shards.errors import InputError
from shards.metrics import metric_names


def registered_metric(value: str) -> str:
    """``--metric``'s value, checked against the registry when the command runs (so a metric
    registered after import is accepted too)."""
    if value not in metric_names():
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(repr(m) for m in metric_names())}.")
    return value


class Quant(str, Enum):
    gmm = "gmm"
    uniform = "uniform"
    all = "all"


def score(
    store: Annotated[Path, typer.Argument(help="Corpus store OUT/<corpus> (reads its metadata.parquet only).")],
    metric: Annotated[str, typer.Option("--metric", parser=registered_metric, metavar="METRIC", help=f"Distortion metric to quantize, a registered one ({', '.join(metric_names())}; shards.metrics): its column of metadata.parquet.")],
    quant: Annotated[Quant, typer.Option("--quant", help="Quantizer: gmm (Bayesian GMM, components ordered by mean), uniform (equal counts by rank), or all (both).")] = Quant.gmm,
    levels: Annotated[int, typer.Option("--levels", min=1, help="Number of levels K; level 1 = least distorted (highest metric, lowest for a lower-is-better one).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="random_state of the GMM (the authors used 2022).")] = AUTHORS_RANDOM_STATE,
    min_per_level: Annotated[int, typer.Option("--min-per-level", min=0, help="Warn when a level holds fewer train samples than this (the trainer then samples with replacement).")] = DEFAULT_MIN_TRAIN_PER_LEVEL,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Where to write the level files (default: STORE/levels).")] = None,
    max_iter: Annotated[int, typer.Option("--max-iter", min=1, help="Iterations of the GMM fit (the authors used 100).")] = AUTHORS_MAX_ITER,
) -> None:
    """Fit distortion levels on the train superset and assign every mix a level."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LevelSizeWarning)
            results = run_scoring(
                store, metric, quant=quant.value, n_levels=levels, random_state=seed,
                min_train_per_level=min_per_level, out_dir=out_dir, max_iter=max_iter,
            )
    except InputError as err:
        fail(str(err))
    for i, result in enumerate(results):
        if i:
            typer.echo("")
        typer.echo(render_level_table(result.summary))
        for path in result.paths:
            typer.echo(f"wrote {path}")
    for item in caught:
        if issubclass(item.category, LevelSizeWarning):
            typer.echo(f"warning: {item.message}", err=True)
        else:
            warnings.showwarning(item.message, item.category, item.filename, item.lineno)

"""``trainer`` command line.

    trainer run --data STORE --quant gmm [--metric stoi] [--hidden 16] [--out runs/NAME]
    trainer features --features logmel --out feats/ FILES...

``python -m trainer run ...`` is the same; under ``torchrun --nproc_per_node=G -m trainer run
...`` it trains with DDP.
"""
from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from shards.audio import read_audio_file
from shards.cli import fail
from shards.metrics import metric_names
from trainer.frontends import DEFAULT_FRONT_END, FRONT_ENDS, features_help, option_help
from trainer.protocol import GAP_SCORES, SELECTION_RULES
from trainer.strategies import STRATEGIES
from trainer.threads import DEFAULT_CACHE_MB, default_workers

app = typer.Typer(
    help="Train MetricAug speech emotion recognition models and prepare their input features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain one-line usage errors, as prep
)


@app.callback()
def _main() -> None:
    """Train MetricAug speech emotion recognition models and prepare their input features."""
    # A callback keeps `features` a named sub-command even while it is the only one.


# choices derived from the registries (trainer.strategies, trainer.frontends)
StrategyName = Enum("StrategyName", {name: name for name in STRATEGIES}, type=str)
SelectName = Enum("SelectName", {name: name for name in SELECTION_RULES}, type=str)
GapScoreName = Enum("GapScoreName", {name: name for name in GAP_SCORES}, type=str)
STRATEGY_HELP = "; ".join(f"{s.name}: {s.help}" for s in STRATEGIES.values())
FrontEndName = Enum("FrontEndName", {name: name for name in FRONT_ENDS}, type=str)


class QuantName(str, Enum):
    gmm = "gmm"
    uniform = "uniform"


@app.command("features")
def features_command(
    files: List[Path] = typer.Argument(..., help="Audio files soundfile reads (wav, flac, ogg, ...); resampled to 16 kHz mono.", show_default=False),
    features: FrontEndName = typer.Option(DEFAULT_FRONT_END, "--features", help=f"Front end: {features_help()}."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=option_help("checkpoint")),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help=option_help("encoder")),
    layer: Optional[int] = typer.Option(None, "--layer", min=0, help=option_help("layer")),
    out: Path = typer.Option(Path("features"), "--out", help="Directory for one <name>.npy of shape (frames, dims) per input file."),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda, cuda:1, ..."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Files per forward pass (padded to the longest of them)."),
) -> None:
    """Compute features for FILES and write OUT/<name>.npy, shape (frames, dims), float32 (for
    --features hf without --layer: every hidden state side by side, layers x hidden size)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from trainer.features import FeatureError, build_front_end

    stems: dict[str, Path] = {}
    for path in files:
        if not path.is_file():
            fail(f"{path}: no such file")
        if path.stem in stems:
            fail(f"{path}: same output name {path.stem}.npy as {stems[path.stem]}; rename one of them")
        stems[path.stem] = path
    try:
        front_end = build_front_end(features.value, checkpoint=str(checkpoint) if checkpoint else None, device=device,
                                    encoder=str(encoder) if encoder else None, layer=layer)
    except FeatureError as exc:
        fail(str(exc))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{out}: cannot create the output directory ({exc.strerror})")

    progress = tqdm(total=len(files), unit="file", desc=f"features ({features.value})", disable=len(files) < 2, leave=False, file=sys.stderr)
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        wavs = []
        for path in chunk:
            try:
                wav = read_audio_file(path)
            except ValueError as exc:
                progress.close()
                fail(f"{path}: {exc}")
            if len(wav) < front_end.min_samples:
                progress.close()
                fail(
                    f"{path}: {len(wav)} samples at 16 kHz; the {features.value} front end needs at least "
                    f"{front_end.min_samples} ({front_end.min_samples / 16:.1f} ms)"
                )
            wavs.append(torch.from_numpy(wav))
        lengths = torch.tensor([len(w) for w in wavs])
        batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
        try:
            feats, frame_lengths = front_end(batch, lengths)
        except FeatureError as exc:
            progress.close()
            fail(str(exc))
        feats = feats.cpu().numpy()
        for path, item, n_frames in zip(chunk, feats, frame_lengths.tolist()):
            np.save(out / f"{path.stem}.npy", np.ascontiguousarray(item[:n_frames], dtype=np.float32))
        progress.update(len(chunk))
    progress.close()
    typer.echo(f"wrote {len(files)} feature file(s) of {front_end.dim} dims to {out}", err=True)


def _workers(workers: int, device: str) -> int:
    """``--workers``, or for -1 the default for the device (``trainer.threads.default_workers``)."""
    if workers >= 0:
        return workers
    from shards.errors import InputError
    from trainer.train import resolve_device

    try:
        return default_workers(resolve_device(device).type)
    except InputError as exc:
        fail(str(exc))


@app.command("run")
def run_command(
    data: Path = typer.Option(..., "--data", help="The store folder (OUT/<corpus>) built by prep superset and scored by prep score."),
    strategy: StrategyName = typer.Option("metricaug", "--strategy", help=f"Training strategy ({STRATEGY_HELP})."),
    quant: QuantName = typer.Option(QuantName.gmm, "--quant", help="Quantizer of the level index: gmm or uniform."),
    metric: str = typer.Option("stoi", "--metric", help=f"Metric of the level index: {', '.join(metric_names())} (registered in shards.metrics)."),
    levels: Optional[int] = typer.Option(None, "--levels", help="K of the level index (default: the one K that prep score wrote)."),
    hidden: int = typer.Option(16, "--hidden", help="Hidden size H of the GRU-TFM model (even, 8-128)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: RUNS/<corpus>-<strategy or metric-quant>-h<H>-s<seed>)."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder of the default-named run folder (when --out is not given)."),
    features: FrontEndName = typer.Option(DEFAULT_FRONT_END, "--features", help=f"Front end, computed on the training device: {features_help()}."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=option_help("checkpoint")),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help=option_help("encoder")),
    layer: Optional[int] = typer.Option(None, "--layer", min=0, help=option_help("layer")),
    feature_cache: Optional[Path] = typer.Option(None, "--feature-cache", help="Folder of an on-disk cache of the front end's features of the fixed inputs (clean train and validation utterances, validation mixes), keyed by the front end's identity and the store's, shared by every run that names it (for the expensive front ends: " + ", ".join(n for n, s in FRONT_ENDS.items() if s.disk_cacheable) + "). Default: none."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Utterances per step."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    max_epochs: int = typer.Option(100, "--max-epochs", min=1, help="Most epochs to train."),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many epochs without a better validation WF1 (by --select)."),
    max_steps: int = typer.Option(0, "--max-steps", min=0, help="End training after exactly this many optimizer steps, validating the partial last epoch (0: no limit); compares strategies at equal compute."),
    select: SelectName = typer.Option("pooled", "--select", help="Validation set that picks best.pt and drives early stopping: " + "; ".join(f"{k}: {v}" for k, v in SELECTION_RULES.items()) + ". Without a level index, pooled is the clean utterances and the superset's validation mixes (see --val-per-level); the log says how many."),
    gap_score: GapScoreName = typer.Option("wf1", "--gap-score", help="Score of the gaps g_k = score_clean - score_k that Algorithm 1 reads: " + "; ".join(f"{k}: {v}" for k, v in GAP_SCORES.items()) + "."),
    gap_smoothing: float = typer.Option(0.0, "--gap-smoothing", min=0.0, max=0.999, help="B in [0, 1): Algorithm 1 reads an exponential moving average of the gaps over epochs, h_e = B h_(e-1) + (1 - B) g_e (0: the raw gaps of the last epoch, as the paper)."),
    stratify_class: bool = typer.Option(False, "--stratify-class", help="Level strategies (" + ", ".join(n for n, s in STRATEGIES.items() if s.draws_levels) + "): draw each level's mixes class by class so that the epoch's mixes keep the clean train set's class prior whatever the level weights (re-weighting levels then stops re-weighting classes). Default off: the paper's draw, at random within each level."),
    draw_kinds: str = typer.Option("", "--draw-kinds", help="Strategies that draw superset mixes at random (" + ", ".join(n for n, s in STRATEGIES.items() if s.draws_kinds) + "): draw only the mixes of these distortion kinds, comma-separated (e.g. noise,music: the additive-noise draw on a superset of every kind), read from the store table's kind column (in a store without it, a mix's kind is its noise type: noise, music). Validation and selection still use every kind. Default: every mix."),
    val_per_level: int = typer.Option(0, "--val-per-level", min=0, help="Validate on a fixed, seeded subset of M mixes per level (0: all). Without a level index the pooled selection set holds every validation mix of the superset, or with --levels K a fixed, seeded K x M of them (the most K levels would give)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the model, the draws and the batch order."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    workers: int = typer.Option(-1, "--workers", help="DataLoader worker processes decoding FLAC (-1: on a GPU one per core, up to 8; on the CPU none, the cores go to the model, and the feature cache leaves little to decode)."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch threads of the training process (0: OMP_NUM_THREADS when set, else the cores the DataLoader workers leave, at least 1)."),
    cache_mb: int = typer.Option(DEFAULT_CACHE_MB, "--cache-mb", min=0, help="MiB of memory for the features of the inputs that are the same every epoch (validation sets, clean train utterances), computed once per run; a set that does not fit is decoded every epoch (logged). 0: no cache."),
    test_every_epoch: bool = typer.Option(False, "--test-every-epoch", help="Diagnostic: also score every test condition after each epoch (test_wf1, test_uar in epochs.jsonl). Never used for selection or stopping; shows how much the epoch a rule keeps matters on test data."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last completed epoch."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Evaluate the best checkpoint on the test sets at the end (results.json)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (the per-epoch lines stay)."),
) -> None:
    """Train a model: with MetricAug every epoch N clean utterances plus N mixes drawn from the
    levels, re-weighted after each epoch by Algorithm 1 from the validation gaps; or a
    baseline (--strategy)."""
    from shards.errors import InputError
    from trainer.runfolder import LOG
    from trainer.train import TrainConfig, Trainer

    what = STRATEGIES[strategy.value].run_name(metric, quant.value)
    out = out or runs / f"{data.name}-{what}-h{hidden}-s{seed}"
    config = TrainConfig(
        data=str(data), out=str(out), strategy=strategy.value, metric=metric, quant=quant.value, levels=levels, hidden=hidden,
        features=features.value, checkpoint=str(checkpoint) if checkpoint else None,
        encoder=str(encoder) if encoder else None, layer=layer, feature_cache=str(feature_cache) if feature_cache else None,
        batch_size=batch_size,
        lr=lr, max_epochs=max_epochs, patience=patience, val_per_level=val_per_level, select=select.value,
        gap_score=gap_score.value, gap_smoothing=gap_smoothing, stratify_class=stratify_class, draw_kinds=draw_kinds,
        max_steps=max_steps, seed=seed,
        device=device, workers=_workers(workers, device), threads=threads, cache_mb=cache_mb,
        test_every_epoch=test_every_epoch,
    )
    main_rank = os.environ.get("RANK", "0") == "0"
    log_file = None

    def log(line: str) -> None:
        nonlocal log_file
        if not main_rank:
            return
        typer.echo(line)
        if log_file is None and out.is_dir():
            log_file = open(out / LOG, "a")
        if log_file is not None:
            log_file.write(line + "\n")
            log_file.flush()

    try:
        Trainer(config, log=log, progress=not quiet).run(resume=resume)
        if evaluate and main_rank:
            from trainer.evaluate import NoTestSets, evaluate_run
            from trainer.train import resolve_device

            log("test sets (best checkpoint):")
            try:
                evaluate_run(out, resolve_device(device), workers=config.workers, log=lambda line: log(f"  {line}"))
            except NoTestSets as exc:  # training succeeded: say how to evaluate later, exit 0
                log(f"  evaluation skipped: {exc}, then 'trainer eval {out}'")
    except InputError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted: resume with the same command and --resume (run folder {out})", err=True)
        raise typer.Exit(130)
    finally:
        if log_file is not None:
            log_file.close()


@app.command("search-hidden")
def search_hidden_command(
    data: Path = typer.Option(..., "--data", help="The store folder (OUT/<corpus>)."),
    out: Path = typer.Option(Path("runs/search-hidden"), "--out", help="Folder for one run per hidden size (h8, h16, ...)."),
    strategy: StrategyName = typer.Option("metricaug", "--strategy", help="Strategy of every run."),
    quant: QuantName = typer.Option(QuantName.gmm, "--quant", help="Quantizer of the level index (metricaug)."),
    metric: str = typer.Option("stoi", "--metric", help="Metric of the level index (metricaug)."),
    start: int = typer.Option(8, "--start", help="First hidden size."),
    stop: int = typer.Option(128, "--stop", help="Largest hidden size."),
    max_epochs: int = typer.Option(100, "--max-epochs", min=1, help="Most epochs per run."),
    patience: int = typer.Option(10, "--patience", min=1, help="Early-stopping patience per run."),
    seed: int = typer.Option(0, "--seed", help="Seed of every run."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    workers: int = typer.Option(-1, "--workers", help="DataLoader worker processes decoding FLAC (-1: on a GPU one per core, up to 8; on the CPU none, the cores go to the model, and the feature cache leaves little to decode)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """The paper's greedy search of H: double it from --start while the best validation WF1
    improves (up to --stop); print and record the best. Finished sizes are reused on a rerun."""
    from shards.errors import InputError
    from trainer.train import TrainConfig, Trainer

    tried: dict[int, float] = {}
    hidden = start
    try:
        while hidden <= stop:
            run_dir = out / f"h{hidden}"
            config = TrainConfig(data=str(data), out=str(run_dir), strategy=strategy.value, metric=metric,
                                 quant=quant.value, hidden=hidden, max_epochs=max_epochs, patience=patience,
                                 seed=seed, device=device, workers=_workers(workers, device))
            state = Trainer(config, log=lambda line: typer.echo(f"[H={hidden}] {line}"), progress=not quiet).run(resume=True)
            tried[hidden] = state.best_wf1
            if len(tried) > 1 and state.best_wf1 <= max(v for h, v in tried.items() if h != hidden):
                break  # doubling stopped helping
            hidden *= 2
    except InputError as exc:
        fail(str(exc))
    best = max(tried, key=lambda h: (tried[h], -h))
    summary = {"tried": {str(h): v for h, v in tried.items()}, "best_hidden": best, "best_val_wf1": tried[best]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps(summary, indent=1) + "\n")
    for h, v in tried.items():
        typer.echo(f"H={h:4d}  best validation WF1 {v:.4f}{'  <- best' if h == best else ''}")


@app.command("eval")
def eval_command(
    runs: List[Path] = typer.Argument(..., help="Run folders written by 'trainer run'.", show_default=False),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    workers: int = typer.Option(-1, "--workers", help="DataLoader worker processes decoding FLAC (-1: on a GPU one per core, up to 8; on the CPU none, the cores go to the model, and the feature cache leaves little to decode)."),
) -> None:
    """Evaluate each run's best checkpoint on every test condition of its store (clean,
    0/5/10 dB seen noise, unseen noise) and write RUN/results.json."""
    from shards.errors import InputError
    from trainer.evaluate import evaluate_run
    from trainer.train import resolve_device

    try:
        target = resolve_device(device)
        for run in runs:
            typer.echo(f"{run}:")
            evaluate_run(run, target, workers=_workers(workers, device),
                         log=lambda line: typer.echo(f"  {line}"))
    except InputError as exc:
        fail(str(exc))


@app.command("report")
def report_command(
    runs: List[Path] = typer.Argument(..., help="Run folders (trained and evaluated).", show_default=False),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for table2.md/.csv, table3.md/.csv, intervals.md and the plots."),
) -> None:
    """Write the Table 2 and Table 3 analogues, the intervals and the plots from finished runs.
    Reads the runs' files only: no model, no store, no device."""
    from shards.errors import InputError
    from trainer.report import write_report

    try:
        paths = write_report(runs, out)
    except InputError as exc:
        fail(str(exc))
    typer.echo((out / "table2.md").read_text())
    for path in paths:
        typer.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    app()

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


class StrategyName(str, Enum):
    metricaug = "metricaug"
    none = "none"
    fixed_snr = "fixed-snr"
    copypaste = "copypaste"


class QuantName(str, Enum):
    gmm = "gmm"
    uniform = "uniform"


class FrontEndName(str, Enum):
    logmel = "logmel"
    vqwav2vec = "vqwav2vec"


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _read_audio_file(path: Path):
    """A loose audio file as 16 kHz mono float32 (the trainer reads stores, not corpora:
    corpus media such as mp4 go through ``prep``). ValueError says why a file is unusable."""
    import numpy as np
    import soundfile as sf
    import soxr

    from shards.vocab import SAMPLE_RATE

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ValueError(f"not readable as audio ({exc})") from None
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(wav)):
        raise ValueError("audio holds NaN or infinite samples")
    if sr != SAMPLE_RATE:
        wav = soxr.resample(wav, sr, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


@app.command("features")
def features_command(
    files: List[Path] = typer.Argument(..., help="Audio files soundfile reads (wav, flac, ogg, ...); resampled to 16 kHz mono.", show_default=False),
    features: FrontEndName = typer.Option(FrontEndName.logmel, "--features", help="Front end: logmel (80 log mel bands, no download) or vqwav2vec (needs --checkpoint)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="fairseq wav2vec / vq-wav2vec checkpoint (vq-wav2vec_kmeans.pt) for --features vqwav2vec."),
    out: Path = typer.Option(Path("features"), "--out", help="Directory for one <name>.npy of shape (frames, dims) per input file."),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda, cuda:1, ..."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Files per forward pass (padded to the longest of them)."),
) -> None:
    """Compute features for FILES and write OUT/<name>.npy, shape (frames, dims), float32."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from trainer.features import FeatureError, build_front_end

    stems: dict[str, Path] = {}
    for path in files:
        if not path.is_file():
            _fail(f"{path}: no such file")
        if path.stem in stems:
            _fail(f"{path}: same output name {path.stem}.npy as {stems[path.stem]}; rename one of them")
        stems[path.stem] = path
    try:
        front_end = build_front_end(features.value, checkpoint=str(checkpoint) if checkpoint else None, device=device)
    except FeatureError as exc:
        _fail(str(exc))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"{out}: cannot create the output directory ({exc.strerror})")

    progress = tqdm(total=len(files), unit="file", desc=f"features ({features.value})", disable=len(files) < 2, leave=False, file=sys.stderr)
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        wavs = []
        for path in chunk:
            try:
                wav = _read_audio_file(path)
            except ValueError as exc:
                progress.close()
                _fail(f"{path}: {exc}")
            if len(wav) < front_end.min_samples:
                progress.close()
                _fail(
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
            _fail(str(exc))
        feats = feats.cpu().numpy()
        for path, item, n_frames in zip(chunk, feats, frame_lengths.tolist()):
            np.save(out / f"{path.stem}.npy", np.ascontiguousarray(item[:n_frames], dtype=np.float32))
        progress.update(len(chunk))
    progress.close()
    typer.echo(f"wrote {len(files)} feature file(s) of {front_end.dim} dims to {out}", err=True)


def _default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


@app.command("run")
def run_command(
    data: Path = typer.Option(..., "--data", help="The store folder (OUT/<corpus>) built by prep superset and scored by prep score."),
    strategy: StrategyName = typer.Option(StrategyName.metricaug, "--strategy", help="metricaug (N clean + N drawn by level), none (the N clean only) fixed-snr (clean + the 6N mixes of prep fixed-snr) or copypaste (clean + the 0.8N concatenations and 10.8N mixes of prep copypaste)."),
    quant: QuantName = typer.Option(QuantName.gmm, "--quant", help="Quantizer of the level index: gmm or uniform."),
    metric: str = typer.Option("stoi", "--metric", help="Metric of the level index: stoi, pesq or fwsnrseg."),
    levels: Optional[int] = typer.Option(None, "--levels", help="K of the level index (default: the one K that prep score wrote)."),
    hidden: int = typer.Option(16, "--hidden", help="Hidden size H of the GRU-TFM model (even, 8-128)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<corpus>-<metric>-<quant>-h<H>-s<seed>)."),
    features: FrontEndName = typer.Option(FrontEndName.logmel, "--features", help="Front end computed on the training device: logmel or vqwav2vec."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="vq-wav2vec checkpoint for --features vqwav2vec."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Utterances per step."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    max_epochs: int = typer.Option(100, "--max-epochs", min=1, help="Most epochs to train."),
    patience: int = typer.Option(10, "--patience", min=1, help="Stop after this many epochs without a better clean validation WF1."),
    val_per_level: int = typer.Option(0, "--val-per-level", min=0, help="Validate on a fixed, seeded subset of M mixes per level (0: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the model, the draws and the batch order."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    workers: int = typer.Option(-1, "--workers", help="DataLoader worker processes decoding FLAC (-1: one per core, up to 8)."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch threads of the training process (0: OMP_NUM_THREADS when set, else the cores the DataLoader workers leave, at least 1)."),
    cache_mb: int = typer.Option(1024, "--cache-mb", min=0, help="MiB of memory for the features of the inputs that are the same every epoch (validation sets, clean train utterances), computed once per run; a set that does not fit is decoded every epoch (logged). 0: no cache."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last completed epoch."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Evaluate the best checkpoint on the test sets at the end (results.json)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (the per-epoch lines stay)."),
) -> None:
    """Train with MetricAug: every epoch N clean utterances plus N mixes drawn from the levels,
    re-weighted after each epoch by Algorithm 1 from the validation WF1 gaps."""
    from shards.errors import InputError
    from trainer.train import LOG, TrainConfig, Trainer

    what = f"{metric}-{quant.value}" if strategy is StrategyName.metricaug else strategy.value
    name = f"{data.name}-{what}-h{hidden}-s{seed}"
    out = out or Path("runs") / name
    config = TrainConfig(
        data=str(data), out=str(out), strategy=strategy.value, metric=metric, quant=quant.value, levels=levels, hidden=hidden,
        features=features.value, checkpoint=str(checkpoint) if checkpoint else None, batch_size=batch_size,
        lr=lr, max_epochs=max_epochs, patience=patience, val_per_level=val_per_level, seed=seed,
        device=device, workers=_default_workers() if workers < 0 else workers, threads=threads, cache_mb=cache_mb,
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
            from trainer.evaluate import evaluate_run
            from trainer.train import resolve_device

            log("test sets (best checkpoint):")
            evaluate_run(out, resolve_device(device), workers=config.workers, log=lambda line: log(f"  {line}"))
    except InputError as exc:
        _fail(str(exc))
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
    strategy: StrategyName = typer.Option(StrategyName.metricaug, "--strategy", help="Strategy of every run."),
    quant: QuantName = typer.Option(QuantName.gmm, "--quant", help="Quantizer of the level index (metricaug)."),
    metric: str = typer.Option("stoi", "--metric", help="Metric of the level index (metricaug)."),
    start: int = typer.Option(8, "--start", help="First hidden size."),
    stop: int = typer.Option(128, "--stop", help="Largest hidden size."),
    max_epochs: int = typer.Option(100, "--max-epochs", min=1, help="Most epochs per run."),
    patience: int = typer.Option(10, "--patience", min=1, help="Early-stopping patience per run."),
    seed: int = typer.Option(0, "--seed", help="Seed of every run."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    workers: int = typer.Option(-1, "--workers", help="DataLoader worker processes (-1: one per core, up to 8)."),
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
                                 seed=seed, device=device, workers=_default_workers() if workers < 0 else workers)
            state = Trainer(config, log=lambda line: typer.echo(f"[H={hidden}] {line}"), progress=not quiet).run(resume=True)
            tried[hidden] = state.best_wf1
            if len(tried) > 1 and state.best_wf1 <= max(v for h, v in tried.items() if h != hidden):
                break  # doubling stopped helping
            hidden *= 2
    except InputError as exc:
        _fail(str(exc))
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
    workers: int = typer.Option(-1, "--workers", help="DataLoader worker processes decoding FLAC (-1: one per core, up to 8)."),
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
            evaluate_run(run, target, workers=_default_workers() if workers < 0 else workers,
                         log=lambda line: typer.echo(f"  {line}"))
    except InputError as exc:
        _fail(str(exc))


@app.command("report")
def report_command(
    runs: List[Path] = typer.Argument(..., help="Run folders (trained and evaluated).", show_default=False),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for table2.md/.csv, table3.md/.csv and the plots."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N] (Table 3 scores the clean-trained models)."),
    workers: int = typer.Option(-1, "--workers", help="DataLoader worker processes decoding FLAC (-1: one per core, up to 8)."),
) -> None:
    """Write the Table 2 and Table 3 analogues and the plots from finished runs."""
    from shards.errors import InputError
    from trainer.report import write_report
    from trainer.train import resolve_device

    try:
        paths = write_report(runs, out, resolve_device(device), workers=_default_workers() if workers < 0 else workers)
    except InputError as exc:
        _fail(str(exc))
    typer.echo((out / "table2.md").read_text())
    for path in paths:
        typer.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    app()

"""``trainer`` command line. ``trainer features`` caches front-end features as .npy files."""
from __future__ import annotations

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


if __name__ == "__main__":  # pragma: no cover
    app()

"""The GPU check: MetricAug for a few epochs with each front end, timed, in one JSON.

    bash bench/gpu_check.sh [--checkpoint vq-wav2vec_kmeans.pt] [--out gpu_check.json]   # on a CUDA machine
    python bench/gpu_check.py --dry --out /tmp/gpu_check.json                            # CPU, small sizes

Builds a small demo store with the project's own commands (``prep demo-corpus``, ``superset``,
``testsets``, ``score``; or ``--store`` reuses one), saves a random Hugging Face wav2vec 2.0
encoder (base geometry, or a tiny one with ``--dry``), then trains MetricAug for ``--epochs``
epochs with each front end (logmel, egemaps, hf, and vqwav2vec when ``--checkpoint`` is given)
and each DataLoader worker count of ``--workers``. Per configuration it records, per epoch,
training and validation samples/s and audio seconds/s, the epoch's seconds, the peak GPU
memory (CUDA), and the front end's own throughput in audio seconds/s on a batch of 8 clips
of 4 s. From them it projects one MSP-Podcast MetricAug epoch (2N = 57,204 training samples,
4,772 x 31 validation samples; mean utterance length ``--msp-mean-seconds``, an assumption)
and a run of ``--msp-epochs`` epochs, against the paper's 12-24 h.
``--dry``: the CPU, 1 epoch, a tiny store and encoder, 4 validation mixes per level, workers 0: proves the script works end
to end (the test suite runs it) and measures nothing worth keeping.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MSP_TRAIN = 28_602  # SPEC.md Table 1
MSP_VALIDATION = 4_772 * 31  # clean + 30 mixes per validation utterance
SR = 16_000


def prep(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mixer.cli", *args], check=True, cwd=ROOT)


def build_store(root: Path, per_class: int, bins: int) -> Path:
    corpus = root / "corpus"
    prep("demo-corpus", str(corpus), "--utterances-per-class", str(per_class))
    common = ["--corpus", "demo", "--root", str(corpus), "--out", str(root), "--jobs", "-1", "--quiet"]
    prep("superset", *common, "--bins", str(bins), "--metrics", "stoi")
    prep("testsets", *common, "--metrics", "stoi")
    prep("score", str(root / "demo"), "--metric", "stoi", "--quant", "gmm", "--min-per-level", "1")
    return root / "demo"


def save_encoder(folder: Path, tiny: bool) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.manual_seed(0)
    config = (Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                             conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
              if tiny else Wav2Vec2Config())  # Wav2Vec2Config(): wav2vec2-base's geometry, 95 M parameters
    Wav2Vec2Model(config).save_pretrained(folder)
    return folder


def front_end_rate(front_end, device, batch: int = 8, seconds: float = 4.0, repeats: int = 3) -> float:
    import torch

    torch.manual_seed(0)
    wavs = 0.1 * torch.randn(batch, int(seconds * SR), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    front_end(wavs)  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        front_end(wavs)
    sync()
    return batch * seconds * repeats / (time.perf_counter() - start)


def check(store: Path, features: str, options: dict, workers: int, epochs: int, device: str, out: Path,
          dry: bool = False) -> dict:
    import torch

    from trainer.train import TrainConfig, Trainer

    timings: list[dict] = []

    def sync() -> None:
        if torch.cuda.is_available() and device != "cpu":
            torch.cuda.synchronize()

    class Timed(Trainer):
        # the loop's own methods, timed from outside (their arguments passed as they come)
        def _train_epoch(self, *args, **kwargs):
            samples = next(a for a in args if hasattr(a, "lengths"))
            sync()
            t0 = time.perf_counter()
            loss = super()._train_epoch(*args, **kwargs)
            sync()
            timings.append({"part": "train", "seconds": time.perf_counter() - t0, "samples": len(samples),
                            "audio_seconds": float(samples.lengths.sum()) / SR})
            return loss

        def evaluate(self, model):
            sync()
            t0 = time.perf_counter()
            metrics = super().evaluate(model)
            sync()
            sets = [self.val_clean, *self.val_levels]
            timings.append({"part": "validation", "seconds": time.perf_counter() - t0,
                            "samples": sum(len(s) for s in sets),
                            "audio_seconds": sum(float(s.lengths.sum()) for s in sets) / SR})
            return metrics

    if torch.cuda.is_available() and device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(data=str(store), out=str(out), strategy="metricaug", features=features, max_epochs=epochs,
                         patience=epochs, workers=workers, device=device, seed=0,
                         val_per_level=4 if dry else 0, **options)
    started = time.perf_counter()
    trainer = Timed(config, log=lambda line: None, progress=False)
    trainer.run()
    total = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    per_epoch = []
    for e, record in enumerate(records):
        train, val = timings[2 * e], timings[2 * e + 1]
        per_epoch.append({"epoch": record["epoch"], "seconds": record["seconds"],
                          "train_samples_per_s": train["samples"] / train["seconds"],
                          "train_audio_s_per_s": train["audio_seconds"] / train["seconds"],
                          "validation_samples_per_s": val["samples"] / val["seconds"],
                          "validation_audio_s_per_s": val["audio_seconds"] / val["seconds"]})
    result = {"front_end": features, "workers": workers, "run_seconds": total, "epochs": per_epoch,
              "front_end_audio_s_per_s": front_end_rate(trainer.front_end, trainer.device, *((2, 1.0, 1) if dry else ())),
              "parameters": json.loads((out / "config.json").read_text())["parameters"]}
    if trainer.device.type == "cuda":
        result["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated()
    return result


def project(result: dict, mean_seconds: float, epochs: int) -> dict:
    """One MSP-Podcast MetricAug epoch from the last measured epoch's audio seconds/s."""
    last = result["epochs"][-1]
    train = 2 * MSP_TRAIN * mean_seconds / last["train_audio_s_per_s"]
    validation = MSP_VALIDATION * mean_seconds / last["validation_audio_s_per_s"]
    return {"epoch_hours": (train + validation) / 3600, "run_hours": epochs * (train + validation) / 3600,
            "train_hours_per_epoch": train / 3600, "validation_hours_per_epoch": validation / 3600}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny store and encoder, 1 epoch, workers 0")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON written")
    parser.add_argument("--store", type=Path, default=None, help="an existing store with STOI GMM levels (default: build one)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the store, encoder and runs (default: a temp folder)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="vq-wav2vec_kmeans.pt: adds the vqwav2vec front end")
    parser.add_argument("--front-ends", default="logmel,egemaps,hf", help="comma-separated (vqwav2vec added with --checkpoint)")
    parser.add_argument("--workers", default=None, help="DataLoader worker counts, comma-separated (default 0,4; dry: 0)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per configuration (default 3; dry: 1)")
    parser.add_argument("--per-class", type=int, default=None, help="demo train utterances per class (default 64; dry: 4)")
    parser.add_argument("--device", default=None, help="default cuda (dry: cpu)")
    parser.add_argument("--msp-mean-seconds", type=float, default=5.5, help="assumed mean MSP-Podcast utterance length")
    parser.add_argument("--msp-epochs", type=int, default=30, help="epochs of the projected MSP-Podcast run")
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cpu" if args.dry else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: torch sees no CUDA device here; run with --dry for the CPU check", file=sys.stderr)
        return 2
    workers = [int(w) for w in (args.workers or ("0" if args.dry else "0,4")).split(",")]
    epochs = args.epochs or (1 if args.dry else 3)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = args.store or build_store(work / "stores", args.per_class or (4 if args.dry else 64), 3 if args.dry else 5)
    build_seconds = time.perf_counter() - t0
    names = [n.strip() for n in args.front_ends.split(",") if n.strip()]
    options = {n: {} for n in names}
    if "hf" in names:
        options["hf"] = {"encoder": str(save_encoder(work / "encoder", tiny=args.dry))}
    if args.checkpoint:
        names.append("vqwav2vec")
        options["vqwav2vec"] = {"checkpoint": str(args.checkpoint)}
    doc = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
           "torch": torch.__version__, "python": platform.python_version(), "dry": args.dry, "store": str(store),
           "store_build_seconds": build_seconds, "epochs": epochs, "msp_mean_seconds_assumed": args.msp_mean_seconds,
           "msp_epochs": args.msp_epochs, "paper_run_hours": [12, 24], "results": []}
    for name in names:
        for w in workers:
            print(f"{name}, workers {w}: {epochs} epoch(s) of MetricAug on {device}", flush=True)
            result = check(store, name, options[name], w, epochs, device, work / "runs" / f"{name}-w{w}", args.dry)
            result["msp_podcast_projection"] = project(result, args.msp_mean_seconds, args.msp_epochs)
            doc["results"].append(result)
            last = result["epochs"][-1]
            print(f"  train {last['train_samples_per_s']:.1f} samples/s, validation {last['validation_samples_per_s']:.1f} "
                  f"samples/s, epoch {last['seconds']:.1f} s, front end {result['front_end_audio_s_per_s']:.0f} audio s/s; "
                  f"MSP-Podcast epoch ~{result['msp_podcast_projection']['epoch_hours']:.2f} h", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=1) + "\n")  # after every configuration: a cut run keeps them
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

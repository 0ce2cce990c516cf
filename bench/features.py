"""Throughput of the feature front ends, in seconds of audio per second of compute.

    python bench/features.py [--batch 8] [--seconds 4] [--min-time 3] [--front-ends logmel,vqwav2vec,egemaps,hf]

egemaps is openSMILE's eGeMAPSv02 LLDs (one item at a time, on the CPU whatever the device);
hf a Hugging Face wav2vec 2.0 encoder of wav2vec2-base's geometry (7 conv layers, 12
transformer layers of 768, 95 M parameters) with random weights, saved and loaded as a user's
folder would be, read as all 13 hidden states (the learned weighting's input; one chosen
layer costs the same encoder pass). vqwav2vec runs at the real vq-wav2vec_kmeans.pt geometry (8 conv layers of 512 channels,
GELU, no log compression) with random weights; logmel beside it. Two batch shapes: every
item the same length, and lengths spread over half to all of ``--seconds`` (the padded
path: per-item group norm statistics). CPU always; CUDA too when torch sees a GPU.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.features import LogMelFrontEnd, VqWav2VecFrontEnd  # noqa: E402
from trainer.frontends import build_front_end  # noqa: E402


def random_base_encoder() -> str:
    """A wav2vec2-base-sized encoder with random weights, saved to a temporary folder."""
    import tempfile

    from transformers import Wav2Vec2Config, Wav2Vec2Model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = tempfile.mkdtemp(prefix="bench-hf-")
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)
    return folder

SR = 16000


def measure(front_end, wavs: torch.Tensor, lengths: torch.Tensor, device: torch.device, min_time: float
            ) -> tuple[float, float]:
    """Audio seconds per second of wall time, and per second of this process's CPU time (all
    its threads: on a machine other work shares, the steadier figure)."""
    wavs, lengths = wavs.to(device), lengths.to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    front_end(wavs, lengths)  # warm-up (allocations, kernel selection)
    sync()
    runs, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        front_end(wavs, lengths)
        sync()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and runs >= 3:
            break
    cpu = time.process_time() - cpu_start
    audio_seconds = float(lengths.sum()) / SR * runs
    return audio_seconds / elapsed, audio_seconds / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="items per batch (default 8)")
    parser.add_argument("--seconds", type=float, default=4.0, help="longest item in seconds (default 4)")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds to time each case at least (default 3)")
    parser.add_argument("--front-ends", default="logmel,vqwav2vec,egemaps,hf", help="which to time (comma-separated)")
    args = parser.parse_args()

    torch.manual_seed(0)
    samples = int(args.seconds * SR)
    wavs = 0.1 * torch.randn(args.batch, samples)
    equal = torch.full((args.batch,), samples, dtype=torch.long)
    mixed = torch.linspace(samples // 2, samples, args.batch).long()
    chosen = args.front_ends.split(",")
    makers = {"logmel": ("logmel", LogMelFrontEnd), "vqwav2vec": ("vqwav2vec (512 ch)", VqWav2VecFrontEnd),
              "egemaps": ("egemaps (25 LLDs)", lambda: build_front_end("egemaps")),
              "hf": ("hf (wav2vec2-base size, 13 layers)", lambda: build_front_end("hf", encoder=random_base_encoder()))}
    front_ends = {makers[n][0]: makers[n][1]() for n in chosen}

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))

    rows = []
    for device in devices:
        name = "CPU" if device.type == "cpu" else f"CUDA ({torch.cuda.get_device_name(device)})"
        if device.type == "cpu":
            name += f", {torch.get_num_threads()} threads"
        for label, front_end in front_ends.items():
            front_end = front_end.to(device)
            for shape, lengths in (("equal", equal), ("mixed ½–1×", mixed)):
                rate = measure(front_end, wavs, lengths, device, args.min_time)
                rows.append((label, name, shape, rate))
            front_end.to("cpu")

    print(f"command: `python bench/features.py --batch {args.batch} --seconds {args.seconds:g} --min-time {args.min_time:g}"
          f" --front-ends {args.front_ends}`  ")
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}; "
          f"batch {args.batch} × up to {args.seconds:g} s at 16 kHz\n")
    print("| front end | device | lengths in batch | audio s / s (wall) | audio s / CPU s |")
    print("|---|---|---|---:|---:|")
    for label, device_name, shape, (rate, cpu_rate) in rows:
        print(f"| {label} | {device_name} | {shape} | {rate:,.1f} | {cpu_rate:,.1f} |")


if __name__ == "__main__":
    main()

"""Throughput of the feature front ends, in seconds of audio per second of compute.

    python bench/features.py [--batch 8] [--seconds 4] [--min-time 3]

vqwav2vec runs at the real vq-wav2vec_kmeans.pt geometry (8 conv layers of 512 channels,
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

SR = 16000


def measure(front_end, wavs: torch.Tensor, lengths: torch.Tensor, device: torch.device, min_time: float) -> float:
    wavs, lengths = wavs.to(device), lengths.to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    front_end(wavs, lengths)  # warm-up (allocations, kernel selection)
    sync()
    runs, start = 0, time.perf_counter()
    while True:
        front_end(wavs, lengths)
        sync()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and runs >= 3:
            break
    audio_seconds = float(lengths.sum()) / SR * runs
    return audio_seconds / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="items per batch (default 8)")
    parser.add_argument("--seconds", type=float, default=4.0, help="longest item in seconds (default 4)")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds to time each case at least (default 3)")
    args = parser.parse_args()

    torch.manual_seed(0)
    samples = int(args.seconds * SR)
    wavs = 0.1 * torch.randn(args.batch, samples)
    equal = torch.full((args.batch,), samples, dtype=torch.long)
    mixed = torch.linspace(samples // 2, samples, args.batch).long()
    front_ends = {"logmel": LogMelFrontEnd(), "vqwav2vec (512 ch)": VqWav2VecFrontEnd()}

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

    print(f"command: `python bench/features.py --batch {args.batch} --seconds {args.seconds:g} --min-time {args.min_time:g}`  ")
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}; "
          f"batch {args.batch} × up to {args.seconds:g} s at 16 kHz\n")
    print("| front end | device | lengths in batch | audio s / s |")
    print("|---|---|---|---:|")
    for label, device_name, shape, rate in rows:
        print(f"| {label} | {device_name} | {shape} | {rate:,.0f} |")


if __name__ == "__main__":
    main()

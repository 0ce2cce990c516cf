"""Superset build throughput and worker memory on real speech, at 1 and 2 jobs.

Corpus: ../shared/audio/emodb (real EmoDB speech, 2 s clips, read through the emodb
adapter and resampled to 16 kHz). Noise: ../shared/audio/esc50_glass, its clips split
into a "noise" half and a "music" half so the builder sees both MUSAN types (the files
are real environmental recordings; the builder treats them exactly like MUSAN files).
All three metrics are computed for every mix, as in a real build.

    .venv/bin/python bench/superset.py [--utterances 24] [--shared ../shared]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mixer.corpora import emodb, esc50  # noqa: E402
from mixer.build import run_stage  # noqa: E402
from mixer.plan import SupersetOptions, plan_superset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--utterances", type=int, default=64, help="train utterances to mix (x30 mixes)")
    parser.add_argument("--utts-per-shard", type=int, default=2)
    args = parser.parse_args()
    speech_root = args.shared / "audio" / "emodb"
    noise_root = args.shared / "audio" / "esc50_glass"
    if not speech_root.is_dir() or not noise_root.is_dir():
        sys.exit(f"error: {args.shared}: needs audio/emodb and audio/esc50_glass (the project's shared material)")

    utts, _ = emodb.prepare(speech_root, test_speakers=(), validation_speakers=())
    utts = sorted(utts, key=lambda u: u.utt_id)[: args.utterances]
    noise_files, _ = esc50.prepare(noise_root)
    noise_files = sorted(noise_files, key=lambda n: n.noise_id)
    half = len(noise_files) // 2
    noises = [replace(n, kind="noise") for n in noise_files[:half]] + [replace(n, kind="music") for n in noise_files[half:]]
    opts = SupersetOptions(utts_per_shard=args.utts_per_shard)
    tasks = plan_superset(utts, noises, opts)
    mixes = sum(t.num_samples for t in tasks)
    speech_seconds = sum(1 for _ in utts) * 2.0
    print(f"corpus: {len(utts)} EmoDB utterances (~{speech_seconds:.0f} s of speech) x 30 = {mixes} mixes, "
          f"{len(tasks)} shards, metrics stoi+pesq+fwsnrseg")

    results = {}
    for jobs in (1, 2):
        work = Path(tempfile.mkdtemp(prefix=f"bench-superset-{jobs}-"))
        try:
            started = time.perf_counter()
            summary = run_stage(work / "emodb", "superset", tasks, {"corpus": "emodb"}, [], jobs=jobs, progress=False)
            wall = time.perf_counter() - started
            results[jobs] = (summary.samples_written / wall, max(summary.worker_peak_rss_bytes.values()) / 2**20, wall)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    print("\n| jobs | mixes/s | wall s | peak RSS per worker (MiB) | speed-up |")
    print("|---|---|---|---|---|")
    for jobs, (rate, rss, wall) in results.items():
        print(f"| {jobs} | {rate:.1f} | {wall:.1f} | {rss:.0f} | {rate / results[1][0]:.2f}x |")
    print(f"\ncommand: .venv/bin/python bench/superset.py --utterances {args.utterances}")


if __name__ == "__main__":
    main()

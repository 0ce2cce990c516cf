"""Recipe store against audio store, side by side in one run: store size and bytes per mix,
mixes/s read on one core (decoded, and for a recipe store mixed), superset build throughput,
and the projection for MSP-Podcast. Two corpora: the built-in demo and RAVDESS with the
project's real noise (../shared/audio, the study's --real-noise: real music tracks and ESC-50
background clips), speaker split as the adapter's default (actors 1-4 test, 5-8 validation).

    .venv/bin/python bench/recipe_store.py [--limit 24] [--reads 400] [--work /tmp/recipe-bench]

``--limit N`` takes the first N utterances of each split (0: all; the full train and
validation speakers make 30 x 1,072 mixes). Every build scores STOI only (the study's
metrics) with --jobs 2; reads run in this process with one thread.

    .venv/bin/python bench/recipe_store.py --fold studies/ravdess-real/fold0 [--epochs 3]

``--fold DIR`` takes a fold of ``bench/study.py`` (its ``utterances.csv`` and audio store
``csv/``) and builds the recipe store of the same inputs beside the work folder: the sizes of
a whole fold, epoch-like reads (2N random superset mixes, a first epoch with no decoded clean
utterance in memory and a second one after it), and ``--epochs`` MetricAug epochs of
``trainer run`` on each store (the same records apart from seconds, checked).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from shards import reader  # noqa: E402
from shards.reader import open_store  # noqa: E402
from shards.vocab import CLEAN_SUBSET, NOISE_SUBSET, SUPERSET_SUBSET, TABLE  # noqa: E402

PREP = [sys.executable, "-m", "mixer.cli"]
#: MSP-Podcast as the issue states it: train and validation utterances; the mean length is an
#: assumption (about 5.7 s: roughly 166 h over 104k utterances of release 1.10).
MSP_TRAIN_VAL, MSP_SECONDS = 28_602 + 4_772, 5.7
#: MUSAN's noise and music parts: about 6.2 h and 42.6 h, 16 kHz (the recipe store holds them once, 16-bit).
MUSAN_HOURS = 6.2 + 42.6


def build(corpus_args: list[str], out: Path, mixes: str) -> float:
    """Wall seconds of one superset build."""
    started = time.perf_counter()
    subprocess.run([*PREP, "superset", *corpus_args, "--out", str(out), "--metrics", "stoi", "--jobs", "2",
                    "--quiet", "--mixes", mixes], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def superset_bytes(store: Path) -> dict:
    """What the superset's mixes take: the audio store's superset tars; the recipe store's
    superset rows of the table (written alone, as the build writes the table), its rows files,
    and its noise shards."""
    manifest = json.loads((store / "manifest.json").read_text())
    entries = [e for e in manifest["shards"] if e["stage"] == "superset"]
    table = pq.read_table(store / TABLE)
    rows = table.filter(pc.equal(table["subset"], SUPERSET_SUBSET))
    tmp = store / ".superset-rows.parquet"
    pq.write_table(rows, tmp, compression="zstd")
    table_bytes = tmp.stat().st_size
    tmp.unlink()
    mix_entries = [e for e in entries if e["subset"] == SUPERSET_SUBSET]
    return {
        "mixes": rows.num_rows,
        "seconds": float(pc.sum(rows["num_samples"]).as_py()) / 16000,
        "shards": sum(e["bytes"] for e in mix_entries),  # audio: tars; recipe: rows files
        "table": table_bytes,
        "noise": sum(e["bytes"] for e in entries if e["subset"] == NOISE_SUBSET),
        "store": sum(p.stat().st_size for p in store.rglob("*") if p.is_file()),
    }


def read_rate(store_dir: Path, keys: list[str], repeats: int = 2) -> tuple[float, float]:
    """Mixes per second through Store.clips(...).audio on one thread, page cache warm: (no
    cache, warm). No cache: every recipe decodes its clean utterance (the decoded-clean cache
    off, as for a corpus far larger than its cap); warm: the best of ``repeats`` passes with
    every clean utterance decoded once before."""
    store = open_store(store_dir)
    source = store.clips(keys)
    for i in range(len(keys)):  # warm the page cache and the noise maps
        source.audio(i)
    cap, reader._DECODED_CLEAN.cap = reader._DECODED_CLEAN.cap, 0
    reader._DECODED_CLEAN.clear()
    started = time.perf_counter()
    for i in range(len(keys)):
        source.audio(i)
    cold = len(keys) / (time.perf_counter() - started)
    reader._DECODED_CLEAN.cap = cap
    for i in range(len(keys)):
        source.audio(i)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(len(keys)):
            source.audio(i)
        best = max(best, len(keys) / (time.perf_counter() - started))
    return cold, best


def epoch_reads(store_dir: Path, keys: list[str], draws: int, seed: int) -> float:
    """Mixes per second reading ``draws`` superset mixes drawn at random (an epoch's reads)."""
    rng = np.random.default_rng(seed)
    picked = [keys[i] for i in rng.choice(len(keys), size=min(draws, len(keys)), replace=False)]
    source = open_store(store_dir).clips(picked)
    started = time.perf_counter()
    for i in range(len(picked)):
        source.audio(i)
    return len(picked) / (time.perf_counter() - started)


def compare(name: str, corpus_args: list[str], work: Path, reads: int) -> dict:
    out = {}
    for mixes in ("audio", "recipe"):
        folder = work / f"{name}-{mixes}"
        shutil.rmtree(folder, ignore_errors=True)
        seconds = build(corpus_args, folder, mixes)
        store = next(p for p in folder.iterdir() if (p / "manifest.json").is_file())
        out[mixes] = {"path": store, "build_s": seconds, **superset_bytes(store)}
    keys = superset_keys(out["audio"]["path"])
    rng = np.random.default_rng(0)
    sample = [keys[i] for i in rng.choice(len(keys), size=min(reads, len(keys)), replace=False)]
    for mixes in ("audio", "recipe"):
        out[mixes]["read"] = read_rate(out[mixes]["path"], sample)
    a, r = out["audio"], out["recipe"]
    recipe_part = r["table"] + r["noise"]
    print(f"\n== {name}: {a['mixes']} superset mixes, {a['seconds'] / a['mixes']:.2f} s each on average")
    print(f"{'':34s}{'audio':>14s}{'recipe':>14s}{'recipe/audio':>14s}")
    rows = [
        ("superset mixes (tars | table rows)", a["shards"], r["table"]),
        ("noise subset, stored once", 0, r["noise"]),
        ("superset part (issue's measure)", a["shards"], recipe_part),
        ("recipe rows files (resume units)", 0, r["shards"]),
        ("whole store on disk", a["store"], r["store"]),
    ]
    for label, x, y in rows:
        ratio = f"{y / x:.3f}" if x else ""
        print(f"{label:34s}{x / 2**20:11.2f} MB{y / 2**20:11.2f} MB{ratio:>14s}")
    print(f"{'bytes per mix (superset part)':34s}{a['shards'] / a['mixes']:14.0f}{recipe_part / r['mixes']:14.0f}")
    print(f"{'bytes per mix (table row alone)':34s}{'':14s}{r['table'] / r['mixes']:14.0f}")
    for label, j in (("read, mixes/s, no clean cache", 0), ("read, mixes/s, clean cache warm", 1)):
        print(f"{label:34s}{a['read'][j]:14.1f}{r['read'][j]:14.1f}{r['read'][j] / a['read'][j]:14.2f}")
    tput_a, tput_r = a["mixes"] / a["build_s"], r["mixes"] / r["build_s"]
    print(f"{'superset build, mixes/s (2 jobs)':34s}{tput_a:14.1f}{tput_r:14.1f}{tput_r / tput_a:14.2f}")
    return out


def superset_keys(store: Path) -> list[str]:
    return pq.read_table(store / TABLE, columns=["key", "subset"]).filter(
        pc.equal(pc.field("subset"), SUPERSET_SUBSET))["key"].to_pylist()


def trainer_epochs(store: Path, out: Path, epochs: int) -> list[dict]:
    """``trainer run`` (MetricAug, the study's pooled selection) for ``epochs`` epochs; its records."""
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "trainer.cli", "run", "--data", str(store), "--out", str(out),
                    "--strategy", "metricaug", "--max-epochs", str(epochs), "--seed", "0", "--select", "pooled",
                    "--quiet"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]


def compare_fold(fold: Path, work: Path, epochs: int) -> None:
    """A whole study fold: its audio store against a recipe store built from the same inputs."""
    audio = fold / "csv"
    plans = {name: json.loads((audio / "plans" / f"{name}.json").read_text()) for name in ("superset", "testsets")}
    options = plans["superset"]["options"]
    recipe_root = work / f"{fold.name}-recipe"  # kept: a second run resumes the build (a no-op when complete)
    corpus = ["--corpus", "csv", "--root", str(fold / "utterances.csv"), "--noise-root", plans["superset"]["noise_root"],
              "--out", str(recipe_root), "--jobs", "2", "--quiet"]
    subprocess.run([*PREP, "superset", *corpus, "--metrics", ",".join(options["metrics"]), "--bins", str(options["bins"]),
                    "--mixes", "recipe"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    subprocess.run([*PREP, "testsets", *corpus, "--metrics", ",".join(options["metrics"]),
                    "--unseen-root", plans["testsets"]["unseen_root"]], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    recipe = recipe_root / "csv"
    subprocess.run([*PREP, "score", str(recipe), "--metric", "stoi", "--quant", "gmm"], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    columns = ["key", "noise_offset", "noise_gain", "gain", "stoi"]
    same = [pq.read_table(s / TABLE, columns=columns + ["subset"]).filter(
        pc.equal(pc.field("subset"), SUPERSET_SUBSET)).select(columns).sort_by("key") for s in (audio, recipe)]
    if not same[0].equals(same[1]):
        sys.exit(f"error: {recipe}: its superset recipes or STOI differ from {audio}'s: not the same inputs")
    a, r = superset_bytes(audio), superset_bytes(recipe)
    recipe_part = r["table"] + r["noise"]
    print(f"\n== {fold}: {a['mixes']} superset mixes, {a['seconds'] / a['mixes']:.2f} s each on average")
    print(f"{'':34s}{'audio':>14s}{'recipe':>14s}{'recipe/audio':>14s}")
    for label, x, y in (("superset mixes (tars | table rows)", a["shards"], r["table"]),
                        ("noise subset, stored once", 0, r["noise"]),
                        ("superset part (issue's measure)", a["shards"], recipe_part),
                        ("whole store on disk", a["store"], r["store"])):
        ratio = f"{y / x:.3f}" if x else ""
        print(f"{label:34s}{x / 2**20:11.2f} MB{y / 2**20:11.2f} MB{ratio:>14s}")
    keys = superset_keys(audio)
    train = pq.read_table(audio / TABLE, columns=["subset", "split"]).filter(
        (pc.field("subset") == CLEAN_SUBSET) & (pc.field("split") == "train")).num_rows
    rates = {}
    for name, store in (("audio", audio), ("recipe", recipe)):
        epoch_reads(store, keys, len(keys), seed=99)  # the page cache warm for both
        reader._DECODED_CLEAN.clear()
        rates[name] = [epoch_reads(store, keys, 2 * train, seed=e) for e in (1, 2)]
    for e, label in ((0, "first epoch"), (1, "second epoch")):
        x, y = rates["audio"][e], rates["recipe"][e]
        print(f"{'read 2N mixes/s, ' + label:34s}{x:14.1f}{y:14.1f}{y / x:14.2f}")
    records = {name: trainer_epochs(store, work / f"{fold.name}-run-{name}", epochs)
               for name, store in (("audio", audio), ("recipe", recipe))}
    seconds = {name: [row.pop("seconds") for row in rows] for name, rows in records.items()}
    for e in range(epochs):
        x, y = seconds["audio"][e], seconds["recipe"][e]
        print(f"{f'trainer run MetricAug epoch {e + 1}, s':34s}{x:14.1f}{y:14.1f}{y / x:14.2f}")
    print("epochs.jsonl apart from seconds:", "identical" if records["audio"] == records["recipe"] else "DIFFERENT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--work", type=Path, default=Path("/tmp/recipe-bench"))
    parser.add_argument("--limit", type=int, default=24, help="utterances per split (0: all)")
    parser.add_argument("--reads", type=int, default=400, help="superset mixes read per store")
    parser.add_argument("--fold", type=Path, default=None, help="a bench/study.py fold folder: compare its whole store")
    parser.add_argument("--epochs", type=int, default=3, help="with --fold: trainer epochs timed on each store")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.fold is not None:
        compare_fold(args.fold, args.work, args.epochs)
        return
    demo = args.work / "demo-corpus"
    if not (demo / "msp").is_dir():
        subprocess.run([*PREP, "demo-corpus", str(demo)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    limit = ["--limit", str(args.limit)] if args.limit else []
    compare("demo", ["--corpus", "demo", "--root", str(demo), *limit], args.work, args.reads)
    from study import assemble_real_noise

    musan, _ = assemble_real_noise(args.shared / "audio", args.work / "real-noise")
    rav = compare("ravdess", ["--corpus", "ravdess", "--root", str(args.shared / "audio" / "ravdess"),
                              "--noise-root", str(musan), *limit], args.work, args.reads)
    a, r = rav["audio"], rav["recipe"]
    mixes = 30 * MSP_TRAIN_VAL
    audio_gb = a["shards"] / a["seconds"] * MSP_SECONDS * mixes / 1e9
    rows_gb = r["table"] / r["mixes"] * mixes / 1e9
    noise_gb = MUSAN_HOURS * 3600 * 16000 * 2 / 1e9
    print(f"\n== MSP-Podcast projection: 30 x {MSP_TRAIN_VAL:,} = {mixes:,} superset mixes of {MSP_SECONDS} s "
          f"(assumed mean), RAVDESS's bytes per second of mix and per table row")
    print(f"audio superset      {audio_gb:8.1f} GB  ({a['shards'] / a['seconds'] / 1e3:.1f} kB per second of mix)")
    print(f"recipe superset     {rows_gb + noise_gb:8.1f} GB  ({rows_gb:.2f} GB table rows + {noise_gb:.2f} GB MUSAN "
          f"noise and music, {MUSAN_HOURS:.1f} h at 16 kHz 16-bit, stored once; memory-mapped by readers)")


if __name__ == "__main__":
    main()

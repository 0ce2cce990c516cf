"""Bench the trainer's input pipeline on a real store: reads, DataLoader workers, training step.

    .venv/bin/python bench/trainer_io.py --store STORE [--metric stoi] [--quant gmm] [--levels K]
        [--seed 0] [--batch 32] [--repeats 3] [--loader-passes 4] [--train-batches 40]
        [--warmup 3] [--threads 1] [--skip read,loader,train]

The samples are one MetricAug epoch, drawn as the trainer draws it: all N clean train
utterances plus N train mixes split over the K levels with uniform weights by
``plan_epoch_draw`` (seeded), in the order ``length_batches`` gives them (seeded rng).

1. Read throughput, FLAC decoding included, in one process pinned to one core (page cache
   warmed first: every shard involved is read once before any timing, so no variant pays
   for the disk and the others not):
   a. random access through the level index: ``StoreData`` -> ``Store.clips`` ->
      ``ClipSource.audio(i)`` in the epoch's shuffled order;
   b. sequential: the shards holding those samples read front to back with
      ``webdataset.WebDataset(urls, shardshuffle=False)``, every sample's FLAC decoded with
      soundfile (every sample of those shards is read, the rate is over what was read);
   c. the authors' layout: one pickle per sample of precomputed log-mel features (float32
      numpy), written to a temporary folder first, loaded in the epoch order (no decoding,
      no feature computation: both were paid for once, offline).
   Best of ``--repeats``.
2. DataLoader scaling: ``DataLoader(WaveformDataset(epoch), batch_sampler=length_batches
   batches (--loader-passes epochs of them), collate_fn=collate_waveforms, fork,
   persistent_workers=False)`` at 0, 1 and 2 workers; samples/s of iterating it, with and
   without worker start-up. Best of ``--repeats``.
3. CPU training: GRUTFM(80, hidden 16) + log-mel front end + Adam(1e-3) + cross-entropy,
   batches from the 2-worker loader, ``--train-batches`` timed after ``--warmup``; and the
   same steps on batches already in memory (model step only).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ.setdefault(_var, "1")  # numpy's pools stay at one thread; torch threads are set below

import argparse  # noqa: E402
import pickle  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import webdataset as wds  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from shards.reader import decode_flac, open_store  # noqa: E402
from shards.vocab import SAMPLE_RATE, TRAIN  # noqa: E402
from trainer.data import SampleSet, StoreData, WaveformDataset, collate_waveforms, length_batches  # noqa: E402
from trainer.features import build_front_end  # noqa: E402
from trainer.model import GRUTFM  # noqa: E402
from trainer.weights import plan_epoch_draw  # noqa: E402

ALL_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


@contextmanager
def one_core():
    """Pin this process (and torch's intra-op pool) to one core for the block."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    if ALL_CORES:
        os.sched_setaffinity(0, {ALL_CORES[0]})
    try:
        yield
    finally:
        if ALL_CORES:
            os.sched_setaffinity(0, set(ALL_CORES))
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the epoch

def epoch_samples(data: StoreData, seed: int) -> SampleSet:
    """One MetricAug epoch as the trainer builds it: N clean + N mixes over the levels."""
    weights = np.full(data.n_levels, 1.0 / data.n_levels)
    draw = plan_epoch_draw(data.train_level_sizes, data.n_train, weights, np.random.default_rng([seed, 1]))
    parts = [data.clean(TRAIN)] + [data.level_samples(TRAIN, k + 1, idx)
                                   for k, idx in enumerate(draw.indices) if idx.size]
    return SampleSet.concat(parts)


def epoch_batches(samples: SampleSet, batch: int, seed: int, passes: int = 1) -> list[np.ndarray]:
    """``passes`` epochs' worth of training batches (a fresh shuffle per pass)."""
    out: list[np.ndarray] = []
    for p in range(passes):
        out += length_batches(samples.lengths, batch, np.random.default_rng([seed, 2, p]))
    return out


def sample_keys(samples: SampleSet) -> list[str]:
    return [samples.sources[int(s)].keys[int(i)] for s, i in zip(samples.source_of, samples.index_in_source)]


def shard_urls(store, keys: list[str]) -> list[str]:
    """The shard files holding ``keys`` (through the table: the public way to learn it)."""
    table = store.table(["key", "shard"])
    shard_of = dict(zip(table["key"].to_pylist(), table["shard"].to_pylist()))
    return [str(store.path / s) for s in sorted({shard_of[k] for k in keys})]


def busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by the whole machine over ``seconds`` while this process sleeps
    (from /proc/stat): other work that would share the CPU with the benchmark."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except OSError:
        return float("nan")
    ncpu = os.cpu_count() or 1
    return ncpu * (1 - (i1 - i0) / max(t1 - t0, 1))


def warm_page_cache(paths: list[str]) -> int:
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
    return total


# ----------------------------------------------------------------------- 1. read speed

def time_random(store_dir: Path, metric: str, quant: str, levels: int | None, seed: int, batch: int,
                decode: bool) -> tuple[float, float, int, int]:
    """(wall s, CPU s, samples, audio samples or FLAC bytes) reading the epoch through the API in training order.
    The sample set is rebuilt untimed each call, so its ClipSources start with no open file
    (opening shards is part of the timed reads, as in a fresh worker)."""
    store = open_store(store_dir)
    data = StoreData(store, store.level_index(metric, quant, levels))
    samples = epoch_samples(data, seed)
    order = np.concatenate(epoch_batches(samples, batch, seed))
    sources, source_of, index_in = samples.sources, samples.source_of, samples.index_in_source
    audio = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for i in order.tolist():
        src = sources[int(source_of[i])]
        if decode:
            audio += src.audio(int(index_in[i])).size
        else:
            audio += len(src.read_bytes(int(index_in[i])))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, int(order.size), audio


def time_sequential(urls: list[str], decode: bool) -> tuple[float, float, int, int]:
    ds = wds.WebDataset(urls, shardshuffle=False)
    n = audio = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for sample in ds:
        if decode:
            audio += decode_flac(sample["flac"]).size
        else:
            audio += len(sample["flac"])
        n += 1
    return time.perf_counter() - t0, time.process_time() - c0, n, audio


def write_feature_pickles(samples: SampleSet, folder: Path) -> tuple[list[Path], int]:
    """One pickle of log-mel features (float32, frames x 80) per epoch sample."""
    fe = build_front_end("logmel", device="cpu")
    paths, size = [], 0
    ds = WaveformDataset(samples)
    for i in range(len(samples)):
        wav, _, _ = ds[i]
        feats, frames = fe(wav[None], torch.tensor([wav.numel()]))
        arr = feats[0, : int(frames[0])].numpy().astype(np.float32)
        path = folder / f"{i:07d}.pkl"
        with open(path, "wb") as f:
            pickle.dump(arr, f, protocol=pickle.HIGHEST_PROTOCOL)
        size += path.stat().st_size
        paths.append(path)
    return paths, size


def time_pickles(paths: list[Path], order: np.ndarray) -> tuple[float, float, int, int]:
    frames = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for i in order.tolist():
        with open(paths[i], "rb") as f:
            frames += pickle.load(f).shape[0]
    return time.perf_counter() - t0, time.process_time() - c0, int(order.size), frames


# ------------------------------------------------------------------ 2. DataLoader scaling

def make_loader(samples: SampleSet, batches: list[np.ndarray], workers: int) -> DataLoader:
    return DataLoader(WaveformDataset(samples), batch_sampler=batches, collate_fn=collate_waveforms,
                      num_workers=workers, persistent_workers=False,
                      multiprocessing_context="fork" if workers else None)


def time_loader(samples: SampleSet, batches: list[np.ndarray], workers: int) -> dict:
    """Iterate the loader once. ``all``: samples/s from creating the iterator (worker start-up
    included). ``steady``: from the arrival of the first round of batches (one per worker,
    which the workers made concurrently during start-up) to the end, over the batches after it."""
    loader = make_loader(samples, batches, workers)
    sizes, arrivals = [], []
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for wavs, lengths, labels, indices in loader:
        arrivals.append(time.perf_counter())
        sizes.append(int(labels.numel()))
    end = arrivals[-1]
    main_cpu = time.process_time() - c0
    del loader  # the exhausted iterator has joined its workers: their CPU time is in RUSAGE_CHILDREN
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    first_round = max(workers, 1) - 1
    steady_n = sum(sizes[first_round + 1:])
    return {"all": sum(sizes) / (end - t0), "steady": steady_n / (end - arrivals[first_round]),
            "startup": arrivals[0] - t0, "samples": sum(sizes),
            "cpu_ms": 1000 * (main_cpu + worker_cpu) / sum(sizes), "worker_cpu_ms": 1000 * worker_cpu / sum(sizes)}


# ------------------------------------------------------------------------ 3. training

def train_steps(batches, n_warmup: int, n_timed: int, threads: int, seed: int) -> dict:
    """Front end + forward + backward + Adam step per batch; ``batches`` an iterable (a
    loader, or a list already in memory). Timed from the end of the warm-up steps (n_warmup
    >= 1); ``wait`` is the part of it spent waiting for the next batch."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    fe = build_front_end("logmel", device="cpu")
    model = GRUTFM(n_features=fe.dim, hidden=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    it = iter(batches)
    n, wait, t_start = 0, 0.0, 0.0
    for step in range(n_warmup + n_timed):
        w0 = time.perf_counter()
        wavs, lengths, labels, _ = next(it)
        got = time.perf_counter()
        feats, frames = fe(wavs, lengths)
        loss = loss_fn(model(feats, frames), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = time.perf_counter()
        if step == n_warmup - 1:
            t_start = done
        elif step >= n_warmup:
            n += int(labels.numel())
            wait += got - w0
    seconds = time.perf_counter() - t_start
    del it
    return {"rate": n / seconds, "seconds": seconds, "wait": wait, "samples": int(n)}


# ------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="a store built by 'prep superset' and scored by 'prep score'")
    parser.add_argument("--metric", default="stoi")
    parser.add_argument("--quant", default="gmm")
    parser.add_argument("--levels", type=int, default=None, help="K of the level index (default: the one there is)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs for parts 1 and 2")
    parser.add_argument("--loader-passes", type=int, default=4, help="epochs of batches per DataLoader run (part 2)")
    parser.add_argument("--train-batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", default="1", help="torch threads of the training process (part 3), comma-separated to compare, e.g. 1,2 (2 is pathologically slow when other work shares the cores)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: read,loader,train")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be >= 1")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    warnings.filterwarnings("ignore", category=UserWarning, module="webdataset")

    store = open_store(args.store)
    index = store.level_index(args.metric, args.quant, args.levels)
    data = StoreData(store, index)
    samples = epoch_samples(data, args.seed)
    keys = sample_keys(samples)
    urls = shard_urls(store, keys)
    order = np.concatenate(epoch_batches(samples, args.batch, args.seed))
    epoch_audio_s = float(samples.lengths.sum()) / SAMPLE_RATE
    cached = warm_page_cache(urls)
    print(f"store {args.store}: N = {data.n_train} clean train utterances, K = {data.n_levels} levels "
          f"(train sizes {data.train_level_sizes}); epoch = {len(samples)} samples, {epoch_audio_s:.0f} s of audio, "
          f"in {len(urls)} shards ({cached / 1e6:.0f} MB, page cache warmed)", flush=True)
    busy = busy_cores()
    machine = (f"cores {ALL_CORES}; torch {torch.__version__}, webdataset {wds.__version__}, "
               f"Python {platform.python_version()}; before the start other work kept {busy:.1f} cores busy "
               f"(load average {os.getloadavg()[0]:.1f})")
    print(machine, flush=True)
    if busy > 0.25:
        print(f"WARNING: the machine is not idle ({busy:.1f} cores busy): wall-clock rates, worker speed-ups "
              f"and training samples/s below are depressed; the CPU-time figures hold better", flush=True)

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    out: list[str] = [f"`{command}`", "", machine + ".", ""]

    # -- 1 ------------------------------------------------------------------------------
    if "read" not in skip:
        rows = {}
        with one_core():
            for name, fn in (
                ("a", lambda d: time_random(args.store, args.metric, args.quant, args.levels, args.seed, args.batch, d)),
                ("b", lambda d: time_sequential(urls, d)),
            ):
                for decode in (False, True):
                    runs = [fn(decode) for _ in range(args.repeats)]
                    rows[name, decode] = min(runs, key=lambda r: r[0])
                    wall, cpu, n, _ = rows[name, decode]
                    print(f"read {name} decode={decode}: {n} samples in {wall:.2f} s ({cpu:.2f} s CPU)", flush=True)
            with tempfile.TemporaryDirectory(prefix="metricaug-bench-io-") as tmp:
                t0 = time.perf_counter()
                paths, pkl_bytes = write_feature_pickles(samples, Path(tmp))
                pkl_build = time.perf_counter() - t0
                warm_page_cache([str(p) for p in paths])
                rows["c", True] = min((time_pickles(paths, order) for _ in range(args.repeats)), key=lambda r: r[0])
            print(f"read c: {len(paths)} pickles ({pkl_bytes / 1e6:.1f} MB) written in {pkl_build:.1f} s, "
                  f"loaded in {rows['c', True][0]:.3f} s", flush=True)

        epoch_flac = rows["a", False][3]
        rate = {k: r[2] / r[0] for k, r in rows.items()}
        cpu_rate = {k: r[2] / r[1] for k, r in rows.items()}
        out += [f"**1. Read throughput**, one process pinned to one core, page cache warm, best of {args.repeats} "
                f"(wall clock; the CPU-time rate beside it holds on a busy machine). Epoch: {len(samples)} samples "
                f"({data.n_train} clean + {data.n_train} mixes, uniform level weights, seed {args.seed}), "
                f"{epoch_audio_s:.0f} s of audio, {epoch_flac / 1e6:.1f} MB of FLAC.", "",
                "| read | samples read | samples/s, bytes only | samples/s, FLAC decoded | samples / CPU s, decoded | audio s / s, decoded |",
                "|---|---:|---:|---:|---:|---:|"]
        labels = {"a": "a. random access: level index -> `Store.clips` -> `ClipSource.audio`, training order",
                  "b": f"b. sequential: `webdataset.WebDataset` over the {len(urls)} shards, front to back"}
        for name in ("a", "b"):
            wall, cpu, n, audio = rows[name, True]
            out.append(f"| {labels[name]} | {n} | {rate[name, False]:,.0f} | {rate[name, True]:,.0f} | "
                       f"{cpu_rate[name, True]:,.0f} | {audio / SAMPLE_RATE / wall:,.0f} |")
        out.append(f"| c. authors' layout: one pickle of precomputed log-mel features per sample "
                   f"({pkl_bytes / 1e6:.1f} MB), training order | {rows['c', True][2]} | {rate['c', True]:,.0f} | "
                   f"n/a (no decoding) | {cpu_rate['c', True]:,.0f} | |")
        ratio = rate["a", True] / rate["b", True]
        cpu_ratio = cpu_rate["a", True] / cpu_rate["b", True]
        out += ["", f"Random / sequential, decoded: **{ratio:.2f}x** wall, {cpu_ratio:.2f}x CPU (target >= 0.9x: "
                f"{'met' if min(ratio, cpu_ratio) >= 0.9 else 'not met'}); bytes only: "
                f"{rate['a', False] / rate['b', False]:.2f}x. Pickles skip FLAC decoding and the front end: the "
                f"features were computed beforehand ({pkl_build:.1f} s for this one epoch here, decoding included), "
                f"which fixes them to one front end and one draw of mixes.", ""]

    # -- 2 ------------------------------------------------------------------------------
    if "loader" not in skip:
        torch.set_num_threads(1)
        batches = epoch_batches(samples, args.batch, args.seed, args.loader_passes)
        n_loader = sum(b.size for b in batches)
        results = {}
        for workers in (0, 1, 2):
            runs = [time_loader(samples, batches, workers) for _ in range(args.repeats)]
            results[workers] = {"steady": max(r["steady"] for r in runs), "all": max(r["all"] for r in runs),
                                "startup": min(r["startup"] for r in runs), "cpu_ms": min(r["cpu_ms"] for r in runs)}
            print(f"loader workers={workers}: {results[workers]}", flush=True)
        out += [f"**2. DataLoader** over `WaveformDataset` (the epoch's samples), `batch_sampler` = "
                f"`length_batches` (batch {args.batch}, {args.loader_passes} epochs: {len(batches)} batches, "
                f"{n_loader} samples per run), `collate_waveforms`, fork, persistent_workers=False; main process "
                f"does nothing but iterate; best of {args.repeats}. \"Steady\" excludes start-up: timed from the "
                f"arrival of the first round of batches (one per worker) to the end, over the batches after it.", "",
                "| workers | samples/s steady | samples/s incl. start-up | time to first batch (s) | CPU ms / sample (main + workers) | speed-up vs 1 worker (steady) |",
                "|---|---:|---:|---:|---:|---:|"]
        for workers, r in results.items():
            out.append(f"| {workers} | {r['steady']:,.0f} | {r['all']:,.0f} | {r['startup']:.2f} | {r['cpu_ms']:.2f} | "
                       f"{r['steady'] / results[1]['steady']:.2f}x |")
        speedup = results[2]["steady"] / results[1]["steady"]
        speedup_all = results[2]["all"] / results[1]["all"]
        out += ["", f"2 vs 1 workers: **{speedup:.2f}x** steady (target >= 1.8x: {'met' if speedup >= 1.8 else 'not met'}), "
                f"{speedup_all:.2f}x with start-up.", ""]

    # -- 3 ------------------------------------------------------------------------------
    if "train" not in skip:
        need = args.warmup + args.train_batches
        per_pass = len(length_batches(samples.lengths, args.batch, None))
        batches = epoch_batches(samples, args.batch, args.seed + 1, -(-need // per_pass))[:need]
        torch.set_num_threads(1)
        in_memory = list(make_loader(samples, batches, 2))
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
        rows3 = []
        for n_threads in threads:
            loop = train_steps(make_loader(samples, batches, 2), args.warmup, args.train_batches, n_threads, args.seed)
            step = train_steps(in_memory, args.warmup, args.train_batches, n_threads, args.seed)
            print(f"train threads={n_threads}: loop {loop}, step only {step}", flush=True)
            rows3.append((n_threads, loop, step))
        torch.set_num_threads(1)
        out += [f"**3. CPU training**: GRUTFM(n_features=80, hidden=16) + log-mel front end + Adam(lr 1e-3) + "
                f"cross-entropy, batch {args.batch}, {args.train_batches} batches ({sum(b.size for b in batches[args.warmup:])} "
                f"samples) timed after {args.warmup} warm-up, {len(ALL_CORES)} cores unpinned; torch.set_num_threads(T) "
                f"in the training process (the loader workers run with 1 thread each, torch's default for them).", "",
                "| T | full loop: 2-worker loader -> features + forward + backward + step, samples/s | of its time, waiting for a batch | model step only (same batches in memory), samples/s | full / step only |",
                "|---:|---:|---:|---:|---:|"]
        for n_threads, loop, step in rows3:
            out.append(f"| {n_threads} | {loop['rate']:,.0f} | {100 * loop['wait'] / loop['seconds']:.0f} % | "
                       f"{step['rate']:,.0f} | {loop['rate'] / step['rate']:.2f} |")
        best = max(rows3, key=lambda r: r[1]["rate"])
        loop = best[1]
        bound = "the loader (I/O)" if loop["wait"] > 0.2 * loop["seconds"] else "the model step (compute)"
        out += ["", f"Fastest full loop at T = {best[0]}; it is bound by {bound}.", ""]

    busy_after = busy_cores()
    out.append(f"After the run other work kept {busy_after:.1f} cores busy (load average {os.getloadavg()[0]:.1f}).")
    print()
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

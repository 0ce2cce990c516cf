"""Bench a MetricAug epoch (training + validation on every level's mixes), old code against new.

    python bench/trainer_step.py --store STORE [--store STORE2] [--old ebc9b04]
        [--hidden 16,128] [--threads default,1,2] [--workers 2] [--device cpu] [--parts all|whole]
        [--repeats R] [--markdown FILE]

The old code is the tree of commit ``--old`` (``git archive`` into a temporary folder), the new
one this checkout; each runs in its own subprocess with PYTHONPATH pointing at its tree, one
after the other in the same bench run, so both see the same machine. Each measures, on the
same samples (epoch 1 of seed 0: the N clean train utterances plus N mixes drawn with uniform
weights, in the trainer's batch order; validation: the clean validation utterances and every
level's validation mixes):

* whole: the trainer's own ``_train_epoch`` and ``evaluate``, as ``trainer run`` runs an epoch,
  for ``default`` threads with each version's own default DataLoader workers (old: one per
  core; new: none on the CPU) or ``--workers N``, for a thread count given the cores it leaves;
* the split, serially (no workers, so each part is timed alone): data = decoding what the
  code decodes per epoch, features = the front end and normalisation (for the new code: of
  the samples it does not hold in its feature cache, plus assembling the batches), model = the
  training steps (forward, backward, Adam) or the validation forward passes on batches in
  memory.

Threads: ``default`` is what each version's ``trainer run`` does by itself (its default workers,
and cores - workers threads, at least 1, when OMP_NUM_THREADS is unset: the bench unsets it); ``1`` and ``2`` set torch's threads. ``setup`` is the once-per-run cost (normalisation
statistics; for the new code also filling the cache). Prints samples/s and new/old ratios;
with ``--repeats R`` old and new alternate R times and each figure is the best of R (robust to
other work on the machine).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- worker (one code tree)

def _worker(args) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from trainer import train as T
    from trainer.data import length_batches
    from trainer.model import GRUTFM

    new = hasattr(T.Trainer, "cache_fixed_inputs")
    out = tempfile.mkdtemp(prefix="wt-bench-run-")
    workers = args.workers
    if workers < 0:  # what this version's `trainer run` picks by itself
        import trainer.cli as C
        if hasattr(C, "_default_workers"):  # the code before the CPU default: one per core
            workers = C._default_workers()
        else:
            from trainer.threads import default_workers
            workers = default_workers(T.resolve_device(args.device).type)
    cfg = T.TrainConfig(data=args.store, out=out, seed=0, max_epochs=1, workers=workers, device=args.device)
    tr = T.Trainer(cfg, log=lambda line: None, progress=False)
    default_threads = torch.get_num_threads()
    started = time.perf_counter()
    tr.norm_mean, tr.norm_std = tr.estimate_normalisation()
    tr.norm_mean, tr.norm_std = tr.norm_mean.to(tr.device), tr.norm_std.to(tr.device)
    if new:
        tr.cache_fixed_inputs()
    setup = time.perf_counter() - started
    K = tr.K
    if hasattr(tr, "strategy"):  # the strategy registry (trainer.strategies)
        context = getattr(tr, "context", tr)  # a narrow strategy context since the ablations (issue 22)
        samples = tr.strategy.epoch_samples(context, 1, [1.0 / K] * K).samples
    else:  # the code before it
        samples, _, _ = tr.epoch_samples(1, [1.0 / K] * K)
    train_batches = length_batches(samples.lengths, cfg.batch_size, T._rng(0, 2, 1))
    val_sets = [tr.val_clean, *tr.val_levels]
    val_batches = [length_batches(s.lengths, 64, None) for s in val_sets]
    n_val = sum(len(s) for s in val_sets)
    def emit(**kw):
        line = "RESULT " + json.dumps({"code": args.code, "store": args.store, **kw})
        print(line, flush=True)
        print(f"# {line}", file=sys.stderr, flush=True)  # progress
    emit(part="setup", seconds=setup, n_train=len(samples), n_val=n_val, cached=len(tr.cache) if new and tr.cache else 0)

    def pipeline(sset, batches, workers):
        """The code's own path from the store to normalised feature batches."""
        if new:
            from trainer.data import feature_batches
            for feats, frames, labels, _ in feature_batches(sset, batches, tr.features, workers, tr.cache, tr.device):
                yield feats, frames, labels
        else:
            for wavs, lengths, labels, _ in T.make_loader(sset, batches, workers):
                feats, frames = tr.features(wavs, lengths)
                yield feats, frames, labels

    def decode_only(sset, batches):
        if new:
            from trainer.data import make_loader
            hits = tr.cache.hits(sset) if tr.cache is not None else None
            loader = make_loader(sset, batches, 0, skip=hits)
        else:
            loader = T.make_loader(sset, batches, 0)
        n = 0
        for wavs, lengths, _, _ in loader:
            n += int((lengths > 0).sum())
        return n

    def timed(fn):
        t = time.perf_counter()
        result = fn()
        return time.perf_counter() - t, result

    for threads in args.threads.split(","):
        n_threads = default_threads if threads == "default" else int(threads)
        torch.set_num_threads(n_threads)
        if new:
            tr.threads = n_threads
        # split, serial: data, then data + features (features = the difference), then model
        split = (("train", [samples], [train_batches], len(samples)),
                 ("validation", val_sets, val_batches, n_val)) if args.parts == "all" else ()
        for what, sets, batch_lists, n in split:
            t_data, decoded = timed(lambda: sum(decode_only(s, b) for s, b in zip(sets, batch_lists)))
            t_df, prepared = timed(lambda: [x for s, b in zip(sets, batch_lists) for x in pipeline(s, b, 0)])
            emit(part=f"{what} data", threads=threads, seconds=t_data, n=n, decoded=decoded)
            emit(part=f"{what} features", threads=threads, seconds=max(0.0, t_df - t_data), n=n)
            for hidden in map(int, args.hidden.split(",")):
                torch.manual_seed(0)
                model = GRUTFM(tr.front_end.dim, hidden, 4).to(tr.device)
                if what == "train":
                    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                    model.train()

                    def steps():
                        for feats, frames, labels in prepared:
                            loss = F.cross_entropy(model(feats, frames), labels.to(tr.device))
                            opt.zero_grad(set_to_none=True)
                            loss.backward()
                            opt.step()
                    t_model, _ = timed(steps)
                else:
                    model.eval()

                    def forwards():
                        with torch.no_grad():
                            for feats, frames, _ in prepared:
                                model(feats, frames).argmax(-1)
                    t_model, _ = timed(forwards)
                emit(part=f"{what} model", threads=threads, hidden=hidden, seconds=t_model, n=n)
        # whole epoch through the trainer's own methods, with the DataLoader workers (for a
        # thread count given: the cores those threads leave, so nothing is oversubscribed)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        tr.config.workers = workers if threads == "default" else max(0, cores - n_threads)
        for hidden in map(int, args.hidden.split(",")):
            torch.manual_seed(0)
            model = GRUTFM(tr.front_end.dim, hidden, 4).to(tr.device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            t_train, _ = timed(lambda: tr._train_epoch(model, opt, samples, train_batches, 1, T.Distributed(tr.device)))
            t_val, _ = timed(lambda: tr.evaluate(model))
            emit(part="whole train", threads=threads, hidden=hidden, seconds=t_train, n=len(samples))
            emit(part="whole validation", threads=threads, hidden=hidden, seconds=t_val, n=n_val)
            emit(part="whole epoch", threads=threads, hidden=hidden, seconds=t_train + t_val, n=len(samples) + n_val,
                 workers=tr.config.workers, torch_threads=n_threads)


# ----------------------------------------------------------------- driver

def _run_tree(tree: Path, code: str, store: str, args) -> list[dict]:
    cmd = [sys.executable, str(ROOT / "bench" / "trainer_step.py"), "--worker", "--code", code, "--store", store,
           "--parts", args.parts, "--hidden", args.hidden, "--threads", args.threads, "--workers", str(args.workers), "--device", args.device]
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("OMP_NUM_THREADS", None)  # each version's own default thread plan
    proc = subprocess.run(cmd, env=env, cwd=str(tree), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:])
        raise SystemExit(f"{code} code on {store}: the worker failed (exit {proc.returncode})")
    return [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


def _table(results: list[dict]) -> str:
    def key(r):
        return (r["store"], r["part"], r.get("threads", ""), r.get("hidden", ""))
    old, new = {}, {}
    for r in results:  # the best (shortest) of the repeats
        side = old if r["code"] == "old" else new
        if key(r) not in side or r["seconds"] < side[key(r)]["seconds"]:
            side[key(r)] = r
    lines = ["| store | part | threads | H | old samples/s | new samples/s | new/old | old s | new s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for k, o in old.items():
        n = new.get(k)
        if n is None:
            continue
        store = Path(k[0]).parent.name + "/" + Path(k[0]).name
        if o["part"] == "setup":
            lines.append(f"| {store} | setup (once per run) | | | | | | {o['seconds']:.1f} | {n['seconds']:.1f} |")
            continue
        rate_o, rate_n = o["n"] / max(o["seconds"], 1e-9), n["n"] / max(n["seconds"], 1e-9)
        ratio = o["seconds"] / max(n["seconds"], 1e-9)
        lines.append(f"| {store} | {o['part']} | {k[2]} | {k[3]} | {rate_o:,.0f} | {rate_n:,.0f} | {ratio:.2f}x | "
                     f"{o['seconds']:.2f} | {n['seconds']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", required=True, help="a scored store (repeat for several)")
    parser.add_argument("--old", default="ebc9b04", help="commit of the old code (default: ebc9b04, before issue 15)")
    parser.add_argument("--hidden", default="16,128", help="hidden sizes, comma-separated")
    parser.add_argument("--threads", default="default,1,2", help="thread settings, comma-separated: default or a number")
    parser.add_argument("--workers", type=int, default=-1,
                        help="DataLoader workers of the whole-epoch measurement at default threads "
                             "(-1: each version's own default, as trainer run picks it)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--parts", choices=("all", "whole"), default="all",
                        help="all: the split and the whole epoch; whole: the whole epoch only")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of old then new, interleaved; each figure is the best of them")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", default="new", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.store = args.store[0]
        _worker(args)
        return 0
    for t in args.threads.split(","):
        if t != "default" and not (t.isdigit() and int(t) > 0):
            parser.exit(2, f"error: --threads {args.threads}: expected default or positive numbers, comma-separated\n")
    command = "python bench/trainer_step.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    with tempfile.TemporaryDirectory(prefix="wt-bench-old-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.old], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        results = []
        for store in args.store:
            for round_ in range(max(1, args.repeats)):
                for code, tree in (("old", Path(tmp)), ("new", ROOT)):
                    print(f"# round {round_ + 1}: {code} code ({args.old if code == 'old' else 'this checkout'}) on {store} ...",
                          file=sys.stderr, flush=True)
                    results += _run_tree(tree, code, str(Path(store).resolve()), args)
    table = _table(results)
    defaults = "; ".join(sorted({f"{r['code']} default: {r['torch_threads']} torch thread(s), {r['workers']} worker(s)"
                                 for r in results if r["part"] == "whole epoch" and r.get("threads") == "default"
                                 and "torch_threads" in r}))
    header = (f"`{command}`\n\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"device {args.device}, old = {args.old}, new = this checkout" + (f"; {defaults}" if defaults else "") + "\n")
    print(header)
    print(table)
    if args.markdown:
        args.markdown.write_text(header + "\n" + table + "\n" + "\n<!-- raw -->\n" + "\n".join(json.dumps(r) for r in results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

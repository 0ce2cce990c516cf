"""The toolkit at 10^4, 10^5 and 10^6 superset mixes: does every stage stay linear?

    .venv/bin/python bench/scale.py [--sizes 1e4,1e5,1e6] [--work /work/scale-stores] [--jobs 1]

For each size S the script writes a generated corpus of ceil(S / 30) train and validation
utterances (the demo corpus generator, ``mixer.demo_corpus.write_demo_corpus``: synthetic
source-filter speech of 1.5-4 s, four classes, 86 % train, and its synthetic MUSAN-layout
noise and music), builds the recipe superset (``prep superset --mixes recipe --metrics stoi
--jobs J``: 30 mixes per utterance, STOI only) and measures:

- build: mixes/s and peak worker RSS as the build prints them, and its wall time;
- the table: ``metadata.parquet`` bytes, ``open_store`` (its quick check hashes the table)
  and one read of the whole table;
- ``prep score --metric stoi`` with ``--quant gmm`` and ``--quant uniform`` (wall s);
- the level index: ``Store.level_index`` open, and ``members()`` of every train level;
- ``prep verify`` (wall s);
- the trainer's epoch plan: ``StoreData`` set-up, ``plan_epoch_draw`` alone and the MetricAug
  strategy's ``epoch_samples`` (N clean + N mixes drawn by level, uniform weights: 2N);
- one epoch of reading without training: every sample of that epoch read once through its
  ``ClipSource`` in a seeded shuffled order, the decoded-clean cache emptied first (a first
  epoch); the drawn mixes and the clean utterances timed apart;
- ``prep materialize --jobs J`` (superset mixes / wall s) where the disk allows the audio
  store, and the same epoch's mixes read from it.

Commands are timed in wall and CPU seconds (the command and the processes it waited for;
``--jobs 1`` leaves the other cores to other work, whose waits the wall figures then include)
and started through a forking shell, so that the peak RSS a build prints is its own (Linux
carries ``ru_maxrss`` across exec from the starting process). In-process figures: the least
of 5 calls, or CPU seconds beside the wall ones.

Everything stays under ``--work``: ``corpus-<size>/``, ``<size>/demo`` (the recipe store),
``<size>/audio`` (materialized), ``<size>/figures.json``. A rerun reuses what is there:
a built corpus and store, and the figures of the stages already measured (``--again`` names
stages to measure again: build, score, verify, materialize; the in-process figures are
measured on every run). Prints a markdown table with the growth per size step (figure at 10x
size / figure at x; a stage that stays linear in the mixes shows about 10) and the projection
for MSP-Podcast 1.8 on a 128-core Dask cluster; writes ``scale.json`` and ``scale.md`` to
``--work``.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from recipe_store import MSP_SECONDS, MSP_TRAIN_VAL  # noqa: E402
from shards import reader  # noqa: E402
from shards.reader import open_store  # noqa: E402
from shards.vocab import SUPERSET_SUBSET, TABLE, TRAIN  # noqa: E402

PREP = [sys.executable, "-m", "mixer.cli"]
MIXES_PER_UTT = 30  # noise and music x 15 SNR bins
TRAIN_SHARE = 28_602 / MSP_TRAIN_VAL  # MSP-Podcast 1.8's train share of train + validation
#: FLAC bytes per second of a demo mix (BENCHMARKS.md, recipe stores: 61,280 bytes for 2.87 s),
#: rounded up: what an audio store of the generated corpus needs
AUDIO_BYTES_PER_SECOND = 22_000
CLUSTER_CORES = 128
#: the 2-job build's speed-up over 1 job per job (bench/superset.py: 1.90x at 2 jobs), taken
#: as the cluster's efficiency per core
CORE_EFFICIENCY = 0.95


def size_label(mixes: int) -> str:
    exponent = math.log10(mixes)
    return f"1e{round(exponent)}" if abs(exponent - round(exponent)) < 1e-9 else str(mixes)


def corpus_counts(mixes: int) -> tuple[int, int]:
    """Utterances per class (train, validation) so that 4 classes x 30 mixes reach ``mixes``."""
    per_class = math.ceil(mixes / MIXES_PER_UTT / 4)
    train = round(per_class * TRAIN_SHARE)
    return train, per_class - train


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system, of the command and the workers it waited
    for) and stdout of one command (stops the bench if it fails). The CPU seconds are what the
    command costs on a core of its own: the wall seconds also hold the waits for a core that
    other work on the machine holds."""
    started, cpu = time.perf_counter(), children_cpu()
    # through a shell that forks: a process's peak RSS (ru_maxrss, what the build prints per
    # worker) starts at the peak of the process that exec'd it, and this one is large
    done = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd], cwd=REPO, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if done.returncode:
        sys.exit(f"error: {shlex.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds, cpu, done.stdout


def summary_value(text: str, label: str) -> float:
    """A number from a build summary line (``throughput        541.0 samples/s``)."""
    match = re.search(rf"^\s*{re.escape(label)}\s+([0-9.]+)", text, re.M)
    if not match:
        sys.exit(f"error: no '{label}' line in the build's summary:\n{text[-2000:]}")
    return float(match.group(1))


def best_of(fn, repeats: int = 5) -> tuple[float, float]:
    """The least wall and the least CPU seconds of ``repeats`` calls."""
    wall = cpu = math.inf
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - started), min(cpu, time.process_time() - started_cpu)
    return wall, cpu


class SizeRun:
    """The figures of one size, kept in ``figures.json`` so that a rerun resumes."""

    def __init__(self, work: Path, mixes: int, jobs: int, again: set[str]):
        self.mixes_asked, self.jobs, self.again = mixes, jobs, again
        self.label = size_label(mixes)
        self.folder = work / self.label
        self.corpus = work / f"corpus-{self.label}"
        self.store = self.folder / "demo"
        self.audio = self.folder / "audio"
        self.figures_path = self.folder / "figures.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fig = json.loads(self.figures_path.read_text()) if self.figures_path.is_file() else {}

    def save(self) -> None:
        self.figures_path.write_text(json.dumps(self.fig, indent=1, sort_keys=True) + "\n")

    def cached(self, stage: str, *paths: Path) -> bool:
        return stage in self.fig and stage not in self.again and all(p.exists() for p in paths)

    def say(self, text: str) -> None:
        print(f"[{self.label}] {text}", flush=True)

    # -- the corpus and the build ------------------------------------------------------------
    def write_corpus(self) -> None:
        train, validation = corpus_counts(self.mixes_asked)
        marker = self.corpus / "scale-corpus.json"
        wanted = {"per_class": [train, validation, 1], "seed": 0}
        if marker.is_file() and json.loads(marker.read_text()).get("asked") == wanted:
            return
        from mixer.demo_corpus import write_demo_corpus

        speakers = (max(6, 4 * train // 25), max(2, 4 * validation // 25), 1)  # ~25 utterances per speaker
        self.say(f"writing the corpus: {4 * train} train + {4 * validation} validation utterances, "
                 f"{speakers[0]} + {speakers[1]} speakers")
        started = time.perf_counter()
        write_demo_corpus(self.corpus, seed=0, utterances_per_class=(train, validation, 1), speakers=speakers)
        seconds = time.perf_counter() - started
        marker.write_text(json.dumps({"asked": wanted, "speakers": speakers, "seconds": seconds}) + "\n")

    def build(self) -> None:
        if self.cached("build", self.store / "manifest.json"):
            return
        if "build" in self.again:  # a whole build again: the store and what was measured on it go
            shutil.rmtree(self.store, ignore_errors=True)
            shutil.rmtree(self.audio, ignore_errors=True)
            self.fig = {k: v for k, v in self.fig.items() if k == "corpus"}
        cmd = [*PREP, "superset", "--corpus", "demo", "--root", str(self.corpus), "--out", str(self.folder),
               "--mixes", "recipe", "--metrics", "stoi", "--jobs", str(self.jobs), "--quiet"]
        self.say("building: " + shlex.join(cmd[2:]))
        wall, cpu, out = run(cmd)
        written = re.search(r"^\s*samples\s+(\d+) in the store for this stage, (\d+) written now", out, re.M)
        self.fig["build"] = {
            "command": "prep " + shlex.join(cmd[3:]), "wall_s": wall, "cpu_s": cpu, "jobs": self.jobs,
            "samples": int(written.group(1)), "samples_written": int(written.group(2)),
            "samples_per_s": summary_value(out, "throughput"), "build_wall_s": summary_value(out, "wall time"),
            "peak_worker_rss_mib": summary_value(out, "peak worker RSS"),
            "shards": re.search(r"^\s*shards\s+(.*)$", out, re.M).group(1),
        }
        if written.group(1) != written.group(2):
            self.say(f"the build resumed a store ({self.fig['build']['shards']}): its rates cover only what it wrote; "
                     f"remove {self.folder} to measure the whole build")
        self.save()

    # -- the subprocess stages -----------------------------------------------------------------
    def score(self) -> None:
        for quant in ("gmm", "uniform"):
            stage = f"score_{quant}"
            if self.cached(stage, self.store / "levels" / f"stoi-{quant}-k5.parquet"):
                continue
            self.say(f"prep score --quant {quant}")
            wall, cpu, _ = run([*PREP, "score", str(self.store), "--metric", "stoi", "--quant", quant])
            self.fig[stage] = {"wall_s": wall, "cpu_s": cpu}
            self.save()

    def verify(self) -> None:
        if self.cached("verify"):
            return
        self.say("prep verify")
        wall, cpu, _ = run([*PREP, "verify", str(self.store), "--quiet"])
        self.fig["verify"] = {"wall_s": wall, "cpu_s": cpu}
        self.save()

    def materialize(self, free_margin_gb: float) -> None:
        if self.cached("materialize", self.audio / "manifest.json"):
            return
        need = self.fig["table"]["superset_audio_s"] * AUDIO_BYTES_PER_SECOND
        free = shutil.disk_usage(self.folder).free
        if need > free - free_margin_gb * 1e9:
            self.fig["materialize"] = {"skipped": f"an audio store needs about {need / 1e9:.0f} GB; "
                                                  f"{free / 1e9:.0f} GB free (margin {free_margin_gb:g} GB)"}
            self.say("materialize skipped: " + self.fig["materialize"]["skipped"])
            return
        self.say(f"prep materialize --jobs {self.jobs}")
        shutil.rmtree(self.audio, ignore_errors=True)  # a complete one would be kept: measure the whole write
        wall, cpu, _ = run([*PREP, "materialize", str(self.store), "--out", str(self.audio), "--jobs", str(self.jobs)])
        mixes = self.fig["table"]["superset_mixes"]
        audio_bytes = sum(p.stat().st_size for p in self.audio.rglob("*") if p.is_file())
        self.fig["materialize"] = {"wall_s": wall, "cpu_s": cpu, "mixes_per_s": mixes / wall,
                                   "mixes_per_cpu_s": mixes / cpu, "audio_store_bytes": audio_bytes}
        self.save()

    # -- in this process -----------------------------------------------------------------------
    def table(self) -> None:
        table_path = self.store / TABLE
        open_s, _ = best_of(lambda: open_store(self.store))
        store = open_store(self.store)
        read_s, _ = best_of(lambda: store.table())
        table = store.table(["subset", "num_samples"])
        superset = table.filter(pc.equal(table["subset"], SUPERSET_SUBSET))
        self.fig["table"] = {
            "bytes": table_path.stat().st_size, "rows": table.num_rows, "open_s": open_s, "read_s": read_s,
            "superset_mixes": superset.num_rows,
            "superset_audio_s": float(pc.sum(superset["num_samples"]).as_py()) / 16000,
            "store_bytes": sum(p.stat().st_size for p in self.store.rglob("*") if p.is_file()),
        }
        build = self.fig["build"]
        if build["samples_written"] == build["samples"]:  # a whole build: superset mixes over its wall time
            build["mixes_per_s"] = superset.num_rows / build["build_wall_s"]

    def trainer_side(self) -> None:
        from trainer.data import StoreData
        from trainer.strategies import StrategyContext, get_strategy
        from trainer.weights import plan_epoch_draw

        store = open_store(self.store)
        open_s, _ = best_of(lambda: store.level_index("stoi", "gmm"))
        index = store.level_index("stoi", "gmm")
        started = time.perf_counter()
        sizes = [len(index.members(TRAIN, k)) for k in range(1, index.n_levels + 1)]
        members_s = time.perf_counter() - started
        self.fig["level_index"] = {"open_s": open_s, "members_all_train_levels_s": members_s,
                                   "train_level_sizes": sizes}

        started = time.perf_counter()
        data = StoreData(store, index)
        train_clean = data.clean(TRAIN)
        setup_s = time.perf_counter() - started
        n = len(train_clean)
        weights = [1.0 / data.n_levels] * data.n_levels
        draw_s, _ = best_of(lambda: plan_epoch_draw(data.train_level_sizes, n, weights,
                                                    np.random.default_rng([0, 1, 0])))
        strategy = get_strategy("metricaug")
        ctx = StrategyContext(data=data, train_clean=train_clean, N=n, K=data.n_levels, floor=0.05,
                              rng=lambda stream, *parts: np.random.default_rng([0, stream, *parts]))
        strategy.prepare(ctx)
        started = time.perf_counter()
        epoch = strategy.epoch_samples(ctx, 0, weights).samples  # the first call: members() read here
        first_s = time.perf_counter() - started
        later_s, later_cpu = best_of(lambda: strategy.epoch_samples(ctx, 1, weights))
        self.fig["epoch_plan"] = {"N": n, "samples": len(epoch), "store_data_setup_s": setup_s,
                                  "plan_epoch_draw_s": draw_s, "epoch_samples_first_s": first_s,
                                  "epoch_samples_later_s": later_s, "epoch_samples_later_cpu_s": later_cpu}

        order = np.random.default_rng([0, 2]).permutation(len(epoch))
        is_mix = np.arange(len(epoch)) >= n  # epoch_samples puts the N clean utterances first
        reader._DECODED_CLEAN.clear()
        spent, cpu, audio_s = np.zeros(2), np.zeros(2), np.zeros(2)
        for i in order.tolist():
            started, started_cpu = time.perf_counter(), time.process_time()
            wav = epoch.sources[int(epoch.source_of[i])].audio(int(epoch.index_in_source[i]))
            spent[int(is_mix[i])] += time.perf_counter() - started
            cpu[int(is_mix[i])] += time.process_time() - started_cpu
            audio_s[int(is_mix[i])] += wav.size / 16000
        self.fig["epoch_read"] = {"seconds": float(spent.sum()), "clean_s": float(spent[0]), "mixes_s": float(spent[1]),
                                  "mixes": int(is_mix.sum()), "mixes_per_s": float(is_mix.sum() / spent[1]),
                                  "cpu_s": float(cpu.sum()), "clean_cpu_s": float(cpu[0]),
                                  "mixes_per_cpu_s": float(is_mix.sum() / cpu[1]),
                                  "samples_per_s": float(len(epoch) / spent.sum()),
                                  "mix_audio_s": float(audio_s[1]),
                                  "clean_cache_mb": reader._DECODED_CLEAN.cap / 2**20}
        if (self.audio / "manifest.json").is_file():
            keys = [epoch.key(i) for i in order.tolist() if is_mix[i]]
            source = open_store(self.audio).clips(keys)
            started = time.perf_counter()
            for i in range(len(keys)):
                source.audio(i)
            self.fig["epoch_read"]["audio_store_mixes_per_s"] = len(keys) / (time.perf_counter() - started)
        self.save()


# ----------------------------------------------------------------------------- the report

#: (row label, figure path, unit or format): the table's rows; "growth" for every one
ROWS = [
    ("utterances (train + validation)", ("corpus", "utterances"), "{:,.0f}"),
    ("superset mixes", ("table", "superset_mixes"), "{:,.0f}"),
    ("mean mix length, s", ("derived", "mean_mix_s"), "{:.2f}"),
    ("build wall s (`--jobs J`)", ("build", "wall_s"), "{:,.1f}"),
    ("build samples/s (printed: mixes + clean + noise)", ("build", "samples_per_s"), "{:,.1f}"),
    ("build superset mixes/s (mixes / build wall)", ("build", "mixes_per_s"), "{:,.1f}"),
    ("build CPU s", ("build", "cpu_s"), "{:,.1f}"),
    ("build peak worker RSS, MiB", ("build", "peak_worker_rss_mib"), "{:,.0f}"),
    ("table bytes (metadata.parquet)", ("table", "bytes"), "{:,.0f}"),
    ("table bytes per row", ("derived", "table_bytes_per_row"), "{:.1f}"),
    ("`open_store` s (table sha256 + shard sizes)", ("table", "open_s"), "{:.4f}"),
    ("whole table read s", ("table", "read_s"), "{:.4f}"),
    ("recipe store bytes", ("table", "store_bytes"), "{:,.0f}"),
    ("`prep score` GMM s", ("score_gmm", "wall_s"), "{:.1f}"),
    ("`prep score` GMM CPU s", ("score_gmm", "cpu_s"), "{:.1f}"),
    ("`prep score` Uniform s", ("score_uniform", "wall_s"), "{:.1f}"),
    ("`prep score` Uniform CPU s", ("score_uniform", "cpu_s"), "{:.1f}"),
    ("level index open s", ("level_index", "open_s"), "{:.4f}"),
    ("`members()` of the 5 train levels s", ("level_index", "members_all_train_levels_s"), "{:.4f}"),
    ("`prep verify` s", ("verify", "wall_s"), "{:.1f}"),
    ("`prep verify` CPU s", ("verify", "cpu_s"), "{:.1f}"),
    ("trainer `StoreData` + clean train set s", ("epoch_plan", "store_data_setup_s"), "{:.4f}"),
    ("`plan_epoch_draw` s (N of 2N by level)", ("epoch_plan", "plan_epoch_draw_s"), "{:.5f}"),
    ("MetricAug `epoch_samples` s, first epoch", ("epoch_plan", "epoch_samples_first_s"), "{:.4f}"),
    ("MetricAug `epoch_samples` s, later epoch", ("epoch_plan", "epoch_samples_later_s"), "{:.4f}"),
    ("MetricAug `epoch_samples` CPU s, later epoch", ("epoch_plan", "epoch_samples_later_cpu_s"), "{:.4f}"),
    ("epoch read s (2N samples, one process)", ("epoch_read", "seconds"), "{:.1f}"),
    ("epoch read CPU s", ("epoch_read", "cpu_s"), "{:.1f}"),
    ("epoch read, drawn mixes/s (recipe)", ("epoch_read", "mixes_per_s"), "{:,.0f}"),
    ("epoch read, drawn mixes per CPU s (recipe)", ("epoch_read", "mixes_per_cpu_s"), "{:,.0f}"),
    ("epoch read, same mixes/s (audio store)", ("epoch_read", "audio_store_mixes_per_s"), "{:,.0f}"),
    ("`prep materialize` wall s", ("materialize", "wall_s"), "{:.1f}"),
    ("`prep materialize` mixes/s", ("materialize", "mixes_per_s"), "{:,.1f}"),
    ("`prep materialize` CPU s", ("materialize", "cpu_s"), "{:.1f}"),
    ("`prep materialize` mixes per CPU s", ("materialize", "mixes_per_cpu_s"), "{:,.1f}"),
]
#: rows that are rates or per-unit figures: their growth should be about 1, not 10
FLAT = {"mean mix length, s", "build samples/s (printed: mixes + clean + noise)",
        "build superset mixes/s (mixes / build wall)", "build peak worker RSS, MiB", "table bytes per row",
        "epoch read, drawn mixes/s (recipe)", "epoch read, same mixes/s (audio store)", "`prep materialize` mixes/s",
        "epoch read, drawn mixes per CPU s (recipe)", "`prep materialize` mixes per CPU s"}


def derived(fig: dict) -> dict:
    t = fig["table"]
    return {"mean_mix_s": t["superset_audio_s"] / t["superset_mixes"], "table_bytes_per_row": t["bytes"] / t["rows"]}


def value(fig: dict, path: tuple[str, str]):
    return fig.get(path[0], {}).get(path[1])


def report(runs: list[SizeRun], jobs: int) -> str:
    lines = []
    head = "| figure | " + " | ".join(r.label for r in runs) + " | " + \
        " | ".join(f"growth {a.label}→{b.label}" for a, b in zip(runs, runs[1:])) + " |"
    lines += [head, "|---" + "|---:" * (2 * len(runs) - 1) + "|"]
    for label, path, fmt in ROWS:
        vals = [value(r.fig, path) for r in runs]
        cells = [fmt.format(v) if isinstance(v, (int, float)) else "–" for v in vals]
        growth = []
        for a, b, ra, rb in zip(vals, vals[1:], runs, runs[1:]):
            if not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and a):
                growth.append("–")
                continue
            ratio = b / a
            size = value(rb.fig, ("table", "superset_mixes")) / value(ra.fig, ("table", "superset_mixes"))
            per_mix = ratio if label in FLAT else ratio / size
            growth.append(f"{ratio:.2f}" + ("" if label in FLAT else f" ({per_mix:.2f} per mix)"))
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(growth) + (" |" if growth else "|"))
    lines.append("")
    skipped = "; ".join(f"{r.label} materialize ({r.fig['materialize']['skipped']})"
                        for r in runs if "skipped" in r.fig.get("materialize", {}))
    lines.append(f"Builds and `prep materialize` with `--jobs {jobs}`; every other figure in one process. "
                 f"Growth: figure at the larger size / figure at the smaller; '(per mix)' divides by the "
                 f"size ratio (1.00 = linear). Skipped: {skipped or 'none'}.")
    return "\n".join(lines)


def marginal(runs: list[SizeRun], stage: str) -> tuple[float, float]:
    """(fixed seconds, seconds per mix) of a stage, its CPU seconds where every size has them
    (else wall): the line through its two largest
    sizes (what a start-up costs falls out), else (one size, or a line that falls: start-up and
    noise larger than the growth) proportional to the largest size, an upper bound."""
    key = "cpu_s" if all("cpu_s" in r.fig.get(stage, {}) for r in runs) else "wall_s"
    points = [(value(r.fig, ("table", "superset_mixes")), value(r.fig, (stage, key))) for r in runs]
    points = [p for p in points if isinstance(p[1], (int, float))]
    if len(points) == 1:
        return 0.0, points[0][1] / points[0][0]
    (m_a, t_a), (m_b, t_b) = points[-2:]
    slope = (t_b - t_a) / (m_b - m_a)
    return (t_b - slope * m_b, slope) if slope > 0 else (0.0, t_b / m_b)


def projection(runs: list[SizeRun], jobs: int) -> str:
    """MSP-Podcast 1.8: the build on CLUSTER_CORES cores from the largest size's per-core rate;
    the one-process stages from the marginal cost per mix between the two largest sizes."""
    f = runs[-1].fig
    mixes = MIXES_PER_UTT * MSP_TRAIN_VAL
    mix_s = derived(f)["mean_mix_s"]
    length = MSP_SECONDS / mix_s  # how much longer an MSP mix is than a measured one
    build = f["build"]
    # per core: superset mixes over the build's CPU seconds (planning and the table included)
    # where measured, else its printed rate over the workers
    per_core = (f["table"]["superset_mixes"] / build["cpu_s"] if "cpu_s" in build else build["mixes_per_s"] / jobs)
    cluster = per_core / length * CLUSTER_CORES * CORE_EFFICIENCY
    cluster_wall = build["mixes_per_s"] / jobs / length * CLUSTER_CORES * CORE_EFFICIENCY  # with this VM's waits
    n_train = 28_602
    sizes = " and ".join(r.label for r in runs[-2:])
    lines = [
        f"Projection for MSP-Podcast 1.8: {MSP_TRAIN_VAL:,} train + validation utterances x 30 = {mixes:,} "
        f"superset mixes of {MSP_SECONDS} s, from the {runs[-1].label} store ({f['table']['superset_mixes']:,} "
        f"mixes of {mix_s:.2f} s) and the line through {sizes}:",
        "",
        "| stage | projected | from |",
        "|---|---:|---|",
        f"| superset build, recipe, STOI, {CLUSTER_CORES}-core Dask cluster, shards only | {mixes / cluster / 60:,.1f}"
        f"-{mixes / cluster_wall / 60:,.1f} min ({cluster:,.0f}-{cluster_wall:,.0f} mixes/s) | {per_core:,.1f} mixes "
        f"per {'CPU s' if 'cpu_s' in build else 's per core'} (and {build['mixes_per_s'] / jobs:,.1f} per wall s, "
        f"this VM's waits included) measured, / {length:.2f} (length), x {CLUSTER_CORES} x {CORE_EFFICIENCY} |",
        f"| peak RSS per build worker | {f['build']['peak_worker_rss_mib']:,.0f} MiB measured | at `--jobs 1` "
        f"joblib runs the shards in the build's own process, so this holds the plan of every shard too |",
    ]
    for label, stage, by_length in (("`prep score` GMM (one process)", "score_gmm", False),
                                    ("`prep score` Uniform (one process)", "score_uniform", False),
                                    ("`prep verify` (one process)", "verify", True)):
        fixed, slope = marginal(runs, stage)
        factor = length if by_length else 1.0
        how = f"{fixed:.1f} s + {slope * 1e3:.3f} ms per mix" if fixed else \
            f"{slope * 1e3:.3f} ms per mix (proportional to {runs[-1].label}: an upper bound)"
        lines.append(f"| {label} | {(fixed + slope * factor * mixes) / 60:,.1f} min | {how}"
                     + (f" x {length:.2f} (length)" if by_length else "") + " |")
    e = f["epoch_read"]
    rate, clean_s = (e["mixes_per_cpu_s"], e["clean_cpu_s"]) if "cpu_s" in e else (e["mixes_per_s"], e["clean_s"])
    epoch_s = n_train * length / rate + clean_s * n_train / f["epoch_plan"]["N"] * length
    lines.append(f"| one epoch's reads, 2N = {2 * n_train:,} samples, one process | {epoch_s / 60:,.1f} min | "
                 f"{rate:,.0f} drawn mixes per {'CPU ' if 'cpu_s' in e else ''}s and {clean_s:.1f} s for "
                 f"{f['epoch_plan']['N']:,} clean utterances, both x length; DataLoader workers divide it |")
    done = [r for r in runs if "wall_s" in r.fig.get("materialize", {})]
    if done:
        fixed, slope = marginal(done, "materialize")
        per_core_m = 1 / slope / (1 if "cpu_s" in done[-1].fig["materialize"] else jobs) / length
        lines.append(f"| `prep materialize` on one {CLUSTER_CORES}-core machine (`--jobs {CLUSTER_CORES}`) | "
                     f"{mixes / (per_core_m * CLUSTER_CORES * CORE_EFFICIENCY) / 60:,.1f} min, about "
                     f"{mixes * MSP_SECONDS * AUDIO_BYTES_PER_SECOND / 1e9:,.0f} GB | {1 / slope:,.1f} mixes/s "
                     f"per core (CPU s where measured) (marginal, {' and '.join(r.label for r in done[-2:])}) "
                     f"/ {length:.2f} x "
                     f"{CLUSTER_CORES} x {CORE_EFFICIENCY} |")
    lines += ["", "Assumptions: the cost of mixing, scoring, reading and writing a mix scales with its seconds "
              f"of audio (MSP-Podcast {MSP_SECONDS} s on average, an assumption, against the generated "
              f"{mix_s:.2f} s), `prep score` with the mixes alone; the build's workers scale at {CORE_EFFICIENCY} "
              "per core (2 jobs gave 1.90x one, bench/superset.py) with no Dask scheduling or shared "
              "file-system cost; generated speech and the demo's synthetic noise cost what real audio of the "
              "same length costs (STOI's cost depends on the length, not the content); the one-process stages "
              "stay on the line through the two largest sizes (CPU seconds where measured: a core of their "
              "own, no I/O waits); the rates are one core of this 2-core VM, the other core running a study."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e4,1e5,1e6", help="superset mixes per store, comma-separated")
    parser.add_argument("--work", type=Path, default=Path("/work/scale-stores"))
    parser.add_argument("--jobs", type=int, default=1, help="workers of the builds and of prep materialize")
    parser.add_argument("--again", default="", help="stages to measure again: build, score, verify, materialize")
    parser.add_argument("--free-margin-gb", type=float, default=10.0,
                        help="materialize only when this much disk stays free after the audio store")
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    again = {s.strip() for s in args.again.split(",") if s.strip()}
    again |= {f"score_{q}" for q in ("gmm", "uniform")} if "score" in again else set()
    args.work.mkdir(parents=True, exist_ok=True)
    runs = []
    for mixes in sizes:
        r = SizeRun(args.work, mixes, args.jobs, again)
        r.write_corpus()
        marker = json.loads((r.corpus / "scale-corpus.json").read_text())
        r.fig["corpus"] = {"utterances": 4 * sum(marker["asked"]["per_class"][:2]),
                           "speakers": marker["speakers"][:2], "write_s": marker["seconds"]}
        r.build()
        r.table()
        r.score()
        r.verify()
        r.materialize(args.free_margin_gb)
        r.trainer_side()
        r.fig["derived"] = derived(r.fig)
        r.save()
        r.say("done")
        runs.append(r)
    command = "python bench/scale.py " + shlex.join(sys.argv[1:])
    text = "\n\n".join([f"    {command}", report(runs, args.jobs), projection(runs, args.jobs)])
    print("\n" + text)
    (args.work / "scale.md").write_text(text + "\n")
    (args.work / "scale.json").write_text(json.dumps({"command": command, "sizes": {r.label: r.fig for r in runs}},
                                                      indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

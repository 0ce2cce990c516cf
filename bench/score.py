"""Bench ``prep score``: a synthetic 1,000,000-row metadata.parquet, scored on one core.

    python bench/score.py [--rows 1000000] [--metric stoi] [--quant gmm,uniform] [--keep DIR]

The table looks like a 30N MSP-Podcast store: clean rows for every utterance, 30 superset
mixes (15 SNR bins x noise/music) per train and validation utterance, and 7 test mixes
(0/5/10 dB x noise/music, plus unseen) per test utterance; metrics grow with the SNR, a
few are NaN. Prints a markdown table of seconds per quantizer (end to end: read table,
fit, assign, write JSON + Parquet + PNG; wall and CPU time, CPU time being the figure
that holds on a busy machine) and the command that produced it.

Then the trainer's side: opening the level index and fetching one level's train members,
each in a fresh process (wall time and peak RSS above the interpreter with its imports),
for the current format (small JSON + members Parquet read with a filter) and for the
earlier one-file format (every member inside the JSON, ``metricaug-levels/1``), rebuilt
here from the same members so the two are compared on identical content.
"""
from __future__ import annotations

import os

# One core: pin the BLAS/OpenMP pools before numpy is imported, then the process.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import json  # noqa: E402
import subprocess  # noqa: E402

import pyarrow.compute as pc  # noqa: E402

from scoring.levels import run_scoring  # noqa: E402
from shards.levelindex import open_level_index  # noqa: E402

LABELS = ("angry", "happy", "neutral", "sad")
SHARD_SIZE = 2000  # samples per tar, like the store's default-ish shard size
TEST_MIXES = [(f"test_snr{snr}", float(snr), kind) for snr in (0, 5, 10) for kind in ("noise", "music")]


def synthetic_metadata(n_rows: int, seed: int = 0) -> pa.Table:
    """A metadata table of exactly ``n_rows`` rows with the store's columns."""
    rng = np.random.default_rng(seed)
    # rows = 31 per train/validation utterance (clean + 30 mixes) + 8 per test utterance
    n_trval = int(n_rows * 0.9114) // 31
    n_test = (n_rows - 31 * n_trval) // 8
    n_clean_extra = n_rows - 31 * n_trval - 8 * n_test  # pad with clean rows
    n_train = int(n_trval * 0.857)
    n_val = n_trval - n_train

    parts: dict[str, list[np.ndarray]] = {c: [] for c in (
        "utt", "subset", "split", "noise_type", "snr_target")}

    def add(utt, subset, split, noise_type, snr):
        n = utt.size
        parts["utt"].append(utt)
        parts["subset"].append(np.full(n, subset, dtype=object))
        parts["split"].append(np.full(n, split, dtype=object) if isinstance(split, str) else split)
        parts["noise_type"].append(np.full(n, noise_type, dtype=object))
        parts["snr_target"].append(np.broadcast_to(np.asarray(snr, dtype=np.float64), (n,)).copy())

    utt_split = np.array(["train"] * n_train + ["validation"] * n_val + ["test"] * n_test + ["train"] * n_clean_extra, dtype=object)
    all_utts = np.arange(utt_split.size)
    add(all_utts, "clean", utt_split, "", np.nan)
    trval = np.arange(n_trval)
    for b in range(15):
        for kind in ("noise", "music"):
            snr = rng.uniform(2 * b, 2 * b + 2, trval.size)
            add(trval, "superset", utt_split[trval], kind, snr)
    test = np.arange(n_trval, n_trval + n_test)
    for subset, snr, kind in TEST_MIXES:
        add(test, subset, "test", kind, snr)
    add(test, "test_unseen", "test", "unseen", rng.uniform(0, 30, test.size))

    utt = np.concatenate(parts["utt"])
    subset = np.concatenate(parts["subset"])
    split = np.concatenate(parts["split"])
    noise_type = np.concatenate(parts["noise_type"])
    snr_target = np.concatenate(parts["snr_target"])
    n = utt.size
    assert n == n_rows, (n, n_rows)
    is_mix = subset != "clean"
    utt_id = np.char.add("MSP-PODCAST_", np.char.zfill(utt.astype(str), 7)).astype(object)
    row_id = np.char.zfill(np.arange(n).astype(str), 7).astype(object)
    key = np.char.add(np.char.add(utt_id.astype(str), "-"), row_id.astype(str)).astype(object)
    shard_no = np.arange(n) // SHARD_SIZE
    shard = np.char.add("shards/mix-", np.char.zfill(shard_no.astype(str), 6))
    shard = np.char.add(shard, ".tar").astype(object)
    pos = np.arange(n) % SHARD_SIZE
    flac_size = rng.integers(20_000, 200_000, n)
    flac_offset = 512 + pos * 230_000
    snr_achieved = np.where(is_mix, snr_target + rng.normal(0, 0.01, n), np.nan)
    s = np.nan_to_num(snr_achieved, nan=40.0)
    stoi = np.where(is_mix, np.clip(0.55 + 0.43 * (1 - np.exp(-(s + 3) / 8)) + rng.normal(0, 0.03, n), 0, 1), np.nan)
    pesq = np.where(is_mix, np.clip(1.04 + 3.6 * (np.maximum(s, 0) / 30) ** 1.5 + rng.normal(0, 0.3, n), 1.04, 4.64), np.nan)
    fwsnrseg = np.where(is_mix, np.clip(0.8 * s - 2 + rng.normal(0, 2.5, n), -10, 35), np.nan)
    for metric in (stoi, pesq, fwsnrseg):
        metric[rng.random(n) < 1e-4] = np.nan  # a few failed metrics
    return pa.table({
        "key": pa.array(key.tolist(), pa.string()),
        "subset": pa.array(subset.tolist(), pa.string()),
        "split": pa.array(split.tolist(), pa.string()),
        "shard": pa.array(shard.tolist(), pa.string()),
        "flac_offset": pa.array(flac_offset, pa.int64()),
        "flac_size": pa.array(flac_size, pa.int64()),
        "json_offset": pa.array(flac_offset + flac_size + 512, pa.int64()),
        "json_size": pa.array(np.full(n, 600), pa.int64()),
        "utt_id": pa.array(utt_id.tolist(), pa.string()),
        "speaker": pa.array((utt % 1000).astype(str).tolist(), pa.string()),
        "label": pa.array(np.asarray(LABELS, dtype=object)[utt % 4].tolist(), pa.string()),
        "noise_type": pa.array(noise_type.tolist(), pa.string()),
        "noise_file": pa.array(np.where(is_mix, "musan/noise/free-sound/noise-0001.wav", "").tolist(), pa.string()),
        "noise_offset": pa.array(rng.integers(0, 100_000, n), pa.int64()),
        "snr_target": pa.array(np.where(is_mix, snr_target, np.nan), pa.float64()),
        "snr_achieved": pa.array(snr_achieved, pa.float64()),
        "gain": pa.array(np.where(is_mix, rng.uniform(0.01, 1, n), np.nan), pa.float64()),
        "num_samples": pa.array(rng.integers(16_000, 160_000, n), pa.int64()),
        "stoi": pa.array(stoi, pa.float64()),
        "pesq": pa.array(pesq, pa.float64()),
        "fwsnrseg": pa.array(fwsnrseg, pa.float64()),
        "errors": pa.array([""] * n, pa.string()),
    })


def write_v1_json(index_path: Path, out: Path) -> None:
    """The level index as the earlier format stored it: the summary plus, per group and
    level, the member columns as lists (labels and shards as indexes into lists)."""
    index = open_level_index(index_path, verify_members=False)
    members = index.assignments()
    shards = sorted(set(members["shard"].to_pylist()))
    labels = sorted(set(members["label"].to_pylist()))
    shard_code = {s: i for i, s in enumerate(shards)}
    label_code = {s: i for i, s in enumerate(labels)}
    doc = dict(index.summary, format="metricaug-levels/1", shards=shards, labels=labels, members={})
    for group in index.groups:
        doc["members"][group] = {}
        for level in range(1, index.n_levels + 1):
            part = members.filter(pc.and_(pc.equal(members["group"], group), pc.equal(members["level"], level)))
            doc["members"][group][str(level)] = {
                "key": part["key"].to_pylist(), "utt_id": part["utt_id"].to_pylist(),
                "label": [label_code[x] for x in part["label"].to_pylist()],
                "shard": [shard_code[x] for x in part["shard"].to_pylist()],
                "flac_offset": part["flac_offset"].to_pylist(), "flac_size": part["flac_size"].to_pylist(),
            }
    out.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))


# Run in a fresh interpreter: imports first (baseline RSS), then open + fetch one level.
_LOAD_PROBE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
import numpy as np, pyarrow.parquet
from shards.levelindex import open_level_index
def hwm_kib():  # VmHWM belongs to this exec's address space (ru_maxrss can carry the parent's peak)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
base = hwm_kib()
t0 = time.perf_counter()
if sys.argv[1] == "v1":
    doc = json.loads(open(sys.argv[2]).read())
    raw = doc["members"]["train"]["3"]
    keys = list(raw["key"]); offsets = np.asarray(raw["flac_offset"])
    opened = fetched = time.perf_counter()
else:
    index = open_level_index(sys.argv[2])
    opened = time.perf_counter()
    members = index.members("train", 3)
    keys = members.key
    fetched = time.perf_counter()
peak = hwm_kib()
print(json.dumps({"open_s": opened - t0, "total_s": fetched - t0, "members": len(keys), "rss_mib": (peak - base) / 1024}))
"""


def probe_load(kind: str, path: Path) -> dict:
    repo = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", _LOAD_PROBE, kind, str(path), repo], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--metric", default="stoi", choices=("stoi", "pesq", "fwsnrseg"))
    parser.add_argument("--quant", default="gmm,uniform", help="comma-separated quantizers to time")
    parser.add_argument("--keep", type=Path, default=None, help="build the store here and keep it")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="metricaug-bench-score-") as tmp:
        store = args.keep or Path(tmp) / "bench"
        store.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        table = synthetic_metadata(args.rows)
        pq.write_table(table, store / "metadata.parquet")
        build_s = time.perf_counter() - t0
        n_mix = table.num_rows - table["subset"].to_pylist().count("clean")
        del table
        print(f"synthetic table: {args.rows} rows ({n_mix} mixes) built in {build_s:.1f} s; "
              f"cores {sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}", flush=True)
        rows = []
        for quant in [q.strip() for q in args.quant.split(",") if q.strip()]:
            t0, c0 = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                (result,) = run_scoring(store, args.metric, quant=quant, check_store=False)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
            size_mb = result.paths[0].stat().st_size / 1e6
            members_mb = result.paths[1].stat().st_size / 1e6
            rows.append((quant, seconds, cpu_seconds, result.summary["fit"]["count"], size_mb, members_mb))
            print(f"{quant}: {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU", flush=True)
        index_path = result.paths[0]
        v1_path = store / "levels" / "v1.json"
        write_v1_json(index_path, v1_path)
        loads = {}
        for kind, path in (("v1", v1_path), ("v2", index_path)):
            loads[kind] = min((probe_load(kind, path) for _ in range(3)), key=lambda r: r["total_s"])
            loads[kind]["file_mb"] = path.stat().st_size / 1e6
        loads["v2"]["file_mb"] += result.paths[1].stat().st_size / 1e6

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    print()
    print(f"`{command}` (metric {args.metric}, {args.rows} rows, 1 core)")
    print()
    print("| quantizer | wall s | CPU s | train superset mixes fitted | level JSON (MB) | members Parquet (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for quant, seconds, cpu_seconds, n_fit, size_mb, members_mb in rows:
        print(f"| {quant} | {seconds:.1f} | {cpu_seconds:.1f} | {n_fit} | {size_mb:.3f} | {members_mb:.1f} |")
    print()
    print(f"Opening the {quant} level index and fetching train level 3 ({loads['v2']['members']} members), "
          f"fresh process, best of 3:")
    print()
    print("| format | files (MB) | open s | open + fetch level s | peak RSS above imports (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for kind, name in (("v1", "before: one JSON with every member"), ("v2", "after: small JSON + members Parquet")):
        r = loads[kind]
        print(f"| {name} | {r['file_mb']:.1f} | {r['open_s']:.3f} | {r['total_s']:.3f} | {r['rss_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

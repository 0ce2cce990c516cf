"""Store faults: inputs replaced in place, shards of an older plan, damaged stores seen by
verify, the reader and reruns, temporaries left by kill -9, workers killed by the OS, and
workers that outlive their parent."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mixer.build import TEST_SIGKILL_SHARD_ENV
from mixer.cli import app
from shards.verify import verify_store
from shards.vocab import MANIFEST, REJECTS, TABLE
from test_superset import SR, _voice, make_tiny_corpus, shard_digests, superset_cmd

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def build(msp, musan, out, *extra):
    result = runner.invoke(app, superset_cmd(msp, musan, out, "--jobs", "1", *extra))
    assert result.exit_code == 0, result.output
    return result.output


def fail_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL ")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny corpus and a store built from it (not to be modified: copy it first)."""
    root = tmp_path_factory.mktemp("faults")
    msp, musan = make_tiny_corpus(root)
    build(msp, musan, root / "out")
    return msp, musan, root / "out" / "msp"


@pytest.fixture
def corpus_copy(built, tmp_path):
    """A private copy of the corpus and a store built from it, free to change and damage
    (the plan names the input paths, so a store is built from the copy, not copied)."""
    msp, musan, _ = built
    shutil.copytree(msp, tmp_path / "msp")
    shutil.copytree(musan, tmp_path / "musan")
    build(tmp_path / "msp", tmp_path / "musan", tmp_path / "out")
    return tmp_path / "msp", tmp_path / "musan", tmp_path / "out" / "msp"


@pytest.fixture
def store_copy(built, tmp_path):
    shutil.copytree(built[2], tmp_path / "msp")
    return tmp_path / "msp"


def _manifest(store):
    return json.loads((store / MANIFEST).read_text())


# --- 6: an input replaced in place ---------------------------------------------------------

def _replace_in_place(path: Path, wav: np.ndarray) -> None:
    before = path.stat().st_mtime_ns
    sf.write(path, wav.astype(np.float32), SR, subtype="PCM_16")
    os.utime(path, ns=(before + 10**9, before + 10**9))  # coarse clocks: make sure it moved


def test_an_input_replaced_in_place_rebuilds_the_shards_that_read_it(corpus_copy, tmp_path):
    msp, musan, store = corpus_copy
    assert "0 built" in build(msp, musan, store.parent)  # unchanged inputs: same fingerprints
    before = shard_digests(store)
    utt = msp / "Audios" / "tiny_Train_03.wav"
    _replace_in_place(utt, _voice(np.random.default_rng(7), 1.75, 300))  # same name and length, new voice
    output = build(msp, musan, store.parent)
    assert "2 built, 4 already complete" in output  # its clean shard and its superset shard
    after = shard_digests(store)
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == ["clean-train-000001.tar", "superset-train-000001.tar"]
    # the rebuilt store is byte-identical to a fresh build of the changed corpus
    build(msp, musan, tmp_path / "fresh")
    assert shard_digests(tmp_path / "fresh" / "msp") == after
    assert verify_store(store)[0] == []


def test_a_noise_file_replaced_in_place_rebuilds_the_mixes_that_use_it(corpus_copy):
    msp, musan, store = corpus_copy
    before = shard_digests(store)
    noise = musan / "music" / "part" / "music-0001.wav"
    _replace_in_place(noise, _voice(np.random.default_rng(8), 3.0, 500))
    output = build(msp, musan, store.parent)
    assert "0 built" not in output
    after = shard_digests(store)
    changed = {n for n in before if before[n] != after[n]}
    assert changed and all(n.startswith("superset-") for n in changed)  # clean shards read no noise
    used = {r["shard"].removeprefix("shards/") for r in pq.read_table(store / TABLE).to_pylist()
            if r["noise_file"] == "music-0001"}
    assert changed == used


# --- 7: shards of an older plan -------------------------------------------------------------

def test_a_rebuild_with_fewer_shards_removes_the_old_ones(corpus_copy):
    import webdataset as wds

    msp, musan, store = corpus_copy
    build(msp, musan, store.parent, "--utts-per-shard", "1")  # 12 shards instead of 6
    assert len(shard_digests(store)) == 12
    build(msp, musan, store.parent, "--utts-per-shard", "3")  # then 6 (3 clean, 3 superset)
    listed = {Path(s["path"]).name for s in _manifest(store)["shards"]}
    assert set(shard_digests(store)) == listed and len(listed) == 6
    assert sorted(p.name for p in (store / "shards").glob("*.rows.json")) == sorted(
        n.replace(".tar", ".rows.json") for n in listed)
    urls = [str(p) for p in sorted((store / "shards").glob("superset-*.tar"))]
    read = sum(1 for _ in wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    table = pq.read_table(store / TABLE).to_pydict()
    assert read == table["subset"].count("superset") == 24
    assert verify_store(store)[0] == []


def test_verify_reports_files_in_shards_the_manifest_does_not_list(store_copy):
    shards = store_copy / "shards"
    shutil.copy(shards / "superset-train-000000.tar", shards / "superset-train-000009.tar")
    shutil.copy(shards / "superset-train-000000.rows.json", shards / "superset-train-000009.rows.json")
    (shards / ".superset-train-000001.tar.tmp-4242").write_bytes(b"half")
    (shards / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["verify", str(store_copy), "-q"])
    assert result.exit_code == 1
    lines = fail_lines(result.output)
    assert len(lines) == 4, result.output
    assert any("superset-train-000009.tar: not listed in the manifest" in line for line in lines)
    assert any("superset-train-000009.rows.json: not listed in the manifest" in line for line in lines)
    assert any(".tmp-4242: temporary file" in line for line in lines)
    assert any("notes.txt: not listed" in line for line in lines)


# --- 8, 9: verify on a damaged table, rejects, shard, manifest ------------------------------

def test_verify_catches_a_tampered_table_in_one_line(store_copy):
    table = pq.read_table(store_copy / TABLE)
    stoi = table["stoi"].to_pylist()
    stoi[5] = 0.99  # same rows, same offsets: only the checksum can tell
    pq.write_table(table.set_column(table.schema.get_field_index("stoi"), "stoi", [stoi]), store_copy / TABLE,
                   compression="zstd")
    result = runner.invoke(app, ["verify", str(store_copy), "-q"])
    assert result.exit_code == 1
    assert fail_lines(result.output) == [
        f"FAIL {TABLE}: sha256 differs from the manifest (table changed or damaged after the build); "
        f"run the same build command again to rewrite it"]


def test_verify_catches_tampered_rejects(store_copy):
    with open(store_copy / REJECTS, "a") as f:
        f.write("x.wav,made up\n")
    result = runner.invoke(app, ["verify", str(store_copy), "-q"])
    assert result.exit_code == 1
    lines = fail_lines(result.output)
    assert len(lines) == 1 and REJECTS in lines[0]


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_one_damaged_shard_is_one_fail_line(store_copy, damage):
    victim = store_copy / "shards" / "superset-train-000000.tar"
    if damage == "flip":
        data = bytearray(victim.read_bytes())
        data[2000] ^= 0xFF
        victim.write_bytes(bytes(data))
    else:
        victim.unlink()
    result = runner.invoke(app, ["verify", str(store_copy), "-q"])
    assert result.exit_code == 1
    lines = fail_lines(result.output)
    assert len(lines) == 1, result.output
    assert "shards/superset-train-000000.tar" in lines[0]
    assert ("sha256 differs" if damage == "flip" else "missing") in lines[0]


@pytest.mark.parametrize("damage", ["manifest not json", "manifest not a manifest", "truncated table",
                                    "truncated table, no checksum"])
def test_verify_on_an_unreadable_manifest_or_table_is_one_line(store_copy, damage):
    if damage == "manifest not json":
        (store_copy / MANIFEST).write_text('{"format": "metricaug-st')
    elif damage == "manifest not a manifest":
        (store_copy / MANIFEST).write_text("[1, 2]")
    else:
        data = (store_copy / TABLE).read_bytes()
        (store_copy / TABLE).write_bytes(data[: len(data) // 2])
        if damage.endswith("no checksum"):  # a manifest without the table's sha256
            manifest = _manifest(store_copy)
            del manifest["table"]
            (store_copy / MANIFEST).write_text(json.dumps(manifest))
    result = runner.invoke(app, ["verify", str(store_copy), "-q"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, Exception) or \
        isinstance(result.exception, SystemExit)
    lines = fail_lines(result.output)
    assert len(lines) == 1, result.output
    expected = MANIFEST if damage.startswith("manifest") else TABLE
    assert lines[0].startswith(f"FAIL {expected}: ")
    if damage.endswith("no checksum"):
        assert "unreadable" in lines[0]


# --- 10: prep score and trainer run refuse a damaged store before reading -----------------

def _damage(store: Path, kind: str) -> None:
    shard = store / "shards" / "superset-train-000000.tar"
    if kind == "deleted shard":
        shard.unlink()
    elif kind == "no manifest":
        (store / MANIFEST).unlink()
    elif kind == "truncated shard":
        shard.write_bytes(shard.read_bytes()[:-1024])
    elif kind == "changed table":
        table = pq.read_table(store / TABLE)
        pq.write_table(table.slice(1), store / TABLE)
    elif kind == "manifest not JSON":
        (store / MANIFEST).write_text("{not json")
    else:
        raise AssertionError(kind)


DAMAGE = ["deleted shard", "no manifest", "truncated shard", "changed table", "manifest not JSON"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_prep_score_refuses_a_damaged_store_before_reading(store_copy, kind):
    _damage(store_copy, kind)
    result = runner.invoke(app, ["score", str(store_copy), "--metric", "stoi", "--quant", "uniform",
                                 "--min-per-level", "1"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0, result.output
    assert f"prep verify {store_copy}" in result.output
    assert not (store_copy / "levels").exists()


def test_trainer_run_refuses_a_damaged_store_before_reading(store_copy, tmp_path):
    from trainer.cli import app as trainer_app

    assert runner.invoke(app, ["score", str(store_copy), "--metric", "stoi", "--quant", "uniform", "--levels", "2",
                               "--min-per-level", "1"]).exit_code == 0
    _damage(store_copy, "truncated shard")
    result = runner.invoke(trainer_app, ["run", "--data", str(store_copy), "--quant", "uniform",
                                         "--out", str(tmp_path / "run"), "--device", "cpu", "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and f"prep verify {store_copy}" in result.output
    assert not (tmp_path / "run" / "epochs.jsonl").exists()


# --- 11: a rerun rebuilds damaged shards, not only missing ones ---------------------------

@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_rerun_rebuilds_a_damaged_shard(corpus_copy, damage):
    msp, musan, store = corpus_copy
    before = shard_digests(store)
    victim = store / "shards" / "superset-validation-000000.tar"
    data = bytearray(victim.read_bytes())
    if damage == "flip":
        data[3000] ^= 0x01  # same size: only the checksum can tell
    else:
        del data[-512:]
    victim.write_bytes(bytes(data))
    assert "1 built, 5 already complete" in build(msp, musan, store.parent)
    assert shard_digests(store) == before
    assert verify_store(store)[0] == []


# --- 12: temporaries of a writer killed anywhere in the store -----------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_rerun_removes_temporaries_anywhere_in_the_store(corpus_copy):
    msp, musan, store = corpus_copy
    (store / "levels").mkdir()
    pid = _dead_pid()  # the writer killed with kill -9 mid-finalize, mid-score
    left = [store / f".metadata.parquet.tmp-{pid}", store / f".manifest.json.tmp-{pid}",
            store / "plans" / f".superset.json.tmp-{pid}", store / "levels" / f".stoi-gmm-k5.parquet.tmp-{pid}",
            store / "shards" / f".superset-train-000000.rows.json.tmp-{pid}"]
    for path in left:
        path.write_bytes(b"half written")
    scoring = store / "levels" / f".stoi-gmm-k5.json.tmp-{os.getppid()}"  # a prep score at work
    scoring.write_bytes(b"being written")
    build(msp, musan, store.parent)
    assert [p for p in left if p.exists()] == []
    assert scoring.exists()
    assert verify_store(store)[0] == []


# --- 13: a worker killed by the kernel ------------------------------------------------------

def _prep(args, env=None, output=subprocess.PIPE, **kw):
    return subprocess.Popen([sys.executable, "-m", "mixer.cli", *args], cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=output, stderr=output, text=True, **kw)


def test_a_worker_killed_by_the_kernel_is_one_line_and_the_rerun_resumes(built, tmp_path):
    msp, musan, store = built
    proc = _prep(superset_cmd(msp, musan, tmp_path, "--jobs", "2"), env={TEST_SIGKILL_SHARD_ENV: "superset-train-000001"})
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert "Traceback" not in stderr and "TerminatedWorkerError" not in stderr
    assert "shards/superset-train-000001.tar" in line and "SIGKILL" in line
    assert "memory" in line and "fewer --jobs" in line and "run the same command again to resume" in line
    assert not list((tmp_path / "msp" / "shards").glob(".*.tmp-*"))
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path, "--jobs", "2"))
    assert result.exit_code == 0, result.output
    assert shard_digests(tmp_path / "msp") == shard_digests(store)
    assert verify_store(tmp_path / "msp")[0] == []


# --- 14: workers of a parent killed alone ---------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_of_a_killed_parent_stop_and_publish_nothing(tmp_path):
    msp, musan = make_tiny_corpus(tmp_path / "c", per_split=(12, 4, 0))  # enough shards to land midway
    out = tmp_path / "out"
    # output to /dev/null: a pipe would stay open as long as any worker lives
    proc = _prep(superset_cmd(msp, musan, out, "--jobs", "2"), output=subprocess.DEVNULL, start_new_session=True)
    shards = out / "msp" / "shards"
    workers: set[int] = set()
    deadline = time.time() + 120
    while time.time() < deadline and not (workers and list(shards.glob("superset-*.tar"))):
        workers.update(int(p.name.rsplit("-", 1)[1]) for p in shards.glob(".superset-*.tar.tmp-*"))
        time.sleep(0.01)
    assert workers, "no worker seen at work"
    os.kill(proc.pid, signal.SIGKILL)  # the parent only, as an OOM killer or `kill -9 PID` would
    proc.wait()  # reap it: a zombie would still look alive
    published = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")}
    try:
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "workers outlived their parent"
        assert {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")} == published
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if any(_alive(pid) for pid in workers) else None
    result = runner.invoke(app, superset_cmd(msp, musan, out, "--jobs", "2"))
    assert result.exit_code == 0, result.output
    assert verify_store(out / "msp")[0] == []


def test_only_the_build_holding_the_lock_publishes(built, tmp_path):
    from mixer.build import OwnerGone, build_shard
    from mixer.plan import plan_clean
    from mixer.records import Utterance
    from shards import store as st

    msp, _, _ = built
    utts = [Utterance(p.stem, str(p), "neutral", "train") for p in sorted((msp / "Audios").glob("*.wav"))[:2]]
    task = plan_clean(utts)[0]
    store = tmp_path / "msp"
    (store / "shards").mkdir(parents=True)
    with st.store_lock(store) as token:
        stale = f"{_dead_pid()} {token.split(' ', 2)[1]} 0123"  # a build killed by kill -9
        replaced = token.replace(token.split(" ")[0], str(os.getpid() + 1))  # a build the lock moved on from
        for owner in (stale, replaced):
            with pytest.raises(OwnerGone):
                build_shard(str(store), task, owner)
        assert list((store / "shards").iterdir()) == []  # no tar, no rows, no temporary
        assert build_shard(str(store), task, token)["samples"] == 2  # the holder's worker publishes
    (store / ".lock").write_text(f"{stale}\n")  # the killed build's token left behind, its process gone
    with pytest.raises(OwnerGone):
        build_shard(str(store), task, stale)


# --- 18: cosmetics ----------------------------------------------------------------------------

def test_progress_counts_samples_and_usage_names_arguments_plainly(built, tmp_path):
    msp, musan, _ = built
    cmd = [a for a in superset_cmd(msp, musan, tmp_path, "--jobs", "1") if a != "--quiet"]  # progress bar on
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    bar = [line for line in result.output.replace("\r", "\n").splitlines() if line.startswith("superset msp:")]
    assert bar and "sample/s]" in bar[-1] and "mix" not in bar[-1], result.output
    for command in ("verify", "score", "demo-corpus", "superset", "testsets"):
        usage = runner.invoke(app, [command, "--help"]).output.splitlines()[0]
        assert "{" not in usage, usage
    assert runner.invoke(app, ["verify", "--help"], prog_name="prep").output.startswith(
        "Usage: prep verify [OPTIONS] STORE\n")
    missing = runner.invoke(app, ["verify"])
    assert missing.exit_code == 2 and "{" not in missing.output

"""Faults a run must survive, each a one-line message or an intact previous file: a store
without test sets, a store or level index changed under a run, damaged checkpoints, two runs
into one folder, a kill while a checkpoint or results.json is written, empty run folders."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mixer.cli import app as prep_app
from trainer.cli import app

runner = CliRunner()


def prep(*args: str) -> None:
    result = runner.invoke(prep_app, list(args))
    assert result.exit_code == 0, f"prep {' '.join(args)}: {result.output}"


def build_superset(root: Path, seed: int) -> Path:
    """A tiny store with the superset only (no test sets) and STOI levels (K=2)."""
    prep("superset", "--corpus", "demo", "--root", str(root / "corpus"), "--out", str(root), "--bins", "1",
         "--metrics", "stoi", "--jobs", "1", "--quiet", "--seed", str(seed))
    prep("score", str(root / "demo"), "--metric", "stoi", "--quant", "gmm", "--levels", "2", "--min-per-level", "1")
    return root / "demo"


@pytest.fixture
def tiny_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    prep("demo-corpus", str(root / "corpus"), "--utterances-per-class", "4")
    return build_superset(root, seed=0)


def run_args(store: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(store), "--out", str(out), "--workers", "0", "--quiet", "--batch-size", "8", *extra]


def last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1]


def flac_at_level(level: float):
    """An encoder of the same samples into other FLAC bytes, as another libFLAC version does."""
    import io

    import soundfile as sf

    def encode(wav, sample_rate=16000) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, wav, sample_rate, format="FLAC", subtype="PCM_16", compression_level=level)
        return buf.getvalue()
    return encode


def test_a_shard_digests_its_samples_apart_from_the_bytes_flac_chose(tmp_path):
    import numpy as np

    from shards.writer import ShardWriter, encode_flac

    t = np.arange(16000) / 16000  # a tone under a slow envelope, and a little noise: speech-like enough
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)
           + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    encodings = [encode_flac(wav), flac_at_level(0.0)(wav), flac_at_level(1.0)(wav)]
    assert len(set(encodings)) == 3  # three encoders' bytes for one signal
    digests = []
    for i, flac in enumerate(encodings + [encode_flac(wav[::-1].copy())]):
        writer = ShardWriter(tmp_path / f"s{i}.tar")
        writer.add("utt", {"flac": flac, "json": b'{"label":"ang"}'})
        digests.append((writer.close(), writer.content_sha256))
    assert len({tar for tar, _ in digests[:3]}) == 3  # the tars differ with the bytes...
    assert len({content for _, content in digests[:3]}) == 1  # ...their samples do not
    assert digests[3][1] != digests[0][1]  # other samples: another content digest


def test_a_store_rebuilt_by_another_flac_encoder_holds_the_same_data(tmp_path_factory, monkeypatch):
    """The same build where another libFLAC encodes (simulated by another compression level):
    other shard bytes, the same data identity, so a run is not refused its own data; a run
    recorded before the samples basis still compares bytes."""
    import mixer.build
    from shards.reader import open_store
    from trainer.runfolder import data_identity, same_data

    stores = []
    for encoder in (None, flac_at_level(0.0)):
        root = tmp_path_factory.mktemp("encoder")
        prep("demo-corpus", str(root / "corpus"), "--utterances-per-class", "4")
        if encoder is not None:
            monkeypatch.setattr(mixer.build, "encode_flac", encoder)  # --jobs 1 builds in this process
        stores.append(open_store(build_superset(root, seed=0)))
    a, b = stores
    subsets = ["clean", "superset"]
    assert a.content_sha256(basis="bytes") != b.content_sha256(basis="bytes")
    assert data_identity(a, subsets) == data_identity(b, subsets)
    assert data_identity(a, subsets)["basis"] == "samples"
    before = {k: v for k, v in data_identity(a, subsets, "bytes").items() if k != "basis"}
    assert same_data(a, before) and not same_data(b, before)


def test_no_test_sets_is_a_successful_run_that_says_how_to_evaluate(tiny_store, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, run_args(tiny_store, out, "--max-epochs", "1"))
    assert result.exit_code == 0, result.output
    assert f"evaluation skipped: {tiny_store}: no test utterances (build them with 'prep testsets'), then " \
           f"'trainer eval {out}'" in result.output
    assert (out / "best.pt").is_file() and not (out / "results.json").exists()


def test_test_every_epoch_on_a_store_without_test_sets_is_one_line(tiny_store, tmp_path):
    result = runner.invoke(app, run_args(tiny_store, tmp_path / "run", "--max-epochs", "1", "--test-every-epoch"))
    assert result.exit_code == 2
    assert last_line(result.output) == f"error: --test-every-epoch: {tiny_store}: no test utterances (build them with 'prep testsets')"


def test_a_rebuilt_store_or_rescored_levels_are_refused_by_resume_and_eval(tiny_store, tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, run_args(tiny_store, out, "--max-epochs", "1", "--no-eval")).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    assert set(config["data_identity"]["subsets"]) == {"clean", "superset"} and len(config["level_index_sha256"]) == 64

    # prep score again with other settings under the same file name: other levels
    index = Path(config["level_index"])
    before = index.read_bytes()
    prep("score", str(tiny_store), "--metric", "stoi", "--quant", "gmm", "--levels", "2", "--min-per-level", "1",
         "--max-iter", "1")
    assert index.read_bytes() != before
    resumed = runner.invoke(app, run_args(tiny_store, out, "--max-epochs", "2", "--resume", "--no-eval"))
    assert resumed.exit_code == 2 and resumed.output.count("\n") == 1
    assert "--resume against other data (the level index changed since the run started); start a new run with another --out" in resumed.output

    # the store rebuilt with another seed: other mixes
    build_superset(tiny_store.parent, seed=1)
    resumed = runner.invoke(app, run_args(tiny_store, out, "--max-epochs", "2", "--resume", "--no-eval"))
    assert resumed.exit_code == 2 and "the store's train/validation data" in resumed.output
    evaluated = runner.invoke(app, ["eval", str(out), "--workers", "0"])
    assert evaluated.exit_code == 2
    assert last_line(evaluated.output) == (f"error: {tiny_store}: not the data {out} was trained on (its clean, superset "
                                           f"shards changed since, e.g. a rebuild); use the original store or train a new run on this one")


def test_damaged_checkpoints_are_one_line(demo_store, tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, run_args(demo_store, out, "--max-epochs", "1", "--no-eval")).exit_code == 0
    (out / "last.pt").write_bytes(b"not a checkpoint at all")
    resumed = runner.invoke(app, run_args(demo_store, out, "--max-epochs", "2", "--resume", "--no-eval"))
    assert resumed.exit_code == 2 and resumed.output.count("\n") == 1
    assert f"{out / 'last.pt'}: not a readable checkpoint" in resumed.output
    best = (out / "best.pt").read_bytes()
    (out / "best.pt").write_bytes(best[: len(best) // 2])  # truncated
    evaluated = runner.invoke(app, ["eval", str(out), "--workers", "0"])
    assert evaluated.exit_code == 2 and last_line(evaluated.output).startswith(f"error: {out / 'best.pt'}: not a readable checkpoint")
    assert "Traceback" not in evaluated.output


def test_a_second_run_into_the_same_folder_is_refused_at_start(demo_store, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "trainer", *run_args(demo_store, out, "--max-epochs", "20", "--no-eval")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None and not (out / "config.json").is_file():
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second started"
        second = runner.invoke(app, run_args(demo_store, out, "--max-epochs", "20", "--resume", "--no-eval"))
        assert second.exit_code == 2 and second.output.count("\n") == 1
        assert f"{out}: another 'trainer run' is writing this run folder" in second.output
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    # the lock died with its holder: the run resumes
    resumed = runner.invoke(app, run_args(demo_store, out, "--max-epochs", "1", "--resume", "--no-eval"))
    assert resumed.exit_code == 0, resumed.output


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one_and_resume_continues(demo_store, tmp_path, monkeypatch):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert runner.invoke(app, run_args(demo_store, whole, "--max-epochs", "3", "--no-eval")).exit_code == 0

    import trainer.train as train_module

    real_save = torch.save
    saves = {"n": 0}

    def dying_save(obj, path, *a, **k):
        # epoch 2's last.pt: half written, then the process "dies"
        if Path(path).name.startswith(".last.pt") and "epoch" in obj and obj["epoch"] == 2:
            Path(path).write_bytes(b"PK\x03\x04 half a zip")
            raise KeyboardInterrupt
        saves["n"] += 1
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(train_module.torch, "save", dying_save)
    interrupted = runner.invoke(app, run_args(demo_store, killed, "--max-epochs", "3", "--no-eval"))
    assert interrupted.exit_code == 130
    monkeypatch.setattr(train_module.torch, "save", real_save)
    assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == 1  # the previous checkpoint, intact
    # a SIGKILL would leave its temporary behind: it does not disturb the resume
    (killed / ".last.pt.tmp-999999").write_bytes(b"stray")
    resumed = runner.invoke(app, run_args(demo_store, killed, "--max-epochs", "3", "--resume", "--no-eval"))
    assert resumed.exit_code == 0, resumed.output

    def records(out):
        rows = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert records(killed) == records(whole)


def test_a_kill_while_writing_results_leaves_the_previous_results(demo_store, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert runner.invoke(app, run_args(demo_store, out, "--max-epochs", "1")).exit_code == 0
    before = (out / "results.json").read_bytes()
    import shards.atomic

    def dying_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(shards.atomic.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        from trainer.evaluate import evaluate_run

        evaluate_run(out, torch.device("cpu"), log=lambda line: None)
    assert (out / "results.json").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".results.json")]


def test_eval_and_report_of_a_run_with_no_finished_epoch_are_one_line(demo_store, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"strategy": "none", "data": str(demo_store)}))
    evaluated = runner.invoke(app, ["eval", str(out), "--workers", "0"])
    assert evaluated.exit_code == 2 and last_line(evaluated.output) == (
        f"error: {out}: no finished epoch (train it with 'trainer run ... --out {out}')")
    reported = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "report")])
    assert reported.exit_code == 2 and reported.output.count("\n") == 1 and "no finished epoch" in reported.output
    nothing = runner.invoke(app, ["report", str(tmp_path / "absent"), "--out", str(tmp_path / "report")])
    assert nothing.exit_code == 2 and "no such run folder" in nothing.output

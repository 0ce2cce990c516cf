"""`trainer run` end to end on a small demo store: learning, determinism, resume, DDP, errors."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from trainer.cli import app
from trainer.model import GRUTFM

runner = CliRunner()


def run_args(store: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(store), "--out", str(out), "--workers", "0", "--quiet", "--batch-size", "16",
            "--no-eval", *extra]


def records(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return rows


def test_a_short_run_learns_and_writes_its_run_folder(demo_store, tmp_path):
    out = tmp_path / "run"
    # the demo store is small (N=64): smaller batches and a larger step than the paper's
    # settings let 10 epochs show learning
    result = runner.invoke(app, run_args(demo_store, out, "--max-epochs", "10", "--workers", "2", "--batch-size", "8",
                                         "--lr", "0.005", "--hidden", "32"))
    assert result.exit_code == 0, result.output
    rows = records(out)
    assert len(rows) == 10 and [r["epoch"] for r in rows] == list(range(1, 11))
    config = json.loads((out / "config.json").read_text())
    K, N = config["n_levels"], config["n_train"]
    for r in rows:
        assert {"loss", "val_wf1_clean", "val_uar_clean", "val_wf1_levels", "gaps", "weights", "drawn"} <= r.keys()
        assert len(r["val_wf1_levels"]) == len(r["gaps"]) == len(r["weights"]) == len(r["drawn"]) == K
        assert sum(r["drawn"]) == N and r["samples"] == 2 * N  # N clean + N drawn from the levels
        assert abs(sum(r["weights"]) - 1) < 1e-9 and min(r["weights"]) >= 0.05 - 1e-12
    assert rows[0]["weights"] == [1 / K] * K
    assert rows[-1]["loss"] < rows[0]["loss"]
    # chance on 4 balanced classes is WF1 0.25 at best (a constant guess gives 0.1)
    assert max(r["val_wf1_clean"] for r in rows) >= 0.5, [r["val_wf1_clean"] for r in rows]
    best = torch.load(out / "best.pt", weights_only=True)
    model = GRUTFM(80, 32)
    model.load_state_dict(best["model"])
    assert config["select"] == config["selected_on"] == "pooled"  # the authors' rule, the default
    assert best["epoch"] == max(rows, key=lambda r: r["val_wf1_pooled"])["epoch"]
    per_epoch = -(-2 * N // 8)  # one pool of length-sorted batches of 8 (2N < 400)
    assert [r["steps"] for r in rows] == [per_epoch * e for e in range(1, 11)]
    assert best["steps"] == per_epoch * best["epoch"]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 10
    log = (out / "train.log").read_text()
    assert "epoch  10" in log and "best validation WF1" in log


def test_same_seed_same_epochs(demo_store, tmp_path):
    for name in ("a", "b"):
        result = runner.invoke(app, run_args(demo_store, tmp_path / name, "--max-epochs", "2", "--seed", "5"))
        assert result.exit_code == 0, result.output
    assert records(tmp_path / "a") == records(tmp_path / "b")


def test_resume_between_epochs_equals_an_uninterrupted_run(demo_store, tmp_path):
    assert runner.invoke(app, run_args(demo_store, tmp_path / "whole", "--max-epochs", "3")).exit_code == 0
    assert runner.invoke(app, run_args(demo_store, tmp_path / "parts", "--max-epochs", "1")).exit_code == 0
    again = runner.invoke(app, run_args(demo_store, tmp_path / "parts", "--max-epochs", "3"))
    assert again.exit_code == 2 and "--resume" in again.output  # a run folder is never overwritten
    resumed = runner.invoke(app, run_args(demo_store, tmp_path / "parts", "--max-epochs", "3", "--resume"))
    assert resumed.exit_code == 0 and "resuming" in resumed.output
    assert records(tmp_path / "parts") == records(tmp_path / "whole")


def test_kill_9_inside_an_epoch_then_resume(demo_store, tmp_path):
    """A process killed while epoch 2 runs resumes from epoch 1's state to the same result."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert runner.invoke(app, run_args(demo_store, whole, "--max-epochs", "3")).exit_code == 0
    cmd = [sys.executable, "-m", "trainer", *run_args(demo_store, killed, "--max-epochs", "3")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        lines = (killed / "epochs.jsonl").read_text().splitlines() if (killed / "epochs.jsonl").is_file() else []
        if len(lines) >= 1:
            time.sleep(0.5)  # into epoch 2
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(records(killed)) < 3
    resumed = runner.invoke(app, run_args(demo_store, killed, "--max-epochs", "3", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert records(killed) == records(whole)


def test_ddp_with_two_cpu_processes(demo_store, tmp_path):
    out = tmp_path / "ddp"
    import socket

    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}",
           "-m", "trainer", *run_args(demo_store, out, "--max-epochs", "2", "--device", "cpu")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    rows = records(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(sum(r["drawn"]) == config["n_train"] for r in rows)
    assert done.stdout.count("epoch   2") == 1  # rank 0 alone reports


def test_user_errors_are_one_line(demo_store, tmp_path):
    result = runner.invoke(app, run_args(demo_store, tmp_path / "r", "--metric", "pesq"))
    assert result.exit_code == 2
    assert f"prep score {demo_store} --metric pesq --quant gmm" in result.output
    assert result.output.strip().count("\n") == 0
    result = runner.invoke(app, run_args(demo_store, tmp_path / "r", "--hidden", "7"))
    assert result.exit_code == 2 and "--hidden 7" in result.output
    result = runner.invoke(app, run_args(tmp_path / "nowhere", tmp_path / "r"))
    assert result.exit_code == 2 and "store directory not found" in result.output


def test_baseline_none_trains_on_clean_only_and_eval_scores_every_test_condition(demo_store, tmp_path):
    out = tmp_path / "none"
    args = [a for a in run_args(demo_store, out, "--strategy", "none", "--max-epochs", "2") if a != "--no-eval"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "none" and config["train_size_n"] == 1
    for r in records(out):
        assert r["samples"] == config["n_train"] and r["drawn"] == [] and r["weights"] == []
        assert len(r["val_wf1_levels"]) == config["n_levels"]  # per-level WF1 still reported (Table 3)
    results = json.loads((out / "results.json").read_text())
    conditions = results["conditions"]
    assert results["order"] == ["clean", "test_snr10", "test_snr5", "test_snr0", "test_unseen"]
    assert set(conditions) == set(results["order"])
    from shards.reader import open_store

    table = open_store(demo_store).table(["subset", "split"]).to_pylist()
    for name, scores in conditions.items():
        subset = "clean" if name == "clean" else name
        assert scores["n"] == sum(1 for r in table if r["subset"] == subset and r["split"] == "test")
        assert sum(map(sum, scores["confusion"])) == scores["n"]
        assert 0 <= scores["wf1"] <= 1 and 0 <= scores["uar"] <= 1
        assert set(scores["f1_per_class"]) == {"angry", "happy", "neutral", "sad"}
    # trainer eval recomputes the same figures from the run folder
    again = runner.invoke(app, ["eval", str(out), "--workers", "0"])
    assert again.exit_code == 0 and json.loads((out / "results.json").read_text())["conditions"] == conditions
    missing = runner.invoke(app, ["eval", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and missing.output.splitlines()[-1].endswith("nothing: no such run folder (expected a folder written by 'trainer run')")

    # Table 3 from the clean-trained model: one row per metric scored with the GMM (STOI here)
    report = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    rows = list(csv.reader(open(tmp_path / "report" / "table3.csv")))
    assert rows[0][0] == "Metric" and [r[0] for r in rows[1:]] == ["stoi"]
    gaps = [float(x) for x in rows[1][1:-1]]
    assert len(gaps) == config["n_levels"] and float(rows[1][-1]) == pytest.approx(np.nansum(gaps), abs=1e-5)
    assert "| Clean |" in (tmp_path / "report" / "table2.md").read_text()
    intervals = (tmp_path / "report" / "intervals.md").read_text()
    assert "| Clean | " in intervals and " [" in intervals  # per-utterance outcomes give a bootstrap interval


def test_search_hidden_doubles_and_keeps_the_best(demo_store, tmp_path):
    result = runner.invoke(app, ["search-hidden", "--data", str(demo_store), "--out", str(tmp_path), "--start", "8",
                                 "--stop", "32", "--max-epochs", "1", "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "search.json").read_text())
    tried = {int(h): v for h, v in summary["tried"].items()}
    assert list(tried)[:2] == [8, 16] and set(tried) <= {8, 16, 32}
    assert summary["best_val_wf1"] == max(tried.values()) and tried[summary["best_hidden"]] == summary["best_val_wf1"]
    if len(tried) == 2:  # stopped early: doubling did not help
        assert tried[16] <= tried[8]
    for h in tried:
        assert json.loads((tmp_path / f"h{h}" / "config.json").read_text())["hidden"] == h


def test_fixed_snr_mixes_and_the_fixed_snr_baseline(demo_store, tmp_path):
    from shards.reader import open_store

    table = open_store(demo_store).table(["key", "subset", "split", "utt_id", "snr_target", "noise_type"]).to_pylist()
    train = {r["utt_id"] for r in table if r["subset"] == "clean" and r["split"] == "train"}
    fixed = [r for r in table if r["subset"] == "fixed_snr"]
    assert len(fixed) == 6 * len(train) and {r["utt_id"] for r in fixed} == train
    assert {(r["snr_target"], r["noise_type"]) for r in fixed} == {(s, k) for s in (0.0, 5.0, 10.0) for k in ("noise", "music")}
    assert all(r["split"] == "train" for r in fixed)
    # levels describe the superset and the test sets only: the baseline's mixes are no group
    assert open_store(demo_store).level_index("stoi", "gmm").groups == [
        "train", "validation", "test_snr0", "test_snr5", "test_snr10", "test_unseen"]
    out = tmp_path / "fixed"
    result = runner.invoke(app, run_args(demo_store, out, "--strategy", "fixed-snr", "--max-epochs", "1"))
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["train_size_n"] == 7 and records(out)[0]["samples"] == 7 * config["n_train"]

"""bench/gpu_check.sh end to end in its dry mode (CPU, small sizes), so the GPU check is known
to work before a device is lent."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_every_figure(demo_store, tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("opensmile")
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry", "--store", str(demo_store),
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["dry"] is True and doc["epochs"] == 1
    assert [(r["front_end"], r["workers"]) for r in doc["results"]] == [("logmel", 0), ("egemaps", 0), ("hf", 0)]
    for result in doc["results"]:
        (epoch,) = result["epochs"]
        for key in ("seconds", "train_samples_per_s", "validation_samples_per_s", "train_audio_s_per_s",
                    "validation_audio_s_per_s"):
            assert epoch[key] > 0, (result["front_end"], key)
        assert result["front_end_audio_s_per_s"] > 0
        assert result["msp_podcast_projection"]["epoch_hours"] > 0
    assert "hf, workers 0" in done.stdout

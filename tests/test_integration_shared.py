"""Integration on real audio from ../shared: EmoDB speech mixed with real ESC-50 recordings,
all three metrics, then verify and the level index. Skips when ../shared is absent."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest

from mixer.build import run_stage
from mixer.corpora import emodb, esc50
from mixer.plan import SupersetOptions, TestsetOptions, plan_clean, plan_superset, plan_testsets
from shards.verify import verify_store
from shards.vocab import TABLE


@pytest.fixture(scope="module")
def real_store(shared_dir, tmp_path_factory):
    utts, rejects = emodb.prepare(shared_dir / "audio" / "emodb", test_speakers=("10",), validation_speakers=("09",))
    # a few utterances per split keep this under a minute
    picked = []
    for split in ("train", "validation", "test"):
        picked += sorted((u for u in utts if u.split == split), key=lambda u: u.utt_id)[:3]
    noise_files, _ = esc50.prepare(shared_dir / "audio" / "esc50_glass")
    half = len(noise_files) // 2
    seen = [replace(n, kind="noise") for n in noise_files[:half]] + [replace(n, kind="music") for n in noise_files[half:]]
    store = tmp_path_factory.mktemp("real") / "emodb"
    train_val = [u for u in picked if u.split != "test"]
    tasks = plan_clean(train_val, 2) + plan_superset(train_val, seen, SupersetOptions(bins=3, utts_per_shard=2))
    run_stage(store, "superset", tasks, {"corpus": "emodb"}, [], jobs=2, progress=False)
    tests = [u for u in picked if u.split == "test"]
    tasks = plan_clean(tests, 2) + plan_testsets(tests, seen, noise_files[:10], TestsetOptions(utts_per_shard=2))
    run_stage(store, "testsets", tasks, {"corpus": "emodb"}, [], jobs=2, progress=False)
    return store


def test_real_speech_superset_and_testsets_verify(real_store):
    assert verify_store(real_store)[0] == []
    table = pq.read_table(real_store / TABLE).to_pydict()
    subsets = table["subset"]
    assert subsets.count("superset") == 6 * 6  # 6 utterances x 3 bins x 2 types
    assert subsets.count("clean") == 9
    for name in ("test_snr0", "test_snr5", "test_snr10"):
        assert subsets.count(name) == 3 * 2
    assert subsets.count("test_unseen") == 3
    stoi = np.array(table["stoi"])
    mixes = np.array([s != "clean" for s in subsets])
    assert np.all((stoi[mixes] > 0.3) & (stoi[mixes] <= 1.0))
    # more noise, lower intelligibility: metric falls with SNR across the real mixes
    snr = np.array(table["snr_achieved"])[mixes]
    for metric in ("stoi", "pesq", "fwsnrseg"):
        values = np.array(table[metric])[mixes]
        ok = np.isfinite(values)
        assert np.corrcoef(snr[ok], values[ok])[0, 1] > 0.5, metric

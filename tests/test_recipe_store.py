"""Recipe stores (``--mixes recipe``): every mix a table row rendered on read from the stored
clean utterance and noise. The same arrays and metrics as the audio store of the same inputs
and seed, ``prep materialize`` back to that audio store byte for byte, verify with
``--rescore``, refusal of missing or altered noise, resume, and the trainer on either store."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mixer.build import TEST_SIGKILL_SHARD_ENV
from mixer.cli import app
from shards.atomic import sha256_file
from shards.errors import InputError, StoreError
from shards.reader import open_store
from shards.verify import verify_store
from shards.vocab import MANIFEST, NOISE_SOURCES, NOISE_SUBSET, REJECTS, SOURCE_SUBSETS, TABLE
from test_superset import make_tiny_corpus, superset_cmd

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _stage_cmds(msp: Path, musan: Path, out: Path, mixes: str) -> list[list[str]]:
    common = ["--corpus", "msp", "--root", str(msp), "--noise-root", str(musan), "--out", str(out),
              "--utts-per-shard", "2", "--quiet", "--jobs", "1", "--mixes", mixes]
    return [superset_cmd(msp, musan, out, "--jobs", "1", "--mixes", mixes),
            ["fixed-snr", *common], ["testsets", *common, "--snrs", "0,5"]]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(audio store, recipe store, corpus): the superset, Fixed-SNR mixes and test sets of one
    tiny corpus built both ways."""
    root = tmp_path_factory.mktemp("recipe")
    msp, musan = make_tiny_corpus(root)
    for mixes in ("audio", "recipe"):
        for cmd in _stage_cmds(msp, musan, root / mixes, mixes):
            result = runner.invoke(app, cmd)
            assert result.exit_code == 0, result.output
    return root / "audio" / "msp", root / "recipe" / "msp", (msp, musan)


def _copy(store: Path, dest: Path) -> Path:
    shutil.copytree(store, dest)
    return dest


def test_recipe_and_audio_stores_return_equal_arrays_and_metrics(pair):
    audio_dir, recipe_dir, _ = pair
    audio, recipe = open_store(audio_dir), open_store(recipe_dir)
    assert audio.layout == "audio" and recipe.layout == "recipe"
    a = audio.table().sort_by("key")
    r = recipe.table(filters=[("subset", "!=", NOISE_SUBSET)]).sort_by("key")
    keys = a["key"].to_pylist()
    assert r["key"].to_pylist() == keys
    mixes = [k for k, t in zip(keys, a["noise_type"].to_pylist()) if t]
    assert len(mixes) == 6 * 4 + 4 * 6 + 2 * 4  # superset 2 bins x 2 types, Fixed-SNR 6 per train utt, tests 2 x 2
    # no audio for a mix in the recipe store: its row is its recipe
    rows = {k: (s, o) for k, s, o in zip(r["key"].to_pylist(), r["shard"].to_pylist(), r["flac_offset"].to_pylist())}
    assert all(rows[k][0].endswith(".rows.json") and rows[k][1] == -1 for k in mixes)
    for column in ["utt_id", "noise_file", "noise_offset", "noise_gain", "gain", "num_samples", "snr_achieved",
                   "stoi", "pesq", "fwsnrseg", "errors"]:
        x, y = a[column].to_numpy(zero_copy_only=False), r[column].to_numpy(zero_copy_only=False)
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), column
    for get in (lambda s: s.read_audio(keys), lambda s: [s.clips(keys).audio(i) for i in range(len(keys))]):
        for key, x, y in zip(keys, get(audio), get(recipe)):
            assert x.dtype == y.dtype == np.float32 and np.array_equal(x, y), key
    assert recipe.read_fields(mixes) == audio.read_fields(mixes)
    # the noise is stored once per store, as mixed (16 kHz 16-bit WAV), one shard per noise
    # named by its content; each stage lists the noise its recipes name
    noise = recipe.table(filters=[("subset", "=", NOISE_SUBSET)])
    assert noise["split"].to_pylist() == [NOISE_SUBSET] * 4 and len(set(noise["key"].to_pylist())) == 4
    assert sorted(set(noise["shard"].to_pylist())) == sorted(f"shards/noise-{k.removeprefix('__noise__')}-000000.tar"
                                                             for k in noise["key"].to_pylist())
    stages = recipe.manifest["stages"]
    for stage in ("superset", "fixed_snr"):
        listed = {(t, f): f"__noise__{i}" for t, f, i in stages[stage][NOISE_SOURCES]}
        assert set(listed.values()) == set(noise["key"].to_pylist()), stage
        used = {(t, f) for t, f, subset in zip(r["noise_type"].to_pylist(), r["noise_file"].to_pylist(),
                                               r["subset"].to_pylist()) if f and subset == stage}
        assert used and used <= set(listed), stage


def test_decoded_clean_cache_changes_no_sample_and_keeps_its_cap(pair, monkeypatch):
    """Mixing reads the clean utterance decoded once per process: cold, warm, with the cache
    off and with a cap smaller than the clean set, every mix is the audio store's, and the
    cache never holds more than its cap."""
    from shards import reader

    audio_dir, recipe_dir, _ = pair
    audio, recipe = open_store(audio_dir), open_store(recipe_dir)
    t = audio.table(["key", "noise_type"])
    mixes = [k for k, n in zip(t["key"].to_pylist(), t["noise_type"].to_pylist()) if n]
    expected = audio.read_audio(mixes)
    one_utterance = max(x.size for x in expected) * 2
    for cap in (reader.CLEAN_CACHE_MB * 2**20, 0, one_utterance):
        cache = reader._DecodedClean(cap)
        monkeypatch.setattr(reader, "_DECODED_CLEAN", cache)
        source = recipe.clips(mixes)
        for _ in range(2):  # cold, then warm (or evicted)
            for i, x in enumerate(expected):
                y = source.audio(i)
                assert y.dtype == np.float32 and np.array_equal(x, y), mixes[i]
                assert cache.nbytes <= cap
        assert (cache.nbytes > 0) == (cap > 0)
        assert all(not a.flags.writeable for a in cache._arrays.values())
    monkeypatch.setenv(reader.CLEAN_CACHE_ENV, "0.5")
    assert reader.clean_cache_bytes() == 2**19
    for bad in ("lots", "-1"):
        monkeypatch.setenv(reader.CLEAN_CACHE_ENV, bad)
        with pytest.raises(InputError, match=f"{reader.CLEAN_CACHE_ENV}='{bad}': expected a number of MB"):
            reader.clean_cache_bytes()


def test_materialize_is_byte_identical_to_the_audio_build(pair, tmp_path):
    audio_dir, recipe_dir, _ = pair
    out = tmp_path / "materialized"
    result = runner.invoke(app, ["materialize", str(recipe_dir), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    tars = sorted(p.name for p in (audio_dir / "shards").glob("*.tar"))
    assert sorted(p.name for p in (out / "shards").glob("*.tar")) == tars
    for name in tars:
        assert sha256_file(out / "shards" / name) == sha256_file(audio_dir / "shards" / name), name
    for name in (TABLE, REJECTS):
        assert sha256_file(out / name) == sha256_file(audio_dir / name), name
    expected = json.loads((audio_dir / MANIFEST).read_text())
    written = json.loads((out / MANIFEST).read_text())
    assert "layout" not in expected and json.loads((recipe_dir / MANIFEST).read_text())["layout"] == "recipe"
    assert written == expected
    assert verify_store(out)[0] == []
    again = runner.invoke(app, ["materialize", str(recipe_dir), "--out", str(out), "--jobs", "1"])  # resumes: no change
    assert again.exit_code == 0 and sha256_file(out / TABLE) == sha256_file(audio_dir / TABLE)
    refused = runner.invoke(app, ["materialize", str(audio_dir), "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "not a recipe store" in refused.output


def test_verify_rescore_passes_and_names_the_mix_with_an_altered_metric(pair, tmp_path):
    _, recipe_dir, _ = pair
    result = runner.invoke(app, ["verify", str(recipe_dir), "-q", "--rescore", "1000"])
    assert result.exit_code == 0, result.output
    assert "rescored 56 mixes (seed 0): 0 differ" in result.output
    store = _copy(recipe_dir, tmp_path / "altered")
    table = pq.read_table(store / TABLE)
    keys = table["key"].to_pylist()
    victim = next(i for i, (s, v) in enumerate(zip(table["subset"].to_pylist(), table["stoi"].to_pylist()))
                  if s == "superset" and v == v)
    stoi = table["stoi"].to_numpy().copy()
    stoi[victim] += 1e-9
    pq.write_table(table.set_column(table.schema.get_field_index("stoi"), "stoi", [stoi]), store / TABLE,
                   compression="zstd")
    manifest = json.loads((store / MANIFEST).read_text())
    manifest["table"]["sha256"] = sha256_file(store / TABLE)  # a table that looks sound: only re-scoring tells
    (store / MANIFEST).write_text(json.dumps(manifest))
    assert runner.invoke(app, ["verify", str(store), "-q"]).exit_code == 0
    result = runner.invoke(app, ["verify", str(store), "-q", "--rescore", "1000"])
    assert result.exit_code == 1
    fails = [line for line in result.output.splitlines() if line.startswith("FAIL ")]
    assert len(fails) == 1 and keys[victim] in fails[0] and "stoi" in fails[0], result.output


def _noise_shard(store: Path) -> Path:
    entry = next(e for e in json.loads((store / MANIFEST).read_text())["shards"] if e["subset"] == NOISE_SUBSET)
    return store / entry["path"]


def _mix_keys(store: Path) -> list[str]:
    table = pq.read_table(store / TABLE, columns=["key", "subset"])
    return [k for k, s in zip(table["key"].to_pylist(), table["subset"].to_pylist()) if s == "superset"]


def test_a_recipe_store_with_missing_noise_is_refused_naming_the_file(pair, tmp_path):
    store = _copy(pair[1], tmp_path / "missing")
    noise = _noise_shard(store)
    noise.unlink()
    with pytest.raises(StoreError, match=f"{noise.relative_to(store)} is missing"):
        open_store(store)
    result = runner.invoke(app, ["verify", str(store), "-q"])
    assert result.exit_code == 1 and f"FAIL {noise.relative_to(store)}: missing" in result.output
    result = runner.invoke(app, ["materialize", str(store), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and str(noise.relative_to(store)) in result.output


def test_a_recipe_store_with_altered_noise_is_refused_naming_the_file(pair, tmp_path):
    store = _copy(pair[1], tmp_path / "altered-noise")
    noise = _noise_shard(store)
    data = bytearray(noise.read_bytes())
    data[512 + 44 + 1000] ^= 0x01  # one bit of one noise sample; the same size
    noise.write_bytes(bytes(data))
    opened = open_store(store)  # the quick check sees sizes only ...
    clean_keys = opened.table(["key"], filters=[("subset", "=", "clean")])["key"].to_pylist()
    assert len(opened.read_audio(clean_keys)) == len(clean_keys)  # ... clean utterances still read
    with pytest.raises(StoreError) as caught:  # ... but no mix is rendered with other noise
        opened.clips(_mix_keys(store))
    message = str(caught.value)
    assert str(noise) in message and "sha256 differs" in message and "\n" not in message
    result = runner.invoke(app, ["verify", str(store), "-q"])
    assert result.exit_code == 1 and f"FAIL {noise.relative_to(store)}: sha256 differs" in result.output


def test_an_interrupted_recipe_build_resumes_to_the_same_store(pair, tmp_path):
    _, recipe_dir, (msp, musan) = pair
    cmd = superset_cmd(msp, musan, tmp_path, "--jobs", "2", "--mixes", "recipe")
    proc = subprocess.run([sys.executable, "-m", "mixer.cli", *cmd], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, TEST_SIGKILL_SHARD_ENV: "superset-train-000001"}, timeout=300)
    assert proc.returncode == 1 and "SIGKILL" in proc.stderr, proc.stdout + proc.stderr
    shards = tmp_path / "msp" / "shards"
    assert not (shards / "superset-train-000001.rows.json").exists()
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert "already complete" in result.output and "0 already complete" not in result.output
    resumed = json.loads((tmp_path / "msp" / MANIFEST).read_text())
    reference = json.loads((recipe_dir / MANIFEST).read_text())
    # the superset's shards (its noise, stored once, is shared with the stages built after it)
    planned = set(json.loads((recipe_dir / "plans" / "superset.json").read_text())["shards"])
    superset = [e for e in reference["shards"] if e["name"] in planned]

    def entries(manifest_shards):  # a stored source belongs to no one stage: the manifest names the first planning it
        return [{k: v for k, v in e.items() if not (k == "stage" and e["subset"] in SOURCE_SUBSETS)}
                for e in manifest_shards]
    assert entries(resumed["shards"]) == entries(superset)
    assert verify_store(tmp_path / "msp")[0] == []
    keys = _mix_keys(tmp_path / "msp")
    for x, y in zip(open_store(tmp_path / "msp").read_audio(keys), open_store(recipe_dir).read_audio(keys)):
        assert np.array_equal(x, y)


def test_a_bad_mixes_value_is_one_line(pair):
    msp, musan = pair[2]
    result = runner.invoke(app, superset_cmd(msp, musan, Path("/nonexistent"), "--mixes", "wav"))
    assert result.exit_code == 2 and "--mixes 'wav': expected one of audio, recipe" in result.output


def test_trainer_run_is_the_same_on_the_audio_and_the_recipe_store(demo_store, demo_recipe_store, tmp_path):
    from trainer.cli import app as trainer_app

    audio, recipe = open_store(demo_store), open_store(demo_recipe_store)
    level = audio.level_index("stoi", "gmm").members("train", 1)
    assert np.all([np.array_equal(x, y) for x, y in zip(
        [audio.clips(level).audio(i) for i in range(len(level))],
        [recipe.clips(recipe.level_index("stoi", "gmm").members("train", 1)).audio(i) for i in range(len(level))])])
    outputs = {}
    for name, store in (("audio", demo_store), ("recipe", demo_recipe_store)):
        out = tmp_path / name
        result = runner.invoke(trainer_app, ["run", "--data", str(store), "--out", str(out), "--workers", "0",
                                             "--quiet", "--batch-size", "16", "--max-epochs", "2", "--seed", "3"])
        assert result.exit_code == 0, result.output
        epochs = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
        for row in epochs:
            row.pop("seconds")
        outputs[name] = (epochs, json.loads((out / "results.json").read_text())["conditions"])
    assert len(outputs["audio"][0]) == 2
    assert outputs["audio"] == outputs["recipe"]

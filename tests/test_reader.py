"""The store's reader API (shards.reader): what the trainer reads through."""
from __future__ import annotations

import io
import json
import pickle
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from shards.errors import InputError, StoreError
from shards.reader import open_store
from shards.vocab import MANIFEST, TABLE


def test_webdataset_reads_every_sample_of_a_built_store(demo_store):
    import webdataset as wds

    store = open_store(demo_store)
    table = {r["key"]: r for r in store.table(["key", "label", "num_samples", "stoi", "shard"]).to_pylist()}
    urls = [str(demo_store / entry["path"]) for entry in store.shards()]
    seen = {}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        wav, sr = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
        meta = json.loads(sample["json"])
        seen[sample["__key__"]] = (wav.size, sr, meta)
    assert seen.keys() == table.keys()
    for key, (n, sr, meta) in seen.items():
        row = table[key]
        assert sr == 16000 and n == row["num_samples"] and meta["label"] == row["label"]
        assert meta["stoi"] is None if np.isnan(row["stoi"]) else meta["stoi"] == pytest.approx(row["stoi"])


def test_samples_by_key_batched_and_sequential_agree(demo_store):
    store = open_store(demo_store)
    name = store.shards()[0]["name"]
    sequential = list(store.iter_shard(name))
    keys = [k for k, _ in sequential]
    assert len(keys) == store.shards()[0]["samples"]
    shuffled = list(np.random.default_rng(0).permutation(keys))
    batched = dict(zip(shuffled, store.read_audio(shuffled)))
    fields = dict(zip(shuffled, store.read_fields(shuffled)))
    for key, members in sequential:
        wav, _ = sf.read(io.BytesIO(members["flac"]), dtype="float32")
        assert np.array_equal(batched[key], wav)
        assert fields[key] == json.loads(members["json"])
    one_wav, one_fields = store.sample(keys[0])
    assert np.array_equal(one_wav, batched[keys[0]]) and one_fields == fields[keys[0]]
    with pytest.raises(InputError, match="no sample with key nope"):
        store.read_audio(["nope"])


def test_clip_source_is_picklable_and_reads_level_members(demo_store):
    store = open_store(demo_store)
    index = store.level_index("stoi", "gmm")
    level = next(lv for lv in range(1, index.n_levels + 1) if index.counts("train")[lv - 1] > 3)
    members = index.members("train", level)
    clips = store.clips(members)
    clips.audio(0)  # opens a file: it must not travel with the pickle
    copy = pickle.loads(pickle.dumps(clips))
    expected = store.read_audio(members.key)
    for i in range(len(members)):
        assert np.array_equal(copy.audio(i), expected[i])
    subset = members.take([2, 0, 2])
    assert subset.key == [members.key[2], members.key[0], members.key[2]]


def test_a_damaged_store_is_refused_before_reading(demo_store, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(demo_store, copy)
    open_store(copy)
    shard = copy / open_store(copy).shards()[3]["path"]
    with open(shard, "ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(StoreError, match=r"bytes, the manifest records .*prep verify"):
        open_store(copy)
    shard.unlink()
    with pytest.raises(StoreError, match="is missing"):
        open_store(copy)
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(StoreError, match="not JSON"):
        open_store(copy)
    (copy / MANIFEST).unlink()
    with pytest.raises(StoreError, match="no manifest.json"):
        open_store(copy)


def test_a_changed_table_is_refused(demo_store, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(demo_store, copy)
    table = pq.read_table(copy / TABLE)
    pq.write_table(table.slice(0, table.num_rows - 1), copy / TABLE)
    with pytest.raises(StoreError, match="metadata.parquet differs"):
        open_store(copy)
    assert open_store(copy, check=False).table(["key"]).num_rows == table.num_rows - 1


def test_missing_level_index_names_the_command_that_makes_it(demo_store):
    store = open_store(demo_store)
    with pytest.raises(InputError, match=f"prep score {demo_store} --metric pesq --quant gmm"):
        store.level_index("pesq", "gmm")


def test_achieved_snr_is_recomputed_from_the_stored_clean_and_mix(demo_store):
    """README "The store": snr_achieved = 10 log10(sum((gain*clean)^2) / sum((mix - gain*clean)^2))."""
    store = open_store(demo_store)
    table = store.table(["key", "subset", "utt_id", "gain", "snr_achieved"]).to_pylist()
    clean_key = {r["utt_id"]: r["key"] for r in table if r["subset"] == "clean"}
    mixes = [r for r in table if r["subset"] != "clean"]
    scaled = [r for r in mixes if r["gain"] < 1.0][:20]
    unscaled = [r for r in mixes if r["gain"] == 1.0][:20]
    assert scaled and unscaled  # the demo has both kinds
    for row in scaled + unscaled:
        clean, mix = (w.astype(np.float64) for w in store.read_audio([clean_key[row["utt_id"]], row["key"]]))
        speech = row["gain"] * clean
        snr = 10 * np.log10(np.sum(speech**2) / np.sum((mix - speech) ** 2))
        assert snr == pytest.approx(row["snr_achieved"], abs=1e-6)
        if row["gain"] < 0.9:  # leaving the gain out is visibly wrong
            assert abs(10 * np.log10(np.sum(clean**2) / np.sum((mix - clean) ** 2)) - row["snr_achieved"]) > 0.1


def test_the_manifest_records_the_noise_roots_a_demo_build_used(demo_store):
    """`prep superset --corpus demo` without --noise-root mixes with <root>/musan: the
    manifest says so (it once recorded the empty option instead)."""
    stages = open_store(demo_store).manifest["stages"]
    corpus = demo_store.parent / "corpus"
    for stage in ("superset", "testsets", "fixed_snr"):
        assert stages[stage]["noise_root"] == str(corpus / "musan")
    assert stages["testsets"]["unseen_root"] == str(corpus / "esc50")


def test_key_rows_finds_every_key_and_only_those(demo_store):
    import pyarrow as pa

    from shards.reader import _KeyRows

    keys = ["b", "a-01", "a", "ab", "zz-9", "é-1", "a-1"]
    lookup = _KeyRows(pa.chunked_array([keys[:3], keys[3:]]))
    assert lookup.rows(keys).tolist() == list(range(len(keys)))
    # absent: a prefix, an extension, longer than every stored key, a trailing NUL, a case change
    assert lookup.rows(["", "a-0", "a-011", "zz-9-and-more", "a\0", "B"]).tolist() == [-1] * 6
    assert lookup.rows([]).tolist() == []
    assert _KeyRows(pa.chunked_array([[]], type=pa.string())).rows(["a"]).tolist() == [-1]

    store = open_store(demo_store)
    table_keys = store.table(["key"])["key"].to_pylist()
    picked = [table_keys[i] for i in np.random.default_rng(0).integers(0, len(table_keys), 50)]
    assert store.clips(picked).keys == picked
    with pytest.raises(InputError, match="no sample with key nope"):
        store.clips([picked[0], "nope"])

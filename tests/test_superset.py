"""The superset builder end to end: plan, mix, score, shard, table, manifest, resume, lock."""
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
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mixer.cli import app
from mixer.mixing import FULL_SCALE, fit_noise, mix_at_snr, quantize_pcm16
from mixer.plan import SupersetOptions, TestsetOptions, plan_superset, plan_testsets
from mixer.records import NoiseFile, Utterance
from shards import store as st
from shards.atomic import sha256_file
from shards.errors import InputError
from shards.reader import decode_flac, open_store
from shards.verify import verify_store
from shards.vocab import MANIFEST, REJECTS, TABLE

runner = CliRunner()
SR = 16000


def _voice(rng, seconds, f0):
    t = np.arange(int(seconds * SR)) / SR
    wav = sum(np.sin(2 * np.pi * f0 * k * t + rng.random()) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.2 * wav * envelope / 3).astype(np.float32)


def make_tiny_corpus(root: Path, per_split=(4, 2, 2), seed=0) -> tuple[Path, Path]:
    """A few utterances in the MSP-Podcast layout and a MUSAN-layout noise folder."""
    rng = np.random.default_rng(seed)
    msp, musan = root / "msp", root / "musan"
    (msp / "Audios").mkdir(parents=True)
    (msp / "Labels").mkdir()
    rows = []
    codes = "AHNS"
    for split, count in zip(("Train", "Validation", "Test1"), per_split):
        for i in range(count):
            name = f"tiny_{split}_{i:02d}.wav"
            sf.write(msp / "Audios" / name, _voice(rng, 1.0 + 0.25 * i, 110 + 40 * i), SR, subtype="PCM_16")
            rows.append((name, codes[i % 4], split, str(i % 2)))
    with open(msp / "Labels" / "labels_consensus.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "EmoClass", "Split_Set", "SpkrID"])
        w.writerows(rows)
    for kind, n in (("noise", 2), ("music", 2)):
        (musan / kind / "part").mkdir(parents=True)
        for j in range(n):
            if kind == "noise":
                wav = rng.standard_normal(int(SR * (0.5 if j == 0 else 4.0))) * 0.1  # one shorter than speech
            else:
                wav = _voice(rng, 3.0, 220 * (j + 1))
            sf.write(musan / kind / "part" / f"{kind}-{j:04d}.wav", wav.astype(np.float32), SR, subtype="PCM_16")
    return msp, musan


def superset_cmd(msp, musan, out, *extra):
    return ["superset", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan), "--out", str(out),
            "--bins", "2", "--utts-per-shard", "2", "--quiet", *extra]


def shard_digests(store: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted((store / "shards").glob("*.tar"))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    msp, musan = make_tiny_corpus(root)
    out = root / "out"
    result = runner.invoke(app, superset_cmd(msp, musan, out, "--jobs", "1"))
    assert result.exit_code == 0, result.output
    return msp, musan, out / "msp", result.output


# --- mixing --------------------------------------------------------------------------------

def test_mix_reaches_target_snr_and_records_it():
    rng = np.random.default_rng(1)
    speech = quantize_pcm16(_voice(rng, 1.0, 150))
    noise = rng.standard_normal(SR).astype(np.float32)
    for snr in (0.0, 7.3, 29.9):
        mix = mix_at_snr(speech, noise, snr)
        assert mix.gain == 1.0
        assert abs(mix.snr_achieved - snr) < 0.01
        p_s = np.mean(speech.astype(np.float64) ** 2)
        assert np.isclose(10 * np.log10(p_s / (mix.noise_gain**2 * np.mean(noise.astype(np.float64) ** 2))), snr)


def test_clipping_scales_speech_and_noise_together():
    rng = np.random.default_rng(2)
    speech = quantize_pcm16(np.clip(rng.standard_normal(SR) * 0.6, -1, 1))
    mix = mix_at_snr(speech, rng.standard_normal(SR).astype(np.float32), 0.0)
    assert mix.gain < 1.0
    assert np.max(np.abs(mix.wav)) <= FULL_SCALE
    assert abs(mix.snr_achieved - 0.0) < 0.01  # SNR unchanged by the common gain


def test_short_noise_is_repeated_long_noise_is_cut():
    noise = np.arange(5, dtype=np.float32)
    assert fit_noise(noise, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert fit_noise(np.arange(100, dtype=np.float32), 3, offset=10).tolist() == [10, 11, 12]


# --- plan ----------------------------------------------------------------------------------

def _utts(n):
    return [Utterance(f"u{i:03d}", f"/x/u{i}.wav", "neutral", ("train", "validation", "test")[i % 3]) for i in range(n)]


NOISES = [NoiseFile(f"{k}{j}", f"/n/{k}{j}.wav", k, 80000, 16000) for k in ("noise", "music") for j in range(5)]


def test_superset_plan_is_30n_with_one_mix_per_bin_and_type():
    tasks = plan_superset(_utts(9), NOISES, SupersetOptions())
    jobs = [j for t in tasks for j in t.jobs]
    assert len(jobs) == 6  # train + validation only
    for job in jobs:
        assert len(job.mixes) == 30
        pairs = {(m.snr_bin, m.noise_type) for m in job.mixes}
        assert len(pairs) == 30
        for m in job.mixes:
            assert 2 * m.snr_bin <= m.snr_target < 2 * m.snr_bin + 2
            assert m.noise_id.startswith(m.noise_type)


def test_plan_is_deterministic_and_independent_of_corpus_order():
    a = plan_superset(_utts(9), NOISES, SupersetOptions(seed=3))
    b = plan_superset(list(reversed(_utts(9))), list(reversed(NOISES)), SupersetOptions(seed=3))
    assert [t.fingerprint() for t in a] == [t.fingerprint() for t in b]
    c = plan_superset(_utts(9), NOISES, SupersetOptions(seed=4))
    assert [t.fingerprint() for t in a] != [t.fingerprint() for t in c]


def test_testset_plan_exact_snrs_and_unseen_range():
    unseen = [NoiseFile(f"esc{j}", f"/e/{j}.wav", "unseen", 80000, 16000) for j in range(3)]
    tasks = plan_testsets(_utts(9), NOISES, unseen, TestsetOptions())
    subsets = {t.subset for t in tasks}
    assert subsets == {"test_snr0", "test_snr5", "test_snr10", "test_unseen"}
    for t in tasks:
        for job in t.jobs:
            assert job.utt.split == "test"
            for m in job.mixes:
                if t.subset == "test_unseen":
                    assert m.noise_type == "unseen" and 0 <= m.snr_target <= 30
                else:
                    assert m.snr_target == float(t.subset.removeprefix("test_snr"))


def test_plan_needs_both_noise_types():
    with pytest.raises(InputError, match="music"):
        plan_superset(_utts(3), [n for n in NOISES if n.kind == "noise"], SupersetOptions())


# --- build ---------------------------------------------------------------------------------

def test_build_writes_shards_table_manifest_and_verifies(tiny):
    _, _, store, output = tiny
    assert "samples/s" in output and "rejects           0 " in output and "PESQ failures     0 " in output
    table = pq.read_table(store / TABLE).to_pydict()
    subsets = table["subset"]
    # 4 train + 2 validation utterances: clean once each, 2 bins x 2 types = 4 mixes each
    assert subsets.count("clean") == 6 and subsets.count("superset") == 24
    assert set(table["split"]) == {"train", "validation"}
    mixes = [i for i, s in enumerate(subsets) if s == "superset"]
    for i in mixes:
        assert 0.0 <= table["stoi"][i] <= 1.0
        assert np.isfinite(table["pesq"][i]) and np.isfinite(table["fwsnrseg"][i])
        assert abs(table["snr_achieved"][i] - table["snr_target"][i]) < 0.05
    manifest = json.loads((store / MANIFEST).read_text())
    assert manifest["samples"] == 30 and manifest["corpus"] == "msp"
    assert manifest["stages"]["superset"]["options"]["bins"] == 2
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    problems, counts = verify_store(store)
    assert problems == [] and counts["samples"] == 30
    result = runner.invoke(app, ["verify", str(store), "--quiet"])
    assert result.exit_code == 0 and result.output.startswith("OK: 6 shards, 30 samples, 0 problems")


def test_shards_read_back_with_webdataset_and_offsets(tiny):
    import webdataset as wds

    _, _, store, _ = tiny
    table = pq.read_table(store / TABLE).to_pylist()
    by_key = {r["key"]: r for r in table}
    seen = 0
    for path in sorted((store / "shards").glob("superset-*.tar")):
        for sample in wds.WebDataset(str(path), shardshuffle=False):
            meta = json.loads(sample["json"])
            row = by_key[sample["__key__"]]
            assert meta["stoi"] == pytest.approx(row["stoi"]) and meta["label"] == row["label"]
            wav = decode_flac(sample["flac"])
            assert wav.dtype == np.float32 and wav.size == row["num_samples"]
            with open(store / row["shard"], "rb") as f:  # direct fetch by byte offset
                f.seek(row["flac_offset"])
                assert f.read(row["flac_size"]) == sample["flac"]
            seen += 1
    assert seen == 24


def test_clean_utterances_are_stored_once_not_beside_every_mix(tiny):
    _, _, store, _ = tiny
    for path in (store / "shards").glob("superset-*.tar"):
        import tarfile

        names = tarfile.open(path).getnames()
        assert all("__s" in n for n in names)


def test_same_seed_same_bytes_whatever_the_number_of_workers(tiny, tmp_path):
    msp, musan, store, _ = tiny
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path, "--jobs", "2"))
    assert result.exit_code == 0, result.output
    assert shard_digests(tmp_path / "msp") == shard_digests(store)
    assert (tmp_path / "msp" / TABLE).read_bytes() == (store / TABLE).read_bytes()


def test_rerun_skips_complete_shards(tiny):
    msp, musan, store, _ = tiny
    before = shard_digests(store)
    result = runner.invoke(app, superset_cmd(msp, musan, store.parent, "--jobs", "1"))
    assert result.exit_code == 0
    assert "0 built" in result.output
    assert shard_digests(store) == before


def test_killed_build_resumes_to_the_same_bytes(tiny, tmp_path):
    msp, musan, store, _ = tiny
    cmd = [sys.executable, "-m", "mixer.cli", *superset_cmd(msp, musan, tmp_path, "--jobs", "1")]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    shards_dir = tmp_path / "msp" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards_dir.glob("*.tar"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the build and its workers midway
    proc.wait()
    built = len(list(shards_dir.glob("*.tar")))
    assert 0 < built < len(shard_digests(store)), "the kill should land midway"
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path, "--jobs", "2"))
    assert result.exit_code == 0, result.output
    assert f"{built} already complete" in result.output
    assert shard_digests(tmp_path / "msp") == shard_digests(store)
    assert not list(shards_dir.glob(".*tmp*"))
    assert verify_store(tmp_path / "msp")[0] == []


def test_lock_stops_a_second_build(tiny, tmp_path):
    msp, musan, _, _ = tiny
    with st.store_lock(tmp_path / "msp"):
        result = runner.invoke(app, superset_cmd(msp, musan, tmp_path))
    assert result.exit_code == 2
    assert "another build is writing" in result.output


def test_verify_catches_a_damaged_shard(tiny, tmp_path):
    import shutil

    _, _, store, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    victim = sorted((copy / "shards").glob("superset-*.tar"))[0]
    data = bytearray(victim.read_bytes())
    data[2000] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(copy)])
    assert result.exit_code == 1
    assert "sha256 differs" in result.output


def test_dask_backend_gives_the_same_shards(tiny, tmp_path):
    distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is a test dependency")
    msp, musan, store, _ = tiny
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        result = runner.invoke(app, superset_cmd(msp, musan, tmp_path, "--backend", "dask",
                                                 "--scheduler", cluster.scheduler_address))
    assert result.exit_code == 0, result.output
    assert shard_digests(tmp_path / "msp") == shard_digests(store)


# --- bad input -----------------------------------------------------------------------------

def test_bad_audio_goes_to_rejects_and_the_build_goes_on(tmp_path):
    msp, musan = make_tiny_corpus(tmp_path / "c", per_split=(4, 1, 0))
    audios = sorted((msp / "Audios").glob("*.wav"))
    audios[0].write_bytes(audios[0].read_bytes()[:30])  # truncated inside the header
    sf.write(audios[1], np.zeros(SR, dtype=np.float32), SR)  # silent
    sf.write(audios[2], np.stack([_voice(np.random.default_rng(5), 1.0, 200)] * 2, axis=1), 44100)  # stereo 44.1k
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path / "out", "--jobs", "1", "--metrics", "stoi"))
    assert result.exit_code == 0, result.output
    store = tmp_path / "out" / "msp"
    rejects = list(csv.DictReader(open(store / REJECTS)))
    reasons = {Path(r["file"]).name: r["reason"] for r in rejects}
    assert audios[0].name in reasons and audios[1].name in reasons
    assert "silent" in reasons[audios[1].name]
    assert audios[2].name not in reasons  # resampled and downmixed, kept
    table = pq.read_table(store / TABLE).to_pydict()
    assert set(table["utt_id"]) == {"tiny_Train_02", "tiny_Train_03", "tiny_Validation_00"}
    assert "rejects           2 " in result.output
    manifest = json.loads((store / MANIFEST).read_text())
    assert manifest["stages"]["superset"]["totals"]["rejects"] == 2
    assert verify_store(store)[0] == []


def test_missing_root_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["superset", "--corpus", "msp", "--root", str(tmp_path / "nope"),
                                 "--noise-root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "nope" in result.output


def test_label_file_without_expected_columns_stops_at_once(tmp_path):
    msp, musan = make_tiny_corpus(tmp_path / "c", per_split=(1, 0, 0))
    (msp / "Labels" / "labels_consensus.csv").write_text("Name,Emotion\nx.wav,A\n")
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path / "o"))
    assert result.exit_code == 2
    assert "labels_consensus.csv" in result.output and "EmoClass" in result.output
    assert result.output.strip().count("\n") == 0


# --- level index on a real store -------------------------------------------------------------

@pytest.mark.parametrize("metric", ["stoi", "pesq", "fwsnrseg"])
def test_level_index_entries_resolve_to_their_samples(tiny, tmp_path, metric):
    import shutil

    _, _, store, _ = tiny
    copy = tmp_path / "msp"
    shutil.copytree(store, copy)
    result = runner.invoke(app, ["score", str(copy), "--metric", metric, "--quant", "uniform", "--levels", "3",
                                 "--min-per-level", "1"])
    assert result.exit_code == 0, result.output
    reader = open_store(copy)
    index = reader.level_index(metric, "uniform")
    assert index.path == copy / "levels" / f"{metric}-uniform-k3.json"
    table = {r["key"]: r for r in pq.read_table(copy / TABLE).to_pylist()}
    members = [index.members("train", level) for level in (1, 2, 3)]
    assert sum(len(m) for m in members) == 16  # every train mix has a level
    level_means = []
    for m in members:
        values = []
        clips = reader.clips(m)
        by_key = reader.read_audio(m.key)
        for i, (key, label) in enumerate(zip(m.key, m.label)):
            wav = clips.audio(i)
            assert wav.size == table[key]["num_samples"] and label == table[key]["label"]
            assert np.array_equal(wav, by_key[i])
            values.append(table[key][metric])
        level_means.append(np.mean(values))
    assert level_means[0] > level_means[1] > level_means[2]  # level 1 = least distorted


def test_mix_pesq_cannot_score_stores_nan_and_the_reason(tmp_path):
    msp, musan = make_tiny_corpus(tmp_path / "c", per_split=(2, 0, 0))
    short = sorted((msp / "Audios").glob("*.wav"))[0]
    sf.write(short, _voice(np.random.default_rng(9), 0.2, 180), SR)  # under PESQ's 1/4 s minimum
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path / "out", "--jobs", "1"))
    assert result.exit_code == 0, result.output
    assert "PESQ failures     4 " in result.output  # 2 bins x 2 noise types of the short one
    rows = [r for r in pq.read_table(tmp_path / "out" / "msp" / TABLE).to_pylist() if r["subset"] == "superset"]
    failed = [r for r in rows if r["utt_id"] == short.stem]
    assert len(failed) == 4 and all(np.isnan(r["pesq"]) and "pesq:" in r["errors"] for r in failed)
    assert all(np.isfinite(r["pesq"]) and r["errors"] == "" for r in rows if r["utt_id"] != short.stem)


def test_meld_superset_from_mp4_media_with_broken_and_missing_files(tmp_path):
    from test_corpora import make_meld, meld_row, write_mp4

    _, musan = make_tiny_corpus(tmp_path / "noise", per_split=(0, 0, 0))
    rows = [meld_row(1, 0, 0, "anger"), meld_row(2, 0, 1, "joy"), meld_row(3, 0, 2, "surprise"),
            meld_row(4, 1, 0, "sadness"), meld_row(5, 1, 1, "neutral")]
    root = make_meld(tmp_path / "MELD.Raw", {"train": rows, "dev": [meld_row(1, 0, 0, "neutral")],
                                             "test": [meld_row(1, 3, 0, "joy")]})
    for name in ("dia0_utt0", "dia0_utt1", "dia0_utt2"):
        write_mp4(root / "train_splits" / f"{name}.mp4", 1.2)
    broken = write_mp4(root / "train_splits" / "dia1_utt0.mp4", 1.0)
    broken.write_bytes(broken.read_bytes()[:600])  # cut inside the container
    write_mp4(root / "dev_splits_complete" / "dia0_utt0.mp4", 1.0)
    result = runner.invoke(app, ["superset", "--corpus", "meld", "--root", str(root), "--noise-root", str(musan),
                                 "--out", str(tmp_path / "out"), "--bins", "1", "--metrics", "stoi", "--jobs", "1", "-q"])
    assert result.exit_code == 0, result.output
    store = tmp_path / "out" / "meld"
    reasons = {Path(r["file"]).name: r["reason"] for r in csv.DictReader(open(store / REJECTS))}
    assert "unreadable media" in reasons["dia1_utt0.mp4"]  # broken: found when decoding
    assert "media file not found" in reasons["dia1_utt1.mp4"]  # missing: found when listing
    assert "surprise" in reasons["dia0_utt2.mp4"]
    table = pq.read_table(store / TABLE).to_pydict()
    assert sorted(set(table["utt_id"])) == ["dev_dia0_utt0", "train_dia0_utt0", "train_dia0_utt1"]
    assert table["subset"].count("superset") == 3 * 2
    assert verify_store(store)[0] == []


def test_unwritable_output_is_a_one_line_error(tiny, tmp_path):
    msp, musan, _, _ = tiny
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = runner.invoke(app, superset_cmd(msp, musan, not_a_dir))
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and str(not_a_dir) in result.output

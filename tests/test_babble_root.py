"""Babble talkers from ``--babble-root`` (MUSAN's speech/ layout) instead of the corpus's own
utterances (mixer.babble): the talkers are only the root's files (train stages: the files not
held out; test sets: the held-out ones); a recipe store holds each recording once, keyed by
content, and renders every babble bit for bit as the audio build (materialize byte-identical,
verify --rescore exact); a missing or altered stored recording is refused; unreadable or
silent files are rejects with their reason; the stages' --help list the option."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mixer import babble
from mixer.cli import app
from mixer.plan import SupersetOptions, TestsetOptions, plan_kind_testsets, plan_superset
from mixer.records import NoiseFile, Utterance
from shards.errors import StoreError
from shards.reader import open_store
from shards.verify import verify_store
from shards.vocab import BABBLE_SUBSET, REJECTS, TABLE, babble_key
from test_distortions import assert_materializes_as_the_audio_build
from test_superset import SR, make_tiny_corpus, superset_cmd

runner = CliRunner()


def _talker(rng, seconds: float) -> np.ndarray:
    """A voice-like signal: harmonics of a gliding f0 under a syllable-rate envelope."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 100 + 80 * rng.random() + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wav = sum(np.sin(k * phase + rng.random()) / k for k in range(1, 6))
    return (0.1 * wav * (0.3 + 0.7 * np.sin(2 * np.pi * 4 * t) ** 2)).astype(np.float32)


def make_babble_root(root: Path, count: int = 12, bad: bool = False) -> Path:
    """``count`` recordings in MUSAN's speech/<source>/ layout (some shorter than an utterance:
    looped; some longer: cut), plus with ``bad`` a silent and an unreadable file."""
    rng = np.random.default_rng(5)
    for i in range(count):
        folder = root / "speech" / ("librivox" if i % 2 else "us-gov")
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"speech-{folder.name}-{i:04d}.wav", _talker(rng, 0.6 + 0.4 * i), SR, subtype="PCM_16")
    if bad:
        sf.write(root / "speech" / "librivox" / "silent.wav", np.zeros(SR, dtype=np.float32), SR, subtype="PCM_16")
        (root / "speech" / "us-gov" / "broken.wav").write_bytes(b"RIFF0000WAVEnot audio at all")
    return root


def _table(store: Path) -> list[dict]:
    return pq.read_table(store / TABLE).to_pylist()


@pytest.fixture(scope="module")
def babble_pair(tmp_path_factory):
    """(audio store, recipe store, babble files): superset, fixed-snr and test sets with babble
    from a babble root, STOI only, 2 bins."""
    root = tmp_path_factory.mktemp("babble_root")
    msp, musan = make_tiny_corpus(root, per_split=(4, 2, 2))
    speech = make_babble_root(root / "musan_speech", bad=True)
    stores = []
    for mixes in ("audio", "recipe"):
        common = ["--jobs", "1", "--mixes", mixes, "--kinds", "noise,babble", "--babble-root", str(speech)]
        result = runner.invoke(app, superset_cmd(msp, musan, root / mixes, *common, "--metrics", "stoi"))
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["fixed-snr", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan),
                                     "--out", str(root / mixes), "--utts-per-shard", "2", "--quiet", *common])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["testsets", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan),
                                     "--out", str(root / mixes), "--utts-per-shard", "2", "--quiet", "--metrics",
                                     "stoi", *common])
        assert result.exit_code == 0, result.output
        stores.append(root / mixes / "msp")
    files, _ = babble.prepare(speech)
    return stores[0], stores[1], files


def _babble_rows(store: Path) -> list[dict]:
    return [r for r in _table(store) if r.get("kind") == "babble"]


def test_talkers_come_only_from_the_babble_roots_files_train_and_test_apart(babble_pair):
    audio_dir, _, files = babble_pair
    train = {babble_key(f.babble_id) for f in babble.for_role(files, babble.TRAIN_ROLE, "root")}
    test = {babble_key(f.babble_id) for f in babble.for_role(files, babble.TEST_ROLE, "root")}
    assert train and test and not train & test and len(train | test) == len(files)
    all_rows = _babble_rows(audio_dir)
    assert {r["subset"] for r in all_rows} == {"superset", "fixed_snr", "test_babble0", "test_babble5", "test_babble10"}
    tested = [t for r in all_rows if r["subset"].startswith("test_") for t in json.loads(r["talker_ids"])]
    assert tested and set(tested) <= test
    rows = [r for r in all_rows if not r["subset"].startswith("test_")]
    used = [t for r in rows for t in json.loads(r["talker_ids"])]
    assert used and set(used) <= train
    assert len(set(used)) > 3  # drawn across the files, not one fixed handful
    utt_ids = {r["utt_id"] for r in _table(audio_dir)}
    assert not set(used) & utt_ids  # never the corpus's own utterances
    assert all(3 <= len(json.loads(r["talker_ids"])) <= 7 for r in rows)


def test_test_sets_draw_only_the_held_out_files():
    files = [babble.BabbleFile(f"{i:016x}", f"speech/x/{i}.wav", f"/nowhere/{i}.wav", SR) for i in range(60)]
    held_out = babble.for_role(files, babble.TEST_ROLE, "root")
    train = babble.for_role(files, babble.TRAIN_ROLE, "root")
    assert len(held_out) + len(train) == 60 and 0 < len(held_out) < 30
    # the side of a file depends on its content id alone: not on the other files
    assert babble.for_role(files[:30], babble.TEST_ROLE, "root") == tuple(f for f in held_out if f in files[:30])
    utts = [Utterance(f"t{i}", f"/nowhere/t{i}.wav", "angry", "test", speaker=str(i % 2)) for i in range(3)]
    noise = [NoiseFile("n0", "/nowhere/n0.wav", "noise", SR, SR)]
    tasks = plan_kind_testsets(utts, noise, TestsetOptions(), ("babble",), babble_files=held_out)
    used = {t.utt_id for task in tasks for j in task.jobs for m in j.mixes for t in m.talkers}
    assert used and used <= {babble_key(f.babble_id) for f in held_out}
    # and the superset's from the others; seeded: the same plan twice
    train_utts = [Utterance(f"u{i}", f"/nowhere/u{i}.wav", "happy", "train", speaker=str(i)) for i in range(3)]
    plans = [plan_superset(train_utts, noise, SupersetOptions(bins=4, noise_types=("noise",)), ("babble",),
                           babble_files=train) for _ in range(2)]
    assert repr(plans[0]) == repr(plans[1])
    used = {t.utt_id for task in plans[0] for j in task.jobs for m in j.mixes for t in m.talkers}
    assert used and used <= {babble_key(f.babble_id) for f in train}


def test_recipe_store_renders_babble_bit_for_bit_as_the_audio_build(babble_pair, tmp_path):
    audio_dir, recipe_dir, _ = babble_pair
    keys = [r["key"] for r in _babble_rows(audio_dir)]
    audio, recipe = open_store(audio_dir), open_store(recipe_dir)
    for key, x, y in zip(keys, audio.read_audio(keys), recipe.read_audio(keys)):
        assert x.dtype == y.dtype and np.array_equal(x, y), key
    assert_materializes_as_the_audio_build(recipe_dir, audio_dir, tmp_path / "materialized", rescore=30)


def test_babble_recordings_are_stored_once_per_recipe_store_keyed_by_content(babble_pair):
    _, recipe_dir, _ = babble_pair
    table = _table(recipe_dir)
    stored = [r["key"] for r in table if r["subset"] == BABBLE_SUBSET]
    used = {t for r in _babble_rows(recipe_dir) for t in json.loads(r["talker_ids"])}
    assert sorted(stored) == sorted(used)  # both stages' talkers, each once
    names = sorted(p.name for p in (recipe_dir / "shards").glob(f"{BABBLE_SUBSET}-*.tar"))
    assert names == sorted(f"{BABBLE_SUBSET}-{k.removeprefix('__babble__')}-000000.tar" for k in used)


def test_a_missing_or_altered_babble_recording_is_refused(babble_pair, tmp_path):
    keys = [r["key"] for r in _babble_rows(babble_pair[1])]
    store = Path(shutil.copytree(babble_pair[1], tmp_path / "missing"))
    shard = sorted((store / "shards").glob(f"{BABBLE_SUBSET}-*.tar"))[0]
    shard.unlink()
    with pytest.raises(StoreError, match=f"{shard.relative_to(store)} is missing"):
        open_store(store)
    store = Path(shutil.copytree(babble_pair[1], tmp_path / "altered"))
    shard = sorted((store / "shards").glob(f"{BABBLE_SUBSET}-*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError) as caught:
        open_store(store).clips(keys)
    assert str(shard) in str(caught.value) and "sha256 differs" in str(caught.value)
    assert any("sha256 differs" in p for p in verify_store(store, progress=False)[0])


def test_unreadable_or_silent_recordings_are_rejects_with_their_reason(babble_pair, tmp_path):
    root = make_babble_root(tmp_path / "speech_root", count=2, bad=True)
    files, rejects = babble.prepare(root)
    assert [f.babble_file for f in files] == ["speech/librivox/speech-librivox-0001.wav",
                                              "speech/us-gov/speech-us-gov-0000.wav"]
    reasons = {Path(r.file).name: r.reason for r in rejects}
    assert set(reasons) == {"silent.wav", "broken.wav"}
    assert "silent" in reasons["silent.wav"] and reasons["broken.wav"].startswith("babble talker: ")
    written = (babble_pair[0] / REJECTS).read_text()
    assert "silent.wav" in written and "broken.wav" in written
    empty = tmp_path / "empty"
    (empty / "speech" / "x").mkdir(parents=True)
    for where, problem in ((empty, "no usable speech recording"), (tmp_path / "nothing", "folder not found")):
        result = runner.invoke(app, superset_cmd(tmp_path, tmp_path, tmp_path / "o", "--kinds", "babble",
                                                 "--babble-root", str(where)))
        assert result.exit_code == 2 and problem in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_the_stages_list_the_option_and_refuse_it_without_babble(tmp_path):
    for stage in ("superset", "testsets", "fixed-snr"):
        result = runner.invoke(app, [stage, "--help"], terminal_width=200)
        assert result.exit_code == 0 and "--babble-root" in result.output, stage
    result = runner.invoke(app, superset_cmd(tmp_path, tmp_path, tmp_path / "o", "--kinds", "noise",
                                             "--babble-root", str(tmp_path)))
    assert result.exit_code == 2 and "add babble to --kinds" in result.output

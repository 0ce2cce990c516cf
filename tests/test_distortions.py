"""Distortion kinds beyond additive noise (shards.distortions): babble, reverb, reverb+noise.

The default superset stays byte for byte the store it was before the kinds existed; every
kind renders the same bits from its recipe as in its audio build; babble never uses the
target's speaker and stays in its split; reverb is aligned on the RIR's largest tap, keeps
the input's length and mean power; real RIRs: STOI puts the house rooms above the concert
hall; bad RIR files are rejects with their reason; a missing or altered stored RIR is refused."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mixer.cli import app
from shards.errors import StoreError
from shards.reader import open_store
from shards.verify import verify_store
from shards.vocab import REJECTS, RIR_SUBSET, TABLE
from earlier_code import prep_at, store_digests
from test_superset import SR, make_tiny_corpus, superset_cmd

runner = CliRunner()
ALL_KINDS = "noise,music,babble,reverb,reverb+noise"
HOUSE_RIRS = ("house/kitchen.wav", "house/dining-room.wav")
HALL_RIRS = ("pori_hall/s1_r1_bd.wav",)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_materializes_as_the_audio_build(recipe_dir: Path, audio_dir: Path, out: Path, rescore: int) -> None:
    """``prep materialize`` of the recipe store writes the audio build byte for byte, and
    ``verify --rescore`` finds no mix that differs."""
    result = runner.invoke(app, ["materialize", str(recipe_dir), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    for path in sorted((audio_dir / "shards").glob("*.tar")) + [audio_dir / TABLE, audio_dir / REJECTS]:
        assert _digest(path) == _digest(out / path.relative_to(audio_dir)), path.name
    result = runner.invoke(app, ["verify", str(recipe_dir), "-q", "--rescore", str(rescore)])
    assert result.exit_code == 0 and f"rescored {rescore} mixes (seed 0): 0 differ" in result.output, result.output


def _synthetic_rirs(folder: Path) -> Path:
    """Two small rooms (exponential decays with a direct tap), one stereo 48 kHz: no shared data needed."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    for name, t60, rate, channels in (("small", 0.25, SR, 1), ("large", 0.8, 48000, 2)):
        n = int(rate * t60 * 1.2)
        t = np.arange(n) / rate
        tail = rng.standard_normal((n, channels)) * np.exp(-6.9 * t / t60)[:, None] * 0.05
        tail[: int(0.003 * rate)] = 0.0
        tail[int(0.002 * rate)] = 0.9  # the direct sound: the largest tap
        sf.write(folder / f"{name}.wav", tail.astype(np.float32), rate, subtype="FLOAT")
    return folder


@pytest.fixture(scope="module")
def kinds_pair(tmp_path_factory):
    """(audio store, recipe store, corpus, RIR root): every kind, 2 bins, STOI only."""
    root = tmp_path_factory.mktemp("kinds")
    msp, musan = make_tiny_corpus(root, per_split=(6, 4, 0))
    rirs = _synthetic_rirs(root / "rirs")
    stores = []
    for mixes in ("audio", "recipe"):
        result = runner.invoke(app, superset_cmd(msp, musan, root / mixes, "--jobs", "1", "--mixes", mixes,
                                                 "--kinds", ALL_KINDS, "--rir-root", str(rirs), "--metrics", "stoi"))
        assert result.exit_code == 0, result.output
        stores.append(root / mixes / "msp")
    return stores[0], stores[1], (msp, musan), rirs


def _table(store: Path) -> list[dict]:
    return pq.read_table(store / TABLE).to_pylist()


# --- the default superset: byte for byte as before ----------------------------------------

#: The code before the distortion registry.
BEFORE_KINDS = "46edb12"


def test_the_default_superset_is_byte_identical_to_the_store_before_the_kinds(tmp_path):
    """The default superset (noise,music, 15 bins: 30 mixes per utterance, STOI, PESQ and
    fwSNRseg) as audio: the same shards, table, rejects and manifest as the code before the
    kinds writes on this machine. (A recipe store's noise is stored once per store since;
    recipe stores render as their audio build: test_recipe_store.)"""
    msp, musan = make_tiny_corpus(tmp_path)
    args = ["superset", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan), "--utts-per-shard", "4",
            "--jobs", "1", "--quiet", "--mixes", "audio"]
    prep_at(BEFORE_KINDS, [*args, "--out", str(tmp_path / "before")], tmp_path)
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "now")])
    assert result.exit_code == 0, result.output
    before, now = tmp_path / "before" / "msp", tmp_path / "now" / "msp"
    assert store_digests(now, tmp_path / "now") == store_digests(before, tmp_path / "before")
    assert "kind" not in pq.read_schema(now / TABLE).names


def test_other_kinds_change_no_noise_or_music_mix(kinds_pair, tmp_path):
    audio, _, (msp, musan), _ = kinds_pair
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path, "--jobs", "1", "--metrics", "stoi"))
    assert result.exit_code == 0, result.output
    plain = {r["key"]: r for r in _table(tmp_path / "msp") if r["subset"] == "superset"}
    kinds = {r["key"]: r for r in _table(audio) if r["subset"] == "superset"}
    assert set(plain) < set(kinds)
    keys = sorted(plain)
    for x, y in zip(open_store(tmp_path / "msp").read_audio(keys), open_store(audio).read_audio(keys)):
        assert np.array_equal(x, y)
    assert all(kinds[k]["kind"] == plain[k]["noise_type"] for k in keys)
    # scored in a larger batch (the utterance's other kinds too): equal to the batched paths' 1e-12
    assert np.allclose([kinds[k]["stoi"] for k in keys], [plain[k]["stoi"] for k in keys], rtol=0, atol=1e-9)


# --- every kind: recipe == audio ------------------------------------------------------------

def test_every_kind_renders_the_same_bits_from_its_recipe_as_its_audio_build(kinds_pair, tmp_path):
    audio_dir, recipe_dir, _, _ = kinds_pair
    rows = [r for r in _table(audio_dir) if r["subset"] == "superset"]
    assert {r["kind"] for r in rows} == {"noise", "music", "babble", "reverb", "reverb+noise"}
    per_utt = {}
    for r in rows:
        per_utt.setdefault(r["utt_id"], []).append(r["kind"])
    assert all(sorted(k) == sorted(["noise", "music", "babble", "reverb", "reverb+noise"] * 2) for k in per_utt.values())
    keys = [r["key"] for r in rows]
    audio, recipe = open_store(audio_dir), open_store(recipe_dir)
    for key, x, y in zip(keys, audio.read_audio(keys), recipe.read_audio(keys)):
        assert x.dtype == y.dtype and np.array_equal(x, y), key
    recipe_rows = {r["key"]: r for r in _table(recipe_dir)}
    skip = {"shard", "flac_offset", "flac_size", "json_offset", "json_size"}
    for r in rows:
        other = recipe_rows[r["key"]]
        assert all(r[c] == other[c] or (r[c] != r[c] and other[c] != other[c]) for c in r if c not in skip), r["key"]
    # prep materialize writes the audio store byte for byte; verify --rescore finds nothing
    assert_materializes_as_the_audio_build(recipe_dir, audio_dir, tmp_path / "materialized", rescore=40)


def test_every_kind_gives_the_same_bytes_whatever_the_number_of_workers(kinds_pair, tmp_path):
    audio_dir, _, (msp, musan), rirs = kinds_pair
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path, "--jobs", "2", "--kinds", ALL_KINDS,
                                             "--rir-root", str(rirs), "--metrics", "stoi"))
    assert result.exit_code == 0, result.output
    for path in sorted((audio_dir / "shards").glob("*.tar")) + [audio_dir / TABLE]:
        assert _digest(path) == _digest(tmp_path / "msp" / path.relative_to(audio_dir)), path.name
    assert verify_store(audio_dir, progress=False)[0] == []


def test_rirs_are_stored_once_per_recipe_store_keyed_by_content(kinds_pair):
    _, recipe_dir, _, rirs = kinds_pair
    stored = [r for r in _table(recipe_dir) if r["subset"] == RIR_SUBSET]
    used = {r["rir_id"] for r in _table(recipe_dir) if r["subset"] == "superset" and r["rir_id"]}
    assert sorted(r["rir_id"] for r in stored) == sorted(used) and len(used) == 2
    assert sorted(p.name for p in (recipe_dir / "shards").glob("rir-*.tar")) == sorted(
        f"rir-{rir_id}-000000.tar" for rir_id in used)
    # babble talkers are the store's own clean utterances: nothing else is stored for them
    assert {r["subset"] for r in _table(recipe_dir)} == {"clean", "noise", "rir", "superset"}


# --- babble -------------------------------------------------------------------------------

def test_babble_never_uses_the_target_speaker_and_its_talkers_come_from_the_same_split(kinds_pair):
    rows = _table(kinds_pair[0])
    clean = {r["utt_id"]: r for r in rows if r["subset"] == "clean"}
    babble = [r for r in rows if r["kind"] == "babble"]
    assert babble
    for r in babble:
        talkers = json.loads(r["talker_ids"])
        assert talkers and len(talkers) == len(set(talkers)) == len(json.loads(r["talker_gains"]))
        for talker in talkers:
            assert clean[talker]["speaker"] != r["speaker"] and clean[talker]["split"] == r["split"]


def test_babble_plans_three_to_seven_talkers_of_other_speakers():
    from mixer.plan import SupersetOptions, plan_superset
    from mixer.records import NoiseFile, Utterance

    utts = [Utterance(f"u{i:03d}", f"/x/u{i:03d}.wav", "happy", split, speaker=f"spk{i % 5}")
            for i, split in enumerate(["train"] * 40 + ["validation"] * 20)]
    noises = [NoiseFile("n0", "/x/n0.wav", "noise", SR * 10, SR), NoiseFile("m0", "/x/m0.wav", "music", SR * 10, SR)]
    tasks = plan_superset(utts, noises, SupersetOptions(bins=15), ("babble",))
    by_id = {u.utt_id: u for u in utts}
    counts = set()
    for job in (j for t in tasks for j in t.jobs):
        mixes = [m for m in job.mixes if m.kind == "babble"]
        assert len(mixes) == 15 and len(job.mixes) == 45
        for m in mixes:
            counts.add(len(m.talkers))
            assert all(by_id[t.utt_id].speaker != job.utt.speaker and by_id[t.utt_id].split == job.utt.split
                       for t in m.talkers)
    assert counts == set(range(3, 8))
    again = plan_superset(list(reversed(utts)), noises, SupersetOptions(bins=15), ("babble",))
    assert [t.fingerprint() for t in tasks] == [t.fingerprint() for t in again]


def test_a_talker_silent_where_it_is_cut_is_a_reject_naming_that_talkers_file():
    from mixer.audio import AudioError
    from mixer.distortions import make_babble
    from mixer.plan import MixSpec, TalkerRef

    class Talkers:
        def talker(self, ref):
            return np.zeros(SR, np.float32) if ref.utt_id == "quiet" else np.ones(SR, np.float32) * 0.1

    talkers = tuple(TalkerRef(u, f"/x/{u}.wav", f"spk-{u}", 0.0) for u in ("loud", "quiet", "loud2"))
    spec = MixSpec("u__s00-babble", "babble", "", "", 0, 0.0, 5.0, kind="babble", talkers=talkers)
    clean = np.sin(np.arange(SR // 2) / 7.0).astype(np.float32) * 0.3
    with pytest.raises(AudioError) as caught:
        make_babble(spec, clean, Talkers())
    # the second talker is the silent one: the reject's file is its file, not the first talker's
    assert caught.value.path == "/x/quiet.wav" and "talker quiet is silent where it is cut" in caught.value.reason


# --- reverb -------------------------------------------------------------------------------

class _RirOnly:
    def __init__(self, rir):
        self._rir = rir

    def rir(self, ref):
        return self._rir


def _reverb(clean: np.ndarray, rir: np.ndarray, kind: str = "reverb"):
    from mixer.distortions import make_reverb
    from mixer.plan import MixSpec, RirRef

    spec = MixSpec("u__r00-reverb", "reverb", "", "", 0, 0.0, float("nan"), kind=kind,
                   rir=RirRef("0" * 16, "synthetic.wav", "/x/synthetic.wav", 0.3, 0.0))
    return make_reverb(spec, clean, _RirOnly(rir))


def test_reverb_is_aligned_on_the_largest_tap_and_keeps_length_and_mean_power():
    from mixer.mixing import quantize_pcm16

    rng = np.random.default_rng(3)
    clean = quantize_pcm16(0.1 * rng.standard_normal(SR))
    # a delayed pure tap: aligned on it, the output is the input itself
    delta = np.zeros(800, dtype=np.float32)
    delta[37] = 0.5
    wav, fields = _reverb(clean, delta)
    assert fields["rir_shift"] == 37 and wav.size == clean.size and np.array_equal(wav, clean)
    # a first arrival before the largest tap, and a tail: aligned on the largest (Kaldi's --shift-output)
    rir = np.zeros(4000, dtype=np.float32)
    rir[30], rir[120] = 0.3, -1.0
    rir[200:] = (0.02 * rng.standard_normal(3800) * np.exp(-np.arange(3800) / 800)).astype(np.float32)
    wav, fields = _reverb(clean, rir)
    assert fields["rir_shift"] == 120 and wav.size == clean.size
    full = np.convolve(clean.astype(np.float64), rir.astype(np.float64))
    expected = full[120:120 + clean.size] * fields["reverb_gain"]
    assert np.max(np.abs(wav - expected)) <= 0.5 / 32768 + 1e-12  # the 16-bit grid only
    power = float(np.mean(clean.astype(np.float64) ** 2))
    assert abs(float(np.mean(wav.astype(np.float64) ** 2)) / power - 1.0) < 1e-3
    assert fields["gain"] == 1.0 and fields["t60_s"] == 0.3


def test_schroeder_t60_and_drr_of_a_known_decay():
    from mixer.rir import direct_to_reverberant_db, schroeder_t60

    rng = np.random.default_rng(1)
    t = np.arange(int(1.5 * SR)) / SR
    rir = rng.standard_normal(t.size) * np.exp(-6.9078 * t / 0.6)  # energy falls 60 dB in 0.6 s
    assert abs(schroeder_t60(rir) - 0.6) < 0.03
    rir[100] = 50.0  # the direct sound: +-2.5 ms (40 samples) around it count as direct
    energy = rir**2
    direct = energy[60:141].sum()
    assert direct_to_reverberant_db(rir) == pytest.approx(10 * np.log10(direct / (energy.sum() - direct)), abs=1e-9)


def test_rir_files_silent_nan_or_too_long_are_rejects_with_their_reason(tmp_path):
    from mixer.rir import MAX_RIR_SECONDS, prepare

    folder = _synthetic_rirs(tmp_path / "rirs")
    sf.write(folder / "silent.wav", np.zeros(1000, dtype=np.float32), SR, subtype="FLOAT")
    bad = np.full(1000, 0.1, dtype=np.float32)
    bad[500] = np.nan
    sf.write(folder / "nan.wav", bad, SR, subtype="FLOAT")
    sf.write(folder / "long.wav", np.full(int(SR * (MAX_RIR_SECONDS + 1)), 0.01, dtype=np.float32), SR, subtype="FLOAT")
    rirs, rejects = prepare(folder)
    assert [r.rir_file for r in rirs] == ["large.wav", "small.wav"]
    reasons = {Path(r.file).name: r.reason for r in rejects}
    assert reasons["silent.wav"] == "room impulse response: silent audio (peak below -100 dBFS)"
    assert reasons["nan.wav"] == "room impulse response: audio holds NaN or infinite samples (first at 0.031 s)"
    assert reasons["long.wav"] == f"room impulse response: too long (6.000 s, the limit is {MAX_RIR_SECONDS:g} s)"
    large = rirs[0]
    assert large.num_samples == int(SR * 0.8 * 1.2) and large.stats_from == "estimated"
    assert 0.6 < large.t60_s < 1.0
    # the build lists them as rejects too and goes on with the others
    msp, musan = make_tiny_corpus(tmp_path / "corpus")
    result = runner.invoke(app, superset_cmd(msp, musan, tmp_path / "out", "--jobs", "1", "--metrics", "stoi",
                                             "--kinds", "reverb", "--rir-root", str(folder)))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "msp" / REJECTS).read_text()
    assert "silent.wav" in text and "nan.wav" in text and "too long" in text


def test_rooms_csv_gives_t60_and_drr_when_it_lists_the_file(tmp_path):
    from mixer.rir import prepare

    folder = _synthetic_rirs(tmp_path / "rirs")
    (folder / "rooms.csv").write_text("file,seconds,t30_s,t60_500_1k_s,drr_db,first_arrival_ms\nsmall,0.3,0.2,0.27,4.5,2\n")
    rirs = {r.rir_file: r for r in prepare(folder)[0]}
    assert (rirs["small.wav"].t60_s, rirs["small.wav"].drr_db, rirs["small.wav"].stats_from) == (0.27, 4.5, "rooms.csv")
    assert rirs["large.wav"].stats_from == "estimated"
    (folder / "rooms.csv").write_text("name,t60\nsmall,0.3\n")
    result = runner.invoke(app, superset_cmd(*make_tiny_corpus(tmp_path / "c"), tmp_path / "out", "--kinds", "reverb",
                                             "--rir-root", str(folder)))
    assert result.exit_code == 2 and "rooms.csv: no column file, t60_500_1k_s, drr_db" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_stoi_orders_the_house_rooms_above_the_concert_hall(shared_dir):
    from mixer.audio import load_audio
    from mixer.mixing import fit_pcm16
    from mixer.rir import load_rir, prepare
    from scoring.metrics import stoi_scores

    rir_root = shared_dir / "audio" / "rir"
    if not (rir_root / "house").is_dir() or not (rir_root / "pori_hall").is_dir():
        pytest.skip(f"needs the real RIRs in {rir_root}")
    rirs, rejects = prepare(rir_root)
    assert not rejects and {r.stats_from for r in rirs} == {"rooms.csv"}
    speech = sorted((shared_dir / "audio" / "emodb" / "wav").glob("*.wav"))[:2]
    house, hall = [], []
    for path in speech:
        clean, _ = fit_pcm16(load_audio(path))
        mixes = [_reverb(clean, load_rir(r.path))[0] for r in rirs]
        for rir, (value, _) in zip(rirs, stoi_scores(clean, mixes, SR)):
            (house if rir.rir_file.startswith("house/") else hall).append(value)
    assert len(house) == 36 and len(hall) == 24
    assert np.mean(house) > np.mean(hall) + 0.15 and np.median(house) > np.max(hall)


# --- refusals -----------------------------------------------------------------------------

def _rir_shard(store: Path) -> Path:
    return sorted((store / "shards").glob("rir-*.tar"))[0]


def _reverb_keys(store: Path) -> list[str]:
    return [r["key"] for r in _table(store) if r["kind"] in ("reverb", "reverb+noise") and r["subset"] == "superset"]


def test_a_recipe_store_with_a_missing_rir_is_refused_naming_the_file(kinds_pair, tmp_path):
    store = Path(shutil.copytree(kinds_pair[1], tmp_path / "missing"))
    rir = _rir_shard(store)
    rir.unlink()
    with pytest.raises(StoreError, match=f"{rir.relative_to(store)} is missing"):
        open_store(store)
    result = runner.invoke(app, ["verify", str(store), "-q"])
    assert result.exit_code == 1 and f"FAIL {rir.relative_to(store)}: missing" in result.output


def test_a_recipe_store_with_an_altered_rir_is_refused_naming_the_file(kinds_pair, tmp_path):
    store = Path(shutil.copytree(kinds_pair[1], tmp_path / "altered"))
    rir = _rir_shard(store)
    data = bytearray(rir.read_bytes())
    data[512 + 128 + 400] ^= 0x01  # one bit of one RIR sample; the same size
    rir.write_bytes(bytes(data))
    with pytest.raises(StoreError) as caught:
        open_store(store).clips(_reverb_keys(store))
    assert str(rir) in str(caught.value) and "sha256 differs" in str(caught.value)
    assert any("sha256 differs" in p for p in verify_store(store, progress=False)[0])


def test_kinds_options_are_listed_and_bad_values_are_one_line(tmp_path):
    result = runner.invoke(app, ["superset", "--help"])
    assert result.exit_code == 0 and "--kinds" in result.output and "--rir-root" in result.output
    msp, musan = make_tiny_corpus(tmp_path)
    cases = [
        (["--kinds", "noise,thunder"], "--kinds 'noise,thunder': expected a comma-separated list of"),
        (["--kinds", "reverb"], "reverberation needs room impulse responses (--rir-root DIR or --sim-rooms N)"),
        (["--kinds", "reverb", "--sim-rooms", "2", "--sim-rt60", "0.5"], "--sim-rt60 '0.5': expected min,max"),
        (["--kinds", "noise", "--noise-types", "noise"], "--kinds and --noise-types both given"),
        (["--kinds", "reverb", "--rir-root", str(tmp_path / "none")], "RIR root not found"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, superset_cmd(msp, musan, tmp_path / "out", *extra))
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


# --- simulated rooms ------------------------------------------------------------------------

def test_simulated_rooms_are_generated_once_per_store_stored_and_reused(tmp_path, monkeypatch):
    pytest.importorskip("pyroomacoustics")
    import mixer.rooms

    msp, musan = make_tiny_corpus(tmp_path / "corpus")

    def build(out: Path, *extra: str):
        result = runner.invoke(app, superset_cmd(msp, musan, out, "--jobs", "1", "--metrics", "stoi", "--kinds",
                                                 "reverb", "--sim-rooms", "2", "--sim-rt60", "0.2,0.3", *extra))
        assert result.exit_code == 0, result.output
        return result.output

    build(tmp_path / "a")
    folders = list((tmp_path / "a" / "msp" / "rirs").glob("simulated-*"))
    assert len(folders) == 1
    rooms = sorted(folders[0].glob("room-*.wav"))
    assert len(rooms) == 2 and (folders[0] / "simulation.json").is_file()
    stored = {p.name: (_digest(p), p.stat().st_mtime_ns) for p in rooms}
    rows = [r for r in _table(tmp_path / "a" / "msp") if r["subset"] == "superset"]
    assert {r["rir_file"] for r in rows} == {f"{folders[0].name}/{p.name}" for p in rooms}
    assert all(0.1 < r["t60_s"] < 0.6 for r in rows)
    # the same seed elsewhere: the same rooms, bit for bit
    build(tmp_path / "b")
    assert {p.name: _digest(p) for p in (tmp_path / "b" / "msp" / "rirs" / folders[0].name).glob("room-*.wav")} == {
        name: digest for name, (digest, _) in stored.items()}
    # a recipe store of them renders the audio build's bits
    build(tmp_path / "r", "--mixes", "recipe")
    keys = [r["key"] for r in rows]
    for x, y in zip(open_store(tmp_path / "a" / "msp").read_audio(keys), open_store(tmp_path / "r" / "msp").read_audio(keys)):
        assert np.array_equal(x, y)
    # a rerun reads the stored arrays and simulates nothing; its shards are complete already
    monkeypatch.setattr(mixer.rooms, "simulate_rir", lambda room: pytest.fail("a stored room was simulated again"))
    output = build(tmp_path / "a")
    assert "0 built" in output
    assert {p.name: (_digest(p), p.stat().st_mtime_ns) for p in rooms} == stored


def test_a_simulated_room_longer_than_the_rir_limit_is_cut_to_it_and_the_cut_recorded(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pyroomacoustics")
    import mixer.rooms
    from mixer import rir

    def resimulate(room: dict) -> np.ndarray:  # the full RIR again, from the room's drawn parameters
        return mixer.rooms.simulate_rir({k: room[k] for k in ("dims_m", "rt60_target_s", "source_m", "mic_m")})

    # the real limit (5 s) takes RT60 1.6 s and seconds of simulation to pass; a lower one shows the rule
    monkeypatch.setattr(mixer.rooms, "MAX_RIR_SECONDS", 0.5)
    folder = mixer.rooms.simulated_rooms(tmp_path, 2, (0.3, 0.3), seed=0)
    made = json.loads((folder / mixer.rooms.SIMULATION_FILE).read_text())["rooms"]
    printed = capsys.readouterr().out
    for room in made:
        full = resimulate(room)
        stored = rir.load_rir(folder / room["file"])
        assert len(full) > 8000 and len(stored) == 8000  # 0.5 s at 16 kHz
        assert np.array_equal(stored, full[:8000])
        assert room["cut_from_s"] == len(full) / SR
        tail = np.sum(full[8000:].astype(np.float64) ** 2) / np.sum(full.astype(np.float64) ** 2)
        assert room["cut_tail_db"] == pytest.approx(10 * np.log10(tail)) and room["cut_tail_db"] < -20
        assert f"simulated {room['file']} (target RT60 0.30 s): RIR cut from {room['cut_from_s']:.2f} s" in printed
    found, rejects = rir.prepare(folder)
    assert len(found) == 2 and rejects == []
    # under the limit nothing is cut or recorded
    monkeypatch.setattr(mixer.rooms, "MAX_RIR_SECONDS", 5.0)
    folder = mixer.rooms.simulated_rooms(tmp_path / "b", 1, (0.3, 0.3), seed=0)
    (room,) = json.loads((folder / mixer.rooms.SIMULATION_FILE).read_text())["rooms"]
    full = resimulate(room)
    assert "cut_from_s" not in room and np.array_equal(rir.load_rir(folder / room["file"]), full)

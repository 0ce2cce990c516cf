"""Distortion metrics: golden values, agreement with the reference implementations, batched ==
single, and the no-exception contract of score_mixes."""
from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pystoi
import pytest
from scipy.signal import resample_poly

from scoring._resample import BlockResampler
from scoring.fwsnrseg import FwSnrSegReference, fwsnrseg
from scoring.metrics import METRICS, score_mix, score_mixes
from scoring.pesq_score import pesq_wb
from scoring.stoi import StoiReference, _octave_resampling_window, stoi

REPO_ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-6


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def golden(golden_dir):
    pairs = np.load(golden_dir / "metric_pairs.npz")
    values = json.loads((golden_dir / "metric_values.json").read_text())
    return [(case, pairs[case["name"] + "__ref"], pairs[case["name"] + "__deg"])
            for case in values["cases"]]


@pytest.fixture(scope="module")
def speech(request):
    """A 4 s clean utterance at 16 kHz (float64): real speech from the golden pairs, or, where
    ../shared is absent (users' checkouts), a synthetic utterance of the demo corpus, so that
    the agreement tests below still run against pystoi and the reference fwSNRseg."""
    if (REPO_ROOT.parent / "shared" / "golden" / "metric_pairs.npz").is_file():
        golden = request.getfixturevalue("golden")
        case, ref, _ = next(g for g in golden if g[0]["fs"] == 16000 and g[0]["samples"] == 64000)
        return ref.astype(np.float64)
    from mixer import demo_corpus as demo

    rng = np.random.default_rng(7)
    return demo._speech(rng, demo._voice(rng, female=False), demo._style(rng, "neutral"), 4.0).astype(np.float64)


@pytest.fixture(scope="module")
def bench_module():
    """bench/metrics.py, for its straightforward pysepm-style fwSNRseg."""
    spec = importlib.util.spec_from_file_location("bench_metrics", REPO_ROOT / "bench/metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def noisy(clean, snr_db, rng, modulated=True):
    """clean + white noise at snr_db (amplitude-modulated to make it speech-like in time)."""
    noise = rng.standard_normal(clean.shape)
    if modulated:
        noise *= 0.3 + np.abs(np.sin(np.arange(clean.size) * 2 * np.pi * 3 / clean.size))
    gain = np.sqrt(np.mean(clean**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return clean + gain * noise


# ---------------------------------------------------------------------------------- golden
def test_golden_stoi_and_estoi(golden):
    for case, ref, deg in golden:
        assert stoi(ref, deg, case["fs"]) == pytest.approx(case["stoi"], abs=TOL), case["name"]
        assert stoi(ref, deg, case["fs"], extended=True) == pytest.approx(
            case["estoi"], abs=TOL), case["name"]


def test_golden_fwsnrseg(golden):
    for case, ref, deg in golden:
        assert fwsnrseg(ref, deg, case["fs"]) == pytest.approx(
            case["fwsnrseg"], abs=TOL), case["name"]


def test_golden_pesq_wb(golden):
    scored = 0
    for case, ref, deg in golden:
        value, reason = pesq_wb(ref, deg, case["fs"])
        if "pesq_wb" in case:
            assert reason == ""
            assert value == pytest.approx(case["pesq_wb"], abs=TOL), case["name"]
            scored += 1
        else:  # the 8 kHz case: wide-band PESQ is not defined there
            assert case["fs"] == 8000
            assert math.isnan(value) and "16000" in reason
    assert scored == len(golden) - 1


def test_golden_through_score_mixes(golden):
    """The workers' entry point gives the golden numbers too (grouped by clean utterance)."""
    for case, ref, deg in golden[:3] + [g for g in golden if g[0]["name"] == "identical"]:
        result = score_mix(ref, deg, case["fs"])
        assert result["errors"] == ""
        assert result["stoi"] == pytest.approx(case["stoi"], abs=TOL)
        assert result["pesq"] == pytest.approx(case["pesq_wb"], abs=TOL)
        assert result["fwsnrseg"] == pytest.approx(case["fwsnrseg"], abs=TOL)


# ---------------------------------------------------------------------------------- STOI
@pytest.mark.parametrize("fs", [16000, 22050, 44100, 10000, 8000])
def test_stoi_matches_pystoi_on_other_rates_and_lengths(speech, fs):
    rng = np.random.default_rng(fs)
    clean = resample_poly(speech, fs // math.gcd(fs, 16000), 16000 // math.gcd(fs, 16000))
    for seconds, snr in [(2.0, 0.0), (1.37, 12.0)]:
        x = clean[: int(seconds * fs)]
        y = noisy(x, snr, rng)
        for extended in (False, True):
            assert stoi(x, y, fs, extended) == pytest.approx(
                pystoi.stoi(x, y, fs, extended), abs=TOL), (seconds, extended)


def test_stoi_matches_pystoi_on_float32_and_silence(speech):
    rng = np.random.default_rng(7)
    x = np.concatenate([np.zeros(8000), speech[:24000], 1e-4 * rng.standard_normal(5000)])
    y = noisy(x, 5.0, rng, modulated=False)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    for extended in (False, True):
        assert stoi(x32, y32, 16000, extended) == pytest.approx(
            pystoi.stoi(x32, y32, 16000, extended), abs=TOL)


def test_stoi_batched_equals_single(speech):
    rng = np.random.default_rng(3)
    mixes = [noisy(speech, snr, rng).astype(np.float32) for snr in (-5, 0, 7, 15, 30)]
    mixes.append(speech.astype(np.float32))
    for fs in (16000, 22050):
        x, ys = speech, mixes
        if fs != 16000:  # slower path (long anti-aliasing filter): fewer, shorter mixes
            x = resample_poly(speech[:32000], 441, 320)
            ys = [resample_poly(y[:32000], 441, 320) for y in mixes[:3]]
        for extended in (False, True):
            singles = [stoi(x, y, fs, extended) for y in ys]
            batched = StoiReference(x, fs, extended).score_many(ys)
            np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-12)
            reference = StoiReference(x, fs, extended)
            assert reference.score(ys[2]) == pytest.approx(singles[2], abs=1e-12)


def test_stoi_identical_is_one_and_too_short_is_like_pystoi(speech):
    assert stoi(speech, speech, 16000) == pytest.approx(1.0, abs=1e-12)
    short = speech[:4000]  # 0.25 s: fewer than 30 frames
    with pytest.warns(RuntimeWarning):
        assert stoi(short, short, 16000) == 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pystoi.stoi(short, short, 16000) == 1e-5
    with pytest.raises(ValueError):
        stoi(speech, speech[:-1], 16000)


@pytest.mark.parametrize("fs", [16000, 22050, 44100, 8000, 48000])
def test_block_resampler_equals_resample_poly(fs):
    window = _octave_resampling_window(10000, fs)
    resampler = BlockResampler(10000, fs, window)
    assert resampler.usable
    rng = np.random.default_rng(1)
    for n in (fs, 777, 50):
        x = rng.standard_normal((2, n))
        expected = resample_poly(x, 10000, fs, axis=-1, window=window)
        np.testing.assert_allclose(resampler(x), expected, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------- fwSNRseg
@pytest.mark.parametrize("fs,seconds", [(16000, 1.503), (22050, 1.0), (8000, 2.2)])
def test_fwsnrseg_matches_pysepm_style_reference(bench_module, speech, fs, seconds):
    rng = np.random.default_rng(11)
    x = resample_poly(speech, fs // math.gcd(fs, 16000), 16000 // math.gcd(fs, 16000))
    x = x[: int(seconds * fs)]
    for snr in (-5.0, 10.0, 40.0):
        y = noisy(x, snr, rng)
        assert fwsnrseg(x, y, fs) == pytest.approx(
            bench_module.reference_fwsnrseg(x, y, fs), abs=TOL)
    y = noisy(x, 3.0, rng)
    assert fwsnrseg(x, y, fs, 0.025, 0.5) == pytest.approx(
        bench_module.reference_fwsnrseg(x, y, fs, 0.025, 0.5), abs=TOL)


def test_fwsnrseg_batched_equals_single(speech):
    rng = np.random.default_rng(5)
    mixes = [noisy(speech, snr, rng).astype(np.float32) for snr in (-5, 0, 10, 30)]
    mixes.append(speech)
    singles = [fwsnrseg(speech, y, 16000) for y in mixes]
    np.testing.assert_allclose(FwSnrSegReference(speech, 16000).score_many(mixes), singles, rtol=0, atol=1e-12)
    assert FwSnrSegReference(speech, 16000).score(mixes[1]) == pytest.approx(singles[1], abs=1e-12)
    assert singles[-1] == 35.0  # identical signals: every frame at the upper clamp


# ---------------------------------------------------------------------------------- PESQ
def test_pesq_failures_give_nan_and_reason(speech):
    rng = np.random.default_rng(2)
    cases = {
        "silence": (np.zeros(32000, np.float32), rng.standard_normal(32000).astype(np.float32)),
        "too short": (speech[:1000], speech[:1000]),
        "all zeros": (np.zeros(32000), np.zeros(32000)),
        "non-finite": (speech, np.full_like(speech, np.nan)),
    }
    for name, (ref, deg) in cases.items():
        value, reason = pesq_wb(ref, deg)
        assert math.isnan(value) and reason, name
    value, reason = pesq_wb(speech, speech, 8000)
    assert math.isnan(value) and "16000" in reason
    value, reason = pesq_wb(speech, speech)
    assert reason == "" and value > 4.0


# ---------------------------------------------------------------------------------- score_mixes
def test_score_mixes_keys_values_and_unrequested_nan(speech):
    rng = np.random.default_rng(9)
    mixes = [noisy(speech, snr, rng).astype(np.float32) for snr in (0, 20)]
    results = score_mixes(speech, mixes)
    assert len(results) == 2
    for mix, result in zip(mixes, results):
        assert set(result) == set(METRICS) | {"errors"}
        assert result["errors"] == ""
        assert result["stoi"] == pytest.approx(pystoi.stoi(speech, mix, 16000), abs=TOL)
        assert result["pesq"] == pesq_wb(speech, mix)[0]
        assert result["fwsnrseg"] == pytest.approx(fwsnrseg(speech, mix, 16000), abs=1e-12)
    assert score_mix(speech, mixes[1]) == results[1]

    only = score_mixes(speech, mixes, metrics=("stoi",))
    for full, partial in zip(results, only):
        assert partial["stoi"] == full["stoi"]
        assert math.isnan(partial["pesq"]) and math.isnan(partial["fwsnrseg"])
        assert partial["errors"] == ""
    with pytest.raises(ValueError):
        score_mixes(speech, mixes, metrics=("snr",))


def test_score_mixes_never_raises_for_bad_mixes(speech):
    good = noisy(speech, 10, np.random.default_rng(4))
    mixes = [good, np.zeros_like(speech), speech[:-100], np.full_like(speech, np.inf), good[:10]]
    results = score_mixes(speech, mixes)
    assert results[0]["errors"] == "" and not math.isnan(results[0]["stoi"])
    # All-zero mix: STOI and fwSNRseg are defined (as in pystoi / pysepm), PESQ is not.
    assert results[1]["stoi"] == 0.0 and math.isfinite(results[1]["fwsnrseg"])
    assert math.isnan(results[1]["pesq"]) and results[1]["errors"].startswith("pesq: ")
    for result in results[2:]:
        assert all(math.isnan(result[m]) for m in METRICS)
        assert [e.split(":")[0] for e in result["errors"].split("; ")] == list(METRICS)

    # Clean speech too short for STOI's 30 frames, and for PESQ: NaN and reasons, no raise.
    short = speech[:3000]
    result = score_mix(short, noisy(short, 5, np.random.default_rng(1)))
    assert math.isnan(result["stoi"]) and math.isnan(result["pesq"])
    assert math.isfinite(result["fwsnrseg"])
    assert "stoi: only" in result["errors"] and "pesq: " in result["errors"]
    tiny = score_mix(speech[:100], speech[:100])
    assert all(math.isnan(tiny[m]) for m in METRICS) and tiny["errors"].count(":") >= 3
    silent = score_mix(np.zeros(32000), np.zeros(32000))
    assert all(math.isnan(silent[m]) for m in METRICS) and "all zeros" in silent["errors"]
    assert score_mixes(speech, []) == []

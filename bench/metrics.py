"""Benchmark of the distortion metrics: our scoring/ path against the reference path.

Run from the repository root:  .venv/bin/python bench/metrics.py [--shared PATH]

Clips: three EmoDB utterances (22.05 kHz, resampled to 16 kHz with soxr) concatenated to about
6 s, each mixed with ESC-50 noise (tiled) at 30 SNRs over 0-30 dB, as in the superset (one SNR
per 2 dB bin, two noise files). Everything runs pinned to one core with single-threaded BLAS.

Reference path: pystoi.stoi, pesq.pesq and ``reference_fwsnrseg`` below, a plain
re-implementation of pysepm's fwSNRseg (pysepm itself no longer imports with scipy >= 1.13).
Our path: scoring.stoi / scoring.fwsnrseg / scoring.pesq_score, per single mix (clean-side work
redone for every mix) and per utterance (clean-side work once for its 30 mixes).
Times are CPU ms per mix, the minimum over ``--repeats`` runs (the machine may be shared).
"""
from __future__ import annotations

if __name__ == "__main__":  # before numpy is imported; not when tests import this file
    import os

    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.signal

REPO_ROOT = Path(__file__).resolve().parents[1]
FS = 16000
MIXES_PER_UTTERANCE = 30


# --------------------------------------------------------------------------------------------
# Reference stand-in for pysepm.fwSNRseg, written the straightforward way pysepm does it.
# --------------------------------------------------------------------------------------------
_CENTRE_HZ = [50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717,
              904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
              2446.71, 2701.97, 2978.04, 3276.17, 3597.63]
_BANDWIDTH_HZ = [70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411,
                 116.256, 127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631,
                 255.255, 276.072, 298.126, 321.465, 346.136]


def reference_fwsnrseg(clean, degraded, fs, frame_len=0.03, overlap=0.75):
    """pysepm.fwSNRseg as pysepm computes it: legacy scipy.signal.stft of both signals, a
    critical-band filter bank built band by band, the formula applied on full matrices."""
    eps = np.finfo(np.float64).eps
    clean = clean.astype(np.float64) + eps
    degraded = degraded.astype(np.float64) + eps
    win_len = round(frame_len * fs)
    hop = int(np.floor((1 - overlap) * frame_len * fs))
    max_freq = fs / 2
    n_fft = 2 ** np.ceil(np.log2(2 * win_len))
    half = int(n_fft / 2)

    bins = np.arange(0, half)
    filters = np.zeros((len(_CENTRE_HZ), half))
    for i, (centre, width) in enumerate(zip(_CENTRE_HZ, _BANDWIDTH_HZ)):
        f0 = np.floor(centre / max_freq * half)
        bw = width / max_freq * half
        norm_factor = np.log(_BANDWIDTH_HZ[0]) - np.log(width)
        filters[i] = np.exp(-11 * ((bins - f0) / bw) ** 2 + norm_factor)
        filters[i] *= filters[i] > np.exp(-30.0 / (2.0 * 2.303))

    n_frames = int(len(clean) / hop - win_len / hop)
    n_used = n_frames * hop + (win_len - hop)
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, win_len + 1) / (win_len + 1)))

    def normalised_magnitude(x):
        _, _, spec = scipy.signal.stft(
            x[:n_used], fs=fs, window=window, nperseg=win_len, noverlap=win_len - hop,
            nfft=int(n_fft), detrend=False, return_onesided=True, boundary=None, padded=False,
        )
        mag = np.abs(spec)[:-1, :]
        return mag / mag.sum(0)

    clean_energy = filters.dot(normalised_magnitude(clean))
    degraded_energy = filters.dot(normalised_magnitude(degraded))
    error = (clean_energy - degraded_energy) ** 2
    error[error < eps] = eps
    weights = clean_energy**0.2
    snr = 10 * np.log10(clean_energy**2 / error)
    per_frame = np.sum(weights * snr, 0) / np.sum(weights, 0)
    return float(np.mean(np.clip(per_frame, -10, 35)))


# --------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------
def load_clips(shared: Path, n_utterances: int, seed: int = 2022):
    """[(clean, [30 mixes])] of ~6 s real speech + real noise, float32 at 16 kHz, read and
    mixed by the project's own code, as the superset workers do."""
    from mixer.audio import load_audio
    from mixer.mixing import fit_noise, mix_at_snr, quantize_pcm16

    rng = np.random.default_rng(seed)
    speech_files = sorted((shared / "audio/emodb/wav").glob("*.wav"))
    noise_files = sorted((shared / "audio/esc50_glass/audio").glob("*.wav"))
    clips = []
    for u in range(n_utterances):
        clean = quantize_pcm16(np.concatenate([load_audio(p, FS) for p in speech_files[3 * u : 3 * u + 3]]))
        mixes = []
        for m in range(MIXES_PER_UTTERANCE):
            snr_bin = m % 15  # 2 dB bins over 0-30 dB, two noise files per bin
            snr = rng.uniform(2 * snr_bin, 2 * snr_bin + 2)
            noise = load_audio(noise_files[rng.integers(len(noise_files))], FS)
            mixes.append(mix_at_snr(clean, fit_noise(noise, clean.size), snr).wav)
        clips.append((clean, mixes))
    return clips


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def per_mix(fn):
    """Path that scores each (clean, mix) pair on its own."""
    def run(clean, mixes):
        for mix in mixes:
            fn(clean, mix)
    return run


def time_path(run, clips, repeats):
    """ms per mix: for each utterance the fastest of `repeats` runs, summed over utterances.

    CPU time of this process, not wall time: on a shared machine the wall clock also counts
    the time other processes held the core. BLAS and FFTs are single-threaded here.
    """
    total, count = 0.0, 0
    for clean, mixes in clips:
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            run(clean, mixes)
            best = min(best, time.process_time() - start)
        total += best
        count += len(mixes)
    return 1e3 * total / count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared",
                        help="the project's shared folder (default: ../shared)")
    parser.add_argument("--utterances", type=int, default=2, help="clean utterances (x30 mixes)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path; the fastest counts")
    parser.add_argument("--core", type=int, default=None, help="CPU core to pin to")
    args = parser.parse_args(argv)

    if not (args.shared / "audio/emodb/wav").is_dir():
        print(f"bench/metrics.py: no shared audio at {args.shared} (pass --shared PATH)")
        return 1
    core = args.core if args.core is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    sys.path.insert(0, str(REPO_ROOT))

    import pesq
    import pystoi

    from scoring.fwsnrseg import FwSnrSegReference, fwsnrseg
    from scoring.metrics import score_mix, score_mixes
    from scoring.pesq_score import pesq_wb
    from scoring.stoi import StoiReference, stoi

    clips = load_clips(args.shared, args.utterances)
    seconds = np.mean([len(c) / FS for c, _ in clips])

    # Sanity: both paths agree on these clips before anything is timed.
    clean, mixes = clips[0]
    ours = score_mixes(clean, mixes[:3])
    for mix, got in zip(mixes[:3], ours):
        assert abs(got["stoi"] - pystoi.stoi(clean, mix, FS)) < 1e-6
        assert abs(got["fwsnrseg"] - reference_fwsnrseg(clean, mix, FS)) < 1e-6
        assert got["pesq"] == pesq.pesq(FS, clean, mix, "wb")

    def ref_all(clean, mix):
        pystoi.stoi(clean, mix, FS)
        pesq.pesq(FS, clean, mix, "wb")
        reference_fwsnrseg(clean, mix, FS)

    paths = {  # metric -> (reference per mix, ours per mix, ours per utterance)
        "STOI": (per_mix(lambda c, m: pystoi.stoi(c, m, FS)),
                 per_mix(lambda c, m: stoi(c, m, FS)),
                 lambda c, ms: StoiReference(c, FS).score_many(ms)),
        "PESQ (wb)": (per_mix(lambda c, m: pesq.pesq(FS, c, m, "wb")),
                      per_mix(lambda c, m: pesq_wb(c, m, FS)),
                      per_mix(lambda c, m: pesq_wb(c, m, FS))),  # nothing to share
        "fwSNRseg": (per_mix(lambda c, m: reference_fwsnrseg(c, m, FS)),
                     per_mix(lambda c, m: fwsnrseg(c, m, FS)),
                     lambda c, ms: FwSnrSegReference(c, FS).score_many(ms)),
        "all three": (per_mix(ref_all),
                      per_mix(lambda c, m: score_mix(c, m, FS)),
                      lambda c, ms: score_mixes(c, ms, FS)),
    }
    timings = {name: [time_path(run, clips, args.repeats) for run in runs]
               for name, runs in paths.items()}

    print(f"{len(clips)} utterances x {MIXES_PER_UTTERANCE} mixes, {seconds:.1f} s each, "
          f"16 kHz, core {core}, fastest of {args.repeats} runs; CPU ms per mix\n")
    print("| metric | reference (per mix) | ours, per mix | ours, per utterance (30 mixes) "
          "| speed-up per utterance |")
    print("|---|---|---|---|---|")
    for name, (ref, single, batch) in timings.items():
        print(f"| {name} | {ref:.2f} | {single:.2f} | {batch:.2f} | {ref / batch:.1f}x |")
    pesq_ref, pesq_single, pesq_batch = timings["PESQ (wb)"]
    all_ref, all_single, all_batch = timings["all three"]
    print(f"| all three / PESQ alone | {all_ref / pesq_ref:.3f} | {all_single / pesq_single:.3f} "
          f"| {all_batch / pesq_batch:.3f} | |")
    target = 1.25
    verdict = "meets" if all_batch / pesq_batch <= target else "misses"
    print(f"\nper-utterance all three / PESQ alone = {all_batch / pesq_batch:.3f} "
          f"({verdict} the {target} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

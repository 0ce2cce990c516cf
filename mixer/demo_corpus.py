"""A small synthetic corpus that runs the whole pipeline without any licensed data.

``write_demo_corpus(out)`` writes, deterministically for a seed::

    out/
      msp/      MSP-Podcast layout: Audios/DEMO_<speaker>_<n>.wav (16 kHz) and
                Labels/labels_consensus.csv (FileName, EmoClass, Split_Set, SpkrID)
      musan/    noise/synthetic-colored/*.wav (white, pink, brown noise),
                noise/synthetic-babble/*.wav (several synthetic voices at once),
                music/synthetic-chords/*.wav (pads and bass), music/synthetic-band/*.wav
                (pads, bass, melody, drums); some files shorter than an utterance, some 10-30 s
      esc50/    ESC-50 layout (audio/*.wav at 44.1 kHz, 5 s; meta/esc50.csv): clock ticks,
                crackling fire, rain, bird chirps, engine hum, siren -- noise never used in training

The speech is a source-filter model: a glottal pulse train that follows a pitch contour,
low-passed for spectral tilt, with aspiration noise, through four formant resonators per
syllable, plus fricative and plosive onsets, syllable envelopes and pauses. The four classes
differ the way acted emotional speech tends to (angry: high, wide-ranging pitch, loud, fast,
bright; happy: high-ish, wide, fairly loud and fast, rising endings; neutral: mid and narrow;
sad: low, narrow, quiet, slow, dark and breathy). Every parameter also varies by speaker and by
utterance, so the classes overlap: a log-mel classifier learns them but not perfectly, and
noise at low SNR hides the tilt and level cues.

Read it back with ``mixer.corpora.demo.prepare`` (the MSP-Podcast adapter on ``out/msp``),
``musan.prepare`` on ``out/musan`` and ``esc50.prepare`` on ``out/esc50``; ``prep demo-corpus``
is its command.
"""
from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from shards.errors import InputError
from shards.vocab import SAMPLE_RATE as SR
ESC_SR = 44100
MARKER = ".metricaug-demo"  # lets a rewrite clear its own earlier output and nothing else

CLASS_CODES = {"angry": "A", "happy": "H", "neutral": "N", "sad": "S"}
SPLIT_SETS = {"train": "Train", "validation": "Validation", "test": "Test1"}

# Vowel formants F1-F3 (Hz, adult male averages); F4 is fixed. Scaled by the speaker's tract.
VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
     [570, 840, 2410], [660, 1720, 2410], [490, 1350, 1690], [440, 1020, 2240]],
    dtype=float,
)
F4 = 3400.0
BANDWIDTHS = np.array([70.0, 100.0, 130.0, 190.0])
FRICATIVES = {  # band of the noise of s, sh, f
    "s": signal.butter(4, [4000, 7600], btype="band", fs=SR, output="sos"),
    "sh": signal.butter(4, [2000, 5000], btype="band", fs=SR, output="sos"),
    "f": signal.butter(2, [1200, 7000], btype="band", fs=SR, output="sos"),
}


@dataclass(frozen=True)
class Voice:
    f0: float  # speaking pitch at neutral (Hz)
    tract: float  # formant scale (shorter vocal tract -> higher formants)
    tilt: float  # added to the style's glottal low-pass pole
    level_db: float  # added to the style's level
    rate: float  # factor on the style's syllable rate


@dataclass(frozen=True)
class Style:
    pitch: float  # semitones above the voice's f0
    pitch_range: float  # accent height, semitones
    level_db: float  # utterance RMS, dBFS
    rate: float  # syllables per second
    tilt: float  # glottal low-pass pole: higher = darker
    breath: float  # aspiration noise relative to the voiced signal
    pause: float  # mean pause between phrases, s
    attack: float  # syllable attack, s
    bandwidth: float  # factor on formant bandwidths (tense voice: narrow)
    accent_prob: float
    final_rise_prob: float


# class -> (mean, standard deviation across utterances) of each Style field
CLASS_PROSODY: dict[str, dict[str, tuple[float, float]]] = {
    "angry": dict(pitch=(5.0, 1.6), pitch_range=(7.0, 1.6), level_db=(-17.0, 2.5), rate=(5.4, 0.5),
                  tilt=(0.50, 0.06), breath=(0.03, 0.01), pause=(0.18, 0.05), attack=(0.012, 0.003),
                  bandwidth=(0.8, 0.08), accent_prob=(0.5, 0.08), final_rise_prob=(0.1, 0.0)),
    "happy": dict(pitch=(4.0, 1.6), pitch_range=(6.0, 1.6), level_db=(-20.0, 2.5), rate=(4.9, 0.5),
                  tilt=(0.62, 0.06), breath=(0.06, 0.02), pause=(0.22, 0.06), attack=(0.02, 0.005),
                  bandwidth=(0.95, 0.08), accent_prob=(0.45, 0.08), final_rise_prob=(0.45, 0.0)),
    "neutral": dict(pitch=(0.0, 1.2), pitch_range=(2.5, 0.8), level_db=(-23.0, 2.5), rate=(4.2, 0.4),
                    tilt=(0.72, 0.05), breath=(0.05, 0.015), pause=(0.25, 0.07), attack=(0.025, 0.005),
                    bandwidth=(1.0, 0.08), accent_prob=(0.3, 0.06), final_rise_prob=(0.15, 0.0)),
    "sad": dict(pitch=(-2.5, 1.2), pitch_range=(1.5, 0.6), level_db=(-28.0, 2.5), rate=(3.1, 0.4),
                tilt=(0.84, 0.04), breath=(0.15, 0.04), pause=(0.4, 0.1), attack=(0.04, 0.008),
                bandwidth=(1.25, 0.1), accent_prob=(0.2, 0.05), final_rise_prob=(0.05, 0.0)),
}

# ESC-50 categories imitated, with their real target numbers
ESC_CATEGORIES = {
    "rain": 10, "crackling_fire": 12, "chirping_birds": 14, "clock_tick": 38, "siren": 42, "engine": 44,
}


#: The demo corpus's random streams: the first part of each file's stream key (values fixed:
#: they shape every demo file).
VOICE_STREAM = 1  # a speaker's voice, keyed by speaker number
SPEECH_STREAM = 2  # an utterance, keyed by (split, class, index)
MUSAN_STREAM = 3  # a noise or music file, keyed by (group, index)
ESC50_STREAM = 7  # an unseen-noise clip, keyed by (category, index)


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per file, so one file's content does not depend on the others."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=key)))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def _set_level(x: np.ndarray, level_db: float) -> np.ndarray:
    y = x * (10 ** (level_db / 20) / _rms(x))
    peak = float(np.max(np.abs(y)))
    return y * (0.97 / peak) if peak > 0.97 else y


def _raised_cosine_envelope(n: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    if attack > 0:
        env[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    if release > 0:
        env[n - release:] = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, release + 1) / release)
    return env


def _smooth_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Unit-variance noise low-passed by a moving average of ``width`` samples."""
    sums = np.concatenate([[0.0], np.cumsum(rng.standard_normal(n + width))])
    return (sums[width:width + n] - sums[:n]) / np.sqrt(width)


# --------------------------------------------------------------------------- speech


def _voice(rng: np.random.Generator, female: bool) -> Voice:
    return Voice(
        f0=float(rng.uniform(185, 235) if female else rng.uniform(100, 135)),
        tract=float(rng.uniform(1.1, 1.2) if female else rng.uniform(0.92, 1.02)),
        tilt=float(rng.normal(0, 0.03)),
        level_db=float(rng.normal(0, 1.5)),
        rate=float(rng.uniform(0.9, 1.1)),
    )


def _style(rng: np.random.Generator, emotion: str) -> Style:
    values = {k: float(rng.normal(m, s)) for k, (m, s) in CLASS_PROSODY[emotion].items()}
    values["pitch_range"] = max(values["pitch_range"], 0.5)
    values["rate"] = max(values["rate"], 2.0)
    values["tilt"] = float(np.clip(values["tilt"], 0.3, 0.93))
    values["breath"] = max(values["breath"], 0.0)
    values["pause"] = max(values["pause"], 0.08)
    values["attack"] = max(values["attack"], 0.005)
    values["bandwidth"] = max(values["bandwidth"], 0.5)
    return Style(**values)


def _formant_filter(formants: np.ndarray, bandwidths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cascade of two-pole resonators as one IIR filter, unity gain at DC."""
    a = np.array([1.0])
    gain = 1.0
    for f, bw in zip(formants, bandwidths):
        r = np.exp(-np.pi * bw / SR)
        section = np.array([1.0, -2 * r * np.cos(2 * np.pi * f / SR), r * r])
        a = np.convolve(a, section)
        gain *= section.sum()
    return np.array([gain]), a


def _speech(rng: np.random.Generator, voice: Voice, style: Style, duration: float) -> np.ndarray:
    """One utterance of ``duration`` seconds at SR, float64, level set by style and voice."""
    n = int(round(duration * SR))
    rate = style.rate * voice.rate
    # syllable plan: (start, end) in samples, consonant length, accent
    syllables: list[tuple[int, int, int, bool]] = []
    t = rng.uniform(0.04, 0.15)
    end_limit = duration - rng.uniform(0.06, 0.15)
    until_pause = int(rng.integers(3, 8))
    while True:
        d = max(0.08, rng.gamma(8.0, 1.0 / (8.0 * rate)))
        if t + d > end_limit:
            break
        cons = int(SR * min(0.4 * d, rng.uniform(0.025, 0.07)))
        syllables.append((int(t * SR), int((t + d) * SR), cons, bool(rng.random() < style.accent_prob)))
        t += d
        until_pause -= 1
        if until_pause == 0:
            t += max(0.06, rng.normal(style.pause, 0.3 * style.pause))
            until_pause = int(rng.integers(3, 8))
    if not syllables:
        syllables.append((int(0.05 * SR), n - int(0.05 * SR), int(0.03 * SR), True))

    # pitch contour in semitones: declination, accents, a final rise now and then, slow wander
    pos = np.arange(n) / max(n - 1, 1)
    semis = style.pitch + style.pitch_range * 0.3 * (0.5 - pos)
    for start, end, _, accent in syllables:
        if accent:
            width = end - start
            lo, hi = max(0, start - width // 4), min(n, end + width // 4)
            bump = np.sin(np.pi * np.arange(hi - lo) / max(hi - lo - 1, 1)) ** 2
            semis[lo:hi] += style.pitch_range * rng.uniform(0.4, 1.0) * bump
    if rng.random() < style.final_rise_prob:
        start = syllables[-1][0]
        semis[start:] += np.linspace(0, style.pitch_range * 0.8, n - start)
    semis += 0.3 * _smooth_noise(rng, n, 320)
    f0 = np.clip(voice.f0 * 2 ** (semis / 12), 60, 500)
    f0 *= 1 + 0.01 * _smooth_noise(rng, n, 40)  # jitter

    # voicing envelope over each syllable's vowel
    voicing = np.zeros(n)
    attack = int(style.attack * SR)
    for start, end, cons, accent in syllables:
        nucleus = end - (start + cons)
        amp = rng.uniform(0.8, 1.1) * (1.4 if accent else 1.0)
        voicing[start + cons:end] = amp * _raised_cosine_envelope(nucleus, attack, int(0.045 * SR))

    # glottal pulses, shimmer, spectral tilt, lip radiation, aspiration
    phase = np.cumsum(f0) / SR
    pulses = np.flatnonzero(np.diff(np.floor(phase))) + 1
    source = np.zeros(n)
    source[pulses] = voicing[pulses] * (1 + 0.08 * rng.standard_normal(pulses.size))
    pole = float(np.clip(style.tilt + voice.tilt, 0.3, 0.95))
    source = signal.lfilter([1 - pole], [1, -pole], source)
    source = signal.lfilter([1 - pole], [1, -pole], source)
    source = signal.lfilter([1, -0.97], [1], source)
    aspiration = rng.standard_normal(n) * voicing
    voiced_rms = _rms(source[voicing > 0]) if np.any(voicing > 0) else 1.0
    excitation = source + aspiration * (style.breath * voiced_rms / _rms(aspiration))

    # formants per syllable; the resonators ring on past the syllable's end
    out = np.zeros(n)
    tail = int(0.03 * SR)
    bandwidths = BANDWIDTHS * style.bandwidth
    for start, end, cons, _ in syllables:
        vowel = VOWELS[rng.integers(len(VOWELS))]
        formants = np.append(vowel * rng.normal(1, 0.04, 3), F4) * voice.tract
        b, a = _formant_filter(np.minimum(formants, 0.45 * SR), bandwidths)
        seg = np.concatenate([excitation[start:end], np.zeros(tail)])
        stop = min(n, end + tail)
        out[start:stop] += signal.lfilter(b, a, seg)[: stop - start]

    # consonant onsets relative to the vowels' level; tense speech has stronger consonants
    vowel_rms = _rms(out[voicing > 0]) if np.any(voicing > 0) else _rms(out)
    cons_db = -16.0 + 6.0 * (0.72 - pole)
    for start, end, cons, _ in syllables:
        kind = rng.choice(["", "s", "sh", "f", "p"], p=[0.25, 0.2, 0.15, 0.15, 0.25])
        if kind == "" or cons < 8:
            continue
        gain = vowel_rms * 10 ** ((cons_db + rng.normal(0, 3)) / 20)
        if kind == "p":  # closure then a short decaying burst
            length = min(cons, int(0.015 * SR))
            burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.004 * SR))
            out[start + cons - length:start + cons] += gain * 2.5 * burst
        else:
            noise = signal.sosfilt(FRICATIVES[kind], rng.standard_normal(cons))
            noise *= _raised_cosine_envelope(cons, cons // 3, cons // 3) / _rms(noise)
            out[start:start + cons] += gain * noise
    out = _set_level(out, style.level_db + voice.level_db)
    return out + 10 ** (-68 / 20) * rng.standard_normal(n)  # recording noise floor


# --------------------------------------------------------------------------- noise and music


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power falling as 1/f**exponent (0 white, 1 pink, 2 brown), slowly modulated."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    x = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    depth = rng.uniform(0, 0.3)
    x *= 1 + depth * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * np.arange(n) / SR + rng.uniform(0, 2 * np.pi))
    return x


def _babble(rng: np.random.Generator, duration: float) -> np.ndarray:
    n = int(round(duration * SR))
    total = np.zeros(n)
    for _ in range(int(rng.integers(4, 8))):
        voice = _voice(rng, female=bool(rng.random() < 0.5))
        style = _style(rng, str(rng.choice(list(CLASS_PROSODY))))
        talk = _speech(rng, voice, style, duration + 1.0)
        shift = int(rng.integers(0, SR))
        total += _set_level(talk[shift:shift + n], -26.0)
    return total


def _midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _tone(freq: float, n: int, harmonics: int, rolloff: float, envelope: np.ndarray, rng) -> np.ndarray:
    """Additive note: harmonics below 7 kHz with amplitude k**-rolloff and random phases."""
    t = np.arange(n) / SR
    ks = np.arange(1, harmonics + 1)
    ks = ks[ks * freq < 7000]
    if ks.size == 0:
        return np.zeros(n)
    vibrato = 1 + 0.003 * np.sin(2 * np.pi * 5.0 * t)
    phases = np.outer(ks, 2 * np.pi * freq * np.cumsum(vibrato) / SR) + rng.uniform(0, 2 * np.pi, (ks.size, 1))
    return (ks[:, None] ** -rolloff * np.sin(phases)).sum(axis=0) * envelope


def _music(rng: np.random.Generator, duration: float, band: bool) -> np.ndarray:
    """Chord progression with pads and bass; ``band`` adds a melody and drums."""
    n = int(round(duration * SR))
    beat = 60.0 / rng.uniform(80, 140)
    root = int(rng.integers(45, 57))
    scale = [0, 2, 3, 5, 7, 8, 10] if rng.random() < 0.5 else [0, 2, 4, 5, 7, 9, 11]
    progressions = [[0, 5, 3, 4], [0, 3, 4, 4], [0, 4, 5, 3], [5, 3, 0, 4]]
    progression = progressions[int(rng.integers(len(progressions)))]

    def degree(d: int) -> int:
        return scale[d % 7] + 12 * (d // 7)

    bar = int(4 * beat * SR)
    beat_n = int(beat * SR)
    y = np.zeros(n + 2 * bar)  # the last bar's notes ring past the end; cut below
    melody_degree = 7
    for bar_index, start in enumerate(range(0, n, bar)):
        chord = progression[bar_index % len(progression)]
        env = _raised_cosine_envelope(bar, int(0.08 * SR), int(0.3 * SR))
        for d in (chord, chord + 2, chord + 4):  # pad triad an octave above the root
            y[start:start + bar] += 0.25 * _tone(_midi_hz(root + 12 + degree(d)), bar, 6, 1.3, env, rng)
        for b in range(4):  # bass on every beat
            s = start + b * beat_n
            decay = np.exp(-np.arange(beat_n) / (0.25 * SR))
            y[s:s + beat_n] += 0.5 * _tone(_midi_hz(root - 12 + degree(chord)), beat_n, 3, 1.0, decay, rng)
        if not band:
            continue
        half = beat_n // 2
        for h in range(8):
            s = start + h * half
            if rng.random() < 0.75:  # melody: a random walk over the scale
                melody_degree = int(np.clip(melody_degree + rng.integers(-2, 3), 4, 14))
                length = half * int(rng.integers(1, 3))
                pluck = np.exp(-np.arange(length) / (0.15 * SR)) * _raised_cosine_envelope(length, 80, 200)
                y[s:s + length] += 0.3 * _tone(_midi_hz(root + 12 + degree(melody_degree)), length, 8, 1.8, pluck, rng)
            hat = int(0.03 * SR)  # hi-hat on every half beat
            y[s:s + hat] += 0.05 * np.diff(rng.standard_normal(hat + 1)) * np.exp(-np.arange(hat) / (0.008 * SR))
        for b in (0, 2):  # kick: a falling sine
            s = start + b * beat_n
            k = int(0.2 * SR)
            sweep = 2 * np.pi * np.cumsum(50 + 90 * np.exp(-np.arange(k) / (0.03 * SR))) / SR
            y[s:s + k] += 0.8 * np.sin(sweep) * np.exp(-np.arange(k) / (0.06 * SR))
        for b in (1, 3):  # snare: band noise and a short tone
            s = start + b * beat_n
            k = int(0.15 * SR)
            snare = signal.sosfilt(FRICATIVES["sh"], rng.standard_normal(k)) * 2 + 0.5 * np.sin(
                2 * np.pi * 185 * np.arange(k) / SR)
            y[s:s + k] += 0.35 * snare * np.exp(-np.arange(k) / (0.04 * SR))
    return y[:n]


# --------------------------------------------------------------------------- ESC-50-like clips


def _esc_clip(rng: np.random.Generator, category: str, n: int) -> np.ndarray:
    sr = ESC_SR
    t = np.arange(n) / sr
    if category == "clock_tick":
        y = np.zeros(n)
        period = rng.uniform(0.45, 0.55)
        k = int(0.012 * sr)
        for i, start in enumerate(np.arange(rng.uniform(0, period), n / sr, period)):
            s = int(start * sr)
            freq = 3200 if i % 2 else 4100  # tick, tock
            click = np.sin(2 * np.pi * freq * np.arange(k) / sr) * np.exp(-np.arange(k) / (0.0015 * sr))
            y[s:s + k] += click[: n - s]
        return y + 0.002 * rng.standard_normal(n)
    if category in ("crackling_fire", "rain"):
        dense = category == "rain"
        events = rng.poisson((400 if dense else 25) * n / sr)
        y = np.zeros(n)
        pos = rng.integers(0, n, events)
        y[pos] += np.minimum(rng.pareto(4.0 if dense else 2.0, events), 8.0) * rng.choice([-1, 1], events)
        decay = np.exp(-np.arange(int(0.004 * sr)) / (0.0006 * sr if dense else 0.0012 * sr))
        y = np.convolve(y, decay)[:n]
        hp = signal.butter(2, 1500 if dense else 400, btype="high", fs=sr, output="sos")
        y = signal.sosfilt(hp, y)
        bed = np.cumsum(rng.standard_normal(n))  # brown rumble under the fire, hiss under the rain
        bed = signal.sosfilt(signal.butter(2, 30, btype="high", fs=sr, output="sos"), bed)
        if dense:
            bed = signal.sosfilt(hp, rng.standard_normal(n))
        return y / _rms(y) + 0.4 * bed / _rms(bed)
    if category == "chirping_birds":
        y = np.zeros(n)
        start = rng.uniform(0, 0.3)
        while start < n / sr - 0.2:
            k = int(rng.uniform(0.05, 0.15) * sr)
            f_lo, f_hi = sorted(rng.uniform(2000, 6500, 2))
            sweep = np.linspace(f_hi, f_lo, k) if rng.random() < 0.5 else np.linspace(f_lo, f_hi, k)
            s = int(start * sr)
            y[s:s + k] += np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.hanning(k)
            start += k / sr + rng.exponential(0.12)
        return y + 0.01 * rng.standard_normal(n)
    if category == "siren":
        rate = rng.uniform(0.2, 0.5)
        freq = 900 + 300 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
        phase = 2 * np.pi * np.cumsum(freq) / sr
        return sum(np.sin(k * phase) / k for k in range(1, 5)) + 0.02 * rng.standard_normal(n)
    if category == "engine":  # mains-like hum and firing rate with harmonics, over rumble
        f = rng.uniform(30, 60)
        firing = 1 + 0.5 * np.sin(2 * np.pi * f / 2 * t)
        hum = sum(np.sin(2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi)) / k ** 0.8 for k in range(1, 12))
        rumble = signal.sosfilt(signal.butter(2, [40, 400], btype="band", fs=sr, output="sos"), rng.standard_normal(n))
        return hum * firing + 2.0 * rumble
    raise ValueError(category)


# --------------------------------------------------------------------------- writing


def _write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    sf.write(str(path), np.asarray(x, dtype=np.float64), sr, subtype="PCM_16")


def _fresh_dir(path: Path) -> Path:
    """Empty folder for one part of the demo; only a folder this function made is cleared."""
    if path.exists():
        if not (path / MARKER).is_file():
            if any(path.iterdir()):
                raise InputError(f"{path}: exists and is not a demo corpus written here; choose another folder")
        else:
            shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("written by mixer.corpora.demo.write_demo_corpus; rewritten on the next call\n")
    return path


def _write_speech(out: Path, seed: int, per_split: dict[str, int], speakers: dict[str, int]) -> None:
    root = _fresh_dir(out)
    audio_dir = root / "Audios"
    labels_dir = root / "Labels"
    audio_dir.mkdir()
    labels_dir.mkdir()
    rows = []
    speaker_number = 0
    for split_index, split in enumerate(("train", "validation", "test")):
        count = speakers[split]
        voices = []
        for i in range(count):  # alternating male and female voices
            speaker_number += 1
            voices.append([f"{speaker_number:04d}", _voice(_rng(seed, VOICE_STREAM, speaker_number), female=i % 2 == 1), 0])
        for emotion_index, emotion in enumerate(CLASS_CODES):
            for j in range(per_split[split]):
                voice_entry = voices[j % count]
                spk_id, voice, made = voice_entry
                voice_entry[2] += 1
                # seeded by (split, class, index): growing one count leaves the other files as they were
                rng = _rng(seed, SPEECH_STREAM, split_index, emotion_index, j)
                wav = _speech(rng, voice, _style(rng, emotion), float(rng.uniform(1.5, 4.0)))
                name = f"DEMO_{spk_id}_{made:04d}.wav"
                _write_wav(audio_dir / name, wav, SR)
                rows.append((name, CLASS_CODES[emotion], SPLIT_SETS[split], spk_id))
    rows.sort()
    _write_csv(labels_dir / "labels_consensus.csv", ("FileName", "EmoClass", "Split_Set", "SpkrID"), rows)


def _duration(rng: np.random.Generator, k: int) -> float:
    """Length of the k-th file of a folder: every fourth one shorter than most utterances (it
    gets repeated), every fourth 3-6 s, the rest 10-30 s (cut)."""
    low, high = [(0.8, 1.4), (10, 30), (3, 6), (10, 30)][k % 4]
    return float(rng.uniform(low, high))


def _write_musan(out: Path, seed: int, noise_files: int, music_files: int) -> None:
    root = _fresh_dir(out)
    babble_count = noise_files // 3
    band_count = music_files // 2
    plan = (  # (folder, file stem, count, maker(rng, k, seconds), level dBFS)
        ("noise/synthetic-colored", "noise-colored", noise_files - babble_count,
         lambda rng, k, sec: _colored_noise(rng, int(sec * SR), float(k % 3)), -24.0),
        ("noise/synthetic-babble", "noise-babble", babble_count, lambda rng, k, sec: _babble(rng, sec), -24.0),
        ("music/synthetic-chords", "music-chords", music_files - band_count,
         lambda rng, k, sec: _music(rng, sec, band=False), -22.0),
        ("music/synthetic-band", "music-band", band_count, lambda rng, k, sec: _music(rng, sec, band=True), -22.0),
    )
    for group, (folder, stem, count, maker, level) in enumerate(plan):
        (root / folder).mkdir(parents=True)
        for k in range(count):
            rng = _rng(seed, MUSAN_STREAM, group, k)
            seconds = _duration(rng, k)
            _write_wav(root / folder / f"{stem}-{k:04d}.wav", _set_level(maker(rng, k, seconds), level), SR)


def _write_esc50(out: Path, seed: int, clips_per_category: int) -> None:
    root = _fresh_dir(out)
    (root / "audio").mkdir()
    (root / "meta").mkdir()
    rows = []
    n = 5 * ESC_SR
    for c, (category, target) in enumerate(ESC_CATEGORIES.items()):
        for j in range(clips_per_category):
            rng = _rng(seed, ESC50_STREAM, c, j)
            fold = j % 5 + 1
            clip_id = 100000 + 100 * c + j
            name = f"{fold}-{clip_id}-A-{target}.wav"
            _write_wav(root / "audio" / name, _set_level(_esc_clip(rng, category, n), -24.0), ESC_SR)
            rows.append((name, fold, target, category, "False", f"demo-{clip_id}.wav", "A"))
    rows.sort(key=lambda r: (r[1], r[0]))
    header = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
    _write_csv(root / "meta" / "esc50.csv", header, rows)


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def write_demo_corpus(
    out_dir: str | Path,
    seed: int = 0,
    utterances_per_class: tuple[int, int, int] = (40, 10, 10),
    speakers: tuple[int, int, int] = (6, 2, 2),
    noise_files: int = 12,
    music_files: int = 10,
    esc50_clips_per_category: int = 4,
) -> dict[str, Path]:
    """Write the demo corpus under ``out_dir``; returns {"msp": ..., "musan": ..., "esc50": ...}.

    ``utterances_per_class`` and ``speakers`` are (train, validation, test); utterances last
    1.5-4 s. ``noise_files`` are split two thirds coloured noise, one third babble;
    ``music_files`` half chords, half band. The same arguments give byte-identical files.
    Rewriting clears the parts a previous call wrote; a non-empty folder of another origin at
    one of the three paths is an :class:`InputError`. Prints nothing."""
    if min(speakers) < 1 or min(utterances_per_class) < 0:
        raise InputError(f"{out_dir}: need at least one speaker per split and no negative counts")
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    splits = ("train", "validation", "test")
    paths = {"msp": out / "msp", "musan": out / "musan", "esc50": out / "esc50"}
    _write_speech(paths["msp"], seed, dict(zip(splits, utterances_per_class)), dict(zip(splits, speakers)))
    _write_musan(paths["musan"], seed, noise_files, music_files)
    _write_esc50(paths["esc50"], seed, esc50_clips_per_category)
    return paths

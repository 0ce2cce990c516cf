"""Bad input from the fault list: NaN/inf samples, float files beyond full scale, a label
CSV with a stray quote, truncated mp3/ogg, silent noise files, resampler overshoot. Each
gives a reject row (file, reason), a recorded gain, or a one-line error; never a traceback,
never data lost or changed without a trace."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from mixer.audio import AudioError, audio_info, load_audio, scan_audio
from mixer.cli import app
from mixer.corpora import counting_label_rows, csv_corpus, msp, musan
from mixer.mixing import FULL_SCALE, INT16_SCALE, fit_pcm16, quantize_pcm16
from shards.reader import open_store
from shards.vocab import REJECTS, TABLE
from test_corpora import write_csv, write_tone
from test_superset import SR, _voice, make_tiny_corpus, runner, superset_cmd

MIXES_PER_UTT = 4  # superset_cmd: 2 bins x (noise, music)


def build(msp_root: Path, musan_root: Path, out: Path):
    result = runner.invoke(app, superset_cmd(msp_root, musan_root, out, "--jobs", "1", "--metrics", "stoi"))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    store = out / "msp"
    rejects = {Path(r["file"]).name if "/" in r["file"] else r["file"]: r["reason"]
               for r in csv.DictReader(open(store / REJECTS))}
    rows = pq.read_table(store / TABLE).to_pylist()
    return result.output, rejects, rows


def mixes_per_utt(rows) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        if r["subset"] == "superset":
            counts[r["utt_id"]] = counts.get(r["utt_id"], 0) + 1
    return counts


def noise_wav(rng, seconds=2.0) -> np.ndarray:
    return (0.1 * rng.standard_normal(int(SR * seconds))).astype(np.float32)


def ogg_pages(data: bytes) -> list[int]:
    return [m.start() for m in re.finditer(b"OggS", data)]


# --- 1: NaN / inf samples ----------------------------------------------------------------------

def test_nan_or_inf_noise_file_is_rejected_at_scan_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "musan" / "noise" / "part"
    folder.mkdir(parents=True)
    (tmp_path / "musan" / "music").mkdir()
    good = noise_wav(rng)
    sf.write(folder / "good.wav", good, SR, subtype="FLOAT")
    for name, bad in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        wav = good.copy()
        wav[SR] = bad  # at 1.000 s
        sf.write(folder / name, wav, SR, subtype="FLOAT")
    records, rejects = musan.prepare(tmp_path / "musan")
    assert [r.noise_id for r in records] == ["good"]
    reasons = {Path(r.file).name: r.reason for r in rejects}
    assert set(reasons) == {"nan.wav", "inf.wav"}
    assert all("NaN or infinite" in r and "1.000 s" in r for r in reasons.values())
    with pytest.raises(AudioError, match="NaN"):
        scan_audio(folder / "nan.wav")


def test_nan_noise_file_does_not_crash_the_build(tmp_path):
    msp_root, musan_root = make_tiny_corpus(tmp_path / "c", per_split=(4, 1, 0))
    rng = np.random.default_rng(1)
    for kind in ("noise", "music"):
        for j in range(3):  # three poisoned files beside the two good ones: they would be drawn
            wav = noise_wav(rng, 4.0)
            wav[j :: SR // 4] = np.nan if kind == "noise" else -np.inf  # in every stretch a mix could take
            sf.write(musan_root / kind / "part" / f"{kind}-bad-{j}.wav", wav, SR, subtype="FLOAT")
    output, rejects, rows = build(msp_root, musan_root, tmp_path / "out")
    bad = {f"{k}-bad-{j}.wav" for k in ("noise", "music") for j in range(3)}
    assert bad <= set(rejects) and all("NaN or infinite" in rejects[n] for n in bad)
    assert not any(r["noise_file"].startswith(("noise-bad", "music-bad")) for r in rows)
    assert set(mixes_per_utt(rows).values()) == {MIXES_PER_UTT}
    assert len(mixes_per_utt(rows)) == 5


def test_nan_speech_file_is_a_reject_at_load(tmp_path):
    wav = _voice(np.random.default_rng(2), 1.0, 150)
    wav[8000] = np.nan
    sf.write(tmp_path / "nan16k.wav", wav, SR, subtype="FLOAT")
    wav[8000] = np.inf
    sf.write(tmp_path / "inf44k.wav", wav, 44100, subtype="FLOAT")  # resampled: NaN everywhere after soxr
    for name, at in (("nan16k.wav", "0.500 s"), ("inf44k.wav", "0.181 s")):
        with pytest.raises(AudioError) as err:
            load_audio(tmp_path / name)
        assert "NaN or infinite" in err.value.reason and at in err.value.reason
        assert err.value.path == str(tmp_path / name)


# --- 2 and 17: beyond full scale -----------------------------------------------------------------

def overshooting_44k(seconds=1.0) -> np.ndarray:
    """Near-full-scale speech-like audio at 44.1 kHz whose 16 kHz resampling overshoots +-1."""
    rng = np.random.default_rng(3)
    x = np.sign(_voice(rng, seconds * 44100 / SR, 170)) * 0.999  # hard edges ring in the resampler
    return x.astype(np.float32)


def test_fit_pcm16_leaves_what_fits_untouched_and_scales_what_would_clip():
    rng = np.random.default_rng(4)
    fits = np.concatenate([rng.uniform(-1, FULL_SCALE, 1000), [-1.0, FULL_SCALE]]).astype(np.float32)
    wav, gain = fit_pcm16(fits)
    assert gain == 1.0 and np.array_equal(wav, quantize_pcm16(fits))  # -32768 and 32767 are not clipping
    loud = (50 * np.sin(np.linspace(0, 40, 4000))).astype(np.float32)
    wav, gain = fit_pcm16(loud)
    assert gain == pytest.approx(FULL_SCALE / np.max(np.abs(loud)))
    assert np.max(np.abs(wav)) <= FULL_SCALE
    assert np.max(np.abs(wav - gain * loud.astype(np.float64))) <= 0.5 / INT16_SCALE + 1e-9  # rounded, not clipped


def test_loud_float_speech_and_resampler_overshoot_are_scaled_and_the_gain_recorded(tmp_path):
    msp_root, musan_root = make_tiny_corpus(tmp_path / "c", per_split=(4, 1, 0))
    audios = sorted((msp_root / "Audios").glob("*.wav"))
    voice = _voice(np.random.default_rng(5), 1.0, 140)
    loud_source = voice * (50 / np.max(np.abs(voice)))  # peak 50: clipping made 46 % of it full scale
    sf.write(audios[0], loud_source, SR, subtype="FLOAT")
    sf.write(audios[1], overshooting_44k(), 44100, subtype="PCM_16")
    decoded = {a.stem: load_audio(a).astype(np.float64) for a in audios[:2]}
    assert np.max(np.abs(decoded[audios[0].stem])) > 40
    assert 1.0 < np.max(np.abs(decoded[audios[1].stem])) < 1.2  # the overshoot the fault list describes
    output, rejects, rows = build(msp_root, musan_root, tmp_path / "out")
    assert not rejects
    reader = open_store(tmp_path / "out" / "msp")
    clean_rows = {r["utt_id"]: r for r in rows if r["subset"] == "clean"}
    for stem, source in decoded.items():
        gain = clean_rows[stem]["gain"]
        assert gain == pytest.approx(FULL_SCALE / np.max(np.abs(source)))
        stored, fields = reader.sample(stem)
        assert fields["gain"] == gain
        assert np.max(np.abs(stored)) <= FULL_SCALE
        # the whole utterance scaled, nothing clipped: within half a 16-bit step of gain * source
        assert np.max(np.abs(stored - gain * source)) <= 0.5 / INT16_SCALE + 1e-7
    assert all(clean_rows[a.stem]["gain"] == 1.0 for a in audios[2:])  # good files: untouched
    assert set(mixes_per_utt(rows).values()) == {MIXES_PER_UTT}


# --- 3: a label CSV with a stray quote -------------------------------------------------------------

def msp_with_stray_quote(root: Path, rows: int = 20, quote_line: int = 3, swallowed: int = 12) -> Path:
    (root / "Audios").mkdir(parents=True)
    (root / "Labels").mkdir()
    lines = ["FileName,EmoClass,Split_Set,SpkrID"]
    for i in range(rows):
        name = f"u{i:02d}.wav"
        write_tone(root / "Audios" / name)
        line = f"{name},{'AHNS'[i % 4]},Train,{i % 3}"
        lines.append(line)
    # line numbers are 1-based with the header on line 1: the stray quote opens the SpkrID
    # field of quote_line, and a quote on the line `swallowed` below closes it
    lines[quote_line - 1] = lines[quote_line - 1].rsplit(",", 1)[0] + ',"7'
    closing = quote_line - 1 + swallowed
    lines[closing] = lines[closing].rsplit(",", 1)[0] + ',x"'
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(lines) + "\n")
    return root


def test_stray_quote_every_swallowed_row_is_a_reject_with_its_line(tmp_path):
    root = msp_with_stray_quote(tmp_path / "msp")
    with counting_label_rows() as counts:
        utts, rejects = msp.prepare(root)
    lost = {r.file: r.reason for r in rejects}
    expected = {f"labels_consensus.csv line {n}" for n in range(3, 16)}  # the quoted row and 12 below
    assert set(lost) == expected
    assert "quote opened on line 3 runs on to line 15" in lost["labels_consensus.csv line 3"]
    assert all("swallowed by the quote opened on line 3" in lost[f"labels_consensus.csv line {n}"]
               for n in range(4, 16))
    assert [u.utt_id for u in utts] == ["u00", "u14", "u15", "u16", "u17", "u18", "u19"]  # line n holds u{n-2}
    assert [(c.rows_read, c.lines, c.lines_rejected) for c in counts] == [(7, 20, 13)]


def test_stray_quote_summary_says_rows_read_of_rows_in_the_file(tmp_path):
    _, musan_root = make_tiny_corpus(tmp_path / "c", per_split=(0, 0, 0))
    root = msp_with_stray_quote(tmp_path / "msp")
    result = runner.invoke(app, superset_cmd(root, musan_root, tmp_path / "out", "--jobs", "1", "--metrics", "stoi"))
    assert result.exit_code == 0, result.output
    assert "labels_consensus.csv: 7 rows read of 20 lines in the file (13 lines lost" in result.output
    assert "rejects           13 " in result.output
    rejects = list(csv.DictReader(open(tmp_path / "out" / "msp" / REJECTS)))
    assert sorted(int(r["file"].rsplit(" ", 1)[1]) for r in rejects) == list(range(3, 16))


def test_a_genuine_multiline_field_is_kept(tmp_path):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav")
    path = write_csv(tmp_path / "corpus.csv", ["path", "label", "split", "note"],
                     [["a.wav", "angry", "train", "first line\nsecond line"], ["b.wav", "sad", "dev", ""]])
    with counting_label_rows() as counts:
        utts, rejects = csv_corpus.prepare(path)
    assert rejects == [] and [u.utt_id for u in utts] == ["a", "b"]
    assert (counts[0].rows_read, counts[0].lines, counts[0].lines_rejected) == (2, 3, 0)


# --- 4: truncated mp3 / ogg ----------------------------------------------------------------------

@pytest.fixture()
def compressed(tmp_path):
    x = (0.2 * np.random.default_rng(6).standard_normal(SR * 4)).astype(np.float32)
    sf.write(tmp_path / "full.mp3", x, SR, format="MP3")
    sf.write(tmp_path / "full.ogg", x, SR, format="OGG", subtype="VORBIS")
    mp3 = (tmp_path / "full.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(mp3[: len(mp3) // 2])
    ogg = (tmp_path / "full.ogg").read_bytes()
    (tmp_path / "cut_page.ogg").write_bytes(ogg[: ogg_pages(ogg)[-2]])  # at a page boundary
    (tmp_path / "cut_mid.ogg").write_bytes(ogg[: int(len(ogg) * 0.6)])
    return tmp_path


def test_truncated_mp3_and_ogg_are_rejected_when_loaded(compressed):
    for name in ("full.mp3", "full.ogg"):
        assert abs(load_audio(compressed / name).size - 4 * SR) < 0.05 * SR
    for name in ("cut.mp3", "cut_page.ogg", "cut_mid.ogg"):
        # libsndfile and ffmpeg decode these to a shorter signal without a complaint
        with pytest.raises(AudioError) as err:
            load_audio(compressed / name)
        assert err.value.reason.startswith("truncated file"), err.value.reason
    with pytest.raises(AudioError, match=r"states 4\.000 s, only 1\.9\d\d s decode"):
        load_audio(compressed / "cut.mp3")


def test_truncated_noise_files_are_rejected_at_scan(compressed):
    for name in ("full.mp3", "full.ogg"):
        assert scan_audio(compressed / name) == audio_info(compressed / name)
    for name in ("cut.mp3", "cut_page.ogg", "cut_mid.ogg"):
        with pytest.raises(AudioError, match="truncated file"):
            scan_audio(compressed / name)


def test_mp3_without_a_xing_header_is_not_taken_for_truncated(tmp_path):
    import av

    x = (0.2 * np.random.default_rng(7).standard_normal(SR * 3)).astype(np.float32)
    path = tmp_path / "noxing.mp3"
    with av.open(str(path), "w", options={"write_xing": "0"}) as container:
        stream = container.add_stream("libmp3lame", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(x[None, :], format="fltp", layout="mono")
        frame.sample_rate = SR
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    assert abs(load_audio(path).size - 3 * SR) < 0.15 * SR  # encoder delay and padding
    scan_audio(path)  # libsndfile estimates the length from the bitrate: a little off, not truncated


# --- 5: silent noise files -----------------------------------------------------------------------

def test_silent_noise_file_is_rejected_at_scan_and_every_utterance_keeps_its_mixes(tmp_path):
    msp_root, musan_root = make_tiny_corpus(tmp_path / "c", per_split=(4, 2, 0))
    for kind in ("noise", "music"):
        for j in range(3):
            sf.write(musan_root / kind / "part" / f"{kind}-silent-{j}.wav", np.zeros(SR * 4), SR, subtype="PCM_16")
    records, noise_rejects = musan.prepare(musan_root)
    assert len(records) == 4 and all("silent" in r.reason for r in noise_rejects) and len(noise_rejects) == 6
    output, rejects, rows = build(msp_root, musan_root, tmp_path / "out")
    assert {f"{k}-silent-{j}.wav" for k in ("noise", "music") for j in range(3)} == set(rejects)
    counts = mixes_per_utt(rows)
    assert len(counts) == 6 and set(counts.values()) == {MIXES_PER_UTT}

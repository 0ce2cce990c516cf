"""Corpus and noise adapters on small fixtures in each real layout, the real MELD label files
and ESC-50/EmoDB excerpts from ../shared (skipped when absent), the demo corpus, and the
broken-audio cases of load_audio."""
from __future__ import annotations

import collections
import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mixer.audio import AudioError, audio_info, load_audio
from mixer import demo_corpus
from mixer.corpora import EMOTION_CORPORA, NOISE_CORPORA, csv_corpus, demo, emodb, esc50, folder, meld, msp, musan
from shards.errors import InputError
from shards.vocab import EMOTIONS, NOISE_KINDS, SPLITS
from mixer.records import safe_id


def write_tone(path: Path, seconds: float = 0.3, sr: int = 16000, freq: float = 440.0, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    if channels == 2:
        x = np.stack([x, 0.5 * x], axis=1)
    sf.write(str(path), x, sr, subtype="PCM_16")
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_mp4(path: Path, seconds: float, sr: int = 16000) -> Path:
    """A real mp4 like MELD's: a tiny video stream and an AAC audio stream."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (0.3 * np.sin(2 * np.pi * 330 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = container.add_stream("aac", rate=sr, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
        frame.sample_rate = sr
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            container.mux(packet)
        for _ in range(int(seconds * 10)):
            picture = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in video.encode(picture):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    return path


def reasons(rejects) -> str:
    return " | ".join(r.reason for r in rejects)


def assert_clean_ids(records, attr: str) -> None:
    ids = [getattr(r, attr) for r in records]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i == safe_id(i) and i for i in ids)


# --------------------------------------------------------------------------- MSP-Podcast

MSP_HEADER = ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]


def make_msp(root: Path, label_name: str = "labels_consensus.csv") -> Path:
    for name in ("MSP-PODCAST_0001_0001", "MSP-PODCAST_0001_0002", "MSP-PODCAST_0002_0001",
                 "MSP-PODCAST_0002_0002", "MSP-PODCAST_0003_0001", "MSP-PODCAST_0003_0002"):
        write_tone(root / "Audios" / f"{name}.wav")
    rows = [
        ["MSP-PODCAST_0001_0001.wav", "A", 5, 2, 5, "127", "Male", "Train"],
        ["MSP-PODCAST_0001_0002.wav", "H", 4, 6, 4, "127", "Male", "Validation"],
        ["MSP-PODCAST_0002_0001.wav", "N", 4, 4, 4, "Unknown", "Female", "Test1"],
        ["MSP-PODCAST_0002_0002.wav", "S", 2, 2, 3, "88", "Female", "Test2"],
        ["MSP-PODCAST_0003_0001.wav", "U", 4, 5, 4, "88", "Female", "Train"],  # surprise: not used
        ["MSP-PODCAST_0003_0002.wav", "Z", 4, 5, 4, "88", "Female", "Train"],  # unknown code
        ["MSP-PODCAST_0009_0001.wav", "A", 4, 5, 4, "90", "Male", "Train"],  # no such file
        ["MSP-PODCAST_0001_0001.wav", "N", 4, 5, 4, "127", "Male", "Train"],  # listed twice
    ]
    write_csv(root / "Labels" / label_name, MSP_HEADER, rows)
    return root


@pytest.mark.parametrize("label_name", ["labels_consensus.csv", "labels_concensus.csv"])
def test_msp_layout_and_rejects(tmp_path, label_name):
    root = make_msp(tmp_path / "MSP-Podcast", label_name)
    utts, rejects = msp.prepare(root)
    by_id = {u.utt_id: u for u in utts}
    assert list(by_id) == ["MSP-PODCAST_0001_0001", "MSP-PODCAST_0001_0002", "MSP-PODCAST_0002_0001",
                           "MSP-PODCAST_0002_0002"]
    first = by_id["MSP-PODCAST_0001_0001"]
    assert (first.label, first.split, first.speaker, first.corpus) == ("angry", "train", "127", "msp")
    assert Path(first.path).is_absolute() and Path(first.path).is_file()
    assert [by_id[i].split for i in list(by_id)[1:]] == ["validation", "test", "test2"]
    assert [by_id[i].label for i in list(by_id)[1:]] == ["happy", "neutral", "sad"]
    assert len(rejects) == 4, reasons(rejects)
    text = reasons(rejects)
    assert "'U' (surprise) not among the 4 classes used" in text
    assert "unknown emotion code 'Z'" in text
    assert "audio file not found" in text
    assert "duplicate utterance id 'MSP-PODCAST_0001_0001'" in text
    assert all(u.label in EMOTIONS and u.split in SPLITS for u in utts)
    assert_clean_ids(utts, "utt_id")


def test_msp_without_speaker_column_and_development_split(tmp_path):
    root = tmp_path / "msp"
    write_tone(root / "Audios" / "sub" / "MSP-PODCAST_0100_0001.wav")  # found in a sub-folder too
    write_csv(root / "Labels" / "labels_consensus.csv", ["FileName", "EmoClass", "Split_Set"],
              [["MSP-PODCAST_0100_0001.wav", "S", "Development"], ["MSP-PODCAST_0100_0002.wav", "A", "Test3"]])
    utts, rejects = msp.prepare(root)
    assert [(u.speaker, u.split, u.label) for u in utts] == [("", "validation", "sad")]
    assert len(rejects) == 1 and "split 'Test3' not used" in rejects[0].reason


def test_msp_bad_input_is_one_line_input_error(tmp_path):
    with pytest.raises(InputError) as err:
        msp.prepare(tmp_path / "nowhere")
    assert "nowhere" in str(err.value) and "\n" not in str(err.value)
    root = tmp_path / "msp"
    write_tone(root / "Audios" / "a.wav")
    write_csv(root / "Labels" / "labels_consensus.csv", ["FileName", "Emotion", "Split"], [["a.wav", "A", "Train"]])
    with pytest.raises(InputError) as err:
        msp.prepare(root)
    message = str(err.value)
    assert "labels_consensus.csv" in message and "FileName, EmoClass, Split_Set" in message
    assert "EmoClass" in message.split(";")[0] and "\n" not in message
    (root / "Labels" / "labels_consensus.csv").unlink()
    with pytest.raises(InputError, match="label file not found"):
        msp.prepare(root)


# --------------------------------------------------------------------------- MELD

MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
               "Season", "Episode", "StartTime", "EndTime"]


def make_meld(root: Path, split_rows: dict[str, list[list[str]]]) -> Path:
    for split, rows in split_rows.items():
        label_name, media_name, _ = meld.SPLIT_LAYOUT[split]
        write_csv(root / label_name, MELD_HEADER, rows)
        (root / media_name).mkdir(parents=True, exist_ok=True)
    return root


def meld_row(n: int, dialogue: int, utt: int, emotion: str, speaker: str = "Ross") -> list[str]:
    return [str(n), f"Oh, well… “yes”, {n}!", speaker, emotion, "neutral", str(dialogue), str(utt), "4", "7",
            "00:20:57,256", "00:21:00,049"]


def test_meld_fixture_with_real_mp4(tmp_path):
    rows = [meld_row(1, 0, 0, "anger"), meld_row(2, 0, 1, "joy", "Monica"), meld_row(3, 0, 2, "surprise"),
            meld_row(4, 1, 0, "sadness"), meld_row(5, 1, 1, "neutral")]
    root = make_meld(tmp_path / "MELD.Raw", {"train": rows, "dev": [meld_row(1, 0, 0, "neutral")],
                                             "test": [meld_row(1, 3, 0, "joy")]})
    good = write_mp4(root / "train_splits" / "dia0_utt0.mp4", 1.2)
    write_mp4(root / "train_splits" / "dia0_utt1.mp4", 0.8)
    write_mp4(root / "train_splits" / "dia0_utt2.mp4", 0.8)
    full = write_mp4(root / "train_splits" / "dia1_utt0.mp4", 1.0).read_bytes()
    broken = root / "train_splits" / "dia1_utt0.mp4"
    broken.write_bytes(full[: len(full) // 2])  # truncated: the moov atom at the end is gone
    # dia1_utt1.mp4 (neutral) is missing
    write_mp4(root / "dev_splits_complete" / "dia0_utt0.mp4", 0.6)
    write_mp4(root / "output_repeated_splits_test" / "dia3_utt0.mp4", 0.6)

    utts, rejects = meld.prepare(root)
    assert [u.utt_id for u in utts] == ["dev_dia0_utt0", "test_dia3_utt0", "train_dia0_utt0", "train_dia0_utt1",
                                        "train_dia1_utt0"]
    assert [(u.label, u.split) for u in utts] == [("neutral", "validation"), ("happy", "test"), ("angry", "train"),
                                                  ("happy", "train"), ("sad", "train")]
    assert utts[3].speaker == "Monica" and utts[2].corpus == "meld"
    assert len(rejects) == 2, reasons(rejects)
    assert "emotion 'surprise' not among the 4 classes used" in rejects[0].reason
    assert rejects[1].file.endswith("dia1_utt1.mp4") and "media file not found" in rejects[1].reason

    wav = load_audio(good)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size / 16000 - 1.2) < 0.15  # AAC adds priming/padding of up to ~0.1 s
    assert 0.2 < float(np.max(np.abs(wav))) < 0.4
    with pytest.raises(AudioError):
        load_audio(broken)


def test_meld_missing_media_folder_and_columns(tmp_path):
    root = make_meld(tmp_path / "m", {"train": [meld_row(1, 0, 0, "anger")]})
    (root / "train_splits").rmdir()
    with pytest.raises(InputError, match="train_splits"):
        meld.prepare(root, splits=("train",))
    with pytest.raises(InputError, match="dev_sent_emo.csv"):
        meld.prepare(root, splits=("train", "dev"), check_files=False)
    write_csv(root / "train_sent_emo.csv", ["Utterance", "Emotion"], [["hi", "joy"]])
    with pytest.raises(InputError) as err:
        meld.prepare(root, splits=("train",), check_files=False)
    assert "train_sent_emo.csv" in str(err.value) and "Dialogue_ID, Utterance_ID, Emotion, Speaker" in str(err.value)


def test_meld_real_rows_with_made_media(tmp_path, shared_dir):
    """A few real rows (quoted commas, curly quotes) with small mp4 files made for them."""
    source = shared_dir / "corpora" / "meld" / "train_sent_emo.csv"
    with open(source, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        picked: dict[str, list[str]] = {}
        for row in reader:
            picked.setdefault(row[header.index("Emotion")], row)
    assert {"anger", "joy", "neutral", "sadness", "surprise"} <= set(picked)
    rows = [picked[e] for e in ("anger", "joy", "neutral", "sadness", "surprise")]
    root = tmp_path / "MELD.Raw"
    write_csv(root / "train_sent_emo.csv", header, rows)
    media = root / "train_splits"
    d, u = header.index("Dialogue_ID"), header.index("Utterance_ID")
    for row in rows[:3] + rows[4:]:  # the sadness row's media is missing
        write_mp4(media / f"dia{row[d]}_utt{row[u]}.mp4", 0.5)
    utts, rejects = meld.prepare(root, splits=("train",))
    assert sorted(u.label for u in utts) == ["angry", "happy", "neutral"]
    assert {u.speaker for u in utts} == {r[header.index("Speaker")] for r in rows[:3]}
    assert sorted(r.reason.split(" (")[0] for r in rejects) == [
        "emotion 'surprise' not among the 4 classes used", "media file not found"]
    for utt in utts:
        assert load_audio(utt.path).size > 0.4 * 16000


def test_meld_real_label_files_match_table1(shared_dir):
    root = shared_dir / "corpora" / "meld"
    utts, rejects = meld.prepare(root, splits=("train", "dev"), check_files=False)
    counts = collections.Counter((u.split, u.label) for u in utts)
    expected = {"train": {"angry": 1109, "happy": 1743, "neutral": 4710, "sad": 683},
                "validation": {"angry": 153, "happy": 163, "neutral": 470, "sad": 111}}
    for split, by_label in expected.items():
        assert {lab: counts[(split, lab)] for lab in EMOTIONS} == by_label
    assert sum(1 for u in utts if u.split == "train") == 8245
    assert sum(1 for u in utts if u.split == "validation") == 897
    # every other row (surprise, fear, disgust) is a reject: 9989 + 1109 rows in all
    assert len(utts) + len(rejects) == 9989 + 1109
    assert all("not among the 4 classes used" in r.reason for r in rejects)
    assert_clean_ids(utts, "utt_id")


# --------------------------------------------------------------------------- EmoDB


def test_emodb_fixture(tmp_path):
    wav = tmp_path / "emodb" / "wav"
    for name in ("03a01Wa", "08a02Fc", "11b01Nd", "12a05Ta", "15b03Wb", "16a01Nc", "13a04La", "10b02Ea", "09a01Aa"):
        write_tone(wav / f"{name}.wav")
    write_tone(wav / "recording.wav")
    (wav / "notes.txt").write_text("not audio")
    utts, rejects = emodb.prepare(tmp_path / "emodb")
    split_of = {u.utt_id: (u.split, u.label, u.speaker) for u in utts}
    assert split_of == {
        "03a01Wa": ("train", "angry", "03"), "08a02Fc": ("train", "happy", "08"), "11b01Nd": ("train", "neutral", "11"),
        "12a05Ta": ("validation", "sad", "12"), "15b03Wb": ("test", "angry", "15"),
        "16a01Nc": ("test", "neutral", "16"),
    }
    text = reasons(rejects)
    assert len(rejects) == 5
    for fragment in ("(boredom)", "(disgust)", "(fear)", "EmoDB's pattern", "not a .wav"):
        assert fragment in text
    # the wav folder itself, and a custom split
    utts, _ = emodb.prepare(wav, test_speakers=("03",), validation_speakers=("08",))
    assert {u.utt_id: u.split for u in utts}["03a01Wa"] == "test"
    with pytest.raises(InputError):
        emodb.prepare(tmp_path / "missing")
    with pytest.raises(InputError, match="both"):
        emodb.prepare(wav, test_speakers=("03",), validation_speakers=("03",))


def test_emodb_real_excerpt(shared_dir):
    utts, rejects = emodb.prepare(shared_dir / "audio" / "emodb", test_speakers=("03",), validation_speakers=("10",))
    assert len(utts) + len(rejects) == 188
    assert {u.label for u in utts} == set(EMOTIONS)
    assert {u.speaker for u in utts} == {"03", "08", "09", "10"}
    assert all("not among the 4 classes used" in r.reason for r in rejects)
    wav = load_audio(utts[0].path)  # 22.05 kHz file, resampled
    assert wav.dtype == np.float32 and abs(wav.size / 16000 - audio_info(utts[0].path)[0] / 22050) < 0.01


# --------------------------------------------------------------------------- CSV


def test_csv_corpus(tmp_path):
    base = tmp_path / "corpus"
    write_tone(base / "clips" / "a.wav")
    write_tone(base / "clips" / "b.wav")
    write_tone(base / "clips" / "c.flac")
    elsewhere = write_tone(tmp_path / "other" / "d.wav")
    write_tone(base / "clips" / "e.wav")
    rows = [
        ["clips/a.wav", "Anger", "train", "s1"],
        ["clips/b.wav", "joy", "dev", "s2"],
        ["clips/c.flac", "NEU", "test", "s1"],
        [str(elsewhere), "sadness", "val", "s3"],
        ["clips/e.wav", "excited", "train", "s1"],  # label not used
        ["clips/a.wav", "sad", "train", "s1"],  # listed twice
        ["clips/missing.wav", "happy", "train", "s2"],
        ["clips/e.wav", "happy", "holdout", "s2"],  # unknown split
    ]
    table = write_csv(base / "list.csv", ["Path", "Label", "Split", "Speaker"], rows)
    utts, rejects = csv_corpus.prepare(table)
    got = {u.utt_id: (u.label, u.split, u.speaker) for u in utts}
    outside_id = safe_id(str(elsewhere.with_suffix("")).lstrip("/"))  # absolute path outside the CSV's folder
    assert got == {"clips_a": ("angry", "train", "s1"), "clips_b": ("happy", "validation", "s2"),
                   "clips_c": ("neutral", "test", "s1"), outside_id: ("sad", "validation", "s3")}
    assert_clean_ids(utts, "utt_id")
    text = reasons(rejects)
    assert len(rejects) == 4
    for fragment in ("label 'excited' not among the 4 classes", "duplicate utterance id 'clips_a'",
                     "audio file not found", "unknown split 'holdout'"):
        assert fragment in text
    assert csv_corpus.prepare(base)[0] == utts  # the folder holding the one CSV
    write_csv(base / "list.csv", ["file", "emotion"], [["clips/a.wav", "angry"]])
    with pytest.raises(InputError) as err:
        csv_corpus.prepare(table)
    assert "list.csv" in str(err.value) and "path, label, split" in str(err.value)


# --------------------------------------------------------------------------- MUSAN, ESC-50, folders


def test_musan(tmp_path):
    root = tmp_path / "musan"
    write_tone(root / "noise" / "free-sound" / "noise-free-sound-0001.wav", 1.0)
    write_tone(root / "noise" / "sound-bible" / "noise-sound-bible-0000.wav", 0.5, sr=8000)
    write_tone(root / "music" / "fma" / "music-fma-0000.wav", 2.0, sr=22050)
    write_tone(root / "speech" / "librivox" / "speech-librivox-0000.wav", 0.5)
    (root / "noise" / "free-sound" / "ANNOTATIONS").write_text("noise-free-sound-0001 ...")
    full = write_tone(root / "music" / "fma" / "music-fma-0001.wav", 1.0).read_bytes()
    (root / "music" / "fma" / "music-fma-0001.wav").write_bytes(full[: len(full) // 2])
    (root / "music" / "fma" / "music-fma-0002.wav").write_bytes(b"")
    records, rejects = musan.prepare(root)
    assert [(r.noise_id, r.kind, r.num_frames, r.sample_rate) for r in records] == [
        ("music-fma-0000", "music", 44100, 22050),
        ("noise-free-sound-0001", "noise", 16000, 16000),
        ("noise-sound-bible-0000", "noise", 4000, 8000),
    ]
    assert records[0].num_samples_16k == 32000 and Path(records[0].path).is_absolute()
    assert sorted(Path(r.file).name for r in rejects) == ["music-fma-0001.wav", "music-fma-0002.wav"]
    assert "truncated" in reasons(rejects)
    with_speech, _ = musan.prepare(root, kinds=("noise", "music", "speech"))
    assert [r.noise_id for r in with_speech if r.kind == "speech"] == ["speech-librivox-0000"]
    shutil.rmtree(root / "music")
    with pytest.raises(InputError, match="music"):
        musan.prepare(root)


def test_esc50_fixture(tmp_path):
    root = tmp_path / "ESC-50"
    meta = [["1-100032-A-0.wav", 1, 0, "dog", "True", "100032.ogg", "A"],
            ["1-100038-A-14.wav", 1, 14, "chirping_birds", "False", "100038.ogg", "A"],
            ["2-100648-A-43.wav", 2, 43, "car_horn", "False", "100648.ogg", "A"],
            ["3-100018-A-31.wav", 3, 31, "mouse_click", "False", "100018.ogg", "A"]]  # file missing
    for name, *_ in meta[:3]:
        write_tone(root / "audio" / name, 5.0, sr=44100)
    write_tone(root / "audio" / "5-999999-A-1.wav", 5.0, sr=44100)  # not in meta
    header = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    write_csv(root / "meta" / "esc50.csv", header, meta)
    records, rejects = esc50.prepare(root)
    assert [r.noise_id for r in records] == ["1-100032-A-0", "1-100038-A-14", "2-100648-A-43"]
    assert {r.kind for r in records} == {"unseen"} and records[0].num_frames == 5 * 44100
    assert len(rejects) == 2 and "audio file not found" in reasons(rejects) and "not listed" in reasons(rejects)
    only_fold2, _ = esc50.prepare(root, folds=[2])
    assert [r.noise_id for r in only_fold2] == ["2-100648-A-43"]
    dogs, _ = esc50.prepare(root, categories=["dog"])
    assert [r.noise_id for r in dogs] == ["1-100032-A-0"]
    with pytest.raises(InputError, match="rain"):
        esc50.prepare(root, categories=["rain"])
    (root / "meta" / "esc50.csv").unlink()
    with pytest.raises(InputError, match="esc50.csv"):
        esc50.prepare(root)


def test_esc50_real_excerpt(shared_dir):
    root = shared_dir / "audio" / "esc50_glass"
    records, rejects = esc50.prepare(root)
    assert len(records) == 168 and rejects == []
    assert {r.sample_rate for r in records} == {16000} and {r.kind for r in records} == {"unseen"}
    assert {r.num_frames for r in records} == {16000}
    fold1, _ = esc50.prepare(root, folds=(1,))
    assert 0 < len(fold1) < 168 and all(r.noise_id.startswith("1-") for r in fold1)
    assert load_audio(records[0].path).size == 16000


def test_folder(tmp_path):
    root = tmp_path / "my noises"
    write_tone(root / "street" / "a.wav")
    write_tone(root / "street" / "a.flac")  # same stem, other format: the later one keeps its suffix
    write_tone(root / "cafe.v2" / "b.wav")
    write_tone(root / "c.flac", sr=48000)
    (root / "clip.mp4").write_bytes(b"\x00" * 10)
    (root / "readme.txt").write_text("not audio")
    (root / ".hidden.wav").write_bytes(b"junk")
    records, rejects = folder.prepare(root, kind="music")
    assert [r.noise_id for r in records] == ["c", "cafe_v2_b", "street_a", "street_a_wav"]
    assert {r.kind for r in records} == {"music"}
    assert_clean_ids(records, "noise_id")
    assert len(rejects) == 1 and "convert to wav" in rejects[0].reason
    with pytest.raises(InputError, match="kind"):
        folder.prepare(root, kind="jazz")


def test_registries_reach_every_adapter_and_the_cli_offers_them():
    from typer.testing import CliRunner

    from mixer.cli import app

    # the CLI's corpora are the registry's (it keeps no list of its own)
    result = CliRunner().invoke(app, ["superset", "--corpus", "nope", "--root", "."])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --corpus 'nope': expected one of {', '.join(EMOTION_CORPORA)}"
    # each registered name runs its own module's prepare
    assert EMOTION_CORPORA["msp"] is msp.prepare and EMOTION_CORPORA["demo"] is demo.prepare
    assert NOISE_CORPORA["musan"] is musan.prepare and NOISE_CORPORA["esc50"] is esc50.prepare


# --------------------------------------------------------------------------- demo corpus

SMALL_DEMO = dict(utterances_per_class=(2, 1, 1), speakers=(2, 1, 1), noise_files=3, music_files=2,
                  esc50_clips_per_category=1)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_corpus_is_deterministic_and_loads(tmp_path):
    first = demo_corpus.write_demo_corpus(tmp_path / "a", seed=3, **SMALL_DEMO)
    demo_corpus.write_demo_corpus(tmp_path / "b", seed=3, **SMALL_DEMO)
    assert set(first) == {"msp", "musan", "esc50"}
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert len([k for k in a if k.endswith(".wav")]) == 16 + 3 + 2 + 6

    utts, rejects = msp.prepare(first["msp"])
    assert rejects == [] and len(utts) == 16
    assert collections.Counter((u.split, u.label) for u in utts) == {
        (s, e): n for s, n in (("train", 2), ("validation", 1), ("test", 1)) for e in EMOTIONS}
    assert len({u.speaker for u in utts}) == 4
    assert demo.prepare(tmp_path / "a")[0] == [dataclasses.replace(u, corpus="demo") for u in utts]
    wav = load_audio(utts[0].path)
    assert 1.5 <= wav.size / 16000 <= 4.0

    noise, rejects = musan.prepare(first["musan"])
    assert rejects == [] and collections.Counter(r.kind for r in noise) == {"noise": 3, "music": 2}
    unseen, rejects = esc50.prepare(first["esc50"])
    assert rejects == [] and len(unseen) == 6 and {r.sample_rate for r in unseen} == {44100}

    demo_corpus.write_demo_corpus(tmp_path / "c", seed=4, **SMALL_DEMO)
    c = tree_bytes(tmp_path / "c")
    assert c.keys() == a.keys() and all(c[k] != a[k] for k in a if k.endswith(".wav"))
    demo_corpus.write_demo_corpus(tmp_path / "a", seed=3, **SMALL_DEMO)  # rewriting its own output is fine
    assert tree_bytes(tmp_path / "a") == a
    write_tone(tmp_path / "taken" / "msp" / "mine.wav")
    with pytest.raises(InputError, match="not a demo corpus"):
        demo_corpus.write_demo_corpus(tmp_path / "taken", **SMALL_DEMO)


def test_demo_classes_differ_in_prosody(tmp_path):
    """Sad speech is quieter and darker than angry speech on average (the cues noise masks)."""
    paths = demo_corpus.write_demo_corpus(tmp_path, seed=0, utterances_per_class=(6, 1, 1), speakers=(2, 1, 1),
                                   noise_files=1, music_files=1, esc50_clips_per_category=1)
    utts, _ = msp.prepare(paths["msp"])
    level, brightness = collections.defaultdict(list), collections.defaultdict(list)
    for u in utts:
        x = load_audio(u.path)
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(x.size, 1 / 16000)
        level[u.label].append(10 * np.log10(np.mean(x**2)))
        brightness[u.label].append(np.sum(spectrum[freqs > 2000]) / np.sum(spectrum))
    assert np.mean(level["angry"]) > np.mean(level["neutral"]) > np.mean(level["sad"])
    assert np.mean(brightness["angry"]) > np.mean(brightness["sad"])


# --------------------------------------------------------------------------- broken audio


def test_load_audio_bad_and_odd_files(tmp_path):
    full = write_tone(tmp_path / "full.wav", 1.0).read_bytes()
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(truncated)
    with pytest.raises(AudioError, match="truncated"):
        audio_info(truncated)

    stereo = write_tone(tmp_path / "stereo.wav", 1.0, sr=44100, freq=1000, channels=2)
    wav = load_audio(stereo)
    assert wav.dtype == np.float32 and wav.ndim == 1 and wav.size == 16000
    assert abs(float(np.max(np.abs(wav[1000:-1000]))) - 0.75 * 0.3) < 0.01  # mean of x and x/2

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    header_only = tmp_path / "header_only.wav"
    sf.write(str(header_only), np.zeros(0), 16000, subtype="PCM_16")
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(16000), 16000, subtype="PCM_16")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all, just some bytes " * 20)
    for path, fragment in ((empty, "unreadable"), (header_only, "empty"), (silent, "silent"), (junk, "unreadable"),
                           (tmp_path / "absent.wav", "not found")):
        with pytest.raises(AudioError) as err:
            load_audio(path)
        assert fragment in err.value.reason and err.value.path == str(path)
    for path in (empty, header_only, junk):
        with pytest.raises(AudioError):
            audio_info(path)


def test_folder_adapter_accepts_every_noise_kind_and_only_those(tmp_path):
    """Every kind the store knows can label a folder of noise; anything else is refused."""
    write_tone(tmp_path / "n" / "a.wav")
    for kind in NOISE_KINDS:
        records, rejects = folder.prepare(tmp_path / "n", kind=kind)
        assert [r.kind for r in records] == [kind] and rejects == []
    with pytest.raises(InputError, match="kind"):
        folder.prepare(tmp_path / "n", kind="traffic")

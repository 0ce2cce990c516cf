"""``prep`` offers the corpora of the adapters' registry with each adapter's split options
(``--test-speakers`` ...) and the noise adapters as ``--noise-layout``."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from mixer import corpora
from mixer.cli import app
from shards.reader import open_store
from shards.vocab import TABLE


def _help(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_stage_offers_every_adapters_split_options_and_noise_layouts():
    for command in ("superset", "testsets", "fixed-snr", "copypaste"):
        text = _help(command)
        for corpus in corpora.EMOTION_ADAPTERS:
            assert corpus in text
            for option in corpora.split_options(corpus):
                assert option.flag in text, (command, option.flag)
        assert "--noise-layout" in text and "folder" in text
    assert {o.flag for o in corpora.split_options("emodb")} == {"--test-speakers", "--validation-speakers"}
    assert {o.flag for o in corpora.split_options("ravdess")} == {"--test-actors", "--validation-actors"}


def test_a_split_option_of_another_corpus_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["superset", "--corpus", "demo", "--root", str(tmp_path), "--test-actors", "1,2"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --test-actors applies to --corpus ravdess or crema_d, not demo"


def test_a_malformed_split_option_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["superset", "--corpus", "ravdess", "--root", str(tmp_path), "--test-actors", "one"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --test-actors 'one': expected comma-separated int values"


def test_an_unknown_noise_layout_is_one_line_exit_2(tmp_path):
    (tmp_path / "corpus").mkdir()
    result = CliRunner().invoke(app, ["fixed-snr", "--corpus", "demo", "--root", str(tmp_path / "corpus"),
                                      "--noise-root", str(tmp_path), "--noise-layout", "wind"])
    assert result.exit_code == 2
    assert "error: --noise-layout 'wind': expected one of musan, esc50, folder" in result.output


def test_prep_superset_emodb_with_held_out_speakers_and_a_noise_folder(shared_dir, tmp_path):
    emodb_root = shared_dir / "audio" / "emodb"
    noise_folder = shared_dir / "audio" / "esc50_glass"
    args = ["superset", "--corpus", "emodb", "--root", str(emodb_root), "--test-speakers", "10",
            "--validation-speakers", "09,14", "--noise-root", str(noise_folder), "--noise-layout", "folder",
            "--noise-types", "noise", "--bins", "2", "--metrics", "stoi", "--limit", "3", "--out", str(tmp_path),
            "--jobs", "2", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    store = tmp_path / "emodb"
    rows = pq.read_table(store / TABLE, columns=["subset", "split", "speaker", "noise_type", "stoi"]).to_pydict()
    speakers = {(split, speaker) for split, speaker in zip(rows["split"], rows["speaker"])}
    assert {s for split, s in speakers if split == "validation"} <= {"09", "14"}
    assert {s for split, s in speakers if split == "validation"}
    assert not {s for split, s in speakers if split == "train"} & {"09", "10", "14"}
    assert "10" not in {s for _, s in speakers}  # the test speaker is in no superset split
    superset = [i for i, s in enumerate(rows["subset"]) if s == "superset"]
    assert len(superset) == (3 + 3) * 2  # 3 train + 3 validation utterances x 2 bins x 1 noise type
    assert {rows["noise_type"][i] for i in superset} == {"noise"}
    assert np.all(np.isfinite(np.array(rows["stoi"])[superset]))
    plan = open_store(store).manifest["stages"]["superset"]
    assert plan["corpus"] == "emodb" and plan["noise_root"] == str(noise_folder)

    # the held-out speaker's utterances make the test sets
    result = CliRunner().invoke(app, ["testsets", *args[1:7], "--noise-root", str(noise_folder), "--noise-layout",
                                      "folder", "--noise-types", "noise", "--metrics", "stoi", "--limit", "3",
                                      "--out", str(tmp_path), "--jobs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(store / TABLE, columns=["subset", "speaker"]).to_pydict()
    test_speakers = {sp for subset, sp in zip(rows["subset"], rows["speaker"]) if subset.startswith("test_")}
    assert test_speakers == {"10"}

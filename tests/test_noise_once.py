"""A recipe store holds each noise once, whatever the stages that mix with it, and its
recipe parts' rows are stored by column.

Each noise is a shard named by the content id of its file; a stage lists the noise its
recipes name ([type, file, content id] in its plan and manifest entry), so a later stage
finds the shards an earlier one stored complete, the same file under two names is stored
once, and other noise under the same names (another --noise-root for a later stage) is
stored beside the first without changing the earlier stage's mixes. Stores built before
(one noise copy per stage, rows written row by row) still read."""
from __future__ import annotations

import json
import math
import platform
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
from typer.testing import CliRunner

from earlier_code import prep_at
from mixer.cli import app
from shards.atomic import json_clean
from shards.reader import open_store
from shards.rows import decode_rows, encode_rows
from shards.store import read_rows
from shards.verify import verify_store
from shards.vocab import NOISE_SOURCES, NOISE_SUBSET, TABLE
from test_distortions import assert_materializes_as_the_audio_build
from test_recipe_store import _stage_cmds
from test_superset import SR, make_tiny_corpus, superset_cmd

runner = CliRunner()

#: A commit that stored a recipe store's noise once per stage and its rows row by row (the last
#: one, 332609b, is not used: an older, long-landed commit is surely in every clone's history).
NOISE_PER_STAGE = "b2ff57e"


def _fixed_snr(msp: Path, musan: Path, out: Path, mixes: str) -> list[str]:
    return _stage_cmds(msp, musan, out, mixes)[1]


def _build(cmds: list[list[str]]) -> None:
    for cmd in cmds:
        result = runner.invoke(app, cmd)
        assert result.exit_code == 0, result.output


def _noise_shards(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((store / "shards").glob(f"{NOISE_SUBSET}-*.tar"))}


def _mix_keys(store: Path) -> list[str]:
    table = pq.read_table(store / TABLE, columns=["key", "noise_file", "utt_id"])
    return [k for k, f, u in zip(*(table[c].to_pylist() for c in ("key", "noise_file", "utt_id"))) if f and u]


def test_a_later_stage_reuses_the_noise_an_earlier_stage_stored(tmp_path):
    msp, musan = make_tiny_corpus(tmp_path)
    store = tmp_path / "recipe" / "msp"
    _build([superset_cmd(msp, musan, tmp_path / "recipe", "--jobs", "1", "--mixes", "recipe")])
    stored = _noise_shards(store)
    assert len(stored) == 4  # two noise and two music files, one shard each
    _build([_fixed_snr(msp, musan, tmp_path / "recipe", "recipe")])
    assert _noise_shards(store) == stored  # the same files, not written again
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["versions"]["cpu"].startswith(platform.machine())  # what a mix's last bits depend on
    for stage in ("superset", "fixed_snr"):
        ids = {f"{NOISE_SUBSET}-{i}-000000.tar" for _, _, i in manifest["stages"][stage][NOISE_SOURCES]}
        assert ids <= set(stored), stage
    _build([superset_cmd(msp, musan, tmp_path / "audio", "--jobs", "1"), _fixed_snr(msp, musan, tmp_path / "audio",
                                                                                    "audio")])
    assert_materializes_as_the_audio_build(store, tmp_path / "audio" / "msp", tmp_path / "m", rescore=6)


def test_one_file_under_two_names_is_stored_once(tmp_path):
    msp, musan = make_tiny_corpus(tmp_path)
    first_music = sorted((musan / "music" / "part").glob("*.wav"))[0]
    shutil.copyfile(first_music, musan / "noise" / "part" / "same-as-music.wav")
    store = tmp_path / "recipe" / "msp"
    _build([superset_cmd(msp, musan, tmp_path / "recipe", "--jobs", "1", "--mixes", "recipe")])
    listed = json.loads((store / "manifest.json").read_text())["stages"]["superset"][NOISE_SOURCES]
    assert len(listed) == 5 and len({i for _, _, i in listed}) == 4
    assert len(_noise_shards(store)) == 4
    _build([superset_cmd(msp, musan, tmp_path / "audio", "--jobs", "1")])
    assert_materializes_as_the_audio_build(store, tmp_path / "audio" / "msp", tmp_path / "m", rescore=6)


def test_other_noise_under_the_same_names_is_kept_beside_the_first(tmp_path):
    """A later stage mixed from another noise folder with the same file names: both noise
    sets are stored, and each stage's mixes render from its own."""
    msp, musan = make_tiny_corpus(tmp_path)
    other = tmp_path / "musan-other"
    shutil.copytree(musan, other)
    rng = np.random.default_rng(11)
    for path in sorted(other.rglob("*.wav")):
        n = sf.info(path).frames
        sf.write(path, (rng.standard_normal(n) * 0.05).astype(np.float32), SR, subtype="PCM_16")
    for mixes in ("recipe", "audio"):
        _build([superset_cmd(msp, musan, tmp_path / mixes, "--jobs", "1", "--mixes", mixes),
                _fixed_snr(msp, other, tmp_path / mixes, mixes)])
    store = tmp_path / "recipe" / "msp"
    stages = json.loads((store / "manifest.json").read_text())["stages"]
    names = lambda stage: {(t, f): i for t, f, i in stages[stage][NOISE_SOURCES]}  # noqa: E731
    shared = set(names("superset")) & set(names("fixed_snr"))
    assert shared and all(names("superset")[k] != names("fixed_snr")[k] for k in shared)
    assert len(_noise_shards(store)) == 8
    assert_materializes_as_the_audio_build(store, tmp_path / "audio" / "msp", tmp_path / "m", rescore=8)


def test_a_recipe_store_built_with_noise_per_stage_still_reads(tmp_path):
    msp, musan = make_tiny_corpus(tmp_path)
    args = superset_cmd(msp, musan, tmp_path / "before", "--jobs", "1", "--mixes", "recipe")
    prep_at(NOISE_PER_STAGE, args, tmp_path)
    _build([superset_cmd(msp, musan, tmp_path / "audio", "--jobs", "1")])
    before, audio = tmp_path / "before" / "msp", tmp_path / "audio" / "msp"
    assert sorted(p.name for p in (before / "shards").glob("noise-*.tar")) == ["noise-superset-000000.tar"]
    assert "rows" in json.loads(next((before / "shards").glob("superset-*.rows.json")).read_text())
    assert verify_store(before, progress=False)[0] == []
    keys = _mix_keys(audio)
    for key, x, y in zip(keys, open_store(before).read_audio(keys), open_store(audio).read_audio(keys)):
        assert np.array_equal(x, y), key
    assert open_store(before).read_fields(keys[:3]) == open_store(audio).read_fields(keys[:3])


def test_recipe_rows_are_stored_by_column_and_read_back_as_written(tmp_path):
    msp, musan = make_tiny_corpus(tmp_path)
    _build([superset_cmd(msp, musan, tmp_path, "--jobs", "1", "--mixes", "recipe")])
    store = tmp_path / "msp"
    for path in sorted((store / "shards").glob("superset-*.rows.json")):
        document = json.loads(path.read_text())
        assert "rows" not in document and {"fields", "constant", "columns"} <= set(document)
        rows = read_rows(store, path.name.removesuffix(".rows.json"))["rows"]
        assert len(rows) == document["samples"] and rows[0]["flac_offset"] == -1
        # as it was written before: row by row, indented
        row_by_row = json.dumps(json_clean({**{k: v for k, v in document.items()
                                                if k not in ("fields", "constant", "columns")}, "rows": rows}),
                                sort_keys=True, indent=1)
        assert path.stat().st_size < len(row_by_row) / 2  # shared values and field names once, no indentation


def test_rows_with_other_fields_nan_and_one_row_encode_and_decode_exactly():
    rows = [{"key": "a", "stoi": 0.5, "rir_id": ""}, {"key": "b", "stoi": math.nan, "rir_id": ""},
            {"key": "c", "stoi": 0.25, "talker_ids": "[\"x\"]"}]
    back = decode_rows(json.loads(json.dumps(encode_rows(rows))))
    assert [list(r) for r in back] == [list(r) for r in rows]
    assert back[0] == rows[0] and back[2] == rows[2] and back[1]["key"] == "b" and math.isnan(back[1]["stoi"])
    one = [{"key": "a", "n": 1, "x": 1.0}]
    assert decode_rows({**encode_rows(one), "samples": 1}) == one
    same = [{"n": 1}, {"n": 1.0}]  # equal values of other types are not one shared value
    assert [type(r["n"]) for r in decode_rows({**encode_rows(same), "samples": 2})] == [int, float]
    assert decode_rows({"rows": one}) == one  # a rows file written row by row

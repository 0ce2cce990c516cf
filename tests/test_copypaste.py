"""The CopyPaste baseline: plan (composition, counts, seeding), the composites and mixes a
`prep copypaste` build stores, and a one-epoch `trainer run --strategy copypaste`."""
from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from mixer.cli import app
from mixer.plan import (
    CopyPart, CopyPasteOptions, FixedSnrOptions, UttJob, copypaste_composites, copypaste_count, plan_copypaste,
    plan_fixed_snr,
)
from mixer.records import NoiseFile, Utterance
from shards.errors import InputError
from shards.reader import open_store
from shards.verify import verify_store
from shards.vocab import COPYPASTE_MIX_SUBSET, COPYPASTE_SUBSET, EMOTIONS, NEUTRAL
from test_superset import make_tiny_corpus, shard_digests
from trainer.cli import app as trainer_app

runner = CliRunner()
SR = 16000
MAX = 4 * SR  # the default --max-segment-s 4, in samples
N_TRAIN = 16  # tiny utterances last 1.0 + 0.25 i s: 3 of the 16 train ones are longer than 4 s
N_NEW = 13  # round(0.8 * 16) = round(12.8)


def copypaste_cmd(msp, musan, out, *extra):
    return ["copypaste", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan), "--out", str(out),
            "--utts-per-shard", "4", "--quiet", *extra]


def train_cmd(store, out):
    return ["run", "--data", str(store), "--out", str(out), "--strategy", "copypaste", "--workers", "0", "--quiet",
            "--batch-size", "16", "--max-epochs", "1", "--no-eval"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny store: the superset (1 bin, STOI only), then prep copypaste. Also the answer of
    trainer run --strategy copypaste before prep copypaste ran."""
    root = tmp_path_factory.mktemp("copypaste")
    msp, musan = make_tiny_corpus(root, per_split=(N_TRAIN, 2, 2))
    out = root / "out"
    result = runner.invoke(app, ["superset", "--corpus", "msp", "--root", str(msp), "--noise-root", str(musan),
                                 "--out", str(out), "--bins", "1", "--metrics", "stoi", "--jobs", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    store = out / "msp"
    before = shard_digests(store)
    missing = runner.invoke(trainer_app, train_cmd(store, root / "run-before"))
    result = runner.invoke(app, copypaste_cmd(msp, musan, out, "--jobs", "2"))
    assert result.exit_code == 0, result.output
    return {"msp": msp, "musan": musan, "root": root, "store": store, "before": before, "missing": missing,
            "output": result.output}


def _table(store):
    return open_store(store).table(["key", "subset", "split", "utt_id", "label", "speaker", "num_samples",
                                    "snr_target", "noise_type"]).to_pylist()


# --- plan ------------------------------------------------------------------------------------

def _utts(n, labels=EMOTIONS):
    return [Utterance(f"u{i:03d}", f"/x/u{i}.wav", labels[i % len(labels)], "train", f"s{i % 3}") for i in range(n)]


NOISES = [NoiseFile("n0", "/n/n0.wav", "noise", SR, SR), NoiseFile("m0", "/n/m0.wav", "music", SR, SR)]


def test_count_is_0p8n_rounded():
    # 0.8N is a multiple of 0.2, never a half: round() and half-up agree
    assert [copypaste_count(n) for n in (1, 4, 5, 10, 24, 1000)] == [1, 3, 4, 8, 19, 800]
    assert len(copypaste_composites(_utts(10), CopyPasteOptions())) == 8


def test_composition_rule_labels_and_class_shares():
    utts = _utts(40)  # 10 of each class
    jobs = copypaste_composites(utts, CopyPasteOptions())
    label_of = {u.utt_id: u.label for u in utts}
    assert [j.utt.utt_id for j in jobs] == [f"cp_{i:06d}" for i in range(32)]
    pairs = [j for j in jobs if {label_of[p.utt_id] for p in j.parts} != {j.utt.label}]
    same = [j for j in jobs if j not in pairs]
    assert len(pairs) == 16 and len(same) == 16  # ceil(M/2) neutral + emotional, floor(M/2) one emotion
    for j in pairs:
        labels = sorted(label_of[p.utt_id] for p in j.parts)
        assert NEUTRAL in labels and j.utt.label != NEUTRAL and j.utt.label in labels
    for j in same:
        assert j.parts[0].utt_id != j.parts[1].utt_id
    # shares in proportion to the train counts (largest remainder, ties in EMOTIONS order)
    assert Counter(j.utt.label for j in pairs) == {"angry": 6, "happy": 5, "sad": 5}
    assert Counter(j.utt.label for j in same) == {"angry": 4, "happy": 4, "neutral": 4, "sad": 4}
    # the neutral part comes first or second by a coin flip
    firsts = Counter(label_of[j.parts[0].utt_id] == NEUTRAL for j in pairs)
    assert firsts[True] and firsts[False]
    for j in jobs:
        assert j.utt.split == "train" and j.utt.path == ""
        assert j.utt.speaker == "+".join(f"s{int(p.utt_id[1:]) % 3}" for p in j.parts)
        assert all(p.max_samples == MAX and 0 <= p.offset_fraction < 1 for p in j.parts)


def test_one_emotion_needs_two_utterances_and_never_pairs_one_with_itself():
    # sad has a single utterance: no sad+sad composite can be made, its share goes elsewhere
    utts = _utts(6, ("angry", "angry", "neutral", "neutral", "happy", "happy")) + \
        [Utterance("z_sad", "/x/sad.wav", "sad", "train")]
    labels = {u.utt_id: u.label for u in utts}

    def label_of(part):
        return labels[part.utt_id]
    for seed in range(20):
        jobs = copypaste_composites(utts, CopyPasteOptions(seed=seed))
        assert Counter(j.utt.label for j in jobs if NEUTRAL not in {label_of(p) for p in j.parts}) == {"angry": 1, "happy": 1}
        for j in jobs:
            assert j.parts[0].utt_id != j.parts[1].utt_id


def test_plan_is_seeded_and_independent_of_corpus_order():
    utts = _utts(30)
    shuffled = utts[:]
    random.Random(3).shuffle(shuffled)
    a = plan_copypaste(utts, NOISES, CopyPasteOptions())
    assert [t.fingerprint() for t in a] == [t.fingerprint() for t in plan_copypaste(shuffled, NOISES, CopyPasteOptions())]
    assert [t.fingerprint() for t in a] != [t.fingerprint() for t in plan_copypaste(utts, NOISES, CopyPasteOptions(seed=1))]
    # 0.8N composites stored clean, 6 mixes of each of the N + 0.8N
    clean = [t for t in a if t.subset == COPYPASTE_SUBSET]
    mixed = [t for t in a if t.subset == COPYPASTE_MIX_SUBSET]
    assert sum(t.num_samples for t in clean) == 24 and all(not j.mixes for t in clean for j in t.jobs)
    assert sum(t.num_samples for t in mixed) == 6 * (30 + 24)
    assert len({t.name for t in a}) == len(a)


def test_input_paths_and_fingerprint_cover_the_parts():
    utt = Utterance("cp_000000", "", "angry", "train", "a+b")
    job = UttJob(utt, parts=(CopyPart("a", "/x/a.wav", MAX, 0.5), CopyPart("b", "/x/b.wav", MAX, 0.25)))
    task = plan_copypaste(_utts(10), NOISES, CopyPasteOptions())[0]
    task = type(task)(task.name, task.subset, task.split, (job,))
    assert task.input_paths() == ["/x/a.wav", "/x/b.wav"]
    moved = UttJob(utt, parts=(CopyPart("a", "/x/a.wav", MAX, 0.5), CopyPart("b", "/x/b.wav", MAX, 0.26)))
    assert type(task)(task.name, task.subset, task.split, (moved,)).fingerprint() != task.fingerprint()


def test_jobs_without_parts_keep_their_repr_so_existing_shards_stay_complete():
    # the fingerprint is the ShardTask repr: a job without parts must print as before parts existed
    for task in plan_fixed_snr(_utts(3), NOISES, FixedSnrOptions()):
        for job in task.jobs:
            assert repr(job) == f"UttJob(utt={job.utt!r}, mixes={job.mixes!r})"


def test_crop_span():
    part = CopyPart("a", "/x/a.wav", 100, 0.0)
    assert part.span(60) == (0, 60) and part.span(100) == (0, 100) and part.span(150) == (0, 100)
    assert CopyPart("a", "/x/a.wav", 100, 0.999999).span(150) == (50, 100)


def test_plan_refuses_what_it_cannot_make():
    with pytest.raises(InputError, match="neutral and emotional"):
        copypaste_composites(_utts(8, ("angry", "happy")), CopyPasteOptions())
    clash = _utts(10) + [Utterance("cp_000003", "/x/t.wav", "sad", "test")]
    with pytest.raises(InputError, match="cp_000003"):
        copypaste_composites(clash, CopyPasteOptions())


# --- the build -------------------------------------------------------------------------------

def test_store_holds_0p8n_composites_made_of_their_parts(built):
    store = open_store(built["store"])
    table = _table(built["store"])
    clean = {r["utt_id"]: r for r in table if r["subset"] == "clean" and r["split"] == "train"}
    assert len(clean) == N_TRAIN
    composites = [r for r in table if r["subset"] == COPYPASTE_SUBSET]
    assert len(composites) == N_NEW and {r["key"] for r in composites} == {f"cp_{i:06d}" for i in range(N_NEW)}
    cropped = 0
    for row in composites:
        wav, fields = store.sample(row["key"])
        parts = fields["parts"]
        assert row["split"] == "train" and len(parts) == 2 and parts[0][0] != parts[1][0]
        labels = [clean[p[0]]["label"] for p in parts]
        if NEUTRAL in labels and set(labels) != {NEUTRAL}:
            assert row["label"] == next(x for x in labels if x != NEUTRAL)  # neutral + emotional: the emotion
        else:
            assert labels == [row["label"]] * 2  # two of one emotion
        assert row["speaker"] == "+".join(clean[p[0]]["speaker"] for p in parts)
        assert row["num_samples"] == wav.size == sum(p[2] for p in parts)
        offset = 0
        for utt_id, start, length in parts:
            source, _ = store.sample(utt_id)
            assert length <= MAX
            if source.size <= MAX:  # shorter than 4 s: the whole utterance
                assert (start, length) == (0, source.size)
            else:
                assert length == MAX and 0 <= start <= source.size - MAX
                cropped += 1
            assert np.array_equal(wav[offset:offset + length], source[start:start + length])
            offset += length
    assert cropped > 0  # the tiny corpus has utterances up to 4.75 s: some parts were cut


def test_six_mixes_of_every_original_and_composite(built):
    table = _table(built["store"])
    train = {r["utt_id"] for r in table if r["subset"] == "clean" and r["split"] == "train"}
    composites = {r["utt_id"]: r for r in table if r["subset"] == COPYPASTE_SUBSET}
    mixes = [r for r in table if r["subset"] == COPYPASTE_MIX_SUBSET]
    assert len(mixes) == 6 * (N_TRAIN + N_NEW)
    by_utt: dict[str, set] = {}
    for r in mixes:
        assert r["split"] == "train"
        by_utt.setdefault(r["utt_id"], set()).add((r["snr_target"], r["noise_type"]))
        if r["utt_id"] in composites:
            assert r["num_samples"] == composites[r["utt_id"]]["num_samples"]
            assert r["label"] == composites[r["utt_id"]]["label"]
    assert set(by_utt) == train | set(composites)
    expected = {(s, k) for s in (0.0, 5.0, 10.0) for k in ("noise", "music")}
    assert all(v == expected for v in by_utt.values())
    # the N clean originals stay the superset's: no clean row is planned twice
    assert Counter(r["key"] for r in table).most_common(1)[0][1] == 1


def test_build_leaves_other_shards_alone_and_is_deterministic(built, tmp_path):
    after = shard_digests(built["store"])
    assert {k: v for k, v in after.items() if k in built["before"]} == built["before"]
    ours = {k: v for k, v in after.items() if k.startswith(COPYPASTE_SUBSET)}
    assert len(ours) == len(after) - len(built["before"]) == 4 + 8  # ceil(13/4) + ceil(29/4)
    plan = json.loads((built["store"] / "plans" / "copypaste.json").read_text())
    assert plan["composites"] == N_NEW and sorted(plan["shards"]) == sorted(k[:-4] for k in ours)
    # the same command and seed elsewhere, with another worker count: the same bytes
    result = runner.invoke(app, copypaste_cmd(built["msp"], built["musan"], tmp_path, "--jobs", "1"))
    assert result.exit_code == 0, result.output
    assert shard_digests(tmp_path / "msp") == ours
    # rerun in place: every shard complete, nothing rebuilt
    result = runner.invoke(app, copypaste_cmd(built["msp"], built["musan"], built["root"] / "out", "--jobs", "1"))
    assert result.exit_code == 0 and "0 built" in result.output, result.output
    assert shard_digests(built["store"]) == after
    assert verify_store(built["store"])[0] == []


def test_trainer_copypaste_epoch_is_12p6n(built, tmp_path):
    missing = built["missing"]
    assert missing.exit_code == 2 and "prep copypaste" in missing.output
    assert len(missing.output.strip().splitlines()) == 1, missing.output
    out = tmp_path / "run"
    result = runner.invoke(trainer_app, train_cmd(built["store"], out))
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    records = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    # N clean + 0.8N composites + 6 x 1.8N mixes = 12.6N, exactly 7 (N + round(0.8N))
    assert config["n_train"] == N_TRAIN and records[0]["samples"] == 7 * (N_TRAIN + N_NEW) == 203
    assert config["train_size_n"] == pytest.approx(203 / 16) and abs(config["train_size_n"] - 12.6) < 0.1

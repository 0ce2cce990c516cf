"""bench/study.py's pieces for the fair test: the real noise it assembles, the records it
keeps of finished runs (what lets a study resume on another machine), its variants."""
from __future__ import annotations

import csv
import json
import shlex
import sys

import pytest
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import study  # noqa: E402


def test_real_noise_is_music_and_background_seen_and_glass_unseen(shared_dir, tmp_path):
    from mixer.corpora import esc50, musan

    musan_root, unseen_root = study.assemble_real_noise(shared_dir / "audio", tmp_path / "noise")
    seen, rejects = musan.prepare(musan_root)
    assert not rejects
    kinds = {n.kind for n in seen}
    assert kinds == {"music", "noise"}
    assert sum(n.kind == "music" for n in seen) == len(list((shared_dir / "audio" / "music").glob("*.flac"))) == 16
    with open(shared_dir / "audio" / "esc50_glass" / "meta" / "esc50.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    background = {Path(r["filename"]).stem for r in rows if r["category"] == "background"}
    glass = {Path(r["filename"]).stem for r in rows if r["category"] == "glass_break"}
    assert {n.noise_id for n in seen if n.kind == "noise"} == background
    unseen, rejects = esc50.prepare(unseen_root)
    assert not rejects and {n.noise_id for n in unseen} == glass  # no seen clip is unseen noise
    again = study.assemble_real_noise(shared_dir / "audio", tmp_path / "noise")  # a rerun (resume) is fine
    assert again == (musan_root, unseen_root)


def test_a_recorded_run_keeps_its_small_files_and_counts_as_finished(tmp_path):
    out = tmp_path / "runs" / "fold0-none-s0"
    out.mkdir(parents=True)
    for name in study.RECORDED_FILES:
        (out / name).write_text(json.dumps({"name": name}))
    (out / "best.pt").write_bytes(b"weights")
    record = tmp_path / "record" / out.name
    study.record_run(out, record, cpu_s=12.34, wall_s=20.0)
    assert sorted(p.name for p in record.iterdir()) == sorted([*study.RECORDED_FILES, "study.json"])
    assert json.loads((record / "study.json").read_text()) == {"cpu_s": 12.3, "wall_s": 20.0}


def test_a_dry_run_names_each_variant_with_its_options(shared_dir, tmp_path, capsys):
    study.main(["--corpus", "ravdess", "--root", str(shared_dir / "audio" / "ravdess"), "--real-noise",
                str(shared_dir / "audio"), "--out", str(tmp_path), "--only-folds", "0", "--seeds", "1",
                "--strategies", "none,metricaug-uar", "--runs-name", "runs-b", "--trainer-args", "--max-steps 10",
                "--dry-run"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ trainer run")]
    assert len(lines) == 2
    assert "--strategy none" in lines[0] and "runs-b/fold0-none-s0" in lines[0]
    assert "--strategy metricaug" in lines[1] and "--gap-score uar" in lines[1] and "fold0-metricaug-uar-s0" in lines[1]
    assert all(line.endswith("--max-steps 10") for line in lines)


def test_validation_keep_leaves_the_other_validation_speakers_out(shared_dir, tmp_path, capsys):
    args = ["--corpus", "ased", "--root", str(shared_dir / "audio" / "ased"), "--real-noise", str(shared_dir / "audio"),
            "--folds", "4", "--validation-speakers", "10", "--only-folds", "1", "--seeds", "1",
            "--strategies", "uniform", "--dry-run"]
    study.main([*args, "--out", str(tmp_path / "all")])
    study.main([*args, "--validation-keep", "2", "--out", str(tmp_path / "two")])

    def splits(out):
        with open(out / "fold1" / "utterances.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        return {split: {r["speaker"] for r in rows if r["split"] == split} for split in ("train", "validation", "test")}

    full, kept = splits(tmp_path / "all"), splits(tmp_path / "two")
    assert len(full["validation"]) == 10 and len(kept["validation"]) == 2 and kept["validation"] < full["validation"]
    assert kept["train"] == full["train"] and kept["test"] == full["test"]  # the same train and test speakers
    assert "left out" in capsys.readouterr().out


def test_reliability_figures_on_constructed_records():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import reliability

    assert reliability.spearman_brown(0.5) == pytest.approx(2 / 3)
    assert reliability.spearman_brown(reliability.spearman_brown(0.5), 1.0) == pytest.approx(2 / 3)
    # a model exactly as good on every level as on clean speech, class by class: its measured
    # gaps are the class-mix gaps, and they are a function of the levels' class shares alone
    f1 = [0.9, 0.5, 0.7, 0.3]  # angry, happy, neutral, sad
    counts = [[40, 10, 40, 10], [10, 40, 10, 40], [25, 25, 25, 25]]
    clean_wf1 = 0.6
    record = {"val_f1_clean_per_class": f1, "val_class_counts_levels": counts, "val_wf1_clean": clean_wf1}
    gaps = reliability.class_mix_gaps(record)
    expected = [clean_wf1 - sum(c / 100 * f for c, f in zip(level, f1)) for level in counts]
    assert gaps == pytest.approx(expected)
    assert gaps[1] > gaps[2] > gaps[0]  # the sad- and happy-heavy level looks hardest
    assert reliability.class_mix_gaps({"val_wf1_clean": 0.5}) is None  # runs from before the record


#: Arm E's command line (docs/study.md, "Arm E"), less --out and --dry-run.
ARM_E_KINDS = "noise,music,babble,reverb,reverb+noise"
ARM_E_STRATEGIES = "none,fixed-snr,superset,uniform-stratified,metricaug-stratified,superset-noise"


def arm_e_args(shared: Path) -> list[str]:
    rir = shared / "audio" / "rir"
    return ["--corpus", "ased", "--root", str(shared / "audio" / "ased"), "--real-noise", str(shared / "audio"),
            "--folds", "4", "--validation-speakers", "10", "--seeds", "2", "--strategies", ARM_E_STRATEGIES,
            "--kinds", ARM_E_KINDS, "--rir-root", str(rir / "house"), "--sim-rooms", "6", "--sim-rt60", "0.2,0.8",
            "--test-rir-root", str(rir / "pori_hall"), "--test-sim-rt60", "1.2,1.6", "--far-snrs", "5",
            "--superset-args=--mixes=recipe", "--jobs", "2", "--parallel", "2", "--max-epochs", "1000",
            "--patience", "1000", "--trainer-args=--select pooled --max-steps 1800 --val-per-level 1000",
            "--runs-name", "runs-e"]


def test_arm_e_gives_every_stage_the_kinds_and_its_rooms_and_expands_its_variants(shared_dir, tmp_path, capsys):
    rir = shared_dir / "audio" / "rir"
    assert (rir / "house" / "rooms.csv").is_file() and (rir / "pori_hall" / "rooms.csv").is_file()
    study.main([*arm_e_args(shared_dir), "--out", str(tmp_path), "--dry-run"])
    lines = [line[2:] for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]

    def stage(name):
        found = [shlex.split(line) for line in lines if line.startswith(f"mixer.cli {name} ")]
        assert len(found) == 4  # one store per fold
        return found

    def option(args, flag):
        return args[args.index(flag) + 1] if flag in args else None

    train_rooms = {"--rir-root": str(rir / "house"), "--sim-rooms": "6", "--sim-rt60": "0.2,0.8"}
    test_rooms = {"--test-rir-root": str(rir / "pori_hall"), "--test-sim-rt60": "1.2,1.6", "--far-snrs": "5"}
    for name, given, withheld in (("superset", train_rooms, test_rooms), ("fixed-snr", train_rooms, test_rooms),
                                  ("testsets", test_rooms, train_rooms)):
        for args in stage(name):
            assert option(args, "--kinds") == ARM_E_KINDS
            assert {flag: option(args, flag) for flag in given} == given
            assert all(flag not in args for flag in withheld)  # the test rooms never reach training
    assert all("--mixes=recipe" in args for args in stage("superset"))
    assert all(option(args, "--unseen-root") for args in stage("testsets"))

    runs = [shlex.split(line) for line in lines if line.startswith("trainer run ")]
    assert len(runs) == 4 * 2 * 6
    expected = {"none": ("none", []), "fixed-snr": ("fixed-snr", []), "superset": ("superset", []),
                "uniform-stratified": ("uniform", ["--stratify-class"]),
                "metricaug-stratified": ("metricaug", ["--stratify-class"]),
                "superset-noise": ("superset", ["--draw-kinds", "noise,music"])}
    for args in runs:
        variant = Path(option(args, "--out")).name.split("-", 1)[1].rsplit("-s", 1)[0]
        strategy, extra = expected[variant]
        assert option(args, "--strategy") == strategy
        assert [a for a in args if a in ("--stratify-class", "--draw-kinds")] == [a for a in extra if a.startswith("--")]
        if extra[1:]:
            assert option(args, extra[0]) == extra[1]
        assert args[-6:] == ["--select", "pooled", "--max-steps", "1800", "--val-per-level", "1000"]
    assert {Path(option(args, "--out")).parent.name for args in runs} == {"runs-e"}


def test_without_kind_options_the_stage_commands_are_as_before(shared_dir, tmp_path, capsys):
    """An arm D command line gives the stage commands it gave before the kind options existed."""
    study.main(["--corpus", "ased", "--root", str(shared_dir / "audio" / "ased"), "--real-noise",
                str(shared_dir / "audio"), "--folds", "4", "--validation-speakers", "10", "--only-folds", "2",
                "--seeds", "1", "--strategies", "none,fixed-snr,metricaug-stratified",
                "--superset-args=--mixes=recipe", "--jobs", "2", "--out", str(tmp_path), "--dry-run"])
    lines = [line[2:] for line in capsys.readouterr().out.splitlines() if line.startswith("$ mixer.cli ")]
    fold, noise = tmp_path / "fold2", tmp_path / "noise"
    corpus = (f"--corpus csv --root {fold / 'utterances.csv'} --noise-root {noise / 'musan'} --out {fold} "
              f"--jobs 2 --quiet")
    assert lines == [f"mixer.cli superset {corpus} --metrics stoi --mixes=recipe",
                     f"mixer.cli testsets {corpus} --metrics stoi --unseen-root {noise / 'esc50_unseen'}",
                     f"mixer.cli fixed-snr {corpus}",
                     f"mixer.cli score {fold / 'csv'} --metric stoi --quant gmm"]


def test_status_counts_each_runs_state_and_estimates_what_is_left(tmp_path):
    import os

    runs, record = tmp_path / "runs", tmp_path / "record"
    for name, cpu in (("fold0-none-s0", 700.0), ("fold0-uniform-s0", 600.0), ("fold1-uniform-s0", 620.0)):
        out = runs / name
        out.mkdir(parents=True)
        (out / "results.json").write_text("{}")
        study.record_run(out, record / name, cpu, cpu + 50)
    (runs / "fold1-none-s0").mkdir()
    (runs / "fold1-none-s0" / "results.json").write_text("{}")  # finished here, not recorded yet
    (runs / ".fold0-metricaug-s0.claim").write_text(str(os.getpid()))  # held by a live process
    (runs / ".fold1-metricaug-s0.claim").write_text("999999999")  # a dead holder's claim: pending
    planned = [("fold0-none-s0", "none"), ("fold0-uniform-s0", "uniform"), ("fold1-uniform-s0", "uniform"),
               ("fold1-none-s0", "none"), ("fold0-metricaug-s0", "metricaug"), ("fold1-metricaug-s0", "metricaug"),
               ("fold2-uniform-s0", "uniform")]
    states = [(name, variant, *study.run_state(runs / name, record / name)) for name, variant in planned]
    assert [s[2] for s in states] == ["recorded", "recorded", "recorded", "finished", "running", "pending", "pending"]
    assert [s[3] for s in states[:3]] == [700.0, 600.0, 620.0]
    text = study.status_report(states, lanes=2)
    assert "7 runs: 3 recorded, 1 finished, 1 running, 2 pending; 0.53 CPU-h spent" in text
    # left: uniform at its own mean (610 s), the two MetricAug runs at the mean of all recorded (640 s)
    left_h = (610 + 2 * 640) / 3600
    assert f"about {left_h:.1f} CPU-h" in text and f"about {left_h / 2:.1f} h of wall time at 2 runs" in text

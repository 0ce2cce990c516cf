"""A speaker-independent study: every speaker's utterances tested once, folds rotated.

    python bench/study.py --corpus ravdess --root ../shared/audio/ravdess \
        --noise-root data/demo-corpus/musan --unseen-root ../shared/audio/esc50_glass \
        --folds 4 --validation-speakers 2 --seeds 3 --strategies none,fixed-snr,metricaug \
        --out studies/ravdess  [--only-folds 0 --max-epochs 2 --superset-args '--bins 2' for a trial]

For each fold, the speakers of the corpus (as its adapter reports them, sorted) are cut into
``--folds`` contiguous groups: one group is the test set, the next ``--validation-speakers``
speakers (cyclically) validate, the rest train. An adapter with a ``fold_group`` keeps its
groups whole and ``--validation-speakers`` counts them: IEMOCAP's are the sessions, so
``--corpus iemocap --folds 5 --validation-speakers 1`` tests one session per fold (both its
speakers) and validates on the next; CREMA-D folds over its actors. The fold's utterances are written to a CSV
(the ``csv`` adapter) and built into a store of its own with the project's commands (superset,
test sets, Fixed-SNR mixes when that strategy is asked for, STOI levels); then every strategy
is trained with every seed and evaluated. Finally ``trainer report`` over all runs writes the
tables, including ``intervals.md``: WF1 and UAR per condition with a 95 % bootstrap interval
over test utterances and the spread over runs. Every step resumes, so the same command
continues an interrupted study. All stores are built first and the runs go seed by seed over
the folds, so a study cut short still tests every utterance once. A second process started
with ``--train-only`` on the same ``--out`` shares the runs (each run is claimed by one
process: two cores train two runs at once; give each process ``--parallel 2`` so that each run
takes its share of the cores). Prints the commands it ran and their CPU time.

Distortions of other kinds (arm E): ``--kinds noise,music,babble,reverb,reverb+noise`` goes to
every stage (superset, test sets, Fixed SNR); the train rooms (``--rir-root``, ``--sim-rooms``,
``--sim-rt60``) to the superset and to the static baseline, which takes its fixed rooms from
them; the unseen rooms (``--test-rir-root``, ``--test-sim-rt60``, ``--test-sim-rooms``) and
``--far-snrs`` to the test sets (``KIND_OPTIONS``). Without them every command is as before.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mixer.corpora import EMOTION_CORPORA, fold_group  # noqa: E402
from shards.cores import usable_cores  # noqa: E402
from shards.store import pid_alive  # noqa: E402


def speaker_folds(speakers: list[str], n_folds: int, n_validation: int,
                  what: str = "speakers") -> list[tuple[list[str], list[str]]]:
    """(test speakers, validation speakers) per fold; every speaker is tested exactly once.
    ``what``: what the items are, for the error (speakers, or fold groups such as sessions)."""
    if not 2 <= n_folds <= len(speakers):
        raise SystemExit(f"--folds {n_folds}: expected 2..{len(speakers)} (the corpus has {len(speakers)} {what})")
    bounds = [round(i * len(speakers) / n_folds) for i in range(n_folds + 1)]
    folds = []
    for f in range(n_folds):
        test = speakers[bounds[f]:bounds[f + 1]]
        others = speakers[bounds[f + 1]:] + speakers[:bounds[f]]  # the speakers after the test group first
        if n_validation >= len(others):
            raise SystemExit(f"--validation-speakers {n_validation}: fold {f} leaves no train speaker")
        folds.append((test, others[:n_validation]))
    return folds


def group_folds(speakers: list[str], group_of: Callable[[str], str], n_folds: int,
                n_validation: int) -> list[tuple[list[str], list[str]]]:
    """:func:`speaker_folds` over the corpus's fold groups (``group_of``: its adapter's
    ``fold_group``; IEMOCAP's sessions, each speaker alone for the others), as speakers: a
    group is tested, validates or trains whole, and ``n_validation`` counts groups."""
    members: dict[str, list[str]] = {}
    for speaker in sorted(speakers):
        members.setdefault(group_of(speaker), []).append(speaker)
    groups = sorted(members)
    what = "speakers" if all(members[g] == [g] for g in groups) else "fold groups"
    return [([s for g in test for s in members[g]], [s for g in validation for s in members[g]])
            for test, validation in speaker_folds(groups, n_folds, n_validation, what)]


#: Study variants of a strategy: the name in --strategies, the trainer strategy and its options.
VARIANTS = {"metricaug-uar": ("metricaug", ("--gap-score", "uar")),
            # the stabilised feedback of arm C: the setting bench/feedback_choice.py chose on fold 0,
            # seed 0's uniform run (validation records only) before any run of it (docs/study.md)
            "metricaug-stable": ("metricaug", ("--gap-score", "loss", "--gap-smoothing", "0.8")),
            # arm D (issue 32): Algorithm 1's feedback with the class-stratified level draw
            "metricaug-stratified": ("metricaug", ("--stratify-class",)),
            # arm E (issue 33): the level draw without feedback, class-stratified too
            "uniform-stratified": ("uniform", ("--stratify-class",)),
            # arm E: the superset draw of additive noise only, on the superset of every kind
            "superset-noise": ("superset", ("--draw-kinds", "noise,music"))}
#: The prep options of the distortion kinds, by the stages they go to (each under its prep
#: name, with the study's help): the superset and the static baseline share the train rooms
#: (prep fixed-snr draws its fixed rooms from the superset's), the test sets get the rooms never
#: used in training. An option not given is passed to no stage.
SUPERSET, TESTSETS, FIXED = "superset", "testsets", "fixed-snr"
KIND_OPTIONS = {
    "--kinds": ((SUPERSET, TESTSETS, FIXED), "distortion kinds of every stage (prep --kinds), e.g. "
                "noise,music,babble,reverb,reverb+noise; default: prep's (noise,music)"),
    "--rir-root": ((SUPERSET, FIXED), "folder of the train rooms' impulse responses (e.g. ../shared/audio/rir/house): "
                   "the superset's reverb kinds and the static baseline's fixed rooms"),
    "--sim-rooms": ((SUPERSET, FIXED), "simulated train rooms (pyroomacoustics), for the superset and the static baseline"),
    "--sim-rt60": ((SUPERSET, FIXED), "RT60 range min,max (s) of the simulated train rooms"),
    "--test-rir-root": ((TESTSETS,), "folder of impulse responses never used in training (e.g. "
                        "../shared/audio/rir/pori_hall): the test sets' unseen rooms"),
    "--test-sim-rt60": ((TESTSETS,), "RT60s (s, comma-separated) of simulated test rooms outside --sim-rt60"),
    "--test-sim-rooms": ((TESTSETS,), "simulated test rooms per --test-sim-rt60 value"),
    "--far-snrs": ((TESTSETS,), "SNRs (dB) of the far-field test sets"),
}


def kind_options(args: argparse.Namespace, stage: str) -> list[str]:
    """The prep options of :data:`KIND_OPTIONS` given to the study that ``stage`` takes."""
    given = []
    for flag, (stages, _) in KIND_OPTIONS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if stage in stages and value is not None:
            given += [flag, str(value)]
    return given

#: A finished run's small files, recorded (committed) apart from its checkpoints.
RECORDED_FILES = ("config.json", "epochs.jsonl", "results.json", "train.log")
#: The real noise assembled by --real-noise from the project's shared audio: MUSAN layout with
#: the music tracks as music/ and ESC-50's background ambience as noise/; the unseen noise is
#: ESC-50's glass-breaking clips alone.
SEEN_NOISE_CATEGORY, UNSEEN_CATEGORY = "background", "glass_break"


def assemble_real_noise(shared_audio: Path, dest: Path) -> tuple[Path, Path]:
    """(MUSAN-layout root, ESC-50-layout root) of links to real recordings under ``dest``:
    ``music/`` the tracks of ``shared_audio/music``, ``noise/`` the background clips of
    ``shared_audio/esc50_glass``, and an ESC-50 folder with its glass-breaking clips only."""
    music, esc50 = shared_audio / "music", shared_audio / "esc50_glass"
    for folder in (music, esc50 / "audio"):
        if not folder.is_dir():
            raise SystemExit(f"--real-noise {shared_audio}: no {folder} (expected the project's shared audio)")
    musan, unseen = dest / "musan", dest / "esc50_unseen"
    with open(esc50 / "meta" / "esc50.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    links = [(track, musan / "music" / track.name) for track in sorted(music.glob("*.flac"))]
    links += [(esc50 / "audio" / r["filename"], musan / "noise" / r["filename"]) for r in rows
              if r["category"] == SEEN_NOISE_CATEGORY]
    glass = [r for r in rows if r["category"] == UNSEEN_CATEGORY]
    links += [(esc50 / "audio" / r["filename"], unseen / "audio" / r["filename"]) for r in glass]
    for source, link in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(source.resolve())
    (unseen / "meta").mkdir(parents=True, exist_ok=True)
    with open(unseen / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(glass)
    kinds = {k: sum(1 for _, link in links if link.parent.name == k) for k in ("music", "noise")}
    print(f"real noise: {kinds['music']} music tracks and {kinds['noise']} background clips in {musan}; "
          f"{len(glass)} glass-breaking clips (unseen) in {unseen}", flush=True)
    return musan, unseen


def record_run(out: Path, record: Path, cpu_s: float, wall_s: float) -> None:
    """Copy a finished run's small files into ``record`` (a folder meant for a commit) with
    the run's CPU and wall time."""
    record.mkdir(parents=True, exist_ok=True)
    for name in RECORDED_FILES:
        if (out / name).is_file():
            shutil.copy2(out / name, record / name)
    (record / "study.json").write_text(json.dumps({"cpu_s": round(cpu_s, 1), "wall_s": round(wall_s, 1)}) + "\n")


def write_fold_csv(path: Path, utts, test: list[str], validation: list[str], left_out: list[str] = ()) -> None:
    """The fold's utterances as a ``csv``-adapter file; ``left_out`` speakers are in no split."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in sorted(utts, key=lambda u: u.utt_id):
        if u.speaker in left_out:
            continue
        split = "test" if u.speaker in test else "validation" if u.speaker in validation else "train"
        rows.append((str(Path(u.path).resolve()), u.label, split, u.speaker, u.utt_id))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "label", "split", "speaker", "id"])
        writer.writerows(rows)


def core_share(parallel: int, cores: int) -> tuple[int, int]:
    """(torch threads, DataLoader workers) of one run when ``parallel`` runs share ``cores``:
    together they never ask for more threads than the run's share of the cores."""
    share = max(1, cores // max(1, parallel))
    workers = share // 2
    return share - workers, workers


def claim_run(out: Path) -> Path | None:
    """Claim a run for this process, so several study processes share one study's runs: the
    claim file appears with this process's id in it at once (a hard link of a written file).
    None while another live process holds the claim; a dead holder's claim is taken over."""
    out.parent.mkdir(parents=True, exist_ok=True)
    claim = out.parent / f".{out.name}.claim"
    mine = out.parent / f".{out.name}.claim-{os.getpid()}"
    mine.write_text(str(os.getpid()))
    try:
        while True:
            try:
                os.link(mine, claim)
                return claim
            except FileExistsError:
                try:
                    holder = int(claim.read_text())
                except (OSError, ValueError):
                    holder = 0
                if holder and pid_alive(holder):
                    return None
                claim.unlink(missing_ok=True)
    finally:
        mine.unlink(missing_ok=True)


def run_state(out: Path, recorded: Path | None) -> tuple[str, float | None]:
    """(state, CPU s) of one planned run: "recorded" (with its CPU), "finished" (not
    recorded), "running" (a live process holds its claim), or "pending"."""
    if recorded is not None and (recorded / "results.json").is_file():
        try:
            return "recorded", float(json.loads((recorded / "study.json").read_text())["cpu_s"])
        except (OSError, ValueError, KeyError, TypeError):
            return "recorded", None
    if (out / "results.json").is_file():
        return "finished", None
    claim = out.parent / f".{out.name}.claim"
    try:
        holder = int(claim.read_text())
    except (OSError, ValueError):
        holder = 0
    return ("running" if holder and pid_alive(holder) else "pending"), None


def status_report(states: list[tuple[str, str, str, float | None]], lanes: int) -> str:
    """A study's progress from (run name, variant, state, CPU s) per planned run: the count
    per state, the CPU spent, and the CPU left, estimated per variant from its recorded runs
    (all recorded runs where a variant has none). Wall time assumes ``lanes`` runs at a time."""
    counts = {s: sum(st == s for _, _, st, _ in states) for s in ("recorded", "finished", "running", "pending")}
    spent = [(v, c) for _, v, st, c in states if st == "recorded" and c is not None]
    overall = sum(c for _, c in spent) / len(spent) if spent else None
    per_variant = {v: [c for w, c in spent if w == v] for v, _ in spent}
    lines = [f"{name}: {st}" + (f" ({cpu:.0f} CPU-s)" if cpu is not None else "") for name, _, st, cpu in states]
    left = [v for _, v, st, _ in states if st in ("running", "pending")]
    lines.append(f"{len(states)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                 + f"; {sum(c for _, c in spent) / 3600:.2f} CPU-h spent by the recorded runs")
    if left and overall is not None:
        todo = sum(sum(per_variant[v]) / len(per_variant[v]) if per_variant.get(v) else overall for v in left)
        lines.append(f"left: about {todo / 3600:.1f} CPU-h (each variant's mean recorded CPU; running runs counted "
                     f"whole), about {todo / 3600 / max(1, lanes):.1f} h of wall time at {max(1, lanes)} runs at a time")
    return "\n".join(lines)


class Runner:
    """Runs the project's commands, echoing them and adding up their CPU time."""

    def __init__(self, dry_run: bool):
        self.dry_run = dry_run
        self.commands: list[str] = []

    def __call__(self, *args: str) -> None:
        line = " ".join(shlex.quote(a) for a in args)
        self.commands.append(line)
        print(f"$ {line}", flush=True)
        if not self.dry_run:
            subprocess.run([sys.executable, "-m", *args], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, choices=sorted(EMOTION_CORPORA))
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--noise-root", type=Path, default=None, help="MUSAN layout (noise/, music/)")
    parser.add_argument("--unseen-root", type=Path, default=None, help="ESC-50 layout for the unseen test")
    parser.add_argument("--real-noise", type=Path, default=None,
                        help="the project's shared audio folder (../shared/audio): its real music and ESC-50 background "
                             "clips become the MUSAN-layout noise, its glass-breaking clips the unseen noise")
    parser.add_argument("--runs-name", default="runs", help="folder under --out for this arm's runs (and report-<name>)")
    parser.add_argument("--record", type=Path, default=None,
                        help="folder (tracked by git) receiving each finished run's small files; a run recorded there "
                             "counts as finished, so a study resumes on a new machine; the report reads the records")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--validation-speakers", type=int, default=2,
                        help="speakers after each fold's test group that validate (fold groups where the adapter "
                             "has them: IEMOCAP sessions)")
    parser.add_argument("--validation-keep", type=int, default=0,
                        help="validate on only the first K of each fold's --validation-speakers and leave the others out "
                             "of the store (neither train nor validation): the train and test speakers stay those of "
                             "the full fold, for reliability against validation size (0: all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", default="none,fixed-snr,metricaug")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=-1)
    parser.add_argument("--metrics", default="stoi", help="metrics of the mixes (the study's MetricAug uses STOI levels; PESQ is the slowest)")
    parser.add_argument("--superset-args", default="", help="extra prep superset options, e.g. '--bins 5' for a quick trial")
    for flag, (stages, text) in KIND_OPTIONS.items():
        parser.add_argument(flag, default=None, help=f"{text} (to prep {', '.join(stages)})")
    parser.add_argument("--trainer-args", default="", help="extra trainer run options, e.g. '--val-per-level 50'")
    parser.add_argument("--train-only", action="store_true",
                        help="skip the store builds: a second process sharing the runs of a study whose stores are built "
                             "(each run is claimed by one process)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="study processes sharing this machine's cores (this one included, e.g. 2 with a second "
                             "--train-only process): each run gets --threads and --workers for its share of the cores "
                             "(1: the trainer's own defaults)")
    parser.add_argument("--only-folds", default="", help="comma-separated fold numbers to run (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    parser.add_argument("--status", action="store_true",
                        help="print each run's state (recorded with its CPU, running, pending) and the CPU and wall time "
                             "left, estimated from the recorded runs (wall at --parallel runs at a time); builds and "
                             "trains nothing")
    args = parser.parse_args(argv)
    if args.real_noise:
        args.noise_root, args.unseen_root = assemble_real_noise(args.real_noise, args.out / "noise")
    if args.noise_root is None:
        raise SystemExit("give --noise-root (MUSAN layout) or --real-noise ../shared/audio")
    if args.parallel < 1:
        parser.exit(2, f"error: --parallel {args.parallel}: expected 1 or more\n")
    share_args: list[str] = []
    extra = shlex.split(args.trainer_args)
    if args.parallel > 1 and not {"--threads", "--workers"} & {a.split("=")[0] for a in extra}:
        cores = usable_cores()
        threads, workers = core_share(args.parallel, cores)
        share_args = ["--threads", str(threads), "--workers", str(workers)]
        print(f"{args.parallel} study processes on {cores} cores: each run --threads {threads} --workers {workers}")

    utts, rejects = EMOTION_CORPORA[args.corpus](args.root)
    speakers = sorted({u.speaker for u in utts})
    folds = group_folds(speakers, fold_group(args.corpus), args.folds, args.validation_speakers)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    trained = {VARIANTS.get(v, (v,))[0] for v in strategies}  # the trainer strategies the variants run
    only = {int(x) for x in args.only_folds.split(",") if x.strip()}
    run = Runner(args.dry_run)
    started, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{args.corpus}: {len(utts)} utterances ({len(rejects)} left out), speakers {', '.join(speakers)}")
    chosen = [(f, test, validation) for f, (test, validation) in enumerate(folds) if not only or f in only]
    stores = {}
    if not 0 <= args.validation_keep <= args.validation_speakers:
        parser.exit(2, f"error: --validation-keep {args.validation_keep}: expected 0..{args.validation_speakers}\n")
    for f, test, validation in chosen:
        left_out = validation[args.validation_keep:] if args.validation_keep else []
        validation = validation[:len(validation) - len(left_out)]
        print(f"fold {f}: test {', '.join(test)}; validation {', '.join(validation)}"
              + (f"; left out {', '.join(left_out)}" if left_out else ""), flush=True)
        fold_dir = args.out / f"fold{f}"
        if not (args.train_only or args.status):
            write_fold_csv(fold_dir / "utterances.csv", utts, test, validation, left_out)
        corpus = ["--corpus", "csv", "--root", str(fold_dir / "utterances.csv"), "--noise-root", str(args.noise_root),
                  "--out", str(fold_dir), "--jobs", str(args.jobs), "--quiet"]
        stores[f] = fold_dir / "csv"
        if args.train_only or args.status:
            continue
        run("mixer.cli", SUPERSET, *corpus, "--metrics", args.metrics, *kind_options(args, SUPERSET),
            *shlex.split(args.superset_args))
        run("mixer.cli", TESTSETS, *corpus, "--metrics", args.metrics,
            *(["--unseen-root", str(args.unseen_root)] if args.unseen_root else []), *kind_options(args, TESTSETS))
        if FIXED in trained:
            run("mixer.cli", FIXED, *corpus, *kind_options(args, FIXED))
        run("mixer.cli", "score", str(stores[f]), "--metric", "stoi", "--quant", "gmm")
    # seed by seed across the folds: a study cut short still has every utterance tested once
    runs, states = [], []
    for seed in range(args.seeds):
        for f, _, _ in chosen:
            for variant in strategies:
                strategy, options = VARIANTS.get(variant, (variant, ()))
                out = args.out / args.runs_name / f"fold{f}-{variant}-s{seed}"
                recorded = args.record / out.name if args.record else None
                runs.append(recorded or out)
                train = ("trainer", "run", "--data", str(stores[f]), "--strategy", strategy, "--seed", str(seed),
                         "--max-epochs", str(args.max_epochs), "--patience", str(args.patience), "--out", str(out),
                         "--resume", "--quiet", *options, *share_args, *extra)
                if args.status:
                    states.append((out.name, variant, *run_state(out, recorded)))
                elif args.dry_run:
                    run(*train)
                elif recorded is not None and (recorded / "results.json").is_file():
                    continue  # finished, on this machine or another
                elif recorded is not None or not (out / "results.json").is_file():
                    claim = claim_run(out)
                    if claim is None:
                        print(f"# {out.name}: another study process is on it", flush=True)
                        continue
                    try:
                        before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                        if not (out / "results.json").is_file():
                            run(*train)
                        after = resource.getrusage(resource.RUSAGE_CHILDREN)
                        if recorded is not None:
                            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                            record_run(out, recorded, cpu, time.perf_counter() - t0)
                    finally:
                        claim.unlink(missing_ok=True)
    if args.status:
        print(status_report(states, args.parallel))
        return 0
    finished = runs if args.dry_run else [r for r in runs if (r / "results.json").is_file()]
    if len(finished) < len(runs):
        print(f"# {len(runs) - len(finished)} runs are not finished (another study process has them): "
              f"this report covers {len(finished)}; run the same command again when they are done", flush=True)
    report = args.out / ("report" if args.runs_name == "runs" else f"report-{args.runs_name}")
    if not finished:
        print("# no finished run yet: no report", flush=True)
        return 0
    run("trainer", "report", *map(str, finished), "--out", str(report))
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(f"\nwall {time.perf_counter() - started:.0f} s, CPU {cpu:.0f} s ({cpu / 3600:.2f} h) over {len(run.commands)} commands")
    if not args.dry_run:
        print((report / "intervals.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

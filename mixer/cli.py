"""``prep``: the data-preparation stages, one command each.

    prep demo-corpus OUT                       synthetic corpus + noise (MSP/MUSAN/ESC-50 layouts)
    prep corpus --corpus iemocap --root R      what a corpus gives (splits, classes, speakers, rejects)
    prep superset --corpus msp --root R --noise-root M --out OUT
    prep testsets --corpus msp --root R --noise-root M --unseen-root E --out OUT
    prep fixed-snr --corpus msp --root R --noise-root M --out OUT   (the Fixed-SNR baseline)
    prep copypaste --corpus msp --root R --noise-root M --out OUT   (the CopyPaste baseline)
    prep verify OUT/<corpus>
    prep score OUT/<corpus> --metric stoi --quant gmm

The four stage commands share one option set (:data:`_SHARED_OPTIONS`, plus every corpus
adapter's split options) and one error path (:func:`_stage`): each stage only plans.
"""
from __future__ import annotations

import inspect
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import typer

from mixer.corpora import EMOTION_ADAPTERS, NOISE_CORPORA, split_options
from scoring.cli_score import score
from shards.cli import fail
from shards.distortions import distortion_names
from shards.errors import InputError
from shards.metrics import metric_names
from shards.vocab import AUDIO_LAYOUT, LAYOUTS, NOISE_SOURCES, RECIPE_LAYOUT
from shards.vocab import METRICS as BUILTIN_METRICS

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="metricaug data preparation: mix, score and shard an emotion corpus.")


class _Command(typer.core.TyperCommand):
    """A prep command whose usage line names a required argument as click does
    (``prep verify [OPTIONS] STORE``); typer writes it ``{store}``."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [re.sub(r"^\{([^}]*)\}", lambda m: m.group(1).upper(), piece)
                for piece in super().collect_usage_pieces(ctx)]


def _split_list(text: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        fail(f"{option} {text!r}: expected a comma-separated list of {', '.join(allowed)}")
    return items


def _label_files(counts) -> list[dict]:
    """What each label file gave (rows read, lines in the file) as the stage info records it."""
    return [asdict(c) for c in counts]


def _noise_type_list(text: str) -> tuple[str, ...]:
    return _split_list(text, ("noise", "music", "speech"), "--noise-types")


def _metric_list(metrics: str) -> tuple[str, ...]:
    return _split_list(metrics, metric_names(), "--metrics") if metrics else ()


def _snr_list(snrs: str, option: str = "--snrs") -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in snrs.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values:
        fail(f"{option} {snrs!r}: expected comma-separated numbers" + (" of dB" if option == "--snrs" else ""))
    return values


# ----------------------------------------------------------------------------------
# what every stage shares: its options, its inputs, its error path
# ----------------------------------------------------------------------------------
def _all_split_options() -> dict[str, tuple[str, list[str]]]:
    """parameter -> (flag, the corpora that take it), over every adapter's split options."""
    found: dict[str, tuple[str, list[str]]] = {}
    for corpus in EMOTION_ADAPTERS:
        for option in split_options(corpus):
            flag, corpora = found.get(option.parameter, (option.flag, []))
            found[option.parameter] = (flag, corpora + [corpus])
    return found


def _split_option_help(parameter: str, corpora: list[str]) -> str:
    parts = []
    for corpus in corpora:
        option = next(o for o in split_options(corpus) if o.parameter == parameter)
        default = inspect.signature(EMOTION_ADAPTERS[corpus].prepare).parameters[parameter].default
        parts.append(f"{corpus}: {option.describe(default)}")
    return "; ".join(parts) + "."


_SPLIT_OPTIONS = _all_split_options()
_NOISE_LAYOUTS = tuple(NOISE_CORPORA)


@dataclass
class _StageArgs:
    """The options every stage command takes."""

    corpus: str
    root: Optional[Path]
    noise_root: Optional[Path]
    noise_layout: str
    out: Path
    jobs: int
    seed: int
    backend: str
    scheduler: Optional[str]
    metrics: str
    utts_per_shard: int
    limit: int
    quiet: bool
    mixes: str
    splits: dict  # split option parameter -> its text, for the options given

    @property
    def per_shard(self) -> int:
        return max(self.utts_per_shard, 1)

    def metric_list(self) -> tuple[str, ...]:
        return _metric_list(self.metrics)


@dataclass
class _CorpusArgs:
    """What reading a corpus takes (``prep corpus``; a stage's :class:`_StageArgs` has them too)."""

    corpus: str
    root: Optional[Path]
    limit: int
    splits: dict  # split option parameter -> its text, for the options given


def _shared_options(metrics_default: str, metrics_help: str, noise_root_help: str) -> list[inspect.Parameter]:
    """The stage commands' shared options, as typer reads them from a signature."""
    options = {
        "corpus": (str, typer.Option(..., "--corpus", help=f"Emotion corpus adapter: {', '.join(EMOTION_ADAPTERS)}.")),
        "root": (Optional[Path], typer.Option(None, "--root", help="Corpus root (for csv: the CSV file; for demo: the demo-corpus folder).")),
        "noise_root": (Optional[Path], typer.Option(None, "--noise-root", help=noise_root_help)),
        "noise_layout": (str, typer.Option("musan", "--noise-layout", help=f"Layout of --noise-root: {', '.join(_NOISE_LAYOUTS)} (folder: every audio file below it is noise; then use --noise-types noise).")),
        "out": (Path, typer.Option(Path("data/stores"), "--out", help="Output folder; the store is OUT/<corpus>.")),
        "jobs": (int, typer.Option(-1, "--jobs", "-j", help="Worker processes (-1: all cores).")),
        "seed": (int, typer.Option(0, help="Seed of the plan: the same inputs and seed give byte-identical shards.")),
        "backend": (str, typer.Option("loky", help="joblib backend: loky (local processes) or dask (a Dask cluster).")),
        "scheduler": (Optional[str], typer.Option(None, help="Dask scheduler address (tcp://host:8786) for --backend dask; default: a local cluster.")),
        "metrics": (str, typer.Option(metrics_default, "--metrics", help=metrics_help)),
        "utts_per_shard": (int, typer.Option(16, help="Utterances per shard (a superset shard holds 30x as many mixes).")),
        "limit": (int, typer.Option(0, help="Use only the first N utterances of each split (0: all); for quick trials.")),
        "quiet": (bool, typer.Option(False, "--quiet", "-q", help="No progress bar.")),
        "mixes": (str, typer.Option(AUDIO_LAYOUT, "--mixes", help=(
            "How mixes are stored: audio (every mix as FLAC in the shards) or recipe (every mix as a table row, "
            "its recipe and metrics; the noise stored once in the store; mixed on read, bit for bit the same "
            "arrays). 'prep materialize' turns a recipe store into the audio one."))),
    }
    for parameter, (flag, corpora) in _SPLIT_OPTIONS.items():
        options[parameter] = (Optional[str], typer.Option(None, flag, help=_split_option_help(parameter, corpora)))
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
            for name, (kind, default) in options.items()]


_ALL_METRICS_HELP = f"Metrics to compute for every mix (comma-separated; registered: {', '.join(metric_names())})."
_BASELINE_METRICS_HELP = "Metrics to compute for every mix (comma-separated; default none: the baseline does not use them)."
_MUSAN_HELP = "MUSAN root (noise/ and music/); demo: <root>/musan."


def _stage(name: str, stage: str, metrics_default: str, metrics_help: str = _ALL_METRICS_HELP,
           noise_root_help: str = _MUSAN_HELP) -> Callable:
    """Register a stage command. The decorated function takes the shared options as
    :class:`_StageArgs` and its own options, and returns (tasks, info, rejects); here
    they are built into OUT/<corpus>. A user's mistake anywhere ends with one line."""

    def register(plan: Callable) -> Callable:
        own = [p for p in inspect.signature(plan).parameters.values() if p.name != "args"]
        shared = _shared_options(metrics_default, metrics_help, noise_root_help)
        shared_names = [p.name for p in shared]

        def command(**values):
            splits = _pop_split_options(values)
            args = _StageArgs(**{n: values.pop(n) for n in shared_names if n in values}, splits=splits)
            if args.mixes not in LAYOUTS:
                fail(f"--mixes {args.mixes!r}: expected one of {', '.join(LAYOUTS)}")
            try:
                tasks, info, rejects = plan(args, **values)
                if args.mixes == RECIPE_LAYOUT:
                    from mixer.plan import plan_recipe

                    tasks, noise_sources = plan_recipe(tasks, stage)
                    info = {**info, NOISE_SOURCES: noise_sources}
            except InputError as exc:
                fail(str(exc))
            _build_and_report(args.out / args.corpus, stage, tasks, info, rejects, args)

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared
        command.__signature__ = inspect.Signature(parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        command.__doc__ = plan.__doc__
        command.__name__ = plan.__name__
        app.command(name, cls=_Command)(command)
        return plan

    return register


def _pop_split_options(values: dict) -> dict:
    """The split options given (parameter -> text), taken out of a command's ``values``."""
    given = {p: values.pop(p) for p in _SPLIT_OPTIONS if values.get(p) is not None}
    for p in _SPLIT_OPTIONS:
        values.pop(p, None)
    return given


def _corpus_keywords(args: _StageArgs | _CorpusArgs) -> dict:
    """The adapter's split keywords from the options given; one that the corpus does not take is an error."""
    taken = {o.parameter: o for o in split_options(args.corpus)}
    keywords = {}
    for parameter, text in args.splits.items():
        if parameter not in taken:
            flag, corpora = _SPLIT_OPTIONS[parameter]
            fail(f"{flag} applies to --corpus {' or '.join(corpora)}, not {args.corpus}")
        keywords[parameter] = taken[parameter].parse(text)
    return keywords


def _load_corpus(args: _StageArgs):
    """(utterances, rejects, label files read) of the stage's corpus."""
    utts, rejects, label_files = _read_corpus(args)
    if not utts:
        fail(f"{args.root}: no usable utterances found ({len(rejects)} rejected)")
    return utts, [{"file": r.file, "reason": r.reason} for r in rejects], label_files


def _read_corpus(args: _StageArgs | _CorpusArgs):
    """(utterances, rejects, label files read) of ``args.corpus`` at ``args.root`` with its
    split options, the first ``args.limit`` utterances (by id) of each split when given."""
    from mixer import corpora

    corpus, root = args.corpus, args.root
    if corpus not in EMOTION_ADAPTERS:
        fail(f"--corpus {corpus!r}: expected one of {', '.join(EMOTION_ADAPTERS)}")
    keywords = _corpus_keywords(args)
    if root is None:
        fail(f"--root is required for --corpus {corpus}")
    if not root.exists():
        fail(f"{root}: corpus root not found")
    with corpora.counting_label_rows() as counts:
        utts, rejects = corpora.EMOTION_CORPORA[corpus](root, **keywords)
    if args.limit > 0:
        kept = []
        for split in sorted({u.split for u in utts}):
            kept += sorted((u for u in utts if u.split == split), key=lambda u: u.utt_id)[:args.limit]
        utts = kept
    return utts, rejects, _label_files(counts)


def _load_noise(layout: str, root: Optional[Path], option: str):
    """(noise files, rejects, label files read) of the ``layout`` adapter at ``root``."""
    from mixer import corpora

    if layout not in NOISE_CORPORA:
        fail(f"{option.replace('root', 'layout')} {layout!r}: expected one of {', '.join(NOISE_CORPORA)}")
    if root is None:
        fail(f"{option} is required")
    if not root.exists():
        fail(f"{root}: noise root not found ({option})")
    with corpora.counting_label_rows() as counts:
        files, rejects = corpora.NOISE_CORPORA[layout](root)
    return files, [{"file": r.file, "reason": r.reason} for r in rejects], _label_files(counts)


def _default_noise_root(corpus: str, root: Optional[Path], noise_root: Optional[Path], name: str) -> Optional[Path]:
    """The noise root a stage uses: the user's, or for the demo corpus its own stand-in."""
    from mixer.corpora.demo import NOISE_FOLDERS, default_noise_root

    if noise_root is None and corpus == "demo" and root is not None and name in NOISE_FOLDERS:
        return default_noise_root(root, name)
    return noise_root


@dataclass
class _Inputs:
    """A stage's inputs: the corpus's utterances and the noise, with their rejects."""

    utts: list
    rejects: list[dict]  # the corpus's and the noise's
    label_files: list
    noise_root: Optional[Path]  # the root actually used (a demo corpus brings its own)
    noises: list

    def info(self, args: _StageArgs, opts, utterances: int, **extra) -> dict:
        """What a stage's plan records about its inputs."""
        return {"corpus": args.corpus, "root": str(args.root), "noise_root": str(self.noise_root or ""),
                "options": asdict(opts), "seed": args.seed, "utterances": utterances,
                "noise_files": len(self.noises), "label_files": self.label_files, **extra}


def _load_inputs(args: _StageArgs) -> _Inputs:
    if args.noise_layout not in NOISE_CORPORA:  # before reading a corpus for nothing
        fail(f"--noise-layout {args.noise_layout!r}: expected one of {', '.join(NOISE_CORPORA)}")
    utts, rejects, label_files = _load_corpus(args)
    noise_root = _default_noise_root(args.corpus, args.root, args.noise_root, args.noise_layout)
    noises, noise_rejects, _ = _load_noise(args.noise_layout, noise_root, "--noise-root")
    return _Inputs(utts, rejects + noise_rejects, label_files, noise_root, noises)


def _build_and_report(store: Path, stage: str, tasks, info: dict, rejects: list[dict], args: _StageArgs) -> None:
    """Run one stage; a user's mistake or Ctrl-C ends with one line, never a traceback."""
    from mixer.build import BuildError, run_stage

    try:
        summary = run_stage(store, stage, tasks, info, rejects, jobs=args.jobs, backend=args.backend,
                            scheduler=args.scheduler, progress=not args.quiet)
    except InputError as exc:
        fail(str(exc))
    except BuildError as exc:  # a worker killed by the OS: not the user's input, exit 1
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    except OSError as exc:  # unwritable --out, disk full: the user's environment, not a bug
        fail(f"{exc.filename or store}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        typer.echo("\ninterrupted: complete shards are kept; run the same command again to resume", err=True)
        raise typer.Exit(130)
    from mixer.corpora import LabelCount

    typer.echo(f"\nstore {store}")
    for line in summary.lines():
        typer.echo(f"  {line}")
    for count in info.get("label_files", []):
        typer.echo(f"  {'label rows':18s}{LabelCount(**count).summary()}")


@app.command("demo-corpus", cls=_Command)
def demo_corpus(
    out: Path = typer.Argument(..., help="Folder to write msp/, musan/ and esc50/ into."),
    seed: int = typer.Option(0, help="Seed of the synthetic corpus."),
    utterances_per_class: int = typer.Option(40, help="Training utterances per emotion class (validation and test get a quarter each)."),
):
    """Write the built-in synthetic demo corpus: speech in the MSP-Podcast layout, MUSAN-layout
    noise and music, and an ESC-50-layout unseen-noise folder."""
    from mixer.demo_corpus import write_demo_corpus

    try:
        per_split = (utterances_per_class, max(utterances_per_class // 4, 1), max(utterances_per_class // 4, 1))
        paths = write_demo_corpus(out, seed=seed, utterances_per_class=per_split)
    except InputError as exc:
        fail(str(exc))
    for name, path in paths.items():
        typer.echo(f"{name:6s} {path}")


_ALL = ",".join(BUILTIN_METRICS)
_BASELINE_NOISE_TYPES_HELP = "MUSAN parts to mix with."


_BABBLE_ROOT_HELP = (
    "Folder of speech recordings in MUSAN's layout (speech/<source>/*.wav) whose files are the babble kind's "
    "talkers instead of the split's other speakers; the test sets' talkers are the files held out for them "
    "(about one in five, by content). README 'Distortion kinds'.")


@_stage("superset", "superset", metrics_default=_ALL)
def superset(
    args: _StageArgs,
    bins: int = typer.Option(15, help="SNR bins over [snr-min, snr-max)."),
    snr_min: float = typer.Option(0.0, help="Lowest SNR in dB."),
    snr_max: float = typer.Option(30.0, help="Highest SNR in dB (excluded)."),
    noise_types: Optional[str] = typer.Option(None, help="MUSAN parts to mix with, one mix per bin and type (default noise,music; or name them in --kinds)."),
    kinds: Optional[str] = typer.Option(None, "--kinds", help=(
        f"Distortion kinds, comma-separated, of {', '.join(distortion_names())} (default noise,music): every "
        "kind gets --bins mixes per utterance (noise, music, speech, babble, reverb+noise one per SNR bin; "
        "reverb one per room, rooms drawn without replacement). README 'Distortion kinds'.")),
    rir_root: Optional[Path] = typer.Option(None, "--rir-root", help=(
        "Folder of room impulse response files (any rate and channels: channel 0, resampled to 16 kHz; "
        "T60 and DRR from a rooms.csv beside them, else estimated) for the reverb and reverb+noise kinds.")),
    sim_rooms: int = typer.Option(0, "--sim-rooms", help=(
        "Simulated shoebox rooms (pyroomacoustics, image-source method) for the reverb kinds, beside or instead "
        "of --rir-root: drawn from the seed, computed once and stored in the store (OUT/<corpus>/rirs/).")),
    sim_rt60: str = typer.Option("0.2,0.8", "--sim-rt60", help="RT60 range (seconds, min,max) of the simulated rooms."),
    babble_root: Optional[Path] = typer.Option(None, "--babble-root", help=_BABBLE_ROOT_HELP),
):
    """Mix every train and validation utterance with noise and music in every SNR bin (30N),
    and with the other distortion kinds asked for (--kinds), score every mix and write
    WebDataset shards, the metadata table and the manifest."""
    from mixer.plan import SupersetOptions, plan_clean, plan_superset

    additive, others = _kind_lists(kinds, noise_types)
    opts = SupersetOptions(snr_min=snr_min, snr_max=snr_max, bins=bins, noise_types=additive,
                           utts_per_shard=args.per_shard, seed=args.seed, metrics=args.metric_list())
    rirs, rir_rejects = _load_rirs(rir_root, others, args, sim_rooms, sim_rt60)
    talkers, babble_rejects, babble_info = _load_babble(babble_root, others, "train")
    inputs = _load_inputs(args)
    train_val = [u for u in inputs.utts if u.split in ("train", "validation")]
    if not train_val:
        fail(f"{args.root}: no train or validation utterances")
    tasks = plan_clean(train_val, opts.utts_per_shard) + plan_superset(train_val, inputs.noises, opts, others, rirs,
                                                                       talkers)
    # a superset of the additive kinds alone records what it always recorded
    extra = {"kinds": list(others), "rir_root": str(rir_root or ""), "rir_files": len(rirs), **babble_info} if others else {}
    if others and sim_rooms:
        extra.update(sim_rooms=sim_rooms, sim_rt60=sim_rt60)
    return tasks, inputs.info(args, opts, len(train_val), **extra), inputs.rejects + rir_rejects + babble_rejects


def _load_babble(babble_root: Optional[Path], kinds: tuple[str, ...], role: str) -> tuple[tuple, list[dict], dict]:
    """(talkers, rejects, what the stage records) of ``--babble-root`` for a stage of ``role``
    (mixer.babble: train or test recordings); nothing without it."""
    from mixer import babble

    if babble_root is None:
        return (), [], {}
    if "babble" not in kinds:
        fail(f"--babble-root {babble_root}: it holds the babble kind's talkers; add babble to --kinds")
    try:
        found, rejects = babble.prepare(babble_root)
        picked = babble.for_role(found, role, babble_root)
    except InputError as exc:
        fail(str(exc))
    info = {"babble_root": str(babble_root), "babble_role": role, "babble_test_share": babble.TEST_SHARE,
            "babble_files": [f"{f.babble_file}:{f.babble_id}" for f in picked]}
    return picked, [{"file": r.file, "reason": r.reason} for r in rejects], info


def _kind_lists(kinds: Optional[str], noise_types: Optional[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(additive kinds, other kinds) of ``--kinds`` (or ``--noise-types``; default noise,music)."""
    from shards.distortions import additive_kinds

    if kinds is not None and noise_types is not None:
        fail("--kinds and --noise-types both given: name the MUSAN parts in --kinds alone")
    if kinds is None:
        return _noise_type_list(noise_types or "noise,music"), ()
    listed = _split_list(kinds, distortion_names(), "--kinds")
    return tuple(k for k in listed if k in additive_kinds()), tuple(k for k in listed if k not in additive_kinds())


def _load_rirs(rir_root: Optional[Path], kinds: tuple[str, ...], args: _StageArgs, sim_rooms: int,
               sim_rt60: str) -> tuple[list, list[dict]]:
    """(RIRs, rejects) of ``--rir-root`` and the store's simulated rooms when a kind convolves
    with one, else nothing."""
    from mixer import rir, rooms
    from shards.distortions import RIR_SOURCE, distortion_spec

    if not any(RIR_SOURCE in distortion_spec(k).sources for k in kinds):
        return [], []
    if rir_root is None and sim_rooms <= 0:
        fail(f"--kinds {','.join(kinds)}: reverberation needs room impulse responses (--rir-root DIR or --sim-rooms N)")
    found, rejects = rir.prepare(rir_root) if rir_root is not None else ([], [])
    if sim_rooms > 0:
        rt60 = _snr_list(sim_rt60, "--sim-rt60")
        if len(rt60) != 2:
            fail(f"--sim-rt60 {sim_rt60!r}: expected min,max in seconds")
        folder = rooms.simulated_rooms(args.out / args.corpus, sim_rooms, (rt60[0], rt60[1]), args.seed)
        simulated, more = rir.prepare(folder, f"{folder.name}/")
        found, rejects = sorted(found + simulated, key=lambda r: r.rir_file), rejects + more
    return found, [{"file": r.file, "reason": r.reason} for r in rejects]


@_stage("fixed-snr", "fixed_snr", metrics_default="", metrics_help=_BASELINE_METRICS_HELP)
def fixed_snr(
    args: _StageArgs,
    snrs: str = typer.Option("0,5,10", help="Exact SNRs (dB): one mix per SNR and noise type for every train utterance."),
    noise_types: Optional[str] = typer.Option(None, "--noise-types", help=f"{_BASELINE_NOISE_TYPES_HELP} (default noise,music; or name them in --kinds)."),
    kinds: Optional[str] = typer.Option(None, "--kinds", help=(
        f"Distortion kinds, comma-separated, of {', '.join(distortion_names())} (default noise,music): noise, "
        "music and babble at each --snrs; reverb in 3 fixed rooms of the superset's RIRs (--rir-root, "
        "--sim-rooms as the superset's: the lowest, median and highest T60); reverb+noise at each --snrs in "
        "one of them. README 'Distortion kinds'.")),
    rir_root: Optional[Path] = typer.Option(None, "--rir-root", help="The superset's --rir-root (the reverb kinds' fixed rooms are drawn from it)."),
    sim_rooms: int = typer.Option(0, "--sim-rooms", help="The superset's --sim-rooms (its stored simulated rooms join the RIRs)."),
    sim_rt60: str = typer.Option("0.2,0.8", "--sim-rt60", help="The superset's --sim-rt60."),
    babble_root: Optional[Path] = typer.Option(None, "--babble-root", help=_BABBLE_ROOT_HELP),
):
    """The Fixed-SNR baseline's training mixes: every train utterance with noise and with music
    at 0, 5 and 10 dB (6N; with the clean utterances of the superset, 7N), in the same store,
    seeded and resumable like the superset (trainer run --strategy fixed-snr); with --kinds,
    the other kinds at their fixed severities too."""
    from mixer.plan import FixedSnrOptions, plan_fixed_snr

    additive, others = _kind_lists(kinds, noise_types)
    opts = FixedSnrOptions(snrs=_snr_list(snrs), noise_types=additive or _noise_type_list("noise,music"),
                           utts_per_shard=args.per_shard, seed=args.seed, metrics=args.metric_list())
    rirs, rir_rejects = _load_rirs(rir_root, others, args, sim_rooms, sim_rt60)
    talkers, babble_rejects, babble_info = _load_babble(babble_root, others, "train")
    if rirs:
        from mixer.rooms import check_superset_rooms

        check_superset_rooms(args.out / args.corpus, rir_root, sim_rooms, sim_rt60)
    inputs = _load_inputs(args)
    train = [u for u in inputs.utts if u.split == "train"]
    if not train:
        fail(f"{args.root}: no train utterances")
    # a Fixed-SNR stage of the additive kinds alone records what it always recorded
    extra = {"kinds": list(others), "rir_root": str(rir_root or ""), "rir_files": len(rirs), **babble_info} if others else {}
    return (plan_fixed_snr(train, inputs.noises, opts, others, rirs, talkers), inputs.info(args, opts, len(train), **extra),
            inputs.rejects + rir_rejects + babble_rejects)


@_stage("copypaste", "copypaste", metrics_default="", metrics_help=_BASELINE_METRICS_HELP)
def copypaste(
    args: _StageArgs,
    ratio: float = typer.Option(0.8, min=0.0, help="New concatenated samples per train utterance (0.8: 0.8N, rounded)."),
    max_segment_s: float = typer.Option(4.0, help="Each concatenated utterance is cut to at most this many seconds (a seeded random stretch)."),
    snrs: str = typer.Option("0,5,10", help="Exact SNRs (dB): one mix per SNR and noise type for every train utterance and every new sample."),
    noise_types: str = typer.Option("noise,music", "--noise-types", help=_BASELINE_NOISE_TYPES_HELP),
):
    """The CopyPaste baseline (Pappagari et al. 2021): 0.8N new train samples, each a neutral
    and an emotional utterance (labelled with the emotion) or two utterances of one emotion
    end to end, every part at most 4 s; then the N train utterances and the 0.8N new ones
    with noise and with music at 0, 5 and 10 dB (6 x 1.8N). With the clean utterances of
    the superset, 12.6N (trainer run --strategy copypaste). Seeded and resumable like the
    superset."""
    from mixer.plan import CopyPasteOptions, copypaste_count, plan_copypaste

    snr_values = _snr_list(snrs)
    if not max_segment_s > 0:
        fail(f"--max-segment-s {max_segment_s}: expected a positive number of seconds")
    opts = CopyPasteOptions(ratio=ratio, max_segment_s=max_segment_s, snrs=snr_values,
                            noise_types=_noise_type_list(noise_types),
                            utts_per_shard=args.per_shard, seed=args.seed, metrics=args.metric_list())
    inputs = _load_inputs(args)
    n_train = sum(u.split == "train" for u in inputs.utts)
    if not n_train:
        fail(f"{args.root}: no train utterances")
    tasks = plan_copypaste(inputs.utts, inputs.noises, opts)  # every split: composite ids must not clash with any
    return tasks, inputs.info(args, opts, n_train, composites=copypaste_count(n_train, ratio)), inputs.rejects


@_stage("testsets", "testsets", metrics_default=_ALL,
        noise_root_help="MUSAN root for the seen-noise tests; demo: <root>/musan.")
def testsets(
    args: _StageArgs,
    unseen_root: Optional[Path] = typer.Option(None, help="ESC-50 root for the unseen-noise test; demo: <root>/esc50."),
    unseen_layout: str = typer.Option("esc50", help=f"Layout of --unseen-root: {', '.join(_NOISE_LAYOUTS)} (folder: every audio file below it)."),
    snrs: str = typer.Option("0,5,10", help="Exact SNRs (dB) of the seen-noise test sets (and of the babble ones)."),
    noise_types: Optional[str] = typer.Option(None, "--noise-types", help="MUSAN parts of the seen-noise test sets, one mix per SNR and type (default noise,music; or name them in --kinds)."),
    kinds: Optional[str] = typer.Option(None, "--kinds", help=(
        f"Distortion kinds, comma-separated, of {', '.join(distortion_names())} (default noise,music): besides "
        "the seen-noise sets, babble at each --snrs (test_babble<dB>), reverberation in rooms never used for "
        "training (test_reverb, test_reverb_rt<s>) and far field (test_farfield<dB>). README 'Distortion kinds'.")),
    test_rir_root: Optional[Path] = typer.Option(None, "--test-rir-root", help="Folder of room impulse responses never used for training (e.g. ../shared/audio/rir/pori_hall): test_reverb."),
    test_sim_rt60: Optional[str] = typer.Option(None, "--test-sim-rt60", help="Target RT60s (seconds, comma-separated) of simulated test rooms the superset's --sim-rt60 range does not draw: test_reverb_rt<s> each."),
    test_sim_rooms: int = typer.Option(2, "--test-sim-rooms", min=1, help="Simulated test rooms per --test-sim-rt60 value (stored in the store, as the superset's)."),
    far_snrs: str = typer.Option("5", "--far-snrs", help="Exact SNRs (dB) of the far-field test sets (an unseen room plus seen noise)."),
    babble_root: Optional[Path] = typer.Option(None, "--babble-root", help=(
        "The superset's --babble-root (MUSAN layout, speech/<source>/*.wav): the test babble's talkers are "
        "its files held out for the test sets (about one in five, by content), never those the superset and "
        "fixed-snr draw. README 'Distortion kinds'.")),
):
    """Write the test sets: clean; MUSAN noise and music at exactly 0, 5 and 10 dB; ESC-50
    noise at an SNR uniform in [0, 30] (unseen); with --kinds, the other kinds' test
    conditions (babble, reverberation in unseen rooms, far field)."""
    from mixer.plan import TestsetOptions, plan_clean, plan_kind_testsets, plan_testsets

    snr_values = _snr_list(snrs)
    additive, others = _kind_lists(kinds, noise_types)
    test_rirs, sim_rooms, rir_rejects = _load_test_rooms(test_rir_root, test_sim_rt60, test_sim_rooms, others, args)
    talkers, babble_rejects, babble_info = _load_babble(babble_root, others, "test")
    inputs = _load_inputs(args)
    test_splits = tuple(sorted({u.split for u in inputs.utts if u.split.startswith("test")}))
    if not test_splits:
        fail(f"{args.root}: no test utterances")
    opts = TestsetOptions(snrs=snr_values, noise_types=additive or _noise_type_list("noise,music"), utts_per_shard=args.per_shard,
                          seed=args.seed, splits=test_splits, metrics=args.metric_list())
    unseen_root = _default_noise_root(args.corpus, args.root, unseen_root, unseen_layout)
    unseen, unseen_rejects, unseen_labels = (([], [], []) if unseen_root is None
                                             else _load_noise(unseen_layout, unseen_root, "--unseen-root"))
    if unseen_root is None:
        typer.echo("note: no --unseen-root given, the unseen-noise test set is skipped", err=True)
    tests = [u for u in inputs.utts if u.split in test_splits]
    tasks = plan_clean(tests, opts.utts_per_shard) + plan_testsets(tests, inputs.noises, unseen, opts)
    # test sets of the additive kinds alone record what they always recorded
    extra = {}
    if others:
        far = _snr_list(far_snrs, "--far-snrs")
        tasks += plan_kind_testsets(tests, inputs.noises, opts, others, far, test_rirs, sim_rooms, talkers)
        extra = {"kinds": list(others), "test_rir_root": str(test_rir_root or ""), "test_rir_files": len(test_rirs),
                 "test_sim_rt60": [rt for rt, _ in sim_rooms], "test_sim_rooms": test_sim_rooms, "far_snrs": list(far), **babble_info}
    info = inputs.info(args, opts, len(tests), unseen_root=str(unseen_root or ""),
                       unseen_files=len(unseen), label_files=inputs.label_files + unseen_labels, **extra)
    return tasks, info, inputs.rejects + unseen_rejects + rir_rejects + babble_rejects


def _load_test_rooms(test_rir_root: Optional[Path], test_sim_rt60: Optional[str], rooms_per_rt60: int,
                     kinds: tuple[str, ...], args: _StageArgs) -> tuple[list, tuple, list[dict]]:
    """(real test RIRs, ((RT60, simulated rooms), ...), rejects) when a kind convolves with a
    room, else nothing; rooms the store's superset used are refused (mixer.rooms.check_unseen)."""
    from mixer import rir, rooms
    from shards.distortions import RIR_SOURCE, distortion_spec

    if not any(RIR_SOURCE in distortion_spec(k).sources for k in kinds):
        return [], (), []
    if test_rir_root is None and not test_sim_rt60:
        fail(f"--kinds {','.join(kinds)}: test reverberation needs rooms never used for training "
             f"(--test-rir-root DIR and/or --test-sim-rt60 RT60s)")
    store = args.out / args.corpus
    found, rejects = rir.prepare(test_rir_root) if test_rir_root is not None else ([], [])
    rt60s = _snr_list(test_sim_rt60, "--test-sim-rt60") if test_sim_rt60 else ()
    rooms.check_unseen(store, found, rt60s)
    simulated = []
    for rt60 in rt60s:
        folder = rooms.simulated_rooms(store, rooms_per_rt60, (rt60, rt60), args.seed, stream=rooms.TEST_STREAM)
        made, more = rir.prepare(folder, f"{folder.name}/")
        rooms.check_unseen(store, made)
        simulated.append((rt60, tuple(made)))
        rejects += more
    return found, tuple(simulated), [{"file": r.file, "reason": r.reason} for r in rejects]


#: The shared options ``prep corpus`` takes (with every split option).
_CORPUS_COMMAND_OPTIONS = ("corpus", "root", "limit")


def _corpus_summary(as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
                    **values) -> None:
    """Show what a corpus gives, without mixing anything: the utterances per split and class,
    the speakers per split, the total audio duration per split (from the file headers) and the
    rejects grouped by reason. Takes the split options a build takes (and --limit), so the
    counts are those a build of the same options stores."""
    import json

    from mixer.corpora import LabelCount
    from mixer.corpus_summary import options_text, summarize_corpus, summary_lines

    args = _CorpusArgs(splits=_pop_split_options(values), **values)
    try:
        utts, rejects, label_files = _read_corpus(args)
        options = _corpus_options(args)
    except InputError as exc:
        fail(str(exc))
    summary = summarize_corpus(utts, rejects)
    if as_json:
        typer.echo(json.dumps({"corpus": args.corpus, "root": str(args.root), "options": options, "limit": args.limit,
                               **summary, "label_files": label_files}, indent=1))
        return
    shown = options_text(options)
    typer.echo(f"corpus {args.corpus} at {args.root}" + (f" ({shown})" if shown else "")
               + (f", the first {args.limit} utterances of each split" if args.limit > 0 else ""))
    for line in summary_lines(summary):
        typer.echo(line)
    for count in label_files:
        typer.echo(f"label rows {LabelCount(**count).summary()}")


def _corpus_options(args: _CorpusArgs) -> dict:
    """The corpus's split options as its adapter takes them: the given ones, else prepare's defaults."""
    given = _corpus_keywords(args)
    defaults = inspect.signature(EMOTION_ADAPTERS[args.corpus].prepare).parameters
    options = {}
    for option in split_options(args.corpus):
        value = given.get(option.parameter, defaults[option.parameter].default)
        options[option.parameter] = value if isinstance(value, (str, int)) else sorted(value)
    return options


def _register_corpus_command() -> None:
    shared = [p for p in _shared_options("", "", "") if p.name in _CORPUS_COMMAND_OPTIONS or p.name in _SPLIT_OPTIONS]
    own = inspect.signature(_corpus_summary).parameters["as_json"].replace(kind=inspect.Parameter.KEYWORD_ONLY)
    parameters = [own, *shared]
    _corpus_summary.__signature__ = inspect.Signature(parameters)
    _corpus_summary.__annotations__ = {p.name: p.annotation for p in parameters}
    app.command("corpus", cls=_Command)(_corpus_summary)


_register_corpus_command()


@app.command("verify", cls=_Command)
def verify(
    store: Path = typer.Argument(..., help="A store folder, OUT/<corpus>."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    rescore: int = typer.Option(0, "--rescore", min=0, help=(
        "Also re-mix and re-score a seeded sample of this many mixes (as a reader reads them) and compare "
        "their metrics with the table exactly (0: none).")),
    seed: int = typer.Option(0, help="Seed of the --rescore sample."),
):
    """Check the manifest, the table's and rejects' checksums, every shard's checksum and
    sample count, that shards/ holds only the shards the manifest lists, and that every table
    row has its audio (a recipe store: every recipe's clean utterance and noise). Exit code
    0: sound; 1: problems (one line each); 2: not a store."""
    from mixer.rescore import rescore as rescore_sample
    from shards.reader import open_store
    from shards.verify import report, verify_store

    try:
        problems, counts = verify_store(store, progress=not quiet)
        if rescore and not problems:
            found, compared = rescore_sample(open_store(store), rescore, seed)
            problems += found
            counts["rescored"] = compared
    except InputError as exc:
        fail(str(exc))
    if "rescored" in counts:
        typer.echo(f"rescored {counts['rescored']} mixes (seed {seed}): {len(problems)} differ from the table")
    report(store, problems, counts)
app.command("score", cls=_Command)(score)


@app.command("materialize", cls=_Command)
def materialize(
    store: Path = typer.Argument(..., help="A recipe store (built with --mixes recipe)."),
    out: Path = typer.Option(..., "--out", help="Folder of the audio store to write (created; a partial one is resumed)."),
    jobs: int = typer.Option(-1, "--jobs", "-j", help="Worker processes (-1: all cores)."),
):
    """Write a recipe store out as the audio store: every mix as FLAC in WebDataset shards,
    byte-identical (shards, table, manifest apart from its layout field) to a --mixes audio
    build of the same inputs and seed. Level indexes are not copied: run 'prep score' on it."""
    from mixer.materialize import materialize as write_audio_store

    try:
        manifest = write_audio_store(store, out, jobs)
    except InputError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or out}: {exc.strerror or exc}")
    size = sum(e["bytes"] for e in manifest["shards"])
    typer.echo(f"audio store {out}: {manifest['samples']} samples in {len(manifest['shards'])} shards "
               f"({size / 2**20:.1f} MiB); run 'prep score {out} ...' for its level indexes")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

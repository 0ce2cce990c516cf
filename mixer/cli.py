"""``prep``: the data-preparation stages, one command each.

    prep demo-corpus OUT                       synthetic corpus + noise (MSP/MUSAN/ESC-50 layouts)
    prep superset --corpus msp --root R --noise-root M --out OUT
    prep testsets --corpus msp --root R --noise-root M --unseen-root E --out OUT
    prep fixed-snr --corpus msp --root R --noise-root M --out OUT   (the Fixed-SNR baseline)
    prep copypaste --corpus msp --root R --noise-root M --out OUT   (the CopyPaste baseline)
    prep verify OUT/<corpus>
    prep score OUT/<corpus> --metric stoi --quant gmm
"""
from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import typer

from scoring.cli_score import score
from shards.errors import InputError
from shards.verify import verify
from shards.vocab import METRICS as ALL_METRICS

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="metricaug data preparation: mix, score and shard an emotion corpus.")

CORPORA = ("msp", "meld", "emodb", "ravdess", "csv", "demo")


class _Command(typer.core.TyperCommand):
    """A prep command whose usage line names a required argument as click does
    (``prep verify [OPTIONS] STORE``); typer writes it ``{store}``."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [re.sub(r"^\{([^}]*)\}", lambda m: m.group(1).upper(), piece)
                for piece in super().collect_usage_pieces(ctx)]


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _split_list(text: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        fail(f"{option} {text!r}: expected a comma-separated list of {', '.join(allowed)}")
    return items


def _label_files(counts) -> list[dict]:
    """What each label file gave (rows read, lines in the file) as the stage info records it."""
    return [asdict(c) for c in counts]


def _load_corpus(corpus: str, root: Optional[Path], limit: int):
    """(utterances, rejects, label files read) of ``corpus`` at ``root``."""
    from mixer import corpora

    if corpus not in CORPORA:
        fail(f"--corpus {corpus!r}: expected one of {', '.join(CORPORA)}")
    if root is None:
        fail(f"--root is required for --corpus {corpus}")
    if not root.exists():
        fail(f"{root}: corpus root not found")
    with corpora.counting_label_rows() as counts:
        utts, rejects = corpora.EMOTION_CORPORA[corpus](root)
    if limit > 0:
        kept = []
        for split in sorted({u.split for u in utts}):
            kept += sorted((u for u in utts if u.split == split), key=lambda u: u.utt_id)[:limit]
        utts = kept
    if not utts:
        fail(f"{root}: no usable utterances found ({len(rejects)} rejected)")
    return utts, [{"file": r.file, "reason": r.reason} for r in rejects], _label_files(counts)


def _load_noise(kind: str, root: Optional[Path], option: str):
    """(noise files, rejects, label files read) of the ``kind`` adapter at ``root``."""
    from mixer import corpora

    if root is None:
        fail(f"{option} is required")
    if not root.exists():
        fail(f"{root}: noise root not found ({option})")
    with corpora.counting_label_rows() as counts:
        files, rejects = corpora.NOISE_CORPORA[kind](root)
    return files, [{"file": r.file, "reason": r.reason} for r in rejects], _label_files(counts)


def _default_noise_root(corpus: str, root: Optional[Path], noise_root: Optional[Path], name: str) -> Optional[Path]:
    """The noise root a stage uses: the user's, or for the demo corpus its own stand-in."""
    if noise_root is None and corpus == "demo" and root is not None:
        from mixer.corpora.demo import default_noise_root

        return default_noise_root(root, name)
    return noise_root


@dataclass
class _Inputs:
    """A stage's inputs: the corpus's utterances and the MUSAN noise, with their rejects."""

    utts: list
    rejects: list[dict]  # the corpus's and the noise's
    label_files: list
    noise_root: Optional[Path]  # the root actually used (a demo corpus brings its own)
    noises: list

    def info(self, corpus: str, root: Optional[Path], opts, seed: int, utterances: int, **extra) -> dict:
        """What a stage's plan records about its inputs."""
        return {"corpus": corpus, "root": str(root), "noise_root": str(self.noise_root or ""), "options": asdict(opts),
                "seed": seed, "utterances": utterances, "noise_files": len(self.noises),
                "label_files": self.label_files, **extra}


def _load_inputs(corpus: str, root: Optional[Path], noise_root: Optional[Path], limit: int) -> _Inputs:
    utts, rejects, label_files = _load_corpus(corpus, root, limit)
    noise_root = _default_noise_root(corpus, root, noise_root, "musan")
    noises, noise_rejects, _ = _load_noise("musan", noise_root, "--noise-root")
    return _Inputs(utts, rejects + noise_rejects, label_files, noise_root, noises)


def _noise_type_list(text: str) -> tuple[str, ...]:
    return _split_list(text, ("noise", "music", "speech"), "--noise-types")


def _metric_list(metrics: str) -> tuple[str, ...]:
    return _split_list(metrics, ALL_METRICS, "--metrics") if metrics else ()


def _build_and_report(store: Path, stage: str, tasks, info: dict, rejects: list[dict],
                      jobs: int, backend: str, scheduler: Optional[str], quiet: bool) -> None:
    """Run one stage; a user's mistake or Ctrl-C ends with one line, never a traceback."""
    from mixer.build import BuildError, run_stage

    try:
        summary = run_stage(store, stage, tasks, info, rejects, jobs=jobs, backend=backend,
                            scheduler=scheduler, progress=not quiet)
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


JOBS = typer.Option(-1, "--jobs", "-j", help="Worker processes (-1: all cores).")
SEED = typer.Option(0, help="Seed of the plan: the same inputs and seed give byte-identical shards.")
BACKEND = typer.Option("loky", help="joblib backend: loky (local processes) or dask (a Dask cluster).")
SCHEDULER = typer.Option(None, help="Dask scheduler address (tcp://host:8786) for --backend dask; default: a local cluster.")
METRICS = typer.Option("stoi,pesq,fwsnrseg", help="Metrics to compute for every mix (comma-separated).")
PER_SHARD = typer.Option(16, help="Utterances per shard (a superset shard holds 30x as many mixes).")
LIMIT = typer.Option(0, help="Use only the first N utterances of each split (0: all); for quick trials.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")
CORPUS_OPT = typer.Option(..., "--corpus", help=f"Emotion corpus adapter: {', '.join(CORPORA)}.")
ROOT_OPT = typer.Option(None, "--root", help="Corpus root (for csv: the CSV file; for demo: the demo-corpus folder).")
NOISE_ROOT_OPT = typer.Option(None, "--noise-root", help="MUSAN root (noise/ and music/); demo: <root>/musan.")
OUT_OPT = typer.Option(Path("data/stores"), "--out", help="Output folder; the store is OUT/<corpus>.")
BASELINE_NOISE_TYPES = typer.Option("noise,music", "--noise-types", help="MUSAN parts to mix with.")
BASELINE_METRICS = typer.Option("", "--metrics", help="Metrics to compute for every mix (comma-separated; default none: the baseline does not use them).")


def _snr_list(snrs: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in snrs.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values:
        fail(f"--snrs {snrs!r}: expected comma-separated numbers of dB")
    return values


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


@app.command("superset", cls=_Command)
def superset(
    corpus: str = CORPUS_OPT,
    root: Optional[Path] = ROOT_OPT,
    noise_root: Optional[Path] = NOISE_ROOT_OPT,
    out: Path = OUT_OPT,
    jobs: int = JOBS,
    seed: int = SEED,
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    bins: int = typer.Option(15, help="SNR bins over [snr-min, snr-max)."),
    snr_min: float = typer.Option(0.0, help="Lowest SNR in dB."),
    snr_max: float = typer.Option(30.0, help="Highest SNR in dB (excluded)."),
    noise_types: str = typer.Option("noise,music", help="MUSAN parts to mix with, one mix per bin and type."),
    metrics: str = METRICS,
    utts_per_shard: int = PER_SHARD,
    limit: int = LIMIT,
    quiet: bool = QUIET,
):
    """Mix every train and validation utterance with noise and music in every SNR bin (30N),
    score every mix and write WebDataset shards, the metadata table and the manifest."""
    from mixer.plan import SupersetOptions, plan_clean, plan_superset

    try:
        opts = SupersetOptions(snr_min=snr_min, snr_max=snr_max, bins=bins,
                               noise_types=_noise_type_list(noise_types),
                               utts_per_shard=max(utts_per_shard, 1), seed=seed,
                               metrics=_metric_list(metrics))
        inputs = _load_inputs(corpus, root, noise_root, limit)
        train_val = [u for u in inputs.utts if u.split in ("train", "validation")]
        if not train_val:
            fail(f"{root}: no train or validation utterances")
        tasks = plan_clean(train_val, opts.utts_per_shard) + plan_superset(train_val, inputs.noises, opts)
        info = inputs.info(corpus, root, opts, seed, len(train_val))
    except InputError as exc:
        fail(str(exc))
    _build_and_report(out / corpus, "superset", tasks, info, inputs.rejects, jobs, backend, scheduler, quiet)


@app.command("fixed-snr", cls=_Command)
def fixed_snr(
    corpus: str = CORPUS_OPT,
    root: Optional[Path] = ROOT_OPT,
    noise_root: Optional[Path] = NOISE_ROOT_OPT,
    out: Path = OUT_OPT,
    snrs: str = typer.Option("0,5,10", help="Exact SNRs (dB): one mix per SNR and noise type for every train utterance."),
    noise_types: str = BASELINE_NOISE_TYPES,
    jobs: int = JOBS,
    seed: int = SEED,
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    metrics: str = BASELINE_METRICS,
    utts_per_shard: int = PER_SHARD,
    limit: int = LIMIT,
    quiet: bool = QUIET,
):
    """The Fixed-SNR baseline's training mixes: every train utterance with noise and with music
    at 0, 5 and 10 dB (6N; with the clean utterances of the superset, 7N), in the same store,
    seeded and resumable like the superset (trainer run --strategy fixed-snr)."""
    from mixer.plan import FixedSnrOptions, plan_fixed_snr

    try:
        snr_values = _snr_list(snrs)
        opts = FixedSnrOptions(snrs=snr_values, noise_types=_noise_type_list(noise_types),
                               utts_per_shard=max(utts_per_shard, 1), seed=seed, metrics=_metric_list(metrics))
        inputs = _load_inputs(corpus, root, noise_root, limit)
        train = [u for u in inputs.utts if u.split == "train"]
        if not train:
            fail(f"{root}: no train utterances")
        tasks = plan_fixed_snr(train, inputs.noises, opts)
        info = inputs.info(corpus, root, opts, seed, len(train))
    except InputError as exc:
        fail(str(exc))
    _build_and_report(out / corpus, "fixed_snr", tasks, info, inputs.rejects, jobs, backend, scheduler, quiet)


@app.command("copypaste", cls=_Command)
def copypaste(
    corpus: str = CORPUS_OPT,
    root: Optional[Path] = ROOT_OPT,
    noise_root: Optional[Path] = NOISE_ROOT_OPT,
    out: Path = OUT_OPT,
    ratio: float = typer.Option(0.8, min=0.0, help="New concatenated samples per train utterance (0.8: 0.8N, rounded)."),
    max_segment_s: float = typer.Option(4.0, help="Each concatenated utterance is cut to at most this many seconds (a seeded random stretch)."),
    snrs: str = typer.Option("0,5,10", help="Exact SNRs (dB): one mix per SNR and noise type for every train utterance and every new sample."),
    noise_types: str = BASELINE_NOISE_TYPES,
    jobs: int = JOBS,
    seed: int = SEED,
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    metrics: str = BASELINE_METRICS,
    utts_per_shard: int = PER_SHARD,
    limit: int = LIMIT,
    quiet: bool = QUIET,
):
    """The CopyPaste baseline (Pappagari et al. 2021): 0.8N new train samples, each a neutral
    and an emotional utterance (labelled with the emotion) or two utterances of one emotion
    end to end, every part at most 4 s; then the N train utterances and the 0.8N new ones
    with noise and with music at 0, 5 and 10 dB (6 x 1.8N). With the clean utterances of
    the superset, 12.6N (trainer run --strategy copypaste). Seeded and resumable like the
    superset."""
    from mixer.plan import CopyPasteOptions, copypaste_count, plan_copypaste

    try:
        snr_values = _snr_list(snrs)
        if not max_segment_s > 0:
            fail(f"--max-segment-s {max_segment_s}: expected a positive number of seconds")
        opts = CopyPasteOptions(ratio=ratio, max_segment_s=max_segment_s, snrs=snr_values,
                                noise_types=_noise_type_list(noise_types),
                                utts_per_shard=max(utts_per_shard, 1), seed=seed, metrics=_metric_list(metrics))
        inputs = _load_inputs(corpus, root, noise_root, limit)
        n_train = sum(u.split == "train" for u in inputs.utts)
        if not n_train:
            fail(f"{root}: no train utterances")
        tasks = plan_copypaste(inputs.utts, inputs.noises, opts)  # every split: composite ids must not clash with any
        info = inputs.info(corpus, root, opts, seed, n_train, composites=copypaste_count(n_train, ratio))
    except InputError as exc:
        fail(str(exc))
    _build_and_report(out / corpus, "copypaste", tasks, info, inputs.rejects, jobs, backend, scheduler, quiet)


@app.command("testsets", cls=_Command)
def testsets(
    corpus: str = CORPUS_OPT,
    root: Optional[Path] = ROOT_OPT,
    noise_root: Optional[Path] = typer.Option(None, help="MUSAN root for the seen-noise tests; demo: <root>/musan."),
    unseen_root: Optional[Path] = typer.Option(None, help="ESC-50 root for the unseen-noise test; demo: <root>/esc50."),
    out: Path = OUT_OPT,
    snrs: str = typer.Option("0,5,10", help="Exact SNRs (dB) of the seen-noise test sets."),
    jobs: int = JOBS,
    seed: int = SEED,
    backend: str = BACKEND,
    scheduler: Optional[str] = SCHEDULER,
    metrics: str = METRICS,
    utts_per_shard: int = PER_SHARD,
    limit: int = LIMIT,
    quiet: bool = QUIET,
):
    """Write the test sets: clean; MUSAN noise and music at exactly 0, 5 and 10 dB; ESC-50
    noise at an SNR uniform in [0, 30] (unseen)."""
    from mixer.plan import TestsetOptions, plan_clean, plan_testsets

    try:
        snr_values = _snr_list(snrs)
        inputs = _load_inputs(corpus, root, noise_root, limit)
        test_splits = tuple(sorted({u.split for u in inputs.utts if u.split.startswith("test")}))
        if not test_splits:
            fail(f"{root}: no test utterances")
        opts = TestsetOptions(snrs=snr_values, utts_per_shard=max(utts_per_shard, 1), seed=seed, splits=test_splits,
                              metrics=_metric_list(metrics))
        unseen_root = _default_noise_root(corpus, root, unseen_root, "esc50")
        unseen, unseen_rejects, unseen_labels = (([], [], []) if unseen_root is None
                                                 else _load_noise("esc50", unseen_root, "--unseen-root"))
        if unseen_root is None:
            typer.echo("note: no --unseen-root given, the unseen-noise test set is skipped", err=True)
        tests = [u for u in inputs.utts if u.split in test_splits]
        tasks = plan_clean(tests, opts.utts_per_shard) + plan_testsets(tests, inputs.noises, unseen, opts)
        info = inputs.info(corpus, root, opts, seed, len(tests), unseen_root=str(unseen_root or ""),
                           unseen_files=len(unseen), label_files=inputs.label_files + unseen_labels)
    except InputError as exc:
        fail(str(exc))
    _build_and_report(out / corpus, "testsets", tasks, info, inputs.rejects + unseen_rejects,
                      jobs, backend, scheduler, quiet)


app.command("verify", cls=_Command)(verify)
app.command("score", cls=_Command)(score)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

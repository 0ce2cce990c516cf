"""The build plan: which mixes go into which shard.

The plan is a pure function of (utterance list, noise list, options, seed). Every random
draw for an utterance comes from a generator seeded by (seed, subset, utt_id), so an
utterance's mixes do not depend on the order of the corpus, on other utterances, or on
how many workers build the shards.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from shards.errors import InputError

from mixer.records import NoiseFile, Utterance
from shards.vocab import (
    CLEAN_SUBSET, FIXED_SNR_SUBSET, TRAIN, METRICS, SUPERSET_SPLITS, SUPERSET_SUBSET, UNSEEN_SUBSET, shard_name, snr_subset, snr_tag,
)


def rng_for(seed: int, *parts: str) -> np.random.Generator:
    digest = hashlib.sha256("|".join([str(seed), *parts]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


@dataclass(frozen=True, slots=True)  # slots: a real corpus plans a million of these
class MixSpec:
    key: str
    noise_type: str  # noise | music | unseen
    noise_id: str
    noise_path: str
    noise_samples: int  # noise length at 16 kHz
    offset_fraction: float  # where the noise stretch starts, as a share of the free room
    snr_target: float
    snr_bin: int = -1  # superset bin index, -1 for test sets


@dataclass(frozen=True, slots=True)
class UttJob:
    utt: Utterance
    mixes: tuple[MixSpec, ...] = ()  # empty: store the clean utterance itself


@dataclass(frozen=True)
class ShardTask:
    name: str  # e.g. "superset-train-000003"; the tar is shards/<name>.tar
    subset: str
    split: str
    jobs: tuple[UttJob, ...]
    metrics: tuple[str, ...] = ()
    #: (path, size, mtime_ns) of every input file, set by the build just before it checks
    #: which shards are complete (mixer.build.stamp_inputs); empty in a bare plan
    inputs: tuple[tuple[str, int, int], ...] = ()

    @property
    def num_samples(self) -> int:
        return sum(len(j.mixes) or 1 for j in self.jobs)

    def input_paths(self) -> list[str]:
        """Every file this shard reads: its utterances and the noise files of its mixes."""
        paths = {j.utt.path for j in self.jobs}
        paths.update(m.noise_path for j in self.jobs for m in j.mixes)
        return sorted(paths)

    def fingerprint(self) -> str:
        """Changes whenever anything that shapes this shard's bytes changes: the plan, and
        (through ``inputs``) the size and modification time of every file it reads, so an
        input replaced in place gets its shards rebuilt. The dataclass repr lists every
        field, floats in their exact shortest form. Stored in the shard's rows file, never
        in the tar."""
        return hashlib.sha256(repr(self).encode()).hexdigest()


@dataclass(frozen=True)
class SupersetOptions:
    snr_min: float = 0.0
    snr_max: float = 30.0
    bins: int = 15
    noise_types: tuple[str, ...] = ("noise", "music")
    utts_per_shard: int = 16
    metrics: tuple[str, ...] = METRICS
    seed: int = 0


@dataclass(frozen=True)
class TestsetOptions:
    __test__ = False  # not a pytest test class, despite the name

    snrs: tuple[float, ...] = (0.0, 5.0, 10.0)
    noise_types: tuple[str, ...] = ("noise", "music")
    unseen_snr_min: float = 0.0
    unseen_snr_max: float = 30.0
    utts_per_shard: int = 16
    metrics: tuple[str, ...] = METRICS
    seed: int = 0
    splits: tuple[str, ...] = field(default=("test",))


def _noise_by_type(noises: list[NoiseFile], types: tuple[str, ...]) -> dict[str, list[NoiseFile]]:
    by_type = {t: sorted((n for n in noises if n.kind == t), key=lambda n: n.noise_id) for t in types}
    empty = [t for t, files in by_type.items() if not files]
    if empty:
        raise InputError(f"no {', '.join(empty)} files among the noise corpus (expected at least one of each type)")
    return by_type


def _mix_spec(rng: np.random.Generator, key: str, kind: str, files: list[NoiseFile], snr: float, snr_bin: int = -1) -> MixSpec:
    noise = files[int(rng.integers(len(files)))]
    return MixSpec(
        key=key,
        noise_type=kind,
        noise_id=noise.noise_id,
        noise_path=noise.path,
        noise_samples=noise.num_samples_16k,
        offset_fraction=float(rng.random()),
        snr_target=float(snr),
        snr_bin=snr_bin,
    )


def _shard(subset: str, split: str, jobs: list[UttJob], per_shard: int, metrics: tuple[str, ...]) -> list[ShardTask]:
    return [
        ShardTask(shard_name(subset, split, i // per_shard), subset, split, tuple(jobs[i : i + per_shard]), metrics)
        for i in range(0, len(jobs), per_shard)
    ]


def _by_split(utts: list[Utterance], splits) -> dict[str, list[Utterance]]:
    return {s: sorted((u for u in utts if u.split == s), key=lambda u: u.utt_id) for s in splits}


def plan_clean(utts: list[Utterance], utts_per_shard: int = 16) -> list[ShardTask]:
    """Each utterance once, unmixed, in its split's clean shards."""
    splits = sorted({u.split for u in utts})
    tasks = []
    for split, members in _by_split(utts, splits).items():
        tasks += _shard(CLEAN_SUBSET, split, [UttJob(u) for u in members], utts_per_shard, ())
    return tasks


def superset_mixes(utt: Utterance, by_type: dict[str, list[NoiseFile]], opts: SupersetOptions) -> tuple[MixSpec, ...]:
    """One mix per (SNR bin, noise type): 30 mixes with the defaults ("30N")."""
    rng = rng_for(opts.seed, SUPERSET_SUBSET, utt.utt_id)
    width = (opts.snr_max - opts.snr_min) / opts.bins
    mixes = []
    for b in range(opts.bins):
        lo = opts.snr_min + b * width
        for kind in opts.noise_types:
            snr = lo + width * float(rng.random())  # uniform inside the bin
            mixes.append(_mix_spec(rng, f"{utt.utt_id}__s{b:02d}-{kind}", kind, by_type[kind], snr, b))
    return tuple(mixes)


def plan_superset(utts: list[Utterance], noises: list[NoiseFile], opts: SupersetOptions) -> list[ShardTask]:
    if opts.bins < 1 or not opts.snr_max > opts.snr_min:
        raise InputError(f"SNR range [{opts.snr_min}, {opts.snr_max}) with {opts.bins} bins is empty (expected snr_max > snr_min, bins >= 1)")
    by_type = _noise_by_type(noises, opts.noise_types)
    tasks = []
    for split, members in _by_split(utts, SUPERSET_SPLITS).items():
        jobs = [UttJob(u, superset_mixes(u, by_type, opts)) for u in members]
        tasks += _shard(SUPERSET_SUBSET, split, jobs, opts.utts_per_shard, opts.metrics)
    return tasks


@dataclass(frozen=True)
class FixedSnrOptions:
    snrs: tuple[float, ...] = (0.0, 5.0, 10.0)
    noise_types: tuple[str, ...] = ("noise", "music")
    utts_per_shard: int = 16
    metrics: tuple[str, ...] = ()  # the baseline trains on these mixes; nothing reads metrics of them
    seed: int = 0


def plan_fixed_snr(utts: list[Utterance], noises: list[NoiseFile], opts: FixedSnrOptions) -> list[ShardTask]:
    """The Fixed-SNR baseline's training mixes: every train utterance with each noise type at
    each SNR (6N with the defaults; with the N clean utterances, the paper's 7N). The clean
    train utterances are the superset's; only the mixes are planned here."""
    by_type = _noise_by_type(noises, opts.noise_types)
    jobs = []
    for u in _by_split(utts, (TRAIN,))[TRAIN]:
        rng = rng_for(opts.seed, FIXED_SNR_SUBSET, u.utt_id)
        jobs.append(UttJob(u, tuple(_mix_spec(rng, f"{u.utt_id}__f{snr_tag(snr)}db-{kind}", kind, by_type[kind], snr)
                                    for snr in opts.snrs for kind in opts.noise_types)))
    return _shard(FIXED_SNR_SUBSET, TRAIN, jobs, opts.utts_per_shard, opts.metrics)


def plan_testsets(utts: list[Utterance], noises: list[NoiseFile], unseen: list[NoiseFile], opts: TestsetOptions) -> list[ShardTask]:
    """Seen noise at exact SNRs (one mix per noise type and SNR), and unseen noise at an SNR
    uniform in [unseen_snr_min, unseen_snr_max]. Clean test utterances live in the clean shards."""
    by_type = _noise_by_type(noises, opts.noise_types)
    unseen_files = sorted(unseen, key=lambda n: n.noise_id)
    tasks = []
    for split, members in _by_split(utts, opts.splits).items():
        for snr in opts.snrs:
            subset = snr_subset(snr)
            jobs = []
            for u in members:
                rng = rng_for(opts.seed, subset, u.utt_id)
                jobs.append(UttJob(u, tuple(_mix_spec(rng, f"{u.utt_id}__t{snr_tag(snr)}db-{k}", k, by_type[k], snr) for k in opts.noise_types)))
            tasks += _shard(subset, split, jobs, opts.utts_per_shard, opts.metrics)
        if unseen_files:
            jobs = []
            for u in members:
                rng = rng_for(opts.seed, UNSEEN_SUBSET, u.utt_id)
                snr = opts.unseen_snr_min + (opts.unseen_snr_max - opts.unseen_snr_min) * float(rng.random())
                jobs.append(UttJob(u, (_mix_spec(rng, f"{u.utt_id}__unseen", "unseen", unseen_files, snr),)))
            tasks += _shard(UNSEEN_SUBSET, split, jobs, opts.utts_per_shard, opts.metrics)
    return tasks

"""The build plan: which mixes go into which shard.

The plan is a pure function of (utterance list, noise list, options, seed). Every random
draw for an utterance comes from a generator seeded by (seed, subset, utt_id), so an
utterance's mixes do not depend on the order of the corpus, on other utterances, or on
how many workers build the shards.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from mixer.records import NoiseFile, Utterance
from shards.apportion import largest_remainder
from shards.atomic import sha256_file
from shards.errors import InputError
from shards.vocab import (
    CLEAN_SUBSET, COPYPASTE_ID, COPYPASTE_MIX_SUBSET, COPYPASTE_SUBSET, EMOTIONS, FIXED_SNR_SUBSET, NEUTRAL, SAMPLE_RATE, TRAIN,
    AUDIO_LAYOUT, METRICS, NOISE_SUBSET, RECIPE_LAYOUT, RIR_SUBSET, SUPERSET_SPLITS, SUPERSET_SUBSET, UNSEEN_SUBSET,
    noise_shard_name, rir_shard_name, shard_name, snr_subset, snr_tag, BABBLE_KEY_PREFIX, BABBLE_SUBSET, babble_shard_name,
)


def rng_for(seed: int, *parts: str) -> np.random.Generator:
    digest = hashlib.sha256("|".join([str(seed), *parts]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


@dataclass(frozen=True, slots=True)
class RirRef:
    """The room impulse response a reverb or far-field mix convolves with (mixer.rir.RirFile)."""

    rir_id: str
    rir_file: str
    path: str
    t60_s: float
    drr_db: float


@dataclass(frozen=True, slots=True)
class TalkerRef:
    """One talker of a babble mix: another utterance of the split (or, with ``--babble-root``,
    a recording of it: ``utt_id`` its content key ``__babble__<id>``, ``speaker`` its file
    relative to the root; mixer.babble), cut at a seeded share of the free room
    (``offset_fraction``) or repeated to the target's length."""

    utt_id: str
    path: str
    speaker: str
    offset_fraction: float


#: MixSpec fields an additive mix leaves at their defaults, and out of its repr: the repr
#: feeds ShardTask.fingerprint, and the superset's noise and music mixes keep the
#: fingerprints (so stores) they had before the other kinds existed.
_KIND_FIELDS = ("kind", "rir", "talkers")


@dataclass(frozen=True, slots=True, repr=False)  # slots: a real corpus plans a million of these
class MixSpec:
    key: str
    noise_type: str  # noise | music | unseen; babble | reverb for those kinds
    noise_id: str
    noise_path: str
    noise_samples: int  # noise length at 16 kHz
    offset_fraction: float  # where the noise stretch starts, as a share of the free room
    snr_target: float
    snr_bin: int = -1  # superset bin index, -1 for test sets
    #: the distortion kind (shards.distortions) when not the additive kind ``noise_type`` names
    kind: str = ""
    rir: RirRef | None = None
    talkers: tuple[TalkerRef, ...] = ()

    @property
    def distortion(self) -> str:
        """The registered kind of this mix."""
        return self.kind or self.noise_type

    def __repr__(self) -> str:
        shown = [f for f in dataclasses.fields(self)
                 if f.name not in _KIND_FIELDS or getattr(self, f.name) != f.default]
        return f"MixSpec({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"


@dataclass(frozen=True, slots=True)
class CopyPart:
    """One segment of a CopyPaste composite: utterance ``utt_id`` as read from ``path`` (16 kHz,
    as every utterance), cut to at most ``max_samples``. A longer utterance is cut at a
    seeded random place: ``offset_fraction`` is where the segment starts as a share of the
    free room, as for noise stretches (see :meth:`span`)."""

    utt_id: str
    path: str
    max_samples: int
    offset_fraction: float

    def span(self, num_samples: int) -> tuple[int, int]:
        """(start, length) of the segment in an utterance of ``num_samples`` samples."""
        room = num_samples - self.max_samples
        if room <= 0:
            return 0, num_samples
        return min(int(self.offset_fraction * (room + 1)), room), self.max_samples


@dataclass(frozen=True, slots=True, repr=False)
class UttJob:
    utt: Utterance
    mixes: tuple[MixSpec, ...] = ()  # empty: store the clean utterance itself
    #: non-empty: a composite (CopyPaste) whose clean signal is these segments end to end;
    #: ``utt`` then only names it (id, label, split, speaker) and ``utt.path`` is not read
    parts: tuple[CopyPart, ...] = ()

    def __repr__(self) -> str:
        # the repr feeds ShardTask.fingerprint: a job without parts keeps the repr the
        # dataclass gave it before ``parts`` existed, so stores built then stay complete
        parts = f", parts={self.parts!r}" if self.parts else ""
        return f"UttJob(utt={self.utt!r}, mixes={self.mixes!r}{parts})"


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
    #: how the mixes are stored (shards.vocab.LAYOUTS); a recipe part renders them from the
    #: noise its ``stage`` stored. Out of the repr: an audio task's fingerprint stays as it was.
    layout: str = field(default=AUDIO_LAYOUT, repr=False)
    stage: str = field(default="", repr=False)

    @property
    def num_samples(self) -> int:
        return sum(len(j.mixes) or 1 for j in self.jobs)

    def input_paths(self) -> list[str]:
        """Every file this shard reads: its utterances (a composite's: those of its parts)
        and the noise files of its mixes."""
        paths = {j.utt.path for j in self.jobs if not j.parts}
        paths.update(p.path for j in self.jobs for p in j.parts)
        paths.update(m.noise_path for j in self.jobs for m in j.mixes if m.noise_path)
        paths.update(m.rir.path for j in self.jobs for m in j.mixes if m.rir is not None)
        paths.update(t.path for j in self.jobs for m in j.mixes for t in m.talkers)
        return sorted(paths)

    def fingerprint(self) -> str:
        """Changes whenever anything that shapes this shard's bytes changes: the plan, and
        (through ``inputs``) the size and modification time of every file it reads, so an
        input replaced in place gets its shards rebuilt. The dataclass repr lists every
        field, floats in their exact shortest form. Stored in the shard's rows file, never
        in the tar. A recipe part's adds its layout and stage."""
        if self.layout == AUDIO_LAYOUT:
            return self.audio_fingerprint()
        return hashlib.sha256(f"{self!r}|{self.layout}|{self.stage}".encode()).hexdigest()

    def audio_fingerprint(self) -> str:
        """The fingerprint of the same task stored as audio (``prep materialize`` records it,
        so that an audio build of the same inputs finds the materialized shards complete)."""
        return hashlib.sha256(repr(self).encode()).hexdigest()

    def noise_files(self) -> dict[tuple[str, str], str]:
        """(noise type, noise id) -> path of every noise file its mixes use."""
        return {(m.noise_type, m.noise_id): m.noise_path for j in self.jobs for m in j.mixes if m.noise_path}

    def rir_files(self) -> dict[str, str]:
        """rir id -> path of every RIR its mixes convolve with."""
        return {m.rir.rir_id: m.rir.path for j in self.jobs for m in j.mixes if m.rir is not None}


@dataclass(frozen=True, kw_only=True)
class _OneFileSource:
    """A source shard of one file (``path``), stored once per store under its content id.
    Its row's subset and split are the kind of source (``subset``, set by each kind)."""

    subset: ClassVar[str]
    inputs: tuple[tuple[str, int, int], ...] = ()
    metrics: tuple[str, ...] = ()
    layout: str = RECIPE_LAYOUT

    @property
    def split(self) -> str:
        return self.subset

    @property
    def num_samples(self) -> int:
        return 1

    def input_paths(self) -> list[str]:
        return [self.path]


@dataclass(frozen=True)
class NoiseShardTask(_OneFileSource):
    """A recipe store's noise: one noise file decoded whole, resampled to 16 kHz and stored as
    16-bit WAV, the samples every recipe that names it mixes with. Named by the content id of
    the file, so the stages that use it share one copy; its row names the file as the stage
    that stored it first listed it."""

    subset: ClassVar[str] = NOISE_SUBSET
    name: str
    noise_id: str  # content id: sha256 of the file's bytes, 16 hex digits (noise_content_id)
    noise_type: str
    noise_file: str
    path: str

    def fingerprint(self) -> str:
        # the content id names the bytes; where the file lay and what a stage calls it do not change them
        return hashlib.sha256(f"{self.name}|{self.noise_id}".encode()).hexdigest()


@dataclass(frozen=True)
class RirShardTask(_OneFileSource):
    """A recipe store's RIR shard: one RIR (channel 0 at 16 kHz, float32, as every mix
    convolves with it), named by its content id, so the stages that use it share it."""

    subset: ClassVar[str] = RIR_SUBSET
    name: str
    rir_id: str
    rir_file: str
    path: str
    t60_s: float
    drr_db: float

    def fingerprint(self) -> str:
        # the content id names the bytes; where the file lay does not change them
        return hashlib.sha256(f"{self.name}|{self.rir_id}|{self.t60_s!r}|{self.drr_db!r}".encode()).hexdigest()


@dataclass(frozen=True)
class BabbleShardTask(_OneFileSource):
    """A recipe store's babble recording (``--babble-root``): its 16 kHz 16-bit samples, as
    every babble mixes them, stored as FLAC under its content key, so the stages share it."""

    subset: ClassVar[str] = BABBLE_SUBSET
    name: str
    babble_id: str
    babble_file: str
    path: str

    def fingerprint(self) -> str:
        # the content id names the bytes; where the file lay does not change them
        return hashlib.sha256(f"{self.name}|{self.babble_id}".encode()).hexdigest()


#: The tasks that store what recipes mix from (built before the recipe parts that read it).
SOURCE_TASKS = (NoiseShardTask, RirShardTask, BabbleShardTask)

def noise_content_id(path: str) -> str:
    """A noise file's content id: sha256 of its bytes, 16 hex digits. Read once per recipe
    stage (about 1.4 GB/s here: a MUSAN-sized noise and music set in seconds)."""
    try:
        return sha256_file(path)[:16]
    except OSError as exc:
        raise InputError(f"{path}: cannot read this noise file ({exc.strerror or exc})") from None


def plan_recipe(tasks: list[ShardTask], stage: str) -> tuple[list, list[list[str]]]:
    """A stage's tasks stored as recipes, and the noise its recipes mix with.

    Tasks: one noise shard per distinct noise content its mixes use (sorted by content id),
    its RIR and babble shards, then its tasks, those with mixes as recipe parts of ``stage``;
    clean tasks stay as they are. The noise, RIR and babble shards are named by content, so a
    stage finds those an earlier stage stored complete and the store holds each once.
    Noise sources: [noise type, noise file, content id] of every noise its mixes name (the
    stage's plan and manifest entry record them: shards.vocab.NOISE_SOURCES)."""
    from concurrent.futures import ThreadPoolExecutor

    used: dict[tuple[str, str], str] = {}
    for task in tasks:
        used.update(task.noise_files())
    paths = sorted(set(used.values()))
    with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL on large reads
        content = dict(zip(paths, pool.map(noise_content_id, paths)))
    noise_sources: list[list[str]] = []
    first: dict[str, NoiseShardTask] = {}  # a content stored under the first name listing it
    for (kind, noise_file), path in sorted(used.items()):
        noise_id = content[path]
        noise_sources.append([kind, noise_file, noise_id])
        if noise_id not in first:
            first[noise_id] = NoiseShardTask(noise_shard_name(noise_id), noise_id, kind, noise_file, path)
    noise_tasks = [first[noise_id] for noise_id in sorted(first)]
    rirs = {m.rir.rir_id: m.rir for t in tasks for j in t.jobs for m in j.mixes if m.rir is not None}
    rir_tasks = [RirShardTask(rir_shard_name(r.rir_id), r.rir_id, r.rir_file, r.path, r.t60_s, r.drr_db)
                 for _, r in sorted(rirs.items())]
    # --babble-root recordings (talker id: babble_key(content id)); the corpus's own talkers are its clean shards
    talkers = {t.utt_id: t for task in tasks for j in task.jobs for m in j.mixes for t in m.talkers
               if t.utt_id.startswith(BABBLE_KEY_PREFIX)}
    rir_tasks += [BabbleShardTask(babble_shard_name(key[len(BABBLE_KEY_PREFIX):]), key[len(BABBLE_KEY_PREFIX):],
                                  t.speaker, t.path) for key, t in sorted(talkers.items())]
    recipe = [dataclasses.replace(t, layout=RECIPE_LAYOUT, stage=stage) if any(j.mixes for j in t.jobs) else t
              for t in tasks]
    return noise_tasks + rir_tasks + recipe, noise_sources


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


def superset_mixes(utt: Utterance, by_type: dict[str, list[NoiseFile]], opts: SupersetOptions,
                   ctx=None) -> tuple[MixSpec, ...]:
    """One mix per (SNR bin, noise type): 30 mixes with the defaults ("30N"), drawn by the
    additive kinds' planner (mixer.distortions.plan_additive) from the utterance's superset
    generator."""
    from mixer.distortions import KindContext, plan_additive

    ctx = ctx or KindContext(opts.bins, opts.snr_min, opts.snr_max, opts.noise_types, by_type)
    return plan_additive(rng_for(opts.seed, SUPERSET_SUBSET, utt.utt_id), utt, ctx)


#: The noise types a far-field (reverb+noise) mix draws among when no additive kind is listed.
FAR_FIELD_NOISE_TYPES = ("noise", "music")


def plan_superset(utts: list[Utterance], noises: list[NoiseFile], opts: SupersetOptions,
                  kinds: tuple[str, ...] = (), rirs: tuple = (), babble_files: tuple = ()) -> list[ShardTask]:
    """Every train and validation utterance's mixes: one per SNR bin and additive kind
    (``opts.noise_types``: the paper's 30N), then ``opts.bins`` of each other kind in
    ``kinds`` (shards.distortions; ``rirs``: mixer.rir.RirFile for reverb and reverb+noise;
    ``babble_files``: mixer.babble.BabbleFile talkers instead of the split's other speakers)."""
    from mixer.distortions import KindContext, plan_kind

    if opts.bins < 1 or not opts.snr_max > opts.snr_min:
        raise InputError(f"SNR range [{opts.snr_min}, {opts.snr_max}) with {opts.bins} bins is empty (expected snr_max > snr_min, bins >= 1)")
    _other_kinds(kinds, rirs)
    far_types = opts.noise_types or FAR_FIELD_NOISE_TYPES
    by_type = _noise_by_type(noises, tuple(dict.fromkeys(opts.noise_types + (far_types if "reverb+noise" in kinds else ()))))
    by_split = _by_split(utts, SUPERSET_SPLITS)
    ctx = KindContext(opts.bins, opts.snr_min, opts.snr_max, opts.noise_types, by_type, far_types, tuple(rirs), by_split,
                      tuple(babble_files))
    tasks = []
    for split, members in by_split.items():
        jobs = [UttJob(u, superset_mixes(u, by_type, opts, ctx)
                       + tuple(m for k in kinds for m in plan_kind(k, rng_for(opts.seed, SUPERSET_SUBSET, u.utt_id, k), u, ctx)))
                for u in members]
        tasks += _shard(SUPERSET_SUBSET, split, jobs, opts.utts_per_shard, opts.metrics)
    return tasks


@dataclass(frozen=True)
class FixedSnrOptions:
    snrs: tuple[float, ...] = (0.0, 5.0, 10.0)
    noise_types: tuple[str, ...] = ("noise", "music")
    utts_per_shard: int = 16
    metrics: tuple[str, ...] = ()  # the baseline trains on these mixes; nothing reads metrics of them
    seed: int = 0


def plan_fixed_snr(utts: list[Utterance], noises: list[NoiseFile], opts: FixedSnrOptions,
                   kinds: tuple[str, ...] = (), rirs: tuple = (), babble_files: tuple = ()) -> list[ShardTask]:
    """The Fixed-SNR baseline's training mixes: every train utterance with each noise type at
    each SNR (6N with the defaults; with the N clean utterances, the paper's 7N). The clean
    train utterances are the superset's; only the mixes are planned here. ``kinds``: the
    other distortion kinds' fixed severities after them (shards.distortions' ``fixed_plan``:
    babble at each SNR, reverb in the fixed rooms of ``rirs`` (mixer.distortions.fixed_rooms),
    far field at each SNR in a fixed room; ``babble_files``: the babble root's train talkers)."""
    from mixer.distortions import FixedKindContext, fixed_rooms, plan_fixed_kind

    specs = _other_kinds(kinds, rirs)
    far_types = opts.noise_types or FAR_FIELD_NOISE_TYPES
    by_type = _noise_by_type(noises, tuple(dict.fromkeys(opts.noise_types + (far_types if "reverb+noise" in kinds else ()))))
    train = _by_split(utts, (TRAIN,))[TRAIN]
    ctx = FixedKindContext(opts.seed, opts.snrs, far_types, by_type, fixed_rooms(rirs) if specs else (), {TRAIN: train},
                           tuple(babble_files))
    jobs = []
    for u in train:
        rng = rng_for(opts.seed, FIXED_SNR_SUBSET, u.utt_id)
        jobs.append(UttJob(u, tuple(_mix_spec(rng, f"{u.utt_id}__f{snr_tag(snr)}db-{kind}", kind, by_type[kind], snr)
                                    for snr in opts.snrs for kind in opts.noise_types)
                           + tuple(m for k in kinds for m in plan_fixed_kind(k, u, ctx))))
    return _shard(FIXED_SNR_SUBSET, TRAIN, jobs, opts.utts_per_shard, opts.metrics)


def _other_kinds(kinds: tuple[str, ...], rirs) -> list:
    """The registry's specs of ``kinds`` (non-additive ones only), refusing reverberation
    without rooms."""
    from shards.distortions import RIR_SOURCE, distortion_spec

    specs = [distortion_spec(k) for k in kinds]
    if any(s is None or s.additive for s in specs):
        raise InputError(f"kinds {', '.join(kinds)}: the other kinds are planned here, additive ones in noise_types")
    if any(RIR_SOURCE in s.sources for s in specs) and not rirs:
        raise InputError(f"--kinds {','.join(kinds)}: reverberation needs room impulse responses (--rir-root DIR)")
    return specs


@dataclass(frozen=True)
class CopyPasteOptions:
    ratio: float = 0.8  # new composites per train utterance
    max_segment_s: float = 4.0  # each part is cut to at most this long
    snrs: tuple[float, ...] = (0.0, 5.0, 10.0)
    noise_types: tuple[str, ...] = ("noise", "music")
    utts_per_shard: int = 16
    metrics: tuple[str, ...] = ()  # the baseline trains on these mixes; nothing reads metrics of them
    seed: int = 0


def copypaste_count(n_train: int, ratio: float = 0.8) -> int:
    """How many composites N train utterances get: round(ratio * N), halves up (with 0.8,
    0.8N is never a half: any rounding gives the same count)."""
    return int(math.floor(n_train * ratio + 0.5))


def _shares(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` (largest remainder; ties in dict order)."""
    return dict(zip(weights, largest_remainder(total, list(weights.values())).tolist()))


def copypaste_composites(utts: list[Utterance], opts: CopyPasteOptions) -> list[UttJob]:
    """The CopyPaste composites of the train utterances among ``utts`` (Pappagari et al.,
    ICASSP 2021, as Wu and Lee use it): round(0.8N) of them, ceil(M/2) a neutral and an
    emotional utterance (label: the emotion; which comes first is a coin flip) and
    floor(M/2) two different utterances of one emotion, neutral included (label: that
    emotion). The composites of each kind are shared among the classes that can make them
    in proportion to the classes' train counts (largest remainder), so the new samples
    keep the corpus's class mix except that neutral+emotional ones are never neutral.
    Composite ``i`` (id ``cp_00000i``) draws its parts uniformly from its classes and the
    crop of each part longer than ``max_segment_s`` from its own generator
    (seed, "copypaste", id)."""
    train = _by_split(utts, (TRAIN,))[TRAIN]
    total = copypaste_count(len(train), opts.ratio)
    n_pair = total - total // 2  # neutral + emotional
    n_same = total // 2  # two of one emotion
    by_label = {c: [u for u in train if u.label == c] for c in EMOTIONS}
    pair_classes = {c: len(by_label[c]) for c in EMOTIONS if c != NEUTRAL and by_label[c]}
    same_classes = {c: len(by_label[c]) for c in EMOTIONS if len(by_label[c]) >= 2}
    if n_pair and (not by_label[NEUTRAL] or not pair_classes):
        raise InputError(f"CopyPaste needs neutral and emotional train utterances (found {len(by_label[NEUTRAL])} "
                         f"neutral, {sum(pair_classes.values())} emotional)")
    if n_same and not same_classes:
        raise InputError("CopyPaste needs two train utterances of one emotion at least (found none)")
    kinds = []
    if n_pair:
        kinds += [("pair", c) for c, k in _shares(n_pair, pair_classes).items() for _ in range(k)]
    if n_same:
        kinds += [("same", c) for c, k in _shares(n_same, same_classes).items() for _ in range(k)]
    ids = [COPYPASTE_ID.format(i) for i in range(len(kinds))]
    clash = sorted({u.utt_id for u in utts} & set(ids))
    if clash:
        raise InputError(f"utterance id {clash[0]!r} of the corpus is a CopyPaste composite id (cp_NNNNNN); rename it")
    max_samples = int(round(opts.max_segment_s * SAMPLE_RATE))
    if max_samples < 1:
        raise InputError(f"--max-segment-s {opts.max_segment_s}: expected a positive length in seconds")
    jobs = []
    for cid, (kind, label) in zip(ids, kinds):
        rng = rng_for(opts.seed, COPYPASTE_SUBSET, cid)
        if kind == "pair":
            emotional = by_label[label][int(rng.integers(len(by_label[label])))]
            neutral = by_label[NEUTRAL][int(rng.integers(len(by_label[NEUTRAL])))]
            pair = (neutral, emotional) if rng.random() < 0.5 else (emotional, neutral)
        else:
            i, j = rng.choice(len(by_label[label]), 2, replace=False)
            pair = (by_label[label][int(i)], by_label[label][int(j)])
        parts = tuple(CopyPart(u.utt_id, u.path, max_samples, float(rng.random())) for u in pair)
        utt = Utterance(cid, "", label, TRAIN, speaker="+".join(u.speaker for u in pair), corpus=pair[0].corpus)
        jobs.append(UttJob(utt, parts=parts))
    return jobs


def plan_copypaste(utts: list[Utterance], noises: list[NoiseFile], opts: CopyPasteOptions) -> list[ShardTask]:
    """The CopyPaste baseline's training samples beyond the N clean train utterances (which
    are the superset's): the round(0.8N) composites stored clean (subset ``copypaste``, see
    :func:`copypaste_composites`), and every train utterance and composite with each noise
    type at each SNR (subset ``copypaste_mix``; 6 x 1.8N with the defaults). With the clean
    utterances, the paper's 12.6N. ``utts`` may hold every split: only train is used, and
    composite ids are checked against all of them."""
    by_type = _noise_by_type(noises, opts.noise_types)
    composites = copypaste_composites(utts, opts)
    mixed = []
    for job in [UttJob(u) for u in _by_split(utts, (TRAIN,))[TRAIN]] + composites:
        uid = job.utt.utt_id
        rng = rng_for(opts.seed, COPYPASTE_MIX_SUBSET, uid)
        mixes = tuple(_mix_spec(rng, f"{uid}__c{snr_tag(snr)}db-{kind}", kind, by_type[kind], snr)
                      for snr in opts.snrs for kind in opts.noise_types)
        mixed.append(UttJob(job.utt, mixes, job.parts))
    return (_shard(COPYPASTE_SUBSET, TRAIN, composites, opts.utts_per_shard, ())
            + _shard(COPYPASTE_MIX_SUBSET, TRAIN, mixed, opts.utts_per_shard, opts.metrics))


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


def plan_kind_testsets(utts: list[Utterance], noises: list[NoiseFile], opts: TestsetOptions, kinds: tuple[str, ...],
                       far_snrs: tuple[float, ...] = (5.0,), rirs: tuple = (), sim_rooms: tuple = (),
                       babble_files: tuple = ()) -> list[ShardTask]:
    """The test sets of the other distortion kinds (each kind's ``test_plan`` in the registry,
    shards.distortions): babble at ``opts.snrs`` from the test split's other speakers,
    reverberation in the unseen rooms (``rirs``: real; ``sim_rooms``: (target RT60, rooms)),
    far field (an unseen room plus each seen noise type at each of ``far_snrs``). Each
    condition is a test subset of its own (shards.distortions.test_subset). ``babble_files``:
    the babble root's recordings held out for the test sets (mixer.babble), instead of the
    test split's other speakers."""
    from mixer.distortions import TestKindContext, plan_test_kind
    from shards.distortions import RIR_SOURCE, distortion_spec

    specs = [distortion_spec(k) for k in kinds]
    if any(s is None or not s.test_plan for s in specs):
        raise InputError(f"kinds {', '.join(kinds)}: the additive kinds' test sets are the seen-noise ones")
    if any(RIR_SOURCE in s.sources for s in specs) and not (rirs or sim_rooms):
        raise InputError(f"--kinds {','.join(kinds)}: test reverberation needs rooms never used for training "
                         f"(--test-rir-root DIR and/or --test-sim-rt60)")
    far_types = opts.noise_types or FAR_FIELD_NOISE_TYPES
    by_type = _noise_by_type(noises, far_types) if "reverb+noise" in kinds else {}
    by_split = _by_split(utts, opts.splits)
    ctx = TestKindContext(opts.seed, opts.snrs, tuple(far_snrs), far_types, by_type, tuple(rirs), tuple(sim_rooms),
                          by_split, tuple(babble_files))
    tasks = []
    for split, members in by_split.items():
        per_subset: dict[str, list[UttJob]] = {}
        for u in members:
            mixes: dict[str, list[MixSpec]] = {}
            for kind in kinds:
                for subset, mix in plan_test_kind(kind, u, ctx):
                    mixes.setdefault(subset, []).append(mix)
            for subset, planned in mixes.items():
                per_subset.setdefault(subset, []).append(UttJob(u, tuple(planned)))
        for subset, jobs in per_subset.items():
            tasks += _shard(subset, split, jobs, opts.utts_per_shard, opts.metrics)
    return tasks

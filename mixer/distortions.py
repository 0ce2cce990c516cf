"""The mixer's side of each distortion kind (declared in :mod:`shards.distortions`): how one
utterance's mixes of a kind are drawn from its seeded generator (``plan_*``), and how one
mix is made at build time (``make_*``) with the arithmetic every reader renders it with
(:mod:`shards.mixing`).

Every kind gets ``bins`` mixes per utterance (15 by default): ``noise``, ``music``,
``babble`` and ``reverb+noise`` one per SNR bin (uniform inside the bin), ``reverb`` one per
room, ``bins`` rooms without replacement (every room, when there are fewer). The additive kinds keep the superset's own generator and draws (:func:`plan_additive`, from
:func:`mixer.plan.superset_mixes`); every other kind draws from its own generator seeded by
(seed, subset, utterance id, kind), so adding a kind changes no other kind's mixes.

The test sets per kind (``test_*``, ``prep testsets --kinds``) draw each test subset's mixes
from the generator (seed, subset, utterance id), as the seen-noise test sets do; the static
baseline per kind (``fixed_*``, ``prep fixed-snr --kinds``) from (seed, "fixed_snr",
utterance id, kind), so the noise and music mixes of both stages stay as they were.

A ``make_*`` returns the mix's samples (on the 16-bit grid) and its fields after the
sample's own (utterance, split, ...): the noise and SNR fields every mix has, then, for the
non-additive kinds, ``kind`` and the kind's recipe columns (shards.distortions).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field

import numpy as np

from mixer.audio import AudioError
from mixer.mixing import FULL_SCALE, MixError, mix_at_snr
from mixer.plan import MixSpec, RirRef, TalkerRef, _mix_spec, rng_for
from mixer.records import Utterance
from shards.distortions import distortion_spec, test_subset
from shards.errors import InputError
from shards.vocab import FIXED_SNR_SUBSET, babble_key, snr_tag
from shards.mixing import babble_signal, noise_stretch, render_signal, reverberate, rir_peak, stretch_offset

#: Talkers of a babble mix: drawn uniformly in [MIN_TALKERS, MAX_TALKERS] (Kaldi's MUSAN babble).
MIN_TALKERS, MAX_TALKERS = 3, 7
#: A reverberant or babble signal quieter than this (mean square) cannot be scaled.
MIN_POWER = 1e-12


@dataclass(frozen=True)
class KindContext:
    """What the planners of one superset draw from."""

    bins: int
    snr_min: float
    snr_max: float
    noise_types: tuple[str, ...]  # the additive kinds of the superset
    by_type: dict  # noise type -> sorted NoiseFile list
    far_noise_types: tuple[str, ...] = ()  # the noise of a reverb+noise mix is drawn among these
    rirs: tuple = ()  # mixer.rir.RirFile, sorted by relative path
    utts_by_split: dict = field(default_factory=dict)  # split -> utterances sorted by id
    babble_files: tuple = ()  # mixer.babble.BabbleFile (--babble-root): babble talkers instead of the split's

    def snr_in_bin(self, rng: np.random.Generator, b: int) -> float:
        width = (self.snr_max - self.snr_min) / self.bins
        return self.snr_min + b * width + width * float(rng.random())


def _function(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def plan_kind(kind: str, rng: np.random.Generator, utt: Utterance, ctx: KindContext) -> tuple[MixSpec, ...]:
    """One utterance's mixes of a registered non-additive kind."""
    return _function(distortion_spec(kind).plan)(rng, utt, ctx)


def _rir_ref(rir) -> RirRef:
    return RirRef(rir.rir_id, rir.rir_file, rir.path, rir.t60_s, rir.drr_db)


def _no_noise(key: str, kind: str, noise_type: str, snr: float = float("nan"), b: int = -1, **extra) -> MixSpec:
    return MixSpec(key=key, noise_type=noise_type, noise_id="", noise_path="", noise_samples=0, offset_fraction=0.0,
                   snr_target=float(snr), snr_bin=b, kind=kind, **extra)


def plan_additive(rng: np.random.Generator, utt: Utterance, ctx: KindContext) -> tuple[MixSpec, ...]:
    """The additive kinds, planned together from one generator (the paper's superset): for
    each SNR bin, for each additive kind, an SNR uniform in the bin and a file of the kind."""
    return tuple(_mix_spec(rng, f"{utt.utt_id}__s{b:02d}-{kind}", kind, ctx.by_type[kind], snr, b)
                 for b in range(ctx.bins) for kind in ctx.noise_types for snr in (ctx.snr_in_bin(rng, b),))


def babble_candidates(utt: Utterance, ctx: KindContext) -> list[Utterance]:
    """The utterances a babble under ``utt`` may use: its split's, of another speaker."""
    return [u for u in ctx.utts_by_split.get(utt.split, []) if u.speaker != utt.speaker and u.utt_id != utt.utt_id]


def plan_babble(rng: np.random.Generator, utt: Utterance, ctx: KindContext) -> tuple[MixSpec, ...]:
    """One babble per SNR bin: 3-7 talkers (fewer when the split has fewer other speakers'
    utterances, or the babble root fewer train recordings), drawn without replacement, each
    cut at its own seeded offset."""
    candidates = _talker_pool(utt, ctx)
    mixes = []
    for b in range(ctx.bins):
        snr = ctx.snr_in_bin(rng, b)
        talkers = _draw_talkers(rng, candidates)
        mixes.append(_no_noise(f"{utt.utt_id}__s{b:02d}-babble", "babble", "babble", snr, b, talkers=talkers))
    return tuple(mixes)


def _checked_candidates(utt: Utterance, ctx) -> list[Utterance]:
    """:func:`babble_candidates`, refusing an utterance without a speaker id or without any
    other speaker's utterance in its split."""
    if not utt.speaker:
        raise InputError(f"{utt.path}: babble needs speaker ids (utterance {utt.utt_id} has none), so that a babble "
                         f"never holds the target's own voice")
    candidates = babble_candidates(utt, ctx)
    if not candidates:
        raise InputError(f"babble for {utt.utt_id}: no utterance of another speaker in split {utt.split!r}")
    return candidates


def _talker_pool(utt: Utterance, ctx) -> list[TalkerRef]:
    """The talkers a babble under ``utt`` draws from (offsets still 0): the recordings of
    ``--babble-root`` its stage may use (``ctx.babble_files``; id: the stored recording's key,
    speaker: its file, one reader per MUSAN speech file), else the split's other speakers'
    utterances (:func:`_checked_candidates`)."""
    if ctx.babble_files:
        return [TalkerRef(babble_key(f.babble_id), f.path, f.babble_file, 0.0) for f in ctx.babble_files]
    return [TalkerRef(u.utt_id, u.path, u.speaker, 0.0) for u in _checked_candidates(utt, ctx)]


def _draw_talkers(rng: np.random.Generator, candidates: list[TalkerRef]) -> tuple[TalkerRef, ...]:
    """3-7 talkers (fewer when there are fewer candidates), without replacement, each with
    its seeded offset."""
    count = min(int(rng.integers(MIN_TALKERS, MAX_TALKERS + 1)), len(candidates))
    picked = rng.choice(len(candidates), size=count, replace=False)
    return tuple(dataclasses.replace(candidates[int(i)], offset_fraction=float(rng.random())) for i in picked)


def plan_reverb(rng: np.random.Generator, utt: Utterance, ctx: KindContext) -> tuple[MixSpec, ...]:
    """``bins`` rooms drawn uniformly without replacement from the RIRs (all of them, in a
    seeded order, when there are fewer: the same room twice would be the same mix)."""
    picked = rng.choice(len(ctx.rirs), size=min(ctx.bins, len(ctx.rirs)), replace=False)
    return tuple(_no_noise(f"{utt.utt_id}__r{i:02d}-reverb", "reverb", "reverb", rir=_rir_ref(ctx.rirs[int(j)]))
                 for i, j in enumerate(picked))


def plan_reverb_noise(rng: np.random.Generator, utt: Utterance, ctx: KindContext) -> tuple[MixSpec, ...]:
    """One far-field mix per SNR bin: a room, a noise type among the superset's additive
    kinds and a file of it, the SNR uniform in the bin."""
    mixes = []
    for b in range(ctx.bins):
        snr = ctx.snr_in_bin(rng, b)
        rir = _rir_ref(ctx.rirs[int(rng.integers(len(ctx.rirs)))])  # with replacement: the noise differs
        noise_type = ctx.far_noise_types[int(rng.integers(len(ctx.far_noise_types)))]
        spec = _mix_spec(rng, f"{utt.utt_id}__s{b:02d}-reverb-{noise_type}", noise_type, ctx.by_type[noise_type], snr, b)
        mixes.append(dataclasses.replace(spec, kind="reverb+noise", rir=rir))
    return tuple(mixes)


# ------------------------------------------------------------------------------------------
# test conditions per kind (prep testsets --kinds)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TestKindContext:
    """What the test planners draw from. Every subset's draws come from its own generator
    (seed, subset, utterance id), as the seen-noise test sets' do."""

    __test__ = False  # not a pytest test class, despite the name

    seed: int
    snrs: tuple[float, ...]  # babble's exact SNRs
    far_snrs: tuple[float, ...]  # far field's exact SNRs
    noise_types: tuple[str, ...]  # the seen noise of a far-field mix (one mix per type)
    by_type: dict
    rirs: tuple = ()  # real rooms never used for training (mixer.rir.RirFile)
    sim_rooms: tuple = ()  # (target RT60, simulated rooms of it) never drawn for training
    utts_by_split: dict = field(default_factory=dict)
    babble_files: tuple = ()  # mixer.babble.BabbleFile held out for the test sets (--babble-root)

    def all_rooms(self) -> tuple:
        return tuple(self.rirs) + tuple(r for _, rooms in self.sim_rooms for r in rooms)


def plan_test_kind(kind: str, utt: Utterance, ctx: TestKindContext) -> list[tuple[str, MixSpec]]:
    """(test subset, mix) of one test utterance for a registered non-additive kind."""
    return _function(distortion_spec(kind).test_plan)(utt, ctx)


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def test_babble(utt: Utterance, ctx: TestKindContext) -> list[tuple[str, MixSpec]]:
    """One babble per exact SNR (``test_babble<dB>``): 3-7 talkers of the test split's other
    speakers (or the babble root's recordings held out for the test sets), drawn as the
    superset's are."""
    candidates = _talker_pool(utt, ctx)
    out = []
    for snr in ctx.snrs:
        subset = test_subset("babble", snr=snr)
        rng = rng_for(ctx.seed, subset, utt.utt_id)
        out.append((subset, _no_noise(f"{utt.utt_id}__t{snr_tag(snr)}db-babble", "babble", "babble", snr,
                                      talkers=_draw_talkers(rng, candidates))))
    return out


def test_reverb(utt: Utterance, ctx: TestKindContext) -> list[tuple[str, MixSpec]]:
    """One room drawn uniformly among the real unseen rooms (``test_reverb``), and one among
    the simulated rooms of each target RT60 (``test_reverb_rt<s>``)."""
    out = []
    if ctx.rirs:
        subset = test_subset("reverb")
        rir = _pick(rng_for(ctx.seed, subset, utt.utt_id), ctx.rirs)
        out.append((subset, _no_noise(f"{utt.utt_id}__treverb", "reverb", "reverb", rir=_rir_ref(rir))))
    for rt60, rooms in ctx.sim_rooms:
        subset = test_subset("reverb", rt60=rt60)
        rir = _pick(rng_for(ctx.seed, subset, utt.utt_id), rooms)
        out.append((subset, _no_noise(f"{utt.utt_id}__treverb-rt{snr_tag(rt60)}", "reverb", "reverb",
                                      rir=_rir_ref(rir))))
    return out


def test_reverb_noise(utt: Utterance, ctx: TestKindContext) -> list[tuple[str, MixSpec]]:
    """Far field at each exact SNR (``test_farfield<dB>``): for each seen noise type, a room
    drawn among every unseen room (real and simulated), a file of the type, the SNR measured
    against the reverberant speech."""
    rooms = ctx.all_rooms()
    out = []
    for snr in ctx.far_snrs:
        subset = test_subset("reverb+noise", snr=snr)
        rng = rng_for(ctx.seed, subset, utt.utt_id)
        for noise_type in ctx.noise_types:
            rir = _rir_ref(_pick(rng, rooms))
            spec = _mix_spec(rng, f"{utt.utt_id}__t{snr_tag(snr)}db-farfield-{noise_type}", noise_type,
                             ctx.by_type[noise_type], snr)
            out.append((subset, dataclasses.replace(spec, kind="reverb+noise", rir=rir)))
    return out


# ------------------------------------------------------------------------------------------
# the static baseline per kind (prep fixed-snr --kinds)
# ------------------------------------------------------------------------------------------
#: Rooms of the static baseline's reverberation: this many of the superset's RIRs.
FIXED_ROOMS = 3


def fixed_rooms(rirs, count: int = FIXED_ROOMS) -> tuple:
    """The static baseline's train rooms, by one rule: the RIRs sorted by T60 (a T60 that is
    not a number last, ties by file name), then those at evenly spaced ranks (rounded halves
    up), first and last included: with 3, the lowest, the median and the highest T60 (every RIR when there are
    ``count`` or fewer)."""
    ranked = sorted(rirs, key=lambda r: (not np.isfinite(r.t60_s), r.t60_s if np.isfinite(r.t60_s) else 0.0,
                                         r.rir_file))
    if len(ranked) <= count:
        return tuple(ranked)
    return tuple(ranked[int(i * (len(ranked) - 1) / (count - 1) + 0.5)] for i in range(count))


@dataclass(frozen=True)
class FixedKindContext:
    """What the static baseline's planners draw from; each kind from its own generator
    (seed, "fixed_snr", utterance id, kind), so the noise and music mixes stay as they were."""

    seed: int
    snrs: tuple[float, ...]
    noise_types: tuple[str, ...]  # the noise of a far-field mix (one mix per type and SNR)
    by_type: dict
    rooms: tuple = ()  # fixed_rooms() of the superset's RIRs
    utts_by_split: dict = field(default_factory=dict)
    babble_files: tuple = ()  # mixer.babble.BabbleFile of the train talkers (--babble-root)

    def rng(self, utt: Utterance, kind: str) -> np.random.Generator:
        return rng_for(self.seed, FIXED_SNR_SUBSET, utt.utt_id, kind)


def plan_fixed_kind(kind: str, utt: Utterance, ctx: FixedKindContext) -> tuple[MixSpec, ...]:
    """One train utterance's static-baseline mixes of a registered non-additive kind."""
    return tuple(_function(distortion_spec(kind).fixed_plan)(utt, ctx))


def fixed_babble(utt: Utterance, ctx: FixedKindContext) -> list[MixSpec]:
    """Babble at each fixed SNR (0, 5 and 10 dB by default): 3-7 talkers of the train split's
    other speakers (or the babble root's train recordings)."""
    candidates = _talker_pool(utt, ctx)
    rng = ctx.rng(utt, "babble")
    return [_no_noise(f"{utt.utt_id}__f{snr_tag(snr)}db-babble", "babble", "babble", snr,
                      talkers=_draw_talkers(rng, candidates)) for snr in ctx.snrs]


def fixed_reverb(utt: Utterance, ctx: FixedKindContext) -> list[MixSpec]:
    """The utterance in each fixed room (:func:`fixed_rooms`)."""
    return [_no_noise(f"{utt.utt_id}__froom{i}-reverb", "reverb", "reverb", rir=_rir_ref(room))
            for i, room in enumerate(ctx.rooms)]


def fixed_reverb_noise(utt: Utterance, ctx: FixedKindContext) -> list[MixSpec]:
    """Far field at each fixed SNR, in fixed room ``i mod rooms`` for the i-th SNR, one mix per
    noise type (a file of it drawn, as the noise mixes' are)."""
    rng = ctx.rng(utt, "reverb+noise")
    mixes = []
    for i, snr in enumerate(ctx.snrs):
        rir = _rir_ref(ctx.rooms[i % len(ctx.rooms)])
        for noise_type in ctx.noise_types:
            spec = _mix_spec(rng, f"{utt.utt_id}__f{snr_tag(snr)}db-reverb-{noise_type}", noise_type,
                             ctx.by_type[noise_type], snr)
            mixes.append(dataclasses.replace(spec, kind="reverb+noise", rir=rir))
    return mixes


# ------------------------------------------------------------------------------------------
# making a mix at build time
# ------------------------------------------------------------------------------------------
def _additive_fields(spec: MixSpec, offset: int, mix) -> dict:
    return {"noise_type": spec.noise_type, "noise_file": spec.noise_id, "noise_offset": offset,
            "snr_bin": spec.snr_bin, "snr_target": spec.snr_target, "snr_achieved": mix.snr_achieved,
            "noise_gain": mix.noise_gain, "gain": mix.gain}


def _rir_fields(spec: MixSpec, shift: int, reverb_gain: float) -> dict:
    rir = spec.rir
    return {"rir_id": rir.rir_id, "rir_file": rir.rir_file, "t60_s": rir.t60_s, "drr_db": rir.drr_db,
            "rir_shift": shift, "reverb_gain": reverb_gain}


def make_additive(spec: MixSpec, clean: np.ndarray, sources) -> tuple[np.ndarray, dict]:
    """Today's mix: the noise stretch under the clean utterance at the SNR."""
    noise, offset = sources.noise(spec, clean.size)
    mix = mix_at_snr(clean, noise, spec.snr_target)
    return mix.wav, _additive_fields(spec, offset, mix)


def make_babble(spec: MixSpec, clean: np.ndarray, sources) -> tuple[np.ndarray, dict]:
    """Each talker's stored utterance cut at its offset (or repeated), scaled to unit mean
    power, summed, and mixed under the clean utterance at the SNR."""
    talkers = [sources.talker(t) for t in spec.talkers]
    offsets = [stretch_offset(t.offset_fraction, pcm.size, clean.size) for t, pcm in zip(spec.talkers, talkers)]
    gains = []
    for talker, pcm, offset in zip(spec.talkers, talkers, offsets):
        stretch = np.asarray(noise_stretch(pcm, clean.size, offset), dtype=np.float64)
        power = float(np.mean(stretch * stretch))
        if power < MIN_POWER:  # the reject names the silent talker's file, not the first talker's
            raise AudioError(talker.path, f"talker {talker.utt_id} is silent where it is cut")
        gains.append(float(1.0 / np.sqrt(power)))
    babble = babble_signal(talkers, offsets, gains, clean.size)
    mix = mix_at_snr(clean, babble, spec.snr_target)
    return mix.wav, {"noise_type": spec.noise_type, "noise_file": "", "noise_offset": -1, "snr_bin": spec.snr_bin,
                     "snr_target": spec.snr_target, "snr_achieved": mix.snr_achieved, "noise_gain": mix.noise_gain,
                     "gain": mix.gain, "kind": spec.kind, "talker_ids": [t.utt_id for t in spec.talkers],
                     "talker_offsets": offsets, "talker_gains": gains}


def _reverberant(spec: MixSpec, clean: np.ndarray, sources) -> tuple[np.ndarray, int, float]:
    """(the aligned reverberant utterance at the clean mean power, the shift, the gain)."""
    rir = sources.rir(spec.rir)
    shift = rir_peak(rir)
    wet = reverberate(clean, rir, shift, clean.size)
    p_wet = float(np.mean(wet * wet))
    if p_wet < MIN_POWER:
        raise MixError(f"the reverberant utterance is silent (RIR {spec.rir.rir_file})")
    c = np.asarray(clean, dtype=np.float64)
    reverb_gain = float(np.sqrt(float(np.mean(c * c)) / p_wet))
    wet *= reverb_gain  # the operations of shards.mixing.reverberant_speech, so its bits
    return wet, shift, reverb_gain


def make_reverb(spec: MixSpec, clean: np.ndarray, sources) -> tuple[np.ndarray, dict]:
    """The clean utterance convolved with the RIR, aligned, cut and at its mean power; scaled
    as a whole (the gain recorded) where it would clip."""
    wet, shift, reverb_gain = _reverberant(spec, clean, sources)
    peak = float(np.max(np.abs(wet)))
    gain = FULL_SCALE / peak if peak > FULL_SCALE else 1.0
    return render_signal(wet, gain), {
        "noise_type": spec.noise_type, "noise_file": "", "noise_offset": -1, "snr_bin": -1, "snr_target": np.nan,
        "snr_achieved": np.nan, "noise_gain": 0.0, "gain": gain, "kind": spec.kind, **_rir_fields(spec, shift, reverb_gain)}


def make_reverb_noise(spec: MixSpec, clean: np.ndarray, sources) -> tuple[np.ndarray, dict]:
    """The reverberant utterance (as :func:`make_reverb`, before any clipping gain), then the
    noise stretch at the SNR measured against it (``snr_achieved`` too)."""
    wet, shift, reverb_gain = _reverberant(spec, clean, sources)
    noise, offset = sources.noise(spec, clean.size)
    mix = mix_at_snr(wet, noise, spec.snr_target)
    return mix.wav, {**_additive_fields(spec, offset, mix), "kind": spec.kind, **_rir_fields(spec, shift, reverb_gain)}


def make_mix(spec: MixSpec, clean: np.ndarray, sources) -> tuple[np.ndarray, dict]:
    """One mix of any registered kind (see the module doc)."""
    kind = distortion_spec(spec.distortion)
    if kind is None or kind.additive:
        return make_additive(spec, clean, sources)
    return _function(kind.make)(spec, clean, sources)

"""The distortion registry: every kind of distortion a superset can hold is declared here, once.

A :class:`DistortionSpec` says everything the packages need about a kind: its name (the
``--kinds`` value and the ``kind`` of its mixes), how a report names it, the function that
draws one utterance's mixes of it from the utterance's seeded generator and the one that
makes a mix at build time (both in ``mixer``, named by import path so that ``shards``, the
ground floor, does not import them; the metrics registry does the same), the table columns
its recipe fills, the sources its recipe mixes from (a noise file, other talkers' stored
utterances, a room impulse response), the columns that give its severity, its test
conditions (the planner of its test sets and the stem of their subset names, from which
:func:`test_condition_label` and :func:`test_condition_rank` name and order them for the
trainer's Table 2), the planner of its static-baseline mixes (``prep fixed-snr --kinds``),
and the pure function that renders a recipe into samples (``shards.mixing``: the build
renders every mix with the same arithmetic, so a recipe store's reader returns the bits the
build scored).

Kinds:

- ``noise``, ``music``, ``speech``: the paper's additive mixes of one MUSAN file at an SNR
  (``speech`` is MUSAN's speech part: one talker). Their rows and samples are exactly what
  the superset stored before this registry: no ``kind`` field, no new column.
- ``babble``: 3 to 7 other talkers of the utterance's split (never its speaker), or of the
  recordings of ``--babble-root`` (mixer.babble), each cut at a seeded offset or repeated to
  the utterance's length, scaled to equal mean power, summed, and added at an SNR as noise is.
- ``reverb``: convolution with a room impulse response, aligned by the RIR's largest absolute
  sample, cut to the utterance's length and scaled to the clean utterance's mean power.
- ``reverb+noise`` (far field): ``reverb``, then noise or music added at an SNR measured
  against the reverberant speech.

Every kind is scored against the dry clean utterance as stored (the reference of SPEC's
metrics), after the alignment.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from shards import mixing
from shards.vocab import TEST_SUBSET_PREFIX, snr_tag

#: Columns a store's table gains once it holds a mix of a kind beyond the additive ones, in
#: order, with their Arrow type names; stores of additive mixes only keep the table they had.
DISTORTION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("kind", "string"),
    ("rir_id", "string"),  # sha256 (16 hex) of the RIR's 16 kHz float32 samples: its key in a store
    ("rir_file", "string"),  # the RIR file, relative to --rir-root
    ("t60_s", "float64"),
    ("drr_db", "float64"),
    ("rir_shift", "int64"),  # samples the reverberant signal was moved left by (the RIR's largest tap)
    ("reverb_gain", "float64"),  # scale that gives the aligned reverberant speech the clean mean power
    ("talker_ids", "string"),  # JSON list of the babble's utterance ids (--babble-root: __babble__<content id>)
    ("talker_offsets", "string"),  # JSON list: where each talker's stretch starts (samples)
    ("talker_gains", "string"),  # JSON list: each talker's scale to unit mean power
)
#: Columns of :data:`DISTORTION_COLUMNS` whose values are lists (stored as JSON text).
LIST_COLUMNS = ("talker_ids", "talker_offsets", "talker_gains")

#: The sources a recipe can mix from.
NOISE_SOURCE, TALKER_SOURCE, RIR_SOURCE = "noise", "talkers", "rir"


@dataclass(frozen=True)
class Sources:
    """What one recipe is rendered from besides its clean utterance: the stored 16-bit noise
    (int16, whole file), the talkers' stored 16-bit utterances, the RIR (float32, 16 kHz)."""

    noise: np.ndarray | None = None
    talkers: tuple[np.ndarray, ...] = ()
    rir: np.ndarray | None = None


def _additive(clean, recipe: dict, sources: Sources) -> np.ndarray:
    return mixing.mix_recipe(clean, sources.noise, recipe["noise_offset"], recipe["noise_gain"], recipe["gain"])


def _babble(clean, recipe: dict, sources: Sources) -> np.ndarray:
    return mixing.mix_babble(clean, sources.talkers, recipe["talker_offsets"], recipe["talker_gains"],
                             recipe["noise_gain"], recipe["gain"])


def _reverb(clean, recipe: dict, sources: Sources) -> np.ndarray:
    return mixing.mix_reverb(clean, sources.rir, recipe["rir_shift"], recipe["reverb_gain"], recipe["gain"])


def _reverb_noise(clean, recipe: dict, sources: Sources) -> np.ndarray:
    return mixing.mix_reverb_noise(clean, sources.rir, recipe["rir_shift"], recipe["reverb_gain"], sources.noise,
                                   recipe["noise_offset"], recipe["noise_gain"], recipe["gain"])


@dataclass(frozen=True)
class DistortionSpec:
    name: str
    #: how a report names it
    label: str
    #: "module:function" drawing one utterance's mixes of this kind (mixer.distortions)
    plan: str
    #: "module:function" making one mix at build time: (spec, clean, sources) -> (samples, fields)
    make: str
    #: ``render(clean, recipe, sources)``: a recipe's samples (the arithmetic of shards.mixing)
    render: Callable[..., np.ndarray]
    #: the sources its recipe mixes from (NOISE_SOURCE, TALKER_SOURCE, RIR_SOURCE)
    sources: tuple[str, ...]
    #: the columns of DISTORTION_COLUMNS its rows fill (beyond the noise and SNR columns)
    recipe_columns: tuple[str, ...] = ()
    #: the columns that say how severe one of its mixes is
    severity: tuple[str, ...] = ("snr_target",)
    #: what its test conditions are (the test sets per kind are planned from these)
    test_conditions: str = ""
    #: True for the paper's additive kinds: rows as the superset always stored them
    additive: bool = False
    #: the stem of its test subsets (``test_<stem>...``, see :func:`test_subset`); "" for the
    #: additive kinds, whose test sets are the paper's (``test_snr<dB>``, ``test_unseen``)
    test_stem: str = ""
    #: "module:function" planning one test utterance's mixes of it, per test subset
    #: (``prep testsets --kinds``); "" for the additive kinds
    test_plan: str = ""
    #: "module:function" planning one train utterance's static-baseline mixes of it
    #: (``prep fixed-snr --kinds``); "" for the additive kinds (planned as they always were)
    fixed_plan: str = ""

    def __post_init__(self) -> None:
        for path in (self.plan, self.make) + tuple(p for p in (self.test_plan, self.fixed_plan) if p):
            if ":" not in path:
                raise ValueError(f"distortion {self.name!r}: {path!r} is not 'module:attribute'")
        unknown = set(self.recipe_columns) - {name for name, _ in DISTORTION_COLUMNS}
        if unknown:
            raise ValueError(f"distortion {self.name!r}: columns {sorted(unknown)} are not in DISTORTION_COLUMNS")


_ADDITIVE = dict(plan="mixer.distortions:plan_additive", make="mixer.distortions:make_additive", render=_additive,
                 sources=(NOISE_SOURCE,), additive=True,
                 test_conditions="exactly 0, 5 and 10 dB (test_snr0/5/10)")
_RIR_COLUMNS = ("rir_id", "rir_file", "t60_s", "drr_db", "rir_shift", "reverb_gain")

BUILTIN_DISTORTIONS: tuple[DistortionSpec, ...] = (
    DistortionSpec("noise", "Noise", **_ADDITIVE),
    DistortionSpec("music", "Music", **_ADDITIVE),
    DistortionSpec("speech", "Speech", **_ADDITIVE),
    DistortionSpec("babble", "Babble", plan="mixer.distortions:plan_babble", make="mixer.distortions:make_babble",
                   render=_babble, sources=(TALKER_SOURCE,),
                   recipe_columns=("talker_ids", "talker_offsets", "talker_gains"),
                   test_conditions="0, 5 and 10 dB of the test split's other speakers",
                   test_stem="babble", test_plan="mixer.distortions:test_babble",
                   fixed_plan="mixer.distortions:fixed_babble"),
    DistortionSpec("reverb", "Reverberation", plan="mixer.distortions:plan_reverb",
                   make="mixer.distortions:make_reverb", render=_reverb, sources=(RIR_SOURCE,),
                   recipe_columns=_RIR_COLUMNS, severity=("t60_s", "drr_db"),
                   test_conditions="rooms never used for training (e.g. a concert hall; simulated rooms at RT60s "
                                   "the superset does not draw)",
                   test_stem="reverb", test_plan="mixer.distortions:test_reverb",
                   fixed_plan="mixer.distortions:fixed_reverb"),
    DistortionSpec("reverb+noise", "Far field", plan="mixer.distortions:plan_reverb_noise",
                   make="mixer.distortions:make_reverb_noise", render=_reverb_noise,
                   sources=(RIR_SOURCE, NOISE_SOURCE), recipe_columns=_RIR_COLUMNS,
                   severity=("snr_target", "t60_s", "drr_db"),
                   test_conditions="an unseen room plus noise at a fixed SNR",
                   test_stem="farfield", test_plan="mixer.distortions:test_reverb_noise",
                   fixed_plan="mixer.distortions:fixed_reverb_noise"),
)

_REGISTRY: dict[str, DistortionSpec] = {spec.name: spec for spec in BUILTIN_DISTORTIONS}


def distortion_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def distortion_spec(name: str) -> DistortionSpec | None:
    """The registered kind ``name``, or None."""
    return _REGISTRY.get(name)


def additive_kinds() -> tuple[str, ...]:
    """The kinds mixed as the paper mixes (one noise file at an SNR): MUSAN's parts."""
    return tuple(name for name, spec in _REGISTRY.items() if spec.additive)


def register_distortion(spec: DistortionSpec) -> DistortionSpec:
    """Add a kind after the built-in ones (same spec again: a no-op; another under a taken
    name: ValueError)."""
    known = _REGISTRY.get(spec.name)
    if known == spec:
        return spec
    if known is not None:
        raise ValueError(f"distortion {spec.name!r} is registered already (as {known})")
    _REGISTRY[spec.name] = spec
    return spec


def render_recipe(kind: str, clean: np.ndarray, recipe: dict, sources: Sources) -> np.ndarray:
    """The samples of one recipe of ``kind`` (see :class:`DistortionSpec`)."""
    spec = _REGISTRY.get(kind)
    if spec is None:
        raise ValueError(f"unknown distortion kind {kind!r} (registered: {', '.join(_REGISTRY)})")
    return spec.render(clean, recipe, sources)


# ------------------------------------------------------------------------------------------
# test conditions per kind: their subset names, labels and report order (the trainer's
# conditions registry reads them from here, so a kind's test sets need nothing there)
# ------------------------------------------------------------------------------------------
#: the suffix of a test subset at one target RT60 (simulated rooms): ``test_reverb_rt1p5``
RT60_SUFFIX = "_rt"


def test_subset(kind: str, snr: float | None = None, rt60: float | None = None) -> str:
    """The test subset of one condition of ``kind``: at an exact SNR (``test_babble5``,
    ``test_farfield5``), in simulated rooms of one target RT60 (``test_reverb_rt1p5``), or
    neither (``test_reverb``: the real rooms never used for training)."""
    spec = _REGISTRY[kind]
    if not spec.test_stem:
        raise ValueError(f"distortion {kind!r} has no test conditions of its own")
    name = f"{TEST_SUBSET_PREFIX}{spec.test_stem}"
    if snr is not None:
        name += snr_tag(snr)
    if rt60 is not None:
        name += f"{RT60_SUFFIX}{snr_tag(rt60)}"
    return name


def _tag_value(tag: str) -> float:
    return float(tag.replace("m", "-").replace("p", "."))


def test_condition(name: str) -> tuple[DistortionSpec, float | None, float | None] | None:
    """(kind, SNR, RT60) of a test subset named by :func:`test_subset`, else None."""
    for spec in _REGISTRY.values():
        if not spec.test_stem:
            continue
        match = re.fullmatch(rf"{TEST_SUBSET_PREFIX}{re.escape(spec.test_stem)}(m?\d+(?:p\d+)?)?"
                             rf"(?:{RT60_SUFFIX}(\d+(?:p\d+)?))?", name)
        if match:
            snr, rt60 = match.groups()
            return spec, None if snr is None else _tag_value(snr), None if rt60 is None else _tag_value(rt60)
    return None


def test_condition_label(name: str) -> str | None:
    """How a report names a kind's test condition ("Babble 5 dB", "Reverberation RT60 1.5 s",
    "Reverberation, unseen rooms", "Far field 5 dB"), or None for another name."""
    found = test_condition(name)
    if found is None:
        return None
    spec, snr, rt60 = found
    parts = [spec.label]
    if snr is not None:
        parts.append(f"{snr:g} dB")
    if rt60 is not None:
        parts.append(f"RT60 {rt60:g} s")
    return " ".join(parts) if len(parts) > 1 else f"{spec.label}, unseen rooms"


def test_condition_rank(name: str) -> tuple | None:
    """Where a kind's test condition goes in a report: kinds in registry order; inside a kind,
    the highest SNR first, the real unseen rooms before the simulated ones, low RT60 first."""
    found = test_condition(name)
    if found is None:
        return None
    spec, snr, rt60 = found
    return (list(_REGISTRY).index(spec.name), -(snr if snr is not None else float("inf")),
            -1.0 if rt60 is None else rt60)

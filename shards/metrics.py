"""The metric registry: every distortion metric is declared here, once.

A :class:`MetricSpec` says everything the packages need about a metric: its name (the
``--metric`` value), the table column that holds it, the label a report prints, whether a
higher value means less distortion, and the scoring function, named by import path so
that ``shards`` (the ground floor) does not import ``scoring``. Everything else is derived
from the registry: the metric columns of the table (:func:`shards.store.table_schema`),
the scoring loop (:func:`scoring.metrics.score_mixes`), the choices and defaults of
``prep`` and ``prep score``, and :data:`shards.vocab.METRICS`.

A scoring function is called as ``function(clean, mixes, fs)`` with the clean signal and a
list of mixes of its length (all finite, 1-D) and returns one ``(value, reason)`` per mix:
the value, or NaN and why the mix could not be scored. An exception it raises fails the
metric for all the mixes of that clean signal (the message becomes the reason).

A metric added at run time (``register_metric``) reaches the build's worker processes:
the build hands every worker its registered specs (:func:`adopt`), and the function is
imported there by its path.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    name: str
    #: "module:function" of the scoring function (see the module doc)
    function: str
    #: how a report names it: "STOI"
    label: str
    #: True when a higher value means a less distorted mix (level 1 holds the best)
    higher_is_better: bool = True
    #: column of metadata.parquet (and field of each sample's JSON); default: the name
    column: str = ""

    def __post_init__(self) -> None:
        if not self.column:
            object.__setattr__(self, "column", self.name)
        if ":" not in self.function:
            raise ValueError(f"metric {self.name!r}: function {self.function!r} is not 'module:attribute'")


#: The paper's three metrics (Wu and Lee 2023), in the order the table stores them.
BUILTIN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("stoi", "scoring.metrics:stoi_scores", "STOI"),
    MetricSpec("pesq", "scoring.metrics:pesq_scores", "PESQ"),
    MetricSpec("fwsnrseg", "scoring.metrics:fwsnrseg_scores", "fwSNRseg"),
)

_REGISTRY: dict[str, MetricSpec] = {spec.name: spec for spec in BUILTIN_METRICS}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a metric after the built-in ones. Registering the same spec again is a no-op;
    another spec under a registered name, or a column already taken, is a ValueError."""
    known = _REGISTRY.get(spec.name)
    if known == spec:
        return spec
    if known is not None:
        raise ValueError(f"metric {spec.name!r} is registered already (as {known})")
    taken = [s.name for s in _REGISTRY.values() if s.column == spec.column]
    if taken:
        raise ValueError(f"metric {spec.name!r}: column {spec.column!r} is metric {taken[0]!r}'s")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_metric(name: str) -> None:
    """Remove a metric registered at run time (tests); the built-in ones stay."""
    if any(spec.name == name for spec in BUILTIN_METRICS):
        raise ValueError(f"metric {name!r} is built in")
    _REGISTRY.pop(name, None)


def adopt(specs: tuple[MetricSpec, ...]) -> None:
    """Make the registry hold exactly the built-in metrics and ``specs`` (a build worker,
    which may outlive one build, taking its parent's registry)."""
    for name in [n for n in _REGISTRY if n not in {s.name for s in BUILTIN_METRICS + tuple(specs)}]:
        del _REGISTRY[name]
    for spec in specs:
        register_metric(spec)


def metric_specs() -> tuple[MetricSpec, ...]:
    """Every registered metric, built-in ones first, in registration order."""
    return tuple(_REGISTRY.values())


def metric_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def metric_spec(name: str) -> MetricSpec | None:
    """The registered metric ``name``, or None."""
    return _REGISTRY.get(name)


def builtin_metric_spec(name: str) -> MetricSpec | None:
    """One of the built-in metrics (what a level index written before labels and directions
    were recorded was made from), or None."""
    return next((spec for spec in BUILTIN_METRICS if spec.name == name), None)

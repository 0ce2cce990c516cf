"""Training strategies, one home each: what an epoch trains on, what happens after an epoch,
how the report names and places the strategy's runs, the training size and the store subsets
it reads.

A strategy is registered once in ``STRATEGIES`` (in the report's column order); the CLI's
``--strategy`` choices, the default run name, the data identity in ``config.json``, the
report's columns, which columns are baselines and which runs feed Table 3 all come from here.
Adding one: subclass :class:`Strategy`, register an instance, and (if it needs samples of its
own) a ``prep`` stage that writes them to a subset of the store. A strategy sees a run through
a narrow :class:`StrategyContext`, never the trainer itself.

Nothing here imports torch at module level: the report reads the labels without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from shards.distortions import distortion_names
from shards.errors import InputError
from shards.metrics import builtin_metric_spec
from shards.vocab import COPYPASTE_MIX_SUBSET, COPYPASTE_SUBSET, EMOTIONS, FIXED_SNR_SUBSET, SUPERSET_SUBSET, TRAIN
from trainer.protocol import STREAM_LEVEL_DRAW, STREAM_SUPERSET_DRAW

if TYPE_CHECKING:  # pragma: no cover
    from trainer.data import SampleSet, StoreData


#: The report's name for a run drawn with --stratify-class (its column: e.g. STOI-GMM · stratified).
STRATIFIED_LABEL = "stratified"
#: The option that restricts a superset draw to some distortion kinds (its message names it).
DRAW_KINDS_OPTION = "--draw-kinds"


def parse_draw_kinds(text: str) -> str:
    """``--draw-kinds`` as recorded in config.json: the kinds once each, in the distortion
    registry's order (kinds it does not know after them, as given), comma-separated; "" for
    none (the plain draw). Empty items are an InputError."""
    if not text:
        return ""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise InputError(f"{DRAW_KINDS_OPTION} {text!r}: expected distortion kinds, comma-separated "
                         f"(e.g. noise,music)")
    order = {name: i for i, name in enumerate(distortion_names())}
    unique = list(dict.fromkeys(names))
    return ",".join(sorted(unique, key=lambda name: (order.get(name, len(order)), unique.index(name))))


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy may see of a run: its data, the clean train set, N, K, the floor, the
    command that scores its levels (for messages) and its random streams."""

    data: "StoreData"
    train_clean: "SampleSet"
    N: int  # clean train utterances
    K: int  # levels of the run's level index (0: none)
    floor: float  # the least weight a level keeps (Algorithm 1's L)
    rng: Callable[..., np.random.Generator]  # rng(stream, *parts): the run's stream (trainer.protocol)
    score_command: str = ""  # the 'prep score ...' that writes the run's level index
    stratify_class: bool = False  # --stratify-class: draw by level within classes, keeping the clean class prior
    draw_kinds: str = ""  # --draw-kinds (parse_draw_kinds): the superset draw's kinds; "": every mix


@dataclass(frozen=True)
class EpochSamples:
    samples: "SampleSet"
    drawn: list[int]  # mixes drawn per level (strategies that draw by level), else empty
    messages: list[str]  # notes on the draw, logged with the epoch


class Strategy:
    """The clean train utterances only (the None baseline); subclasses add samples."""

    name = "none"
    label = "None"
    help = "the N clean train utterances only"
    size_n: float | None = 1.0  # samples per epoch in multiples of N; None: as the store holds
    subsets: tuple[str, ...] = ()  # store subsets (train split) it trains on beyond the clean ones
    draws_levels = False  # needs a level index to train (not only to validate)
    draws_kinds = False  # draws superset mixes at random, so the draw can keep to some kinds (--draw-kinds)
    adapts_weights = False  # re-weights its levels from the validation feedback (Algorithm 1)
    baseline = True  # a column the report measures the others against
    feeds_table3 = True  # its runs are clean-trained: their validation gaps per level are Table 3
    note = ""  # what prepare found that the run's first log line names (e.g. the kinds drawn from)

    def prepare(self, ctx: StrategyContext) -> None:
        """Load what every epoch reuses (called once, after the clean sets are loaded)."""

    def epoch_samples(self, ctx: StrategyContext, epoch: int, weights: list[float]) -> EpochSamples:
        return EpochSamples(ctx.train_clean, [], [])

    def fixed_inputs(self) -> list[tuple[str, "SampleSet"]]:
        """Samples beyond the clean ones that every epoch trains on (named): worth caching."""
        return []

    def initial_weights(self, n_levels: int) -> list[float]:
        return []

    def next_weights(self, feedback: list[float], weights: list[float], floor: float) -> list[float]:
        """The next epoch's level weights from this epoch's feedback (the gaps, smoothed)."""
        return weights

    def train_size_n(self, ctx: StrategyContext) -> float:
        return float(self.size_n)

    def run_name(self, metric: str, quant: str) -> str:
        return self.name

    def column_label(self, config: dict) -> str:
        """The report's column for a run of this strategy (its config.json), with the options
        that make its runs incomparable with the strategy's plain runs."""
        return self.label

    def variant_rank(self, config: dict) -> int:
        """How many options set a run apart from the strategy's plain runs: the report puts the
        plain column first and measures the variants against it."""
        return 0


class StoredSamples(Strategy):
    """The clean utterances plus samples a ``prep`` stage stored, the same every epoch."""

    build_command = ""
    feeds_table3 = False

    def prepare(self, ctx: StrategyContext) -> None:
        from trainer.data import SampleSet

        parts = [ctx.data.subset(subset, TRAIN) for subset in self.subsets]
        if min(len(p) for p in parts) == 0:
            store = ctx.data.store.path
            raise InputError(f"{store}: no {self.label} samples; build them with '{self.build_command} --corpus ... "
                             f"--out {store.parent}'")
        self.stored = SampleSet.concat(parts)

    def epoch_samples(self, ctx: StrategyContext, epoch: int, weights: list[float]) -> EpochSamples:
        from trainer.data import SampleSet

        return EpochSamples(SampleSet.concat([ctx.train_clean, self.stored]), [], [])

    def fixed_inputs(self) -> list[tuple[str, "SampleSet"]]:
        return [(f"{self.label} train samples", self.stored)]

    def train_size_n(self, ctx: StrategyContext) -> float:
        return 1 + len(self.stored) / ctx.N


class FixedSNR(StoredSamples):
    name, label = "fixed-snr", "Fixed SNR"
    help = "clean + the 6N mixes at 0, 5, 10 dB of 'prep fixed-snr'"
    size_n = 7.0
    subsets = (FIXED_SNR_SUBSET,)
    build_command = "prep fixed-snr"


class CopyPaste(StoredSamples):
    name, label = "copypaste", "CopyPaste"
    help = "clean + the 0.8N concatenations and 10.8N mixes of 'prep copypaste'"
    size_n = None
    subsets = (COPYPASTE_SUBSET, COPYPASTE_MIX_SUBSET)
    build_command = "prep copypaste"


class SupersetDraw(Strategy):
    """N clean + N mixes drawn uniformly from every train mix of the superset, afresh each
    epoch: random-SNR augmentation with no levels and no metrics (the ablation of both)."""

    name, label = "superset", "Superset draw"
    help = "N clean + N mixes drawn uniformly from every train superset mix each epoch (no levels, no metrics)"
    size_n = 2.0
    subsets = (SUPERSET_SUBSET,)
    draws_kinds = True
    feeds_table3 = False

    def prepare(self, ctx: StrategyContext) -> None:
        self.mixes = ctx.data.subset(SUPERSET_SUBSET, TRAIN)
        store = ctx.data.store.path
        if len(self.mixes) == 0:
            raise InputError(f"{store}: no train superset mixes; build them with 'prep superset --corpus ... "
                             f"--out {store.parent}'")
        if ctx.draw_kinds:  # only the mixes of the kinds asked for, in the same (key) order
            kinds = ctx.data.subset_kinds(SUPERSET_SUBSET, TRAIN)
            held = parse_draw_kinds(",".join(sorted({k for k in kinds if k}))).split(",")  # in registry order
            wanted = set(ctx.draw_kinds.split(","))
            missing = [k for k in ctx.draw_kinds.split(",") if k not in held]
            if missing:
                raise InputError(f"{DRAW_KINDS_OPTION} {ctx.draw_kinds}: {store} holds no train superset mix of kind "
                                 f"{', '.join(missing)} (its kinds: {', '.join(held)})")
            self.mixes = self.mixes.take(np.flatnonzero([k in wanted for k in kinds]))
            self.note = f"{len(self.mixes)} train mixes of {ctx.draw_kinds.replace(',', ', ')}"

    def epoch_samples(self, ctx: StrategyContext, epoch: int, weights: list[float]) -> EpochSamples:
        from trainer.data import SampleSet

        size = len(self.mixes)
        replace = ctx.N > size  # a superset smaller than N (never with 30 mixes per utterance)
        pick = ctx.rng(STREAM_SUPERSET_DRAW, epoch).choice(size, ctx.N, replace=replace)
        messages = [f"{size} train mixes for N = {ctx.N}: drawing with replacement"] if replace else []
        return EpochSamples(SampleSet.concat([ctx.train_clean, self.mixes.take(pick)]), [], messages)

    def variant_rank(self, config: dict) -> int:
        return int(bool(config.get("draw_kinds", "")))

    def column_label(self, config: dict) -> str:
        kinds = config.get("draw_kinds", "")
        return f"{self.label} · {kinds.replace(',', ', ')} only" if kinds else self.label


class MetricAug(Strategy):
    """N clean + N mixes drawn from the train levels by the weights, which Algorithm 1 sets
    from the validation feedback after every epoch."""

    name, label = "metricaug", "MetricAug"
    help = "N clean + N mixes drawn by level, re-weighted every epoch by Algorithm 1"
    size_n = 2.0
    draws_levels = True
    adapts_weights = True
    baseline = False
    feeds_table3 = False

    def prepare(self, ctx: StrategyContext) -> None:
        index = ctx.data.index
        if ctx.K * ctx.floor > 1:
            raise InputError(f"{index.path}: {ctx.K} levels cannot each keep the floor {ctx.floor}")
        if sum(ctx.data.train_level_sizes) == 0:
            raise InputError(f"{index.path}: no train mix has a level; run '{ctx.score_command} --levels K' "
                             f"with fewer levels")
        if ctx.stratify_class:  # the class of every level member, and the clean train prior to keep
            from trainer.data import labels_of

            self.level_labels = [labels_of(ctx.data.members(TRAIN, k).label, str(index.members_path))
                                 for k in range(1, ctx.K + 1)]
            self.class_counts = np.bincount(ctx.train_clean.labels, minlength=len(EMOTIONS))

    def epoch_samples(self, ctx: StrategyContext, epoch: int, weights: list[float]) -> EpochSamples:
        from trainer.data import SampleSet
        from trainer.weights import plan_epoch_draw, plan_stratified_draw

        rng = ctx.rng(STREAM_LEVEL_DRAW, epoch)
        if ctx.stratify_class:
            draw = plan_stratified_draw(self.level_labels, ctx.N, weights, self.class_counts, rng)
        else:
            draw = plan_epoch_draw(ctx.data.train_level_sizes, ctx.N, weights, rng)
        parts = [ctx.train_clean] + [ctx.data.level_samples(TRAIN, k + 1, idx)
                                     for k, idx in enumerate(draw.indices) if idx.size]
        return EpochSamples(SampleSet.concat(parts), list(draw.counts), draw.messages)

    def initial_weights(self, n_levels: int) -> list[float]:
        return [1.0 / n_levels] * n_levels

    def next_weights(self, feedback: list[float], weights: list[float], floor: float) -> list[float]:
        from trainer.weights import algorithm1

        return [float(w) for w in algorithm1(feedback, floor)]

    def run_name(self, metric: str, quant: str) -> str:
        return f"{metric}-{quant}"

    def levels_label(self, config: dict) -> str:
        """The level index a run drew from, e.g. STOI-GMM."""
        spec = builtin_metric_spec(config["metric"])  # for runs recorded before config had the label
        metric = config.get("metric_label") or (spec.label if spec else config["metric"])
        quant = config["quant"].upper() if config["quant"] == "gmm" else config["quant"].title()
        return f"{metric}-{quant}"

    def variant_rank(self, config: dict) -> int:
        return (int(config.get("gap_score", "wf1") != "wf1") + int(bool(config.get("gap_smoothing", 0.0)))
                + int(bool(config.get("stratify_class", False))))

    def column_label(self, config: dict) -> str:
        label = self.levels_label(config)
        if config.get("gap_score", "wf1") != "wf1":
            label += f" {config['gap_score'].upper()}-gap"
        if config.get("gap_smoothing", 0.0):
            label += f" EMA {config['gap_smoothing']:g}"
        return label + self.draw_label(config)

    @staticmethod
    def draw_label(config: dict) -> str:
        """How the run drew within levels, when not as the paper (plainly at random)."""
        return f" · {STRATIFIED_LABEL}" if config.get("stratify_class", False) else ""


class UniformLevels(MetricAug):
    """MetricAug's epoch with the weights held at 1/K: levels, no feedback (the ablation of
    Algorithm 1)."""

    name, label = "uniform", "uniform levels"
    help = "MetricAug's epoch (N clean + N mixes drawn by level) with the weights held at 1/K: no feedback"
    adapts_weights = False
    baseline = True

    def next_weights(self, feedback: list[float], weights: list[float], floor: float) -> list[float]:
        return self.initial_weights(len(weights))

    def run_name(self, metric: str, quant: str) -> str:
        return f"{metric}-{quant}-uniform"

    def variant_rank(self, config: dict) -> int:
        return int(bool(config.get("stratify_class", False)))  # no feedback: the gap options change nothing

    def column_label(self, config: dict) -> str:
        return f"{self.levels_label(config)} {self.label}{self.draw_label(config)}"


#: The registry, in the report's column order: the baselines first (the paper's, then the
#: ablations), then MetricAug.
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (Strategy(), FixedSNR(), CopyPaste(), SupersetDraw(),
                                                        UniformLevels(), MetricAug())}


def get_strategy(name: str) -> Strategy:
    """A fresh instance of the registered strategy for one run (``prepare`` keeps the run's
    samples on it, so runs in one process never share them)."""
    if name not in STRATEGIES:
        raise InputError(f"--strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    return type(STRATEGIES[name])()

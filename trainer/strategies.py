"""Training strategies, one home each: what an epoch trains on, what happens after an epoch,
the label in the report, the training size and the store subsets it reads.

A strategy is registered once in ``STRATEGIES``; the CLI's ``--strategy`` choices, the
default run name, the data identity in ``config.json`` and the report's columns come from
here. Adding one: subclass :class:`Strategy`, register an instance, and (if it needs samples
of its own) a ``prep`` stage that writes them to a subset of the store.

Nothing here imports torch at module level: the report reads the labels without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shards.errors import InputError
from shards.vocab import COPYPASTE_MIX_SUBSET, COPYPASTE_SUBSET, FIXED_SNR_SUBSET, TRAIN

if TYPE_CHECKING:  # pragma: no cover
    from trainer.data import SampleSet
    from trainer.train import Trainer

#: Random streams of a run, each seeded by (seed, stream[, epoch or level]): independent draws
#: that stay the same whatever else changes.
STREAM_LEVEL_DRAW = 1  # which mixes of each level an epoch trains on
STREAM_BATCH_ORDER = 2  # the epoch's batches and their order
STREAM_NORMALISATION = 3  # the clean utterances the feature statistics are estimated on
STREAM_VALIDATION_SUBSET = 7  # --val-per-level: the fixed subset of each level's validation mixes
#: torch's seed for dropout in epoch e is seed * DROPOUT_SEED_STRIDE + e
DROPOUT_SEED_STRIDE = 100_003


@dataclass(frozen=True)
class EpochSamples:
    samples: "SampleSet"
    drawn: list[int]  # mixes drawn per level (MetricAug), else empty
    messages: list[str]  # notes on the draw, logged with the epoch


class Strategy:
    """The clean train utterances only (the None baseline); subclasses add samples."""

    name = "none"
    label = "None"
    help = "the N clean train utterances only"
    size_n: float | None = 1.0  # samples per epoch in multiples of N; None: as the store holds
    subsets: tuple[str, ...] = ()  # store subsets (train split) it trains on beyond the clean ones
    draws_levels = False  # needs a level index to train (not only to validate)
    adapts_weights = False

    def prepare(self, trainer: "Trainer") -> None:
        """Load what every epoch reuses (called once, after the clean sets are loaded)."""

    def epoch_samples(self, trainer: "Trainer", epoch: int, weights: list[float]) -> EpochSamples:
        return EpochSamples(trainer.train_clean, [], [])

    def fixed_inputs(self) -> list[tuple[str, "SampleSet"]]:
        """Samples beyond the clean ones that every epoch trains on (named): worth caching."""
        return []

    def initial_weights(self, n_levels: int) -> list[float]:
        return []

    def next_weights(self, gaps: list[float], weights: list[float], floor: float) -> list[float]:
        return weights

    def train_size_n(self, trainer: "Trainer") -> float:
        return float(self.size_n)

    def run_name(self, metric: str, quant: str) -> str:
        return self.name


class StoredSamples(Strategy):
    """The clean utterances plus samples a ``prep`` stage stored, the same every epoch."""

    build_command = ""

    def prepare(self, trainer: "Trainer") -> None:
        from trainer.data import SampleSet

        parts = [trainer.data.subset(subset, TRAIN) for subset in self.subsets]
        if min(len(p) for p in parts) == 0:
            store = trainer.data.store.path
            raise InputError(f"{store}: no {self.label} samples; build them with '{self.build_command} --corpus ... "
                             f"--out {store.parent}'")
        self.stored = SampleSet.concat(parts)

    def epoch_samples(self, trainer: "Trainer", epoch: int, weights: list[float]) -> EpochSamples:
        from trainer.data import SampleSet

        return EpochSamples(SampleSet.concat([trainer.train_clean, self.stored]), [], [])

    def fixed_inputs(self) -> list[tuple[str, "SampleSet"]]:
        return [(f"{self.label} train samples", self.stored)]

    def train_size_n(self, trainer: "Trainer") -> float:
        return 1 + len(self.stored) / trainer.N


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


class MetricAug(Strategy):
    """N clean + N mixes drawn from the train levels by the weights, which Algorithm 1 sets
    from the validation gaps after every epoch."""

    name, label = "metricaug", "MetricAug"
    help = "N clean + N mixes drawn by level, re-weighted every epoch by Algorithm 1"
    size_n = 2.0
    draws_levels = True
    adapts_weights = True

    def prepare(self, trainer: "Trainer") -> None:
        index = trainer.data.index
        if trainer.K * trainer.config.floor > 1:
            raise InputError(f"{index.path}: {trainer.K} levels cannot each keep the floor {trainer.config.floor}")
        if sum(trainer.data.train_level_sizes) == 0:
            cfg = trainer.config
            raise InputError(f"{index.path}: no train mix has a level; run 'prep score {cfg.data} "
                             f"--metric {cfg.metric} --quant {cfg.quant} --levels K' with fewer levels")

    def epoch_samples(self, trainer: "Trainer", epoch: int, weights: list[float]) -> EpochSamples:
        from trainer.data import SampleSet
        from trainer.weights import plan_epoch_draw

        draw = plan_epoch_draw(trainer.data.train_level_sizes, trainer.N, weights,
                               trainer.rng(STREAM_LEVEL_DRAW, epoch))
        parts = [trainer.train_clean] + [trainer.data.level_samples(TRAIN, k + 1, idx)
                                         for k, idx in enumerate(draw.indices) if idx.size]
        return EpochSamples(SampleSet.concat(parts), list(draw.counts), draw.messages)

    def initial_weights(self, n_levels: int) -> list[float]:
        return [1.0 / n_levels] * n_levels

    def next_weights(self, gaps: list[float], weights: list[float], floor: float) -> list[float]:
        from trainer.weights import algorithm1

        return [float(w) for w in algorithm1(gaps, floor)]

    def run_name(self, metric: str, quant: str) -> str:
        return f"{metric}-{quant}"


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (MetricAug(), Strategy(), FixedSNR(), CopyPaste())}
#: the report's column order: the baselines first, as the paper's Table 2
BASELINE_ORDER = ("none", "fixed-snr", "copypaste")


def get_strategy(name: str) -> Strategy:
    """A fresh instance of the registered strategy for one run (``prepare`` keeps the run's
    samples on it, so runs in one process never share them)."""
    if name not in STRATEGIES:
        raise InputError(f"--strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    return type(STRATEGIES[name])()


#: Scores a gap g_k = score_clean - score_k can be measured in (``--gap-score``): WF1 as the
#: paper; UAR does not depend on a level's class mix.
GAP_SCORES = {"wf1": "WF1, as the paper", "uar": "unweighted average recall: independent of a level's class mix"}
#: Validation sets an epoch can be selected (and early-stopped) on (``--select``).
SELECTION_RULES = {"pooled": "WF1 over the clean validation utterances and every level's validation mixes pooled "
                             "(the authors' rule)",
                   "clean": "WF1 over the clean validation utterances only"}


def gaps(metrics: dict, score: str) -> list[float]:
    """g_k = score on clean validation − score on level k's validation mixes (0 for a level
    without mixes)."""
    if score not in GAP_SCORES:
        raise InputError(f"--gap-score {score!r}: expected one of {', '.join(GAP_SCORES)}")
    clean = metrics[f"val_{score}_clean"]
    return [0.0 if math.isnan(v) else clean - v for v in metrics[f"val_{score}_levels"]]

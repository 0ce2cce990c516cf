"""Scores and their uncertainty from per-utterance outcomes: WF1 and UAR of confusion
matrices, a replicate's score pooled over its runs, and the percentile bootstrap over test
utterances (paired between strategies tested on the same utterances), alone or with the runs
(seeds) resampled too, so that an interval holds the seed-to-seed variance."""
from __future__ import annotations

import zlib

import numpy as np

from shards.errors import InputError
from shards.vocab import EMOTIONS

BOOTSTRAP_REPLICATES = 1000


def _scores_from_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """WF1 and UAR of a stack of confusion matrices (B, K, K), rows = true class: the same
    definitions as sklearn's f1_score(average="weighted") and recall over the classes present."""
    tp = np.diagonal(confusions, axis1=1, axis2=2).astype(float)
    support = confusions.sum(axis=2).astype(float)
    predicted = confusions.sum(axis=1).astype(float)
    denominator = support + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    n = support.sum(axis=1, keepdims=True)
    wf1 = (f1 * support / n).sum(axis=1)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    uar = recall.sum(axis=1) / present.sum(axis=1)
    return {"wf1": wf1, "uar": uar}


def _outcomes(replicate: list[dict], condition: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, predictions) of a replicate on ``condition``, its runs' test utterances in store
    order; None when a run lacks the condition or its per-utterance outcomes."""
    labels, predictions = [], []
    for run in replicate:
        scores = run["results"]["conditions"].get(condition)
        if not scores or "predictions" not in scores:
            return None
        labels.append(np.asarray(scores["labels"], dtype=np.int64))
        predictions.append(np.asarray(scores["predictions"], dtype=np.int64))
    return np.concatenate(labels), np.concatenate(predictions)


def replicate_score(replicate: list[dict], condition: str, metric: str = "wf1") -> float | None:
    """A replicate's score on ``condition``: the run's own for one run; over the pooled test
    utterances of its runs for several (which needs their per-utterance outcomes)."""
    if len(replicate) == 1:
        scores = replicate[0]["results"]["conditions"].get(condition)
        return float(scores[metric]) if scores else None
    outcomes = _outcomes(replicate, condition)
    if outcomes is None:
        if all(condition in r["results"]["conditions"] for r in replicate):
            paths = " ".join(str(r["path"]) for r in replicate)
            raise InputError(f"runs pooled over stores need per-utterance outcomes: re-evaluate with 'trainer eval {paths}'")
        return None
    k = len(EMOTIONS)
    confusion = np.bincount(outcomes[0] * k + outcomes[1], minlength=k * k).reshape(1, k, k)
    return float(_scores_from_confusions(confusion)[metric][0])


def _bootstrap_scores(reps: list[list[dict]], condition: str, pick: np.ndarray) -> dict[str, np.ndarray] | None:
    """Per bootstrap replicate: the mean over ``reps`` of each score (WF1, UAR) on the resampled
    utterances. Every replicate is resampled with the same ``pick``: they test the same utterances."""
    k = len(EMOTIONS)
    offsets = (np.arange(pick.shape[0]) * k * k)[:, None]
    per_rep = []
    for rep in reps:
        outcomes = _outcomes(rep, condition)
        if outcomes is None or outcomes[0].size != pick.shape[1]:
            return None
        cell = outcomes[0] * k + outcomes[1]
        # one confusion matrix per bootstrap replicate, counted in one bincount
        confusions = np.bincount((cell[pick] + offsets).ravel(), minlength=pick.shape[0] * k * k)
        per_rep.append(_scores_from_confusions(confusions.reshape(pick.shape[0], k, k)))
    return {metric: np.mean([scores[metric] for scores in per_rep], axis=0) for metric in per_rep[0]}


def _bootstrap_scores_with_seeds(reps: list[list[dict]], condition: str, pick: np.ndarray,
                                 rng: np.random.Generator) -> dict[str, np.ndarray] | None:
    """Per bootstrap replicate: the mean score over S pseudo-replicates, each of which takes,
    on every store (fold), the run of a seed drawn with replacement from the strategy's S
    seeds there, scored on the resampled utterances (``pick``, shared with every strategy
    tested on them). The spread then holds the seed-to-seed variance as well as the
    utterances'; with one seed it is the utterance bootstrap."""
    k = len(EMOTIONS)
    cells, fold_of = [], []
    for rep in reps:
        per_fold = []
        for run in rep:
            outcomes = _outcomes([run], condition)
            if outcomes is None:
                return None
            per_fold.append(outcomes[0] * k + outcomes[1])
        cells.append(np.concatenate(per_fold))
        if not fold_of:
            fold_of = [np.full(c.size, f) for f, c in enumerate(per_fold)]
    cells_by_seed = np.stack(cells)  # (S, n): the seeds' outcomes on the pooled utterances
    if cells_by_seed.shape[1] != pick.shape[1]:
        return None
    fold_of_position = np.concatenate(fold_of)
    n_boot, n_seeds, n_folds = pick.shape[0], len(reps), len(reps[0])
    seed_choice = rng.integers(0, n_seeds, (n_boot, n_seeds, n_folds))  # the seed each pseudo-replicate takes per fold
    folds_picked = np.broadcast_to(fold_of_position[pick][:, None, :], (n_boot, n_seeds, pick.shape[1]))
    seeds = np.take_along_axis(seed_choice, folds_picked, axis=2)  # (B, S, n)
    picked = cells_by_seed[seeds, np.broadcast_to(pick[:, None, :], seeds.shape)]
    offsets = (np.arange(n_boot * n_seeds) * k * k).reshape(n_boot, n_seeds, 1)
    confusions = np.bincount((picked + offsets).ravel(), minlength=n_boot * n_seeds * k * k)
    scores = _scores_from_confusions(confusions.reshape(n_boot * n_seeds, k, k))
    return {metric: values.reshape(n_boot, n_seeds).mean(axis=1) for metric, values in scores.items()}


def _universe(reps: list[list[dict]], condition: str) -> tuple | None:
    """What the replicates were tested on: the stores and the true labels, in order. Strategies
    with the same universe are compared utterance by utterance (a paired bootstrap)."""
    if not reps:
        return None
    outcomes = _outcomes(reps[0], condition)
    if outcomes is None:
        return None
    return tuple(str(r["config"].get("data")) for r in reps[0]), outcomes[0].size, outcomes[0].tobytes()


class Resamples:
    """The bootstrap scores of each strategy on each condition, computed once and shared by the
    interval table and every gap. Strategies tested on the same utterances are resampled with
    the same draws (seeded by ``seed``), which pairs them."""

    def __init__(self, reps: dict[str, list[list[dict]]], replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0):
        self.reps, self.replicates, self.seed = reps, replicates, seed
        self._scores: dict[tuple[str, str, bool], tuple | None] = {}

    def scores(self, column: str, condition: str, seeds: bool = False) -> tuple[tuple, dict[str, np.ndarray]] | None:
        """(universe, bootstrap scores per metric) of ``column`` on ``condition``; None without
        per-utterance outcomes (results.json written before they were recorded). ``seeds``:
        resample the column's runs (seeds within each store) as well as the utterances, each
        column with a stream of its own (its seeds are not paired with another's)."""
        key = (column, condition, seeds)
        if key not in self._scores:
            universe = _universe(self.reps[column], condition)
            scores = None
            if universe is not None:
                pick = np.random.default_rng(self.seed).integers(0, universe[1], (self.replicates, universe[1]))
                if seeds:
                    stream = np.random.default_rng([self.seed, zlib.crc32(column.encode())])
                    scores = _bootstrap_scores_with_seeds(self.reps[column], condition, pick, stream)
                else:
                    scores = _bootstrap_scores(self.reps[column], condition, pick)
            self._scores[key] = (universe, scores) if scores is not None else None
        return self._scores[key]

    def interval(self, column: str, condition: str, metric: str, seeds: bool = False) -> tuple[float, float] | None:
        """95 % percentile interval of the column's mean score over its replicates."""
        found = self.scores(column, condition, seeds)
        if found is None:
            return None
        low, high = np.percentile(found[1][metric], [2.5, 97.5])
        return float(low), float(high)

    def gap(self, a: str, b: str, condition: str, metric: str, seeds: bool = False
            ) -> tuple[float, float, float] | None:
        """Mean score of ``b`` minus that of ``a`` and its paired 95 % interval (paired over
        utterances; with ``seeds`` each side's seeds resampled too); None when they were not
        tested on the same utterances."""
        found_a, found_b = self.scores(a, condition, seeds), self.scores(b, condition, seeds)
        if found_a is None or found_b is None or found_a[0] != found_b[0]:
            return None
        gap = float(np.mean([replicate_score(r, condition, metric) for r in self.reps[b]])
                    - np.mean([replicate_score(r, condition, metric) for r in self.reps[a]]))
        low, high = np.percentile(found_b[1][metric] - found_a[1][metric], [2.5, 97.5])
        return gap, float(low), float(high)


def bootstrap_ci(reps: list[list[dict]], condition: str, metric: str = "wf1", replicates: int = BOOTSTRAP_REPLICATES,
                 seed: int = 0) -> tuple[float, float] | None:
    """95 % interval of the mean score over ``reps`` on ``condition``: the percentile bootstrap,
    resampling test utterances with replacement."""
    return Resamples({"": reps}, replicates, seed).interval("", condition, metric)


def bootstrap_gap(reps_a: list[list[dict]], reps_b: list[list[dict]], condition: str, metric: str = "wf1",
                  replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0, seeds: bool = False
                  ) -> tuple[float, float, float] | None:
    """Mean score of B minus mean score of A on ``condition`` and its 95 % interval, resampling the
    utterances both were tested on (paired), and with ``seeds`` each side's runs as well. None
    when they were not tested on the same utterances."""
    return Resamples({"a": reps_a, "b": reps_b}, replicates, seed).gap("a", "b", condition, metric, seeds)

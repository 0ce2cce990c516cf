"""Scoring a model on a set of stored samples: shared by the training loop (validation after
every epoch) and ``trainer eval`` (the test conditions of a finished run)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from shards.vocab import EMOTIONS
from trainer.data import FeatureCache, SampleSet, feature_batches, length_batches

#: Utterances per forward pass when only predicting (no gradients: larger batches are cheap).
PREDICT_BATCH = 64


@torch.no_grad()
def predict_with_loss(model: torch.nn.Module, featurize: Callable, samples: SampleSet, workers: int,
                      cache: FeatureCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class index and cross-entropy against its label of every sample (in the order
    of ``samples``); features of samples in ``cache`` are taken from it, the others decoded and
    featurized."""
    model.eval()
    device = next(model.parameters()).device
    predictions = np.empty(len(samples), dtype=np.int64)
    losses = np.empty(len(samples), dtype=np.float64)
    batches = length_batches(samples.lengths, PREDICT_BATCH, None)
    for feats, frames, labels, indices in feature_batches(samples, batches, featurize, workers, cache, device):
        logits = model(feats, frames)
        rows = indices.numpy()
        predictions[rows] = logits.argmax(-1).cpu().numpy()
        losses[rows] = F.cross_entropy(logits.float(), labels.to(logits.device), reduction="none").double().cpu().numpy()
    return predictions, losses


def predict(model: torch.nn.Module, featurize: Callable, samples: SampleSet, workers: int,
            cache: FeatureCache | None = None) -> np.ndarray:
    """Predicted class index of every sample (in the order of ``samples``)."""
    return predict_with_loss(model, featurize, samples, workers, cache)[0]


def classification_scores(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """WF1 (F1 weighted by class support, as the paper), UAR (mean recall over the classes
    present), per-class F1 and the confusion matrix (rows: true class, in EMOTIONS order).

    All from one confusion matrix, with scikit-learn's arithmetic (``f1_score(average=
    "weighted", zero_division=0)``, ``recall_score(average="macro")`` over the classes present),
    equal to it float for float (tests/test_trainer_model.py) at a thousandth of its cost: the
    trainer scores about 25 sets after every epoch."""
    n_classes = len(EMOTIONS)
    if labels.size == 0:
        return {"wf1": float("nan"), "uar": float("nan"), "n": 0, "f1_per_class": {}, "confusion": []}
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    confusion = np.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes)
    confusion = confusion.reshape(n_classes, n_classes)
    hits = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    denominator = support.astype(np.float64) + predicted.astype(np.float64)
    per_class = np.divide(2.0 * hits, denominator, out=np.zeros(n_classes), where=denominator > 0)
    present = support > 0
    return {
        "wf1": float(np.average(per_class, weights=support)),
        "uar": float(np.nanmean(hits[present] / support[present])),
        "n": int(labels.size),
        "f1_per_class": {EMOTIONS[c]: float(per_class[c]) for c in range(n_classes)},
        "confusion": confusion.tolist(),
    }

"""Time the trainer's classification scores (WF1, UAR, per-class F1, confusion) against the
scikit-learn calls they replace, on validation-sized sets; check they agree float for float.

    python bench/classification_scores.py [--sizes 84,420,2000] [--repeats 200]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, recall_score

from shards.vocab import EMOTIONS
from trainer.predict import classification_scores


def with_sklearn(labels: np.ndarray, predictions: np.ndarray) -> dict:
    classes = list(range(len(EMOTIONS)))
    present = sorted(set(labels.tolist()))
    per_class = f1_score(labels, predictions, average=None, labels=classes, zero_division=0)
    return {"wf1": float(f1_score(labels, predictions, average="weighted", labels=classes, zero_division=0)),
            "uar": float(recall_score(labels, predictions, average="macro", labels=present, zero_division=0)),
            "n": int(labels.size), "f1_per_class": {EMOTIONS[c]: float(per_class[c]) for c in classes},
            "confusion": confusion_matrix(labels, predictions, labels=classes).tolist()}


def per_call_ms(fn, labels, predictions, repeats: int) -> float:
    fn(labels, predictions)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(labels, predictions)
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="84,420,2000", help="samples per scored set, comma-separated")
    parser.add_argument("--repeats", type=int, default=200, help="calls timed per size")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'samples':>8} {'scikit-learn ms':>16} {'one confusion ms':>17} {'speed-up':>9}  equal")
    for n in (int(s) for s in args.sizes.split(",")):
        labels = rng.integers(0, 4, n)
        predictions = np.where(rng.random(n) < 0.6, labels, rng.integers(0, 4, n))
        slow = per_call_ms(with_sklearn, labels, predictions, max(10, args.repeats // 10))
        fast = per_call_ms(classification_scores, labels, predictions, args.repeats)
        same = with_sklearn(labels, predictions) == classification_scores(labels, predictions)
        print(f"{n:>8} {slow:>16.2f} {fast:>17.3f} {slow / fast:>8.0f}x  {same}")


if __name__ == "__main__":
    main()

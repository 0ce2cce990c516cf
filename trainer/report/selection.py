"""How much the epoch a selection rule keeps matters on test data: for runs trained with
``trainer run --test-every-epoch`` (every epoch record carries ``test_wf1`` per condition).

For each run and each rule (pooled: the clean validation set and every level's mixes; clean:
the clean validation set alone) the epoch kept is the first with the best validation WF1 by
that rule, over every epoch the run trained. Against it stand the oracle (the epoch best on
test data, which no rule can know) and the rule's five best epochs: if the epochs a rule
ranks nearly level on its validation set differ widely on test data, the epoch kept is decided
by noise. Test WF1 here is the mean over the run's test conditions.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.stats import spearmanr

from trainer.conditions import condition_label, condition_order

#: the rules compared, by the epoch-record key of their validation WF1
RULE_KEYS = {"pooled": "val_wf1_pooled", "clean": "val_wf1_clean"}
#: the rule's best epochs whose test spread is shown
TOP = 5


def watched(runs: list[dict]) -> list[dict]:
    """The runs every epoch of which carries test scores (--test-every-epoch)."""
    return [r for r in runs if r["epochs"] and all("test_wf1" in e for e in r["epochs"])]


def rule_outcome(epochs: list[dict], rule: str) -> dict:
    """One run under one rule: the epoch kept, its test WF1 (mean over conditions and per
    condition), the oracle's, the spread of test WF1 over the rule's TOP best epochs and the
    rank correlation of validation and test WF1 over the epochs."""
    val = np.array([e[RULE_KEYS[rule]] for e in epochs], dtype=float)
    names = sorted(epochs[0]["test_wf1"], key=condition_order)
    per_condition = np.array([[e["test_wf1"][c] for c in names] for e in epochs], dtype=float)
    test = per_condition.mean(axis=1)
    kept = int(np.argmax(val))  # the first best, as training keeps it (a later tie does not improve)
    top = np.argsort(-val, kind="stable")[:TOP]
    rho = spearmanr(val, test).statistic if len(epochs) > 2 and np.ptp(val) > 0 and np.ptp(test) > 0 else float("nan")
    return {"kept_epoch": kept + 1, "kept": float(test[kept]), "oracle": float(test.max()),
            "top_spread": float(test[top].max() - test[top].min()), "spearman": float(rho),
            "kept_by_condition": dict(zip(names, per_condition[kept].tolist()))}


def selection_tables(runs: list[dict]) -> str:
    """Markdown: per strategy and rule, the mean over runs of the outcomes above (in WF1
    points), then the test WF1 per condition of the epoch each rule keeps."""
    runs = watched(runs)
    if not runs:
        return ""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_label[run["label"]].append(run)
    lines = [f"Runs with test scores after every epoch: {len(runs)}. Test WF1 is the mean over the test "
             f"conditions; means over runs, in WF1 points (sd over runs).\n",
             f"| Strategy | Rule | Runs | Epochs | Epoch kept | Test WF1 kept | Oracle | Regret | "
             f"Spread over the rule's {TOP} best | Spearman val/test |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    detail: dict[tuple[str, str], list[dict]] = {}
    for label, group in by_label.items():
        for rule in RULE_KEYS:
            outcomes = [rule_outcome(r["epochs"], rule) for r in group]
            detail[(label, rule)] = outcomes

            def cell(key: str, scale: float = 100.0, digits: int = 1) -> str:
                values = scale * np.array([o[key] for o in outcomes], dtype=float)
                return f"{np.nanmean(values):.{digits}f} ({np.nanstd(values):.{digits}f})"

            regret = 100 * np.array([o["oracle"] - o["kept"] for o in outcomes])
            epochs = np.mean([len(r["epochs"]) for r in group])
            lines.append(f"| {label} | {rule} | {len(group)} | {epochs:.0f} | {cell('kept_epoch', 1.0, 0)} | "
                         f"{cell('kept')} | {cell('oracle')} | {regret.mean():.1f} ({regret.std():.1f}) | "
                         f"{cell('top_spread')} | {cell('spearman', 1.0, 2)} |")
    names = sorted({c for o in next(iter(detail.values())) for c in o["kept_by_condition"]}, key=condition_order)
    lines += ["", "Test WF1 (%) per condition of the epoch each rule keeps (mean over runs):", "",
              "| Strategy | Rule | " + " | ".join(condition_label(c) for c in names) + " |",
              "|---|---|" + "---:|" * len(names)]
    for (label, rule), outcomes in detail.items():
        cells = [100 * np.mean([o["kept_by_condition"][c] for o in outcomes]) for c in names]
        lines.append(f"| {label} | {rule} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"

"""The trainer says when its feedback is noise: the split-half r in every epoch line, one warning
once the mean split-half r after the burn-in is below FEEDBACK_RELIABILITY_MIN, and the report's
feedback table marks such runs."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from trainer.protocol import (FEEDBACK_BURN_IN, FEEDBACK_JUDGE_EPOCHS, FEEDBACK_RELIABILITY_MIN, GAP_SCORES,
                              feedback_reliability, pearson, warn_unreliable_now)
from trainer.train import TrainConfig, Trainer

NAN = float("nan")


def warned_at(rs: list[float]) -> list[int]:
    """The epochs (1-based) at which a run with these per-epoch split-half r warns."""
    return [e for e in range(1, len(rs) + 1) if warn_unreliable_now(rs[:e])]


def test_the_rule_judges_after_the_burn_in_and_warns_once():
    judged = FEEDBACK_BURN_IN + FEEDBACK_JUDGE_EPOCHS  # the first epoch that can be judged
    assert warned_at([0.0] * 30) == [judged]
    assert warned_at([0.95] * 30) == []
    assert warned_at([-1.0] * FEEDBACK_BURN_IN + [0.8] * 20) == []  # the burn-in does not count
    assert warned_at([0.9] * FEEDBACK_BURN_IN + [0.1] * 20) == [judged]
    # reliable at first, noise later: it warns at the epoch the running mean falls below, once
    rs = [0.9] * FEEDBACK_BURN_IN + [0.6] * FEEDBACK_JUDGE_EPOCHS + [0.0] * 10
    first = warned_at(rs)
    assert len(first) == 1 and feedback_reliability(rs[:first[0]]) < FEEDBACK_RELIABILITY_MIN
    assert feedback_reliability(rs[:first[0] - 1]) >= FEEDBACK_RELIABILITY_MIN
    # a constant gap vector (r NaN) is left out, and judging waits for enough finite epochs
    rs = [0.9] * FEEDBACK_BURN_IN + [NAN] * 4 + [0.1] * 10
    assert warned_at(rs) == [judged + 4]
    assert math.isnan(feedback_reliability([0.1] * (judged - 1)))


def scripted_feedback(agree: bool, K: int = 5):
    """Trainer.evaluate replaced by constant scores and per-epoch gap halves that agree (the
    second half is the first plus a little noise) or not (independent); the split-half r is
    computed from the halves as the trainer records it."""
    rng = np.random.default_rng(7)

    def evaluate(self, model):
        a = rng.normal(size=K)
        b = a + 0.05 * rng.normal(size=K) if agree else rng.normal(size=K)
        return {"val_wf1_clean": 0.5, "val_uar_clean": 0.5, "val_wf1_levels": [0.4] * K, "val_uar_levels": [0.4] * K,
                "val_mixes_levels": [len(s) for s in self.val_levels], "val_wf1_pooled": 0.45, "val_uar_pooled": 0.45,
                "val_loss_gaps": [0.0] * K, "gap_halves": {s: [a.tolist(), b.tolist()] for s in GAP_SCORES},
                "gap_split_half_r": {s: pearson(a, b) for s in GAP_SCORES}}
    return evaluate


def train_log(demo_store: Path, out: Path, monkeypatch, agree: bool, strategy: str = "metricaug") -> list[str]:
    """The log of a run over the scripted feedback; its epochs draw but do not train (the warning
    reads the feedback only), so that enough epochs to judge take seconds."""
    monkeypatch.setattr(Trainer, "evaluate", scripted_feedback(agree))
    monkeypatch.setattr(Trainer, "_train_epoch", lambda self, net, optimizer, samples, batches, epoch, dist: 1.0)
    epochs = FEEDBACK_BURN_IN + FEEDBACK_JUDGE_EPOCHS + 2
    lines: list[str] = []
    config = TrainConfig(data=str(demo_store), out=str(out), strategy=strategy, max_epochs=epochs, patience=100,
                         workers=0, batch_size=32, cache_mb=0)
    Trainer(config, log=lines.append, progress=False).run()
    return lines


def test_a_run_whose_halves_disagree_warns_once_and_one_whose_halves_agree_does_not(demo_store, tmp_path, monkeypatch):
    lines = train_log(demo_store, tmp_path / "disagree", monkeypatch, agree=False)
    epoch_lines = [line for line in lines if line.startswith("epoch ") and "loss" in line]
    assert len(epoch_lines) == FEEDBACK_BURN_IN + FEEDBACK_JUDGE_EPOCHS + 2
    assert all("split-half r (WF1) " in line for line in epoch_lines)
    warnings = [i for i, line in enumerate(lines) if line.startswith("warning: the feedback")]
    assert len(warnings) == 1
    warning = lines[warnings[0]]
    assert "\n" not in warning and "more validation speakers" in warning and "--strategy superset" in warning
    assert f"below {FEEDBACK_RELIABILITY_MIN:g}" in warning
    assert lines[warnings[0] - 1].startswith(f"epoch {FEEDBACK_BURN_IN + FEEDBACK_JUDGE_EPOCHS:3d}")

    lines = train_log(demo_store, tmp_path / "agree", monkeypatch, agree=True)
    assert not [line for line in lines if line.startswith("warning:")]
    r = [float(line.split("split-half r (WF1) ")[1].split()[0]) for line in lines if "split-half r (WF1) " in line]
    assert len(r) == FEEDBACK_BURN_IN + FEEDBACK_JUDGE_EPOCHS + 2 and min(r) > 0.9


def test_uniform_levels_print_the_split_half_r_but_never_warn(demo_store, tmp_path, monkeypatch):
    """uniform's weights do not follow the feedback: nothing to warn about."""
    lines = train_log(demo_store, tmp_path / "uniform", monkeypatch, agree=False, strategy="uniform")
    assert any("split-half r (WF1) " in line for line in lines)
    assert not [line for line in lines if line.startswith("warning:")]


def recorded(name: str, rs: list[float], gap_score: str = "wf1") -> dict:
    """A run as the report loads it, with the per-epoch split-half r of its gap score."""
    epochs = [{"epoch": e, "val_wf1_levels": [0.4] * 3, "weights": [1 / 3] * 3, "gaps": [0.1, 0.2, 0.3],
               "gap_split_half_r": {s: (r if s == gap_score else 0.99) for s in GAP_SCORES}}
              for e, r in enumerate(rs, start=1)]
    config = {"strategy": "metricaug", "metric": "stoi", "quant": "gmm", "gap_score": gap_score}
    return {"path": Path("runs") / name, "config": config, "epochs": epochs, "label": "STOI-GMM"}


def test_the_feedback_table_marks_the_runs_below_the_minimum():
    from trainer.report.feedback import feedback_table, run_reliability

    n = FEEDBACK_BURN_IN + FEEDBACK_JUDGE_EPOCHS
    noisy, reliable = recorded("noisy-s0", [0.9] * FEEDBACK_BURN_IN + [0.1] * FEEDBACK_JUDGE_EPOCHS), \
        recorded("reliable-s1", [0.8] * n)
    short = recorded("short-s2", [0.0] * (n - 1))  # too few epochs to judge
    loss_run = recorded("loss-s3", [0.2] * n, gap_score="loss")  # judged on its own gap score
    assert run_reliability(noisy) < FEEDBACK_RELIABILITY_MIN <= run_reliability(reliable)
    assert math.isnan(run_reliability(short))
    table = feedback_table([noisy, reliable, short, loss_run])
    header, row = table.splitlines()[0], table.splitlines()[2]
    assert f"Runs below r = {FEEDBACK_RELIABILITY_MIN:g}" in header
    assert row.startswith("| STOI-GMM | 4 |") and row.endswith("| 2 of 3 ⚠ |")
    assert "noisy-s0 (0.10)" in table and "loss-s3 (0.20)" in table
    assert "reliable-s1" not in table and "short-s2" not in table
    assert "| 0 of 1 |" in feedback_table([reliable])

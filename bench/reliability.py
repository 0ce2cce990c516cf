"""How reliable is MetricAug's feedback, against the size of the validation set, and how much
of it is class mix? (issue 32; docs/study.md, "Reliability against validation size")

    python bench/reliability.py --group "ASED, 1 speaker=docs/study/ased-real/reliability/v1/*" \\
        --group "ASED, 10 speakers=docs/study/ased-real/arm-d/fold1-uniform-s*" \\
        --group "RAVDESS (arm C)=docs/study/ravdess-real/arm-c/*-uniform-*" --data-base /work \\
        --out docs/study/ased-real/reliability-report

Each ``--group LABEL=GLOB`` is a set of run folders (their small files: config.json,
epochs.jsonl) of one validation size; runs with fixed weights (``uniform``) measure the
feedback without it acting on the model it measures. For every run, over its epochs after a
burn-in of 5:

- split-half r, per gap score (WF1, UAR, paired loss): the correlation across the K levels of
  the gap vectors of two disjoint halves of the validation utterances (each mix with its own
  utterance), the trainer's record ``gap_split_half_r``, averaged over epochs;
- class-mix r: the correlation across levels of the measured WF1 gaps with the gaps the levels'
  class mix alone would give, i.e. a model exactly as good on every level as on clean speech,
  class by class: ``g_k = WF1_clean - sum_c share_kc * F1_c(clean)`` (the clean validation
  per-class F1 applied to level k's class shares; runs recorded since this script only).

Per group: the mean over runs; the Spearman-Brown reliability of the whole validation set
``R = 2r / (1 + r)`` (r measured on halves); and the reliability it implies for another size
n' by the Spearman-Brown prophecy, ``R' = m R / (1 + (m - 1) R)`` with ``m = n'/n``: a
projection to MSP-Podcast's 4,772 validation utterances, which assumes the utterances are
exchangeable (more utterances of new speakers measure the same gaps), as the formula does.

The number of validation utterances of a run is read from its store's fold CSV (the
``utterances.csv`` beside the store ``bench/study.py`` builds) or its table, found from the
run's ``data`` path under ``--data-base``; ``LABEL=N=GLOB`` gives it by hand.
Writes ``reliability.md``, ``reliability.csv`` and ``reliability.png``; prints the table.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from shards.vocab import EMOTIONS  # noqa: E402
from trainer.protocol import FEEDBACK_BURN_IN, GAP_SCORES, pearson  # noqa: E402
from trainer.report.feedback import nanmean  # noqa: E402
from trainer.runfolder import read_epochs  # noqa: E402

#: MSP-Podcast 1.8's validation set (the paper's setting), for the projection
MSP_VALIDATION_UTTERANCES = 4772


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """The reliability of a set ``factor`` times the size of the one whose reliability is ``r``
    (factor 2: the whole set from the split-half correlation). NaN for r <= -1 or NaN."""
    if not np.isfinite(r) or r <= -1:
        return float("nan")
    return factor * r / (1 + (factor - 1) * r)


def class_mix_gaps(record: dict) -> list[float] | None:
    """The WF1 gaps the levels' class mix alone would give (None where not recorded)."""
    f1 = record.get("val_f1_clean_per_class")
    counts = record.get("val_class_counts_levels")
    if not f1 or not counts or len(f1) != len(EMOTIONS):
        return None
    gaps = []
    for level in counts:
        total = sum(level)
        gaps.append(float("nan") if total == 0 else
                    record["val_wf1_clean"] - sum(c / total * f for c, f in zip(level, f1)))
    return gaps


def run_figures(epochs: list[dict]) -> dict:
    """One run's means over its epochs after the burn-in."""
    kept = epochs[FEEDBACK_BURN_IN:]
    out = {f"r_{s}": nanmean([(e.get("gap_split_half_r") or {}).get(s, np.nan) for e in kept]) for s in GAP_SCORES}
    mix_r = []
    for e in kept:
        predicted = class_mix_gaps(e)
        if predicted is not None:
            measured = [e["val_wf1_clean"] - w for w in e["val_wf1_levels"]]
            mix_r.append(pearson(predicted, measured))
    out["r_class_mix"] = nanmean(mix_r) if mix_r else float("nan")
    out["epochs"] = len(kept)
    return out


def validation_utterances(run: Path, data_base: Path) -> int | None:
    """Clean validation utterances of the run's store: its fold CSV, else its table."""
    config = json.loads((run / "config.json").read_text())
    store = Path(config["data"])
    if not store.is_absolute():
        store = data_base / store
    fold_csv = store.parent / "utterances.csv"
    if fold_csv.is_file():
        with open(fold_csv, newline="") as f:
            return sum(1 for row in csv.DictReader(f) if row["split"] == "validation")
    if store.is_dir():
        from shards.reader import open_store

        table = open_store(store).table(["subset", "split"]).to_pydict()
        return sum(1 for sub, sp in zip(table["subset"], table["split"]) if sub == "clean" and sp == "validation")
    return None


def parse_group(text: str) -> tuple[str, int | None, str]:
    parts = text.split("=")
    if len(parts) == 2:
        return parts[0], None, parts[1]
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], int(parts[1]), parts[2]
    raise SystemExit(f"--group {text!r}: expected LABEL=GLOB or LABEL=N=GLOB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", required=True, help="LABEL=GLOB or LABEL=N=GLOB (N: validation utterances)")
    parser.add_argument("--data-base", type=Path, default=Path("."), help="folder the runs' relative 'data' paths start from")
    parser.add_argument("--out", type=Path, default=None, help="folder for reliability.md/.csv/.png")
    args = parser.parse_args(argv)

    rows = []
    for text in args.group:
        label, n_given, pattern = parse_group(text)
        runs = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "epochs.jsonl").is_file())
        if not runs:
            raise SystemExit(f"--group {label}: no run folder with epochs.jsonl matches {pattern}")
        figures = [run_figures(read_epochs(r)) for r in runs]
        sizes = [n_given or validation_utterances(r, args.data_base) for r in runs]
        if any(s is None for s in sizes):
            raise SystemExit(f"--group {label}: the validation size of a run is unknown (its store and fold CSV are "
                             f"not under --data-base {args.data_base}); give it as LABEL=N=GLOB")
        row = {"group": label, "runs": len(runs), "n_validation": float(np.mean(sizes))}
        for key in [f"r_{s}" for s in GAP_SCORES] + ["r_class_mix"]:
            values = np.array([f[key] for f in figures], dtype=float)
            row[key] = nanmean(values)
            row[key + "_sd"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
        for s in GAP_SCORES:
            whole = spearman_brown(row[f"r_{s}"])
            row[f"R_{s}"] = whole
            row[f"R_{s}_msp"] = spearman_brown(whole, MSP_VALIDATION_UTTERANCES / row["n_validation"])
        rows.append(row)
    rows.sort(key=lambda r: r["n_validation"])

    labels = {"wf1": "WF1", "uar": "UAR", "loss": "loss"}
    header = (["Validation set", "Runs", "Utterances"] + [f"split-half r, {labels[s]}" for s in GAP_SCORES]
              + [f"R (whole set), {labels[s]}" for s in GAP_SCORES]
              + [f"R projected to {MSP_VALIDATION_UTTERANCES:,}, {labels[s]}" for s in GAP_SCORES]
              + ["class-mix r (WF1 gaps)"])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]

    def cell(v: float, sd: float | None = None) -> str:
        if not np.isfinite(v):
            return "–"
        return f"{v:.2f}" + (f" ({sd:.2f})" if sd is not None and np.isfinite(sd) else "")

    for r in rows:
        cells = [r["group"], str(r["runs"]), f"{r['n_validation']:.0f}"]
        cells += [cell(r[f"r_{s}"], r[f"r_{s}_sd"]) for s in GAP_SCORES]
        cells += [cell(r[f"R_{s}"]) for s in GAP_SCORES]
        cells += [cell(r[f"R_{s}_msp"]) for s in GAP_SCORES]
        cells += [cell(r["r_class_mix"], r["r_class_mix_sd"])]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nMeans over epochs {FEEDBACK_BURN_IN + 1}+ and then over runs (sd over runs). Split-half r: correlation across "
            "levels of the gaps of two halves of the validation utterances. R: Spearman-Brown reliability of the whole "
            f"set, 2r/(1+r). Projected: Spearman-Brown prophecy from R to {MSP_VALIDATION_UTTERANCES:,} utterances "
            "(a projection: it assumes exchangeable utterances). Class-mix r: correlation across levels of the "
            "measured WF1 gaps with those the levels' class mix alone gives (the clean per-class F1 applied to each "
            "level's class shares); '–' where not recorded.\n")
    table = "\n".join(lines) + "\n" + note
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "reliability.md").write_text(table)
        with open(args.out / "reliability.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
        plot(rows, args.out / "reliability.png")
    return 0


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = {"wf1": "C0", "uar": "C1", "loss": "C2"}
    ased = [r for r in rows if r["group"].lower().startswith("ased")]
    others = [r for r in rows if not r["group"].lower().startswith("ased")]
    markers = ["s", "^", "D", "v"]
    for score, colour in colours.items():
        xs = [r["n_validation"] for r in ased]
        axes[0].plot(xs, [r[f"r_{score}"] for r in ased], "o-", color=colour, label=f"{score.upper()} gaps (ASED)")
        axes[1].plot(xs, [r[f"R_{score}"] for r in ased], "o-", color=colour, label=f"{score.upper()} (ASED)")
        for r, marker in zip(others, markers):
            axes[0].plot([r["n_validation"]], [r[f"r_{score}"]], marker, color=colour, mfc="none")
            axes[1].plot([r["n_validation"]], [r[f"R_{score}"]], marker, color=colour, mfc="none")
        if ased and np.isfinite(ased[-1][f"R_{score}"]):  # prophecy from the largest ASED set
            n0, r0 = ased[-1]["n_validation"], ased[-1][f"R_{score}"]
            grid = np.geomspace(n0, MSP_VALIDATION_UTTERANCES, 30)
            axes[1].plot(grid, [spearman_brown(r0, g / n0) for g in grid], ":", color=colour)
    axes[0].plot([r["n_validation"] for r in ased], [r["r_class_mix"] for r in ased], "k--", label="class-mix r (WF1)")
    for r, marker in zip(others, markers):
        axes[0].plot([], [], marker, color="grey", mfc="none", label=r["group"])
    axes[0].set_title("split-half r of the gaps (mean over epochs and runs)", fontsize="small")
    axes[1].set_title(f"Spearman-Brown reliability; dotted: projection to {MSP_VALIDATION_UTTERANCES:,}", fontsize="small")
    axes[1].axvline(MSP_VALIDATION_UTTERANCES, color="grey", lw=0.5)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("validation utterances")
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

"""bench/study.py's folds over an adapter's fold groups: IEMOCAP's sessions (a fold tests one
session, both its speakers) and CREMA-D's actors, as dry runs on the real label files with
generated audio (skipped when ../shared is absent)."""
from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import study  # noqa: E402
from test_crema_d import make_crema_d_root  # noqa: E402
from test_iemocap import make_iemocap_root  # noqa: E402


def fold_speakers(out: Path, folds: int) -> list[dict[str, set[str]]]:
    """Per fold, the speakers of each split in its utterances.csv."""
    found = []
    for f in range(folds):
        splits: dict[str, set[str]] = defaultdict(set)
        with open(out / f"fold{f}" / "utterances.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                splits[row["split"]].add(row["speaker"])
        found.append(dict(splits))
    return found


def dry_run(corpus: str, root: Path, out: Path, *options: str, capsys) -> str:
    study.main(["--corpus", corpus, "--root", str(root), "--noise-root", str(out / "musan"), "--out", str(out),
                "--seeds", "1", "--strategies", "none", "--dry-run", *options])
    return capsys.readouterr().out


def test_an_iemocap_study_tests_one_session_per_fold(shared_dir, tmp_path, capsys):
    root = make_iemocap_root(shared_dir / "corpora" / "iemocap", tmp_path / "iemocap")
    text = dry_run("iemocap", root, tmp_path / "study", "--folds", "5", "--validation-speakers", "1", capsys=capsys)
    folds = fold_speakers(tmp_path / "study", 5)
    for f, splits in enumerate(folds):
        session, following = f + 1, (f + 1) % 5 + 1
        assert splits["test"] == {f"Ses{session:02d}_F", f"Ses{session:02d}_M"}
        assert splits["validation"] == {f"Ses{following:02d}_F", f"Ses{following:02d}_M"}
        assert len(splits["train"]) == 6
        assert not (splits["train"] & splits["validation"] or splits["train"] & splits["test"]
                    or splits["validation"] & splits["test"])
    assert "fold 0: test Ses01_F, Ses01_M; validation Ses02_F, Ses02_M" in text
    assert len([line for line in text.splitlines() if line.startswith("$ trainer run")]) == 5
    with pytest.raises(SystemExit, match="the corpus has 5 fold groups"):
        dry_run("iemocap", root, tmp_path / "study6", "--folds", "6", capsys=capsys)


def test_a_crema_d_study_folds_over_actors(shared_dir, tmp_path, capsys):
    root = make_crema_d_root(shared_dir / "corpora" / "crema_d", tmp_path / "crema_d")
    dry_run("crema_d", root, tmp_path / "study", "--folds", "7", "--validation-speakers", "13", capsys=capsys)
    folds = fold_speakers(tmp_path / "study", 7)
    tested = [actor for splits in folds for actor in splits["test"]]
    assert len(tested) == len(set(tested)) == 91  # every actor tested exactly once
    for splits in folds:
        assert len(splits["test"]) == 13 and len(splits["validation"]) == 13
        assert not (splits["train"] & splits["validation"] or splits["train"] & splits["test"]
                    or splits["validation"] & splits["test"])

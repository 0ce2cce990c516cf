"""Shared fixtures. Tests that need the real audio in ../shared skip with a message
when it is absent (users of the toolkit do not have it)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED_DIR / "SPEC.md").is_file():
        pytest.skip(f"needs the project's shared material at {SHARED_DIR} (not shipped to users)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    return shared_dir / "golden"


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """A small store built from the demo corpus by the real commands: 12 train, 4 validation
    and 4 test utterances per class, 5 SNR bins (10 mixes per utterance), STOI only, test
    sets, the Fixed-SNR mixes, and STOI levels (K=5, GMM and Uniform). Built once per test
    session."""
    from typer.testing import CliRunner

    from mixer.cli import app

    root = tmp_path_factory.mktemp("demo-store")
    runner = CliRunner()
    steps = [
        ["demo-corpus", str(root / "corpus"), "--utterances-per-class", "16"],
        ["superset", "--corpus", "demo", "--root", str(root / "corpus"), "--out", str(root), "--bins", "5",
         "--metrics", "stoi", "--jobs", "2", "--quiet"],
        ["testsets", "--corpus", "demo", "--root", str(root / "corpus"), "--out", str(root), "--metrics", "stoi",
         "--jobs", "2", "--quiet"],
        ["fixed-snr", "--corpus", "demo", "--root", str(root / "corpus"), "--out", str(root), "--jobs", "2", "--quiet"],
        ["score", str(root / "demo"), "--metric", "stoi", "--quant", "all", "--min-per-level", "1"],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"prep {' '.join(args)}: {result.output}"
    return root / "demo"


@pytest.fixture(scope="session")
def demo_recipe_store(demo_store: Path) -> Path:
    """The demo store's superset and Fixed-SNR mixes built again from the same corpus and
    seed with ``--mixes recipe`` (its test sets as audio: the demo's unseen noise is 44.1 kHz,
    see README "Recipe stores"), and the same STOI levels."""
    from typer.testing import CliRunner

    from mixer.cli import app

    corpus, root = demo_store.parent / "corpus", demo_store.parent / "recipe"
    runner = CliRunner()
    steps = [
        ["superset", "--corpus", "demo", "--root", str(corpus), "--out", str(root), "--bins", "5",
         "--metrics", "stoi", "--jobs", "2", "--quiet", "--mixes", "recipe"],
        ["testsets", "--corpus", "demo", "--root", str(corpus), "--out", str(root), "--metrics", "stoi",
         "--jobs", "2", "--quiet"],
        ["fixed-snr", "--corpus", "demo", "--root", str(corpus), "--out", str(root), "--jobs", "2", "--quiet",
         "--mixes", "recipe"],
        ["score", str(root / "demo"), "--metric", "stoi", "--quant", "all", "--min-per-level", "1"],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"prep {' '.join(args)}: {result.output}"
    return root / "demo"

"""Shared fixtures. Tests that need the real audio in ../shared skip with a message
when it is absent (users of the toolkit do not have it).

`make test` runs the suite in two pytest-xdist processes (one torch thread each: the models
here are too small to gain from a second thread, and two processes use both cores); the demo
stores are then built once, by whichever process needs them first, and read by both."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported; subprocesses inherit it

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


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``build(root)`` into a fresh folder once per test session: under pytest-xdist the first
    process to get here builds under a file lock, the others wait and read the same folder."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        root = tmp_path_factory.mktemp(name)
        build(root)
        return root
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / name  # the folder all workers share
    with FileLock(f"{root}.lock"):
        if not (root / ".built").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            build(root)
            (root / ".built").touch()
    return root


def run_prep(steps: list[list[str]]) -> None:
    from typer.testing import CliRunner

    from mixer.cli import app

    runner = CliRunner()
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"prep {' '.join(args)}: {result.output}"


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """A small store built from the demo corpus by the real commands: 12 train, 4 validation
    and 4 test utterances per class, 5 SNR bins (10 mixes per utterance), STOI only, test
    sets, the Fixed-SNR mixes, and STOI levels (K=5, GMM and Uniform). Built once per test
    session."""

    def build(root: Path) -> None:
        run_prep([
            ["demo-corpus", str(root / "corpus"), "--utterances-per-class", "16"],
            ["superset", "--corpus", "demo", "--root", str(root / "corpus"), "--out", str(root), "--bins", "5",
             "--metrics", "stoi", "--jobs", "2", "--quiet"],
            ["testsets", "--corpus", "demo", "--root", str(root / "corpus"), "--out", str(root), "--metrics", "stoi",
             "--jobs", "2", "--quiet"],
            ["fixed-snr", "--corpus", "demo", "--root", str(root / "corpus"), "--out", str(root), "--jobs", "2",
             "--quiet"],
            ["score", str(root / "demo"), "--metric", "stoi", "--quant", "all", "--min-per-level", "1"],
        ])

    return built_once(tmp_path_factory, "demo-store", build) / "demo"


@pytest.fixture(scope="session")
def demo_recipe_store(demo_store: Path, tmp_path_factory) -> Path:
    """The demo store's superset and Fixed-SNR mixes built again from the same corpus and
    seed with ``--mixes recipe`` (its test sets as audio: the demo's unseen noise is 44.1 kHz,
    see README "Recipe stores"), and the same STOI levels."""
    corpus = demo_store.parent / "corpus"

    def build(root: Path) -> None:
        run_prep([
            ["superset", "--corpus", "demo", "--root", str(corpus), "--out", str(root), "--bins", "5",
             "--metrics", "stoi", "--jobs", "2", "--quiet", "--mixes", "recipe"],
            ["testsets", "--corpus", "demo", "--root", str(corpus), "--out", str(root), "--metrics", "stoi",
             "--jobs", "2", "--quiet"],
            ["fixed-snr", "--corpus", "demo", "--root", str(corpus), "--out", str(root), "--jobs", "2", "--quiet",
             "--mixes", "recipe"],
            ["score", str(root / "demo"), "--metric", "stoi", "--quant", "all", "--min-per-level", "1"],
        ])

    return built_once(tmp_path_factory, "demo-recipe-store", build) / "demo"

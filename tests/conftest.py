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

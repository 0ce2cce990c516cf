"""The import contract of README "Architecture", as CI runs it (lint-imports)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("shards", "scoring", "mixer", "trainer")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail(f"{exe}: import-linter is a test dependency (pip install -e '.[test]')")
    # PYTHONPATH=root: the copy's packages, not the installed ones, are analysed
    return subprocess.run([str(exe), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def copy_project(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_tree_keeps_every_contract(tmp_path):
    result = lint_imports(copy_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("source, target", [("shards", "mixer"), ("trainer", "scoring"), ("scoring", "mixer")])
def test_a_forbidden_import_fails_the_check(tmp_path, source, target):
    root = copy_project(tmp_path)
    (root / source / "stray.py").write_text(f"import {target}.{'records' if target == 'mixer' else 'metrics'}\n")
    result = lint_imports(root)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout

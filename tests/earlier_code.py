"""Build a store with the project's code as it was at an earlier commit, to compare today's
build with it byte for byte on the machine the tests run on.

Why not pinned digests: a mix's last bits, so its FLAC and JSON members, depend on the
machine numpy and its BLAS run on (they pick kernels by CPU features), so digests recorded
on one machine are not the bytes another builds. Seen: digests pinned on an earlier machine
failed on an AVX2 one without AVX-512 for the earlier code and today's alike, while the two
builds agreed there. Built here by both versions of the code, the two stores must agree.

The earlier code is taken from the repository's history (``git archive``) and run in a
subprocess with the same interpreter and packages. Without git or that history (a source
tarball) the comparison cannot be made and the test says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mixer", "scoring", "shards")


def _source(commit: str, where: Path) -> Path:
    """The project's packages at ``commit``, unpacked once under ``where``."""
    target = where / f"code-{commit}"
    if (target / "mixer").is_dir():
        return target
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the build of an earlier commit cannot be made")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, *PACKAGES],
                             capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {commit} is not in this checkout's history (a source copy without git history?): "
                    f"{archive.stderr.decode(errors='replace').strip()[:200]}")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def prep_at(commit: str, args: list[str], where: Path) -> None:
    """Run ``prep ARGS`` with the code of ``commit`` (cwd: ``where``)."""
    code = _source(commit, where)
    env = {**os.environ, "PYTHONPATH": str(code)}
    run = subprocess.run([sys.executable, "-c", "import sys; from mixer.cli import app; app(sys.argv[1:], 'prep')",
                          *args], cwd=where, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"prep at {commit} failed: {run.stdout[-2000:]}{run.stderr[-2000:]}"


def store_digests(store: Path, root: Path, with_manifest: bool = True) -> dict[str, str]:
    """sha256 of every shard tar, the table and the rejects; the manifest's without its
    package versions and with ``root`` (where the store's inputs lay) written as ROOT."""
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    found = {p.name: digest(p) for p in sorted((store / "shards").glob("*.tar"))}
    found.update({name: digest(store / name) for name in ("metadata.parquet", "rejects.csv")})
    if with_manifest:
        manifest = json.loads((store / "manifest.json").read_text())
        manifest.pop("versions")
        text = json.dumps(manifest, sort_keys=True).replace(str(root), "ROOT")
        found["manifest.json"] = hashlib.sha256(text.encode()).hexdigest()
    return found

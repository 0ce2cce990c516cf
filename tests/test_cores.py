"""Process facts the build reports: the peak memory of a worker is its own, not its parent's."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shards.cores import peak_rss_bytes

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_a_child_reports_its_own_peak_not_the_parents():
    held = np.ones(48 * 2**20)  # 384 MiB of float64 held by this process while the child runs
    held[::4096] += 1  # touch every page
    assert peak_rss_bytes() > 380 * 2**20
    child = subprocess.run([sys.executable, "-c", "from shards.cores import peak_rss_bytes; print(peak_rss_bytes())"],
                           cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(child.stdout) < 200 * 2**20  # an interpreter with numpy: tens of MiB, not the parent's peak
    del held

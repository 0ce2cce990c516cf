"""How many CPU cores this process may use, and how much memory it has held at most."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, so a job limited with taskset
    or a container's cpuset counts only its own), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def peak_rss_bytes() -> int:
    """This process's own peak resident memory. Linux's ``VmHWM`` belongs to the process's
    address space; ``ru_maxrss`` is carried across fork and exec from the parent, so a worker
    started by a large process would report the parent's peak. ``ru_maxrss`` only where
    ``/proc`` is absent (macOS: bytes there, KiB on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024

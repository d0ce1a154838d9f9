"""Shared helpers of the benchmark scripts: locating Emo-DB, timing whole processes, peak RSS."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def emodb_root(arg: str | None) -> Path:
    root = Path(arg or os.environ.get("FEATUREKIT_EMODB") or REPO.parent / "shared" / "data" / "emodb")
    if not (root / "wav").is_dir():
        sys.exit(f"Emo-DB not found at {root}: pass --root or set FEATUREKIT_EMODB")
    return root


def timed(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Run a whole process; wall seconds and the completed process (raises on failure)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(
            f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n"
            f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        )
    return dt, r


def children_peak_rss_mb() -> float:
    """Peak resident set size of the largest finished child process, in MiB (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def featurekit_cmd() -> list[str]:
    return [sys.executable, "-m", "featurekit"]

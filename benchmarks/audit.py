"""Design-audit benchmark: seconds per check on a large synthetic manifest (no audio is read).

A seeded manifest of ``--utterances`` rows, ``--speakers`` speakers (leave-one-speaker-out: one fold
per speaker), 4 labels, a transcript column with ``--transcripts`` distinct values, content
fingerprints with ``--copies`` duplicated pairs, and per-speaker normalisation; prints the seconds of
each registered check (:mod:`featurekit.audit`) and their total.

Usage::

    python benchmarks/audit.py                      # 100,000 utterances, 1,000 speakers / folds
    python benchmarks/audit.py --utterances 10000 --speakers 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# `python benchmarks/audit.py` puts benchmarks/ first on sys.path, where benchmarks/ssl.py would shadow the
# standard library's ssl module (imported by joblib through asyncio)
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from featurekit.audit import CHECKS, AuditContext, CellPlan  # noqa: E402
from featurekit.evaluation.protocols import PROTOCOLS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--utterances", type=int, default=100_000)
    p.add_argument("--speakers", type=int, default=1_000)
    p.add_argument("--transcripts", type=int, default=20_000)
    p.add_argument("--copies", type=int, default=1_000, help="pairs of utterances with identical audio")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    n = args.utterances
    m = pd.DataFrame({
        "id": [f"u{i}" for i in range(n)],
        "path": "unused",
        "speaker": rng.integers(0, args.speakers, n).astype(str),
        "label": rng.choice(list("abcd"), n),
        "transcript": rng.integers(0, args.transcripts, n).astype(str),
    })
    m["session"] = m["speaker"]
    fingerprints = [f"f{i}" for i in range(n)]
    for i in range(0, 2 * min(args.copies, n // 2), 2):
        fingerprints[i + 1] = fingerprints[i]
    t = time.perf_counter()
    folds = PROTOCOLS.get("loso").folds(m, group="speaker")
    print(f"{n} utterances, {len(folds)} folds (built in {time.perf_counter() - t:.2f} s)")
    ctx = AuditContext(m, folds, cells=[CellPlan("egemaps", False, "speaker")], fingerprints=fingerprints)
    total = 0.0
    for name in CHECKS.names():
        t = time.perf_counter()
        findings = CHECKS.get(name).run(ctx)
        s = time.perf_counter() - t
        total += s
        print(f"  {name:24s} {s:7.2f} s  {', '.join(f.severity.value for f in findings)}")
    print(f"  {'total':24s} {total:7.2f} s")


if __name__ == "__main__":
    main()

"""Deep-head benchmark: wall time (and UAR) of a GRU leave-one-speaker-out run on Emo-DB MFCC LLD
sequences, on the CPU, and on a GPU when one is available (``torch.cuda.is_available()``).

Runs through ``featurekit.evaluation.run`` exactly as ``pipelines/emodb.toml`` does; features come
from (and are added to) the store.

    python benchmarks/deep.py [--root ../shared/data/emodb] [--store store] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# benchmarks/ssl.py (the name the issue asks for) would shadow the standard ssl module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.append(str(HERE))
from _common import emodb_root  # noqa: E402

GRU = "gru(64, bidirectional) -> attention_pool -> dense(64) -> dropout(0.3)"


def spec(device: str, threads: int) -> dict:
    return {
        "name": "bench_gru",
        "seed": 0,
        "corpus": {"name": "emodb"},
        "task": {"type": "classification", "target": "label"},
        "protocol": {"name": "loso", "group": "speaker"},
        "features": {"sets": ["mfcc.lld"]},
        "extractors": {"mfcc": {"hop_length": 320}},
        "evaluation": {"normalisation": ["speaker"], "bootstrap": 0},
        "models": {
            "gru": {
                "params": {
                    "layers": GRU,
                    "max_epochs": 40,
                    "patience": 8,
                    "batch_size": 32,
                    "n_threads": threads,
                    "device": device,
                }
            }
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root")
    ap.add_argument("--store", default="store")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    root = emodb_root(args.root)
    import torch

    from featurekit.evaluation import run, validate

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if len(devices) == 1:
        print("no CUDA device here: GPU timing skipped")
    for device in devices:
        out = Path(tempfile.mkdtemp(prefix=f"fk-bench-deep-{device}-"))
        try:
            t0 = time.perf_counter()
            df = run(
                validate(spec(device, args.threads)), root, out, store=args.store, jobs=1, progress=False
            )
            dt = time.perf_counter() - t0
            sel = df[(df.metric == "uar") & df.fold.isin(["mean", "pooled"])].set_index("fold")["value"]
            print(
                f"GRU LOSO on Emo-DB mfcc.lld ({device}, {args.threads} threads): {dt:.0f} s, "
                f"UAR {sel['mean']:.3f} (pooled {sel['pooled']:.3f})",
                flush=True,
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Deep-head benchmark on Emo-DB: per spectrogram preset, seconds per epoch and the LOSO wall time,
on the CPU (``--threads``, default 2) and on a GPU when one is available (fp32 and mixed precision);
optionally (``--gru``) the wall time and UAR of a whole GRU LOSO run on MFCC LLD sequences.

Preset inputs are the store's frame tables with the published extractor parameters (window 1024, hop
256, 128 mel bands / 40 MFCCs), extracted into (or read from) ``--store``. Seconds per epoch are
measured by training the preset at its published size on the first LOSO training fold (``--limit``
utterances of it, default all) for ``--epochs`` epochs, after an untimed one-epoch warm-up fit on its
16 longest utterances; the LOSO wall time is measured with
``--loso`` (a whole evaluation run at ``--loso-epochs`` epochs per fold), otherwise projected as
folds x the preset's ``max_epochs`` x seconds per epoch and labelled "projected".

    python benchmarks/deep.py [--root ../shared/data/emodb] [--store store] [--threads 2]
        [--presets cnn_lstm_mel fcn_mfcc] [--epochs 1] [--limit 64] [--loso --loso-epochs 2] [--gru]
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
PUBLISHED = {"n_fft": 1024, "win_length": 1024, "hop_length": 256}


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


def preset_spec(name: str, params: dict) -> dict:
    from featurekit.heads.presets import SPECTROGRAM_INPUTS

    return {
        "name": f"bench_{name}",
        "seed": 0,
        "corpus": {"name": "emodb"},
        "task": {"type": "classification", "target": "label"},
        "protocol": {"name": "loso", "group": "speaker"},
        "features": {"sets": [SPECTROGRAM_INPUTS[name]]},
        "extractors": {"logmel": dict(PUBLISHED, n_mels=128), "mfcc": dict(PUBLISHED, n_mfcc=40)},
        "evaluation": {"normalisation": ["global"], "bootstrap": 0},
        "models": {name: {"params": params}},
    }


def gru_loso(root: Path, store: str, threads: int, devices: list[str]) -> None:
    from featurekit.evaluation import run, validate

    for device in devices:
        out = Path(tempfile.mkdtemp(prefix=f"fk-bench-deep-{device}-"))
        try:
            t0 = time.perf_counter()
            df = run(validate(spec(device, threads)), root, out, store=store, jobs=1, progress=False)
            dt = time.perf_counter() - t0
            sel = df[(df.metric == "uar") & df.fold.isin(["mean", "pooled"])].set_index("fold")["value"]
            print(
                f"GRU LOSO on Emo-DB mfcc.lld ({device}, {threads} threads): {dt:.0f} s, "
                f"UAR {sel['mean']:.3f} (pooled {sel['pooled']:.3f})",
                flush=True,
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)


def preset_rows(name: str, root: Path, args: argparse.Namespace, runs: list[tuple[str, bool]]) -> None:
    from featurekit.evaluation import run, validate
    from featurekit.evaluation import runner as R
    from featurekit.executor import executor_for
    from featurekit.heads import make_head
    from featurekit.heads.presets import PRESET_PARAMS

    s = validate(preset_spec(name, {}))
    manifest = R.prepare_manifest(s, R.load_corpus_for(s, root))
    data = R.FeatureData.load(s, manifest, R.FeatureStore(args.store),
                              executor=executor_for(jobs=args.threads), progress=False)
    seqs = data.sequences(s.feature_sets[0])
    folds = R.make_folds(s, manifest)
    train = folds[0].train[: args.limit] if args.limit else folds[0].train
    labels = manifest["label"].to_numpy()
    full = len(folds[0].train)
    max_epochs = PRESET_PARAMS[name]["max_epochs"]
    for device, amp in runs:
        label = f"{device}{' amp' if amp else ' fp32' if device == 'cuda' else f' {args.threads} threads'}"
        kw = {"patience": None, "validation_fraction": None, "random_state": 0, "device": device,
              "n_threads": args.threads if device == "cpu" else None, "mixed_precision": amp}

        def head(epochs: int, kw: dict = kw):
            return make_head(name, max_epochs=epochs, **kw)

        # warm-up (thread pools, allocator, CUDA context and kernels), not timed
        warm = sorted(train, key=lambda i: len(seqs[i]))[-16:]  # long enough for fixed_len
        head(1).fit(seqs[warm], labels[warm])
        t0 = time.perf_counter()
        head(args.epochs).fit(seqs[train], labels[train])
        per_epoch = (time.perf_counter() - t0) / args.epochs * full / len(train)
        scaled = "" if len(train) == full else f" (timed on {len(train)} of {full} utterances, scaled)"
        line = f"{name} [{label}]: {per_epoch:.1f} s/epoch on a {full}-utterance training fold{scaled}"
        if args.loso:
            params = {"max_epochs": args.loso_epochs, "patience": None, "validation_fraction": None,
                      "device": device, "mixed_precision": amp}
            if device == "cpu":
                params["n_threads"] = args.threads
            out = Path(tempfile.mkdtemp(prefix=f"fk-bench-{name}-"))
            try:
                t0 = time.perf_counter()
                df = run(validate(preset_spec(name, params)), root, out, store=args.store, jobs=1,
                         progress=False)
                wall = time.perf_counter() - t0
                uar = df[(df.metric == "uar") & (df.fold == "mean")]["value"].item()
                line += (f"; LOSO ({len(folds)} folds x {args.loso_epochs} epochs) measured {wall:.0f} s, "
                         f"UAR {uar:.3f}")
            finally:
                shutil.rmtree(out, ignore_errors=True)
        else:
            line += (f"; LOSO projected {len(folds)} folds x {max_epochs} epochs = "
                     f"{len(folds) * max_epochs * per_epoch / 3600:.1f} h")
        print(line, flush=True)


def main() -> None:
    from featurekit.heads.presets import SPECTROGRAM_INPUTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root")
    ap.add_argument("--store", default="store")
    ap.add_argument("--threads", type=int, default=2)
    names = sorted(SPECTROGRAM_INPUTS)
    ap.add_argument("--presets", nargs="+", default=names, choices=names)
    ap.add_argument("--epochs", type=int, default=1, help="epochs timed per preset and device")
    ap.add_argument("--limit", type=int, default=0, help="time on this many training utterances (0: all)")
    ap.add_argument("--loso", action="store_true", help="also run a whole LOSO evaluation per preset")
    ap.add_argument("--loso-epochs", type=int, default=2)
    ap.add_argument("--gru", action="store_true", help="also the GRU LOSO run on MFCC LLD sequences")
    args = ap.parse_args()
    root = emodb_root(args.root)
    import torch

    runs = [("cpu", False)]
    if torch.cuda.is_available():
        runs += [("cuda", False), ("cuda", True)]
    else:
        print("no CUDA device here: GPU timing skipped", flush=True)
    for name in args.presets:
        preset_rows(name, root, args, runs)
    if args.gru:
        gru_loso(root, args.store, args.threads, [d for d, amp in runs if not amp])


if __name__ == "__main__":
    main()

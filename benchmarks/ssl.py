"""Benchmark the pretrained-encoder extractors on Emo-DB.

1. ``whisper_ct2`` (faster-whisper tiny.en) on all Emo-DB files, per variant (``pad_to`` x
   ``compute_type``): utterances/s, real-time factor (encoder seconds / audio seconds) and
   leave-one-speaker-out UAR (linear SVM via :func:`featurekit.evaluation.evaluate_table`, with
   and without per-speaker normalisation).
2. ``hf_encoder`` on a randomly initialised wav2vec2 of base size (12 layers, hidden 768) built in
   a temporary directory: utterances/s on CPU, and on CUDA when torch sees a GPU.

Audio is decoded once up front (not timed); model loading is timed separately from encoding.

Usage::

    python benchmarks/ssl.py [--root ../shared/data/emodb] [--model DIR] [--limit N]
        [--variants 30s:default,none:default,2:default,none:int8,30s:int8] [--skip-wav2vec2]
        [--skip-uar]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
# This file is named ssl.py: run as a script, its folder heads sys.path and would shadow the standard
# library's ssl module (which numpy, pandas, sklearn and joblib import). So the folder is dropped
# and everything beyond the standard library is imported inside the functions.
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    del sys.path[0]

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DEFAULT_ROOT = os.environ.get("FEATUREKIT_EMODB") or str(HERE.parent.parent / "shared" / "data" / "emodb")
DEFAULT_MODEL = (os.environ.get("FEATUREKIT_WHISPER_TINY")
                 or str(HERE.parent.parent / "shared" / "models" / "faster-whisper-tiny.en"))
DEFAULT_VARIANTS = "30s:default,none:default,2:default,none:int8,30s:int8"
SR = 16000


def load_signals(root: str, limit: int | None) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Emo-DB manifest (optionally ``limit`` files spread evenly over it, so every speaker stays)
    and the decoded 16 kHz signals."""
    from featurekit.audio import load_audio
    from featurekit.corpora import load_corpus

    manifest = load_corpus("emodb", root, listening_test=False)
    if limit and limit < len(manifest):
        step = len(manifest) / limit
        manifest = manifest.iloc[[int(i * step) for i in range(limit)]]
    return manifest, [load_audio(p) for p in manifest["path"]]


def time_extractor(ext, signals: list[np.ndarray], chunk: int) -> tuple[np.ndarray, list[str], float, float]:
    """Native features of every signal in chunks of ``chunk`` (as extraction batches them).

    Returns the ``(n, d)`` features, their names, model-load seconds and encoding seconds.
    """
    import numpy as np

    t0 = time.perf_counter()
    ext.native(signals[0][:SR], SR)  # loads the model (and warms up)
    load_s = time.perf_counter() - t0
    rows = []
    t0 = time.perf_counter()
    for i in range(0, len(signals), chunk):
        rows.extend(ext.native_batch(signals[i:i + chunk], SR))
    return np.stack([r.values for r in rows]), rows[0].names, load_s, time.perf_counter() - t0


def bench_whisper(args, manifest: pd.DataFrame, signals: list[np.ndarray]) -> list[dict]:
    import pandas as pd

    from featurekit.evaluation import evaluate_table
    from featurekit.extractors import make_extractor

    audio_s = sum(len(s) for s in signals) / SR
    results = []
    for variant in args.variants.split(","):
        pad_to, compute_type, batch_size = (variant.strip().split(":") + ["", ""])[:3]
        ext = make_extractor("whisper_ct2", model=args.model, pad_to=pad_to,
                             compute_type=compute_type or "default",
                             batch_size=int(batch_size or args.batch_size), threads=args.threads,
                             device=args.device)
        x, names, load_s, enc_s = time_extractor(ext, signals, args.chunk)
        features = pd.DataFrame(x, index=pd.Index(manifest["id"].to_numpy(), name="id"), columns=names)
        row = {"variant": variant, "utt_per_s": len(signals) / enc_s, "rtf": enc_s / audio_s,
               "load_s": load_s}
        for norm in () if args.skip_uar else ("speaker", "none"):
            row[f"uar_{norm}"] = evaluate_table(features, manifest, model="svm", normalisation=norm,
                                                protocol="loso_speaker", jobs=args.jobs)["uar"]
        results.append(row)
        uar = "" if args.skip_uar else (f"UAR {row['uar_speaker']:.3f} (speaker norm) "
                                        f"{row['uar_none']:.3f} (none)  ")
        print(f"  {variant:18s} {row['utt_per_s']:8.1f} utt/s  RTF {row['rtf']:.4f}  {uar}"
              f"load {load_s:.1f} s", flush=True)
    return results


def build_wav2vec2_base(directory: Path) -> Path:
    """A randomly initialised wav2vec2 of base size, saved like a hub checkpoint."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                            intermediate_size=3072)
    Wav2Vec2Model(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(directory)
    return directory


def bench_wav2vec2(args, signals: list[np.ndarray]) -> list[dict]:
    import torch

    from featurekit.extractors import make_extractor

    sigs = signals[:args.w2v_limit]
    audio_s = sum(len(s) for s in sigs) / SR
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_wav2vec2_base(Path(tmp) / "wav2vec2-base-random")
        for device in devices:
            ext = make_extractor("hf_encoder", model=str(path), device=device, batch_size=args.batch_size)
            _, names, load_s, enc_s = time_extractor(ext, sigs, args.chunk)
            row = {"device": device, "n": len(sigs), "utt_per_s": len(sigs) / enc_s, "rtf": enc_s / audio_s,
                   "load_s": load_s, "columns": len(names)}
            results.append(row)
            print(f"  wav2vec2-base (random) on {device}: {row['utt_per_s']:.2f} utt/s, RTF {row['rtf']:.4f} "
                  f"({len(sigs)} utterances, {len(names)} columns; load {load_s:.1f} s)", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=DEFAULT_ROOT, help="Emo-DB root (default: $FEATUREKIT_EMODB or "
                                                         "../shared/data/emodb)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="CTranslate2 Whisper model directory")
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help="comma-separated PAD_TO:COMPUTE_TYPE[:BATCH_SIZE] (pad_to: 30s, none or seconds)")
    p.add_argument("--limit", type=int, default=None, help="only N files spread over the corpus (quick runs)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk", type=int, default=16, help="utterances per native_batch call")
    p.add_argument("--threads", type=int, default=0, help="CTranslate2 intra_threads (0: its default)")
    p.add_argument("--device", default="cpu", help="whisper_ct2 device: cpu, cuda or auto")
    p.add_argument("--jobs", type=int, default=1, help="parallel evaluation folds")
    p.add_argument("--w2v-limit", type=int, default=48, help="utterances for the wav2vec2 throughput test")
    p.add_argument("--skip-whisper", action="store_true")
    p.add_argument("--skip-uar", action="store_true", help="timings only")
    p.add_argument("--skip-wav2vec2", action="store_true")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    manifest, signals = load_signals(args.root, args.limit)
    audio_s = sum(len(s) for s in signals) / SR
    print(f"Emo-DB at {args.root}: {len(signals)} utterances, {audio_s:.1f} s of audio "
          f"(decoded in {time.perf_counter() - t0:.1f} s); {os.cpu_count()} CPU cores")
    if not args.skip_whisper:
        print(f"whisper_ct2 ({args.model}); batch_size {args.batch_size}, threads {args.threads}:")
        results = bench_whisper(args, manifest, signals)
        ref = next((r for r in results if r["variant"].startswith("30s:default")), None)
        if ref is not None and not args.skip_uar:
            print("vs 30s padding (default compute type): " + "; ".join(
                f"{r['variant']}: {ref['rtf'] / r['rtf']:.1f}x faster, "
                f"UAR {r['uar_speaker'] - ref['uar_speaker']:+.3f}" for r in results if r is not ref))
    if not args.skip_wav2vec2:
        print("hf_encoder throughput:")
        bench_wav2vec2(args, signals)
    return 0


if __name__ == "__main__":
    sys.exit(main())

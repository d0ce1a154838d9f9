"""Whisper tiny.en on Emo-DB: ``whisper_ct2`` (CTranslate2, last layer) vs ``hf_encoder`` on the
converted model (transformers, all 5 hidden-state layers), at ``pad_to`` 30 s and 2 s.

The CTranslate2 folder is converted once into a temporary folder (``--converted DIR`` reuses one
written by ``featurekit encoder convert-whisper-ct2``). Audio is decoded up front; each extractor
loads its model and warms up on one file before the timed ``native_batch`` over ``--limit`` files
spread over the corpus. Both backends get ``--threads`` CPU threads. Prints wall seconds, the
process's CPU seconds (all threads; the fairer figure on a shared, busy machine), real-time factor
(wall seconds / audio seconds) and the largest difference between the two backends' last-layer
mean/std columns.

Usage::

    python benchmarks/whisper_layers.py [--root ../shared/data/emodb] [--model DIR] [--converted DIR]
        [--limit 20] [--threads 2] [--pads 2,30s]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# benchmarks/ssl.py would shadow the standard library's ssl module: the folder goes last on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.append(str(HERE))
from _common import REPO, emodb_root  # noqa: E402

DEFAULT_MODEL = os.environ.get("FEATUREKIT_WHISPER_TINY") or str(REPO.parent / "shared" / "models"
                                                                    / "faster-whisper-tiny.en")
SR = 16000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=None, help="Emo-DB folder (default: $FEATUREKIT_EMODB or ../shared)")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="CTranslate2 Whisper folder")
    ap.add_argument("--converted", default=None, help="an existing converted folder (default: convert now)")
    ap.add_argument("--limit", type=int, default=20, help="files, spread over the corpus (default 20)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per backend (default 2)")
    ap.add_argument("--pads", default="2,30s", help="pad_to values, comma separated (default 2,30s)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from featurekit.audio import load_audio
    from featurekit.extractors import make_extractor
    from featurekit.extractors.ssl.ct2_convert import convert_whisper_ct2

    torch.set_num_threads(args.threads)
    wavs = sorted((emodb_root(args.root) / "wav").glob("*.wav"))
    step = max(1, len(wavs) // args.limit)
    wavs = wavs[::step][:args.limit]
    sigs = [load_audio(w) for w in wavs]
    audio_s = sum(len(s) for s in sigs) / SR
    print(f"{len(sigs)} Emo-DB files, {audio_s:.1f} s of audio, {args.threads} threads, torch "
          f"{torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        converted = args.converted
        if converted is None:
            t0 = time.perf_counter()
            converted = str(convert_whisper_ct2(args.model, Path(tmp) / "whisper-hf"))
            print(f"conversion: {time.perf_counter() - t0:.1f} s")
        print(f"{'extractor':12s} {'pad_to':>6s} {'load s':>7s} {'encode s':>9s} {'CPU s':>7s} {'RTF':>6s} "
              f"{'layers':>6s}")
        last: dict[str, list] = {}
        for pad in args.pads.split(","):
            pad_to = pad if pad.endswith("s") or pad == "none" else float(pad)
            for name, params in (("whisper_ct2", {"model": args.model, "threads": args.threads}),
                                 ("hf_encoder", {"model": converted, "device": "cpu"})):
                ext = make_extractor(name, pad_to=pad_to, **params)
                t0 = time.perf_counter()
                ext.native(sigs[0], SR)
                load = time.perf_counter() - t0
                t0, c0 = time.perf_counter(), time.process_time()
                out = ext.native_batch(sigs, SR)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                layers = sorted({n.split("_L")[1][:2] for n in out[0].names})
                keep = [i for i, n in enumerate(out[0].names) if f"_L{layers[-1]}_" in n]
                last[f"{name} {pad}"] = [o.values[keep] for o in out]
                print(f"{name:12s} {pad:>6s} {load:7.2f} {dt:9.2f} {cpu:7.2f} {dt / audio_s:6.3f} "
                      f"{len(layers):6d}")
            a, b = last[f"whisper_ct2 {pad}"], last[f"hf_encoder {pad}"]
            print(f"  pad_to={pad}: max |whisper_ct2 - hf_encoder L{layers[-1]}| over mean/std columns: "
                  f"{max(float(np.abs(x - y).max()) for x, y in zip(a, b)):.2e}")


if __name__ == "__main__":
    main()

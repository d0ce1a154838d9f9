"""Sliding-window prediction benchmark: real-time factor and peak memory of ``featurekit predict``.

Builds a long recording (default 10 minutes) by concatenating Emo-DB utterances in a seeded random
order (written block by block to a temporary directory, 16 kHz PCM), trains eGeMAPS + linear SVM
(per-speaker normalisation) on all of Emo-DB with :func:`featurekit.deploy.train` (or uses the model
directory given by ``--model``), then, each in a fresh process:

1. ``featurekit.deploy.predict(model, [recording], window=3, hop=1)``: the real-time factor
   (processing seconds per second of audio; < 1 is faster than real time) and the peak RSS
   (``VmHWM``, or ``resource.getrusage`` off Linux), next to the RSS after imports and model loading;
2. the plain openSMILE call on the same windows (``opensmile.Smile(eGeMAPSv02, Functionals)
   .process_signal`` on each window of the whole decoded file, no model), for comparison.

Usage::

    python benchmarks/predict.py            # Emo-DB at $FEATUREKIT_EMODB or ../shared/data/emodb
    python benchmarks/predict.py --model models/emodb --minutes 60
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# `python benchmarks/predict.py` puts benchmarks/ first on sys.path, where benchmarks/ssl.py would shadow the
# standard library's ssl module (imported by asyncio/joblib); drop it, nothing here is imported from it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
SPEC = {
    "name": "emodb-egemaps-svm",
    "seed": 0,
    "corpus": {"name": "emodb"},
    "features": {"sets": ["egemaps"]},
    "evaluation": {"normalisation": ["speaker"]},
    "models": {"svm": {}},
}


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status (the high-water mark of this process image; ``ru_maxrss``
    would also count the parent's memory at fork time, kept across exec). Elsewhere ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru / 1024 if sys.platform != "darwin" else ru / 2**20


def build_recording(root: Path, out: Path, minutes: float, seed: int = 0) -> float:
    """Concatenate Emo-DB files (16 kHz) in a seeded random order into ``out``; returns its duration."""
    import numpy as np
    import soundfile as sf

    files = sorted((root / "wav").glob("*.wav"))
    if not files:
        raise SystemExit(f"{root}: no Emo-DB wav/*.wav files")
    order = np.random.default_rng(seed).permutation(len(files))
    target = int(minutes * 60 * 16000)
    n = 0
    with sf.SoundFile(out, "w", 16000, 1, subtype="PCM_16") as f:
        i = 0
        while n < target:
            x, sr = sf.read(files[order[i % len(files)]], dtype="float32")
            assert sr == 16000, files[order[i % len(files)]]
            x = x[: target - n]
            f.write(x)
            n += len(x)
            i += 1
    return n / 16000


def _predict_child(model: str, audio: str, window: float, hop: float, queue) -> None:
    import numpy as np
    import soundfile as sf

    from featurekit.deploy import load_model, predict

    m = load_model(model)
    warm = Path(audio).with_name("warmup.wav")  # builds openSMILE's processor outside the timing
    sf.write(warm, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype("float32"), 16000)
    predict(m, [str(warm)])
    base = rss_mb()
    t0 = time.perf_counter()
    df = predict(m, [audio], window=window, hop=hop)
    seconds = time.perf_counter() - t0
    wins = df[df["level"] == "window"]
    queue.put({"seconds": seconds, "rss_base": base, "rss_peak": rss_mb(), "windows": len(wins),
               "errors": int(df["error"].notna().sum()),
               "spans": list(zip(wins["start"].tolist(), wins["end"].tolist())),
               "label": df[df["level"] == "file"]["label"].iloc[0]})


def _opensmile_child(audio: str, spans: list[tuple[float, float]], queue) -> None:
    import opensmile
    import soundfile as sf

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    base = rss_mb()
    t0 = time.perf_counter()
    x, sr = sf.read(audio, dtype="float32")
    for start, end in spans:
        a = int(round(start * sr))
        smile.process_signal(x[a:a + int(round((end - start) * sr))], sr)
    queue.put({"seconds": time.perf_counter() - t0, "rss_base": base, "rss_peak": rss_mb()})


def _in_child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.environ.get("FEATUREKIT_EMODB", str(REPO.parent / "shared/data/emodb"))
    ap.add_argument("--root", default=default_root,
                    help="Emo-DB root (default: $FEATUREKIT_EMODB or ../shared/data/emodb)")
    ap.add_argument("--model", default=None, help="an existing model directory (default: train one)")
    ap.add_argument("--store", default=None, help="feature store for training (default: in --dir)")
    ap.add_argument("--dir", default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the recording (default 10)")
    ap.add_argument("--window", type=float, default=3.0)
    ap.add_argument("--hop", type=float, default=1.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="extraction workers for training")
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain openSMILE comparison")
    args = ap.parse_args(argv)

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="featurekit-bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    root = Path(args.root)
    audio = work / f"emodb-{args.minutes:g}min.wav"
    duration = build_recording(root, audio, args.minutes)
    print(f"recording: {audio} ({duration:.0f} s, {audio.stat().st_size / 2**20:.1f} MiB, 16 kHz PCM_16)")

    if args.model:
        model = Path(args.model)
        print(f"model: {model} (given)")
    else:
        from featurekit.deploy import train
        from featurekit.evaluation import validate

        model = work / "model"
        t0 = time.perf_counter()
        train(validate(SPEC), "egemaps:svm", root=root, out_dir=model, store=args.store or work / "store",
              jobs=args.jobs, overwrite=True)
        print(f"model: {model} (trained on all of Emo-DB in {time.perf_counter() - t0:.1f} s)")

    r = _in_child(_predict_child, str(model), str(audio), args.window, args.hop)
    print(f"\nwindows: {r['windows']} ({args.window:g} s, hop {args.hop:g} s); file label: {r['label']}; "
          f"{r['errors']} error rows")
    print(f"{'':36s} {'seconds':>8s} {'RTF':>7s} {'peak RSS':>9s} {'RSS before':>11s}")
    print(f"{'featurekit predict (streamed)':36s} {r['seconds']:8.1f} {r['seconds'] / duration:7.4f} "
          f"{r['rss_peak']:5.0f} MiB {r['rss_base']:7.0f} MiB")
    if not args.no_baseline:
        b = _in_child(_opensmile_child, str(audio), r["spans"])
        print(f"{'opensmile.process_signal per window':36s} {b['seconds']:8.1f} "
              f"{b['seconds'] / duration:7.4f} {b['rss_peak']:5.0f} MiB {b['rss_base']:7.0f} MiB")
        print(f"\nfeaturekit predict / plain openSMILE time: {r['seconds'] / b['seconds']:.2f}x")
    print("RTF = processing seconds per second of audio; RSS before = after imports and model loading "
          "(openSMILE: after import; it then decodes the whole file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

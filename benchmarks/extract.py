"""Extraction benchmark on all of Emo-DB: eGeMAPS + ComParE (openSMILE functionals), MFCC and pAA
(mean+std of their LLDs).

Prints: the cold wall time of ``featurekit extract`` with 2 jobs (a whole process, empty store),
the same work as a plain sequential loop calling each library directly (in a separate process),
their ratio (target <= 0.6), the warm-store time (rerun, nothing changed; target <= 2% of cold),
the time after changing one file (only its rows recomputed), and peak RSS.

    python benchmarks/extract.py [--root ../shared/data/emodb] [--jobs 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# benchmarks/ssl.py (the name the issue asks for) would shadow the standard ssl module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.append(str(HERE))
from _common import children_peak_rss_mb, emodb_root, featurekit_cmd, timed  # noqa: E402

FEATURES = "egemaps.native,compare.native,mfcc.mean_std,paa.mean_std"

PLAIN_LOOP = textwrap.dedent("""
    import glob, sys, time, numpy as np, soundfile as sf, librosa, opensmile
    from pyAudioAnalysis import ShortTermFeatures
    t0 = time.perf_counter()
    F = opensmile.FeatureLevel.Functionals
    eg = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=F)
    co = opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=F)
    rows = []
    for path in sorted(glob.glob(sys.argv[1] + "/wav/*.wav")):
        y, sr = sf.read(path, dtype="float32")
        a = eg.process_signal(y, sr).to_numpy()[0]
        b = co.process_signal(y, sr).to_numpy()[0]
        m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40, n_mels=128, n_fft=512, win_length=400, hop_length=160)
        x = y.astype(np.float64) * 2 ** 15
        p, _ = ShortTermFeatures.feature_extraction(x, sr, 800, 400, deltas=False)
        rows.append(np.concatenate([a, b, m.mean(1), m.std(1), p.mean(1), p.std(1)]))
    print(len(rows), len(rows[0]), time.perf_counter() - t0)
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    root = emodb_root(args.root)
    work = Path(tempfile.mkdtemp(prefix="fk-bench-extract-"))
    try:
        corpus = work / "emodb"
        shutil.copytree(root / "wav", corpus / "wav")  # a private copy: we change one file below
        shutil.copy(root / "erkennung.txt", corpus / "erkennung.txt")
        store = work / "store"
        cmd = [
            *featurekit_cmd(),
            "extract",
            "--corpus",
            "emodb",
            "--root",
            str(corpus),
            "--features",
            FEATURES,
            "--store",
            str(store),
            "--jobs",
            str(args.jobs),
            "--quiet",
        ]
        cold, r = timed(cmd)
        ours_rss = children_peak_rss_mb()
        print(r.stdout.strip())
        warm, _ = timed(cmd)
        import soundfile as sf

        changed = sorted((corpus / "wav").glob("*.wav"))[0]
        y, sr = sf.read(changed, dtype="int16")
        sf.write(changed, (y // 2).astype("int16"), sr, subtype="PCM_16")
        one, r1 = timed(cmd)
        plain, rp = timed([sys.executable, "-c", PLAIN_LOOP, str(corpus)])
        n, dims, _ = rp.stdout.split()
        print()
        print(f"features: {FEATURES} on {n} Emo-DB files ({dims} values per file in the plain loop)")
        print(
            f"featurekit extract, cold, {args.jobs} jobs (whole process): {cold:8.1f} s   "
            f"peak RSS {ours_rss:.0f} MiB"
        )
        print(f"plain sequential loop of direct library calls (whole process): {plain:8.1f} s")
        print(f"ratio featurekit / plain: {cold / plain:.2f}   (target <= 0.6)")
        print(
            f"warm store, nothing changed: {warm:.2f} s = {100 * warm / cold:.1f}% of cold   (target <= 2%)"
        )
        print(f"one file changed: {one:.2f} s; summary: {r1.stdout.strip().splitlines()[-1]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"(benchmark took {time.perf_counter() - t:.0f} s)")

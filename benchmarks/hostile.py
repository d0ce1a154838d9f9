"""Hostile-input figures: peak RSS of ``featurekit extract`` and ``featurekit predict`` on a 64 KB WAV
whose header declares 1 Hz (issue 12: it once drove memory past 6 GB), beside the same commands on the
intact file (16 kHz). The hostile file is refused from its header, before decoding.

    python benchmarks/hostile.py

Each figure is the peak resident set size of one whole ``featurekit`` process (a fresh child each
time). ``predict`` uses an SVM on MFCC means trained here on the seeded synthetic corpus.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.append(str(HERE))
from _common import featurekit_cmd  # noqa: E402

MEASURE = ("import resource, subprocess, sys; "
           "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
           "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
           "print(r.stdout[-400:], r.stderr[-400:], file=sys.stderr)")

SPEC = """
seed = 0
[corpus]
name = "synthetic"
[features]
sets = ["mfcc.mean_std"]
[evaluation]
normalisation = ["global"]
[models.svm]
grid = {kernel = ["linear"], C = [1.0]}
"""


def peak_rss(cmd: list[str]) -> tuple[int, float, str]:
    """(exit status, peak RSS in MiB, output tail) of one child process."""
    r = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True)
    code, mib = r.stdout.split()
    return int(code), float(mib), r.stderr.strip().replace("\n", " ")[-200:]


def main() -> None:
    import numpy as np
    import soundfile as sf

    work = Path(tempfile.mkdtemp(prefix="fk-bench-hostile-"))
    try:
        t = np.arange(32000) / 16000
        intact = work / "intact.wav"
        sf.write(intact, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000, subtype="PCM_16")
        hostile = work / "onehz.wav"
        b = bytearray(intact.read_bytes())
        struct.pack_into("<II", b, 24, 1, 2)  # sample rate 1 Hz, byte rate 2
        hostile.write_bytes(bytes(b))
        print(f"files: {intact.name} ({intact.stat().st_size} bytes, 16 kHz) and {hostile.name} (the same "
              f"bytes, header: 1 Hz, i.e. {32000} s of audio -> {32000 * 16000:,} samples at 16 kHz)")

        from featurekit.corpora.synthetic import make_synthetic_corpus
        from featurekit.deploy import train

        manifest = make_synthetic_corpus(work / "synthetic", n_speakers=3, n_per_class=2, duration=1.0)
        (work / "spec.toml").write_text(SPEC)
        model = train(work / "spec.toml", "mfcc.mean_std:svm", out_dir=work / "model", store=work / "store",
                      manifest=manifest, jobs=1)
        for f in (intact, hostile):
            (work / f"{f.stem}.csv").write_text(f"path,label,speaker\n{f},neutral,s1\n")
        rows = []
        for f in (intact, hostile):
            extract = [*featurekit_cmd(), "extract", "--corpus", "csv", "--root", str(work),
                       "--corpus-option", f"csv={f.stem}.csv", "--features", "mfcc,egemaps",
                       "--store", str(work / f"s-{f.stem}"), "--jobs", "1", "--quiet"]
            rows.append(("extract", f.name, *peak_rss(extract)))
            rows.append(("predict", f.name, *peak_rss([*featurekit_cmd(), "predict", str(model), str(f)])))
            rows.append(("predict --window 1", f.name,
                         *peak_rss([*featurekit_cmd(), "predict", str(model), str(f), "--window", "1"])))
        print(f"{'command':20s} {'file':12s} {'exit':>4s} {'peak RSS':>10s}")
        for cmd, name, code, mib, _ in rows:
            print(f"{cmd:20s} {name:12s} {code:4d} {mib:7.0f} MiB")
        for cmd, name, _code, _, tail in rows:
            if name == hostile.name:
                print(f"  {cmd}: {tail}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"(benchmark took {time.perf_counter() - t0:.0f} s)")

"""Scale benchmark: client memory and throughput of distributed extraction against the local backend.

Builds a synthetic corpus of ``--n`` short utterances (0.5 s; ``--distinct`` different signals, hard-linked
under different names, so writing 20,000 files takes seconds), starts ``featurekit cluster local`` in its
own process, and extracts ``mfcc.mean_std`` with :func:`featurekit.extraction.extract` on a ``DaskExecutor``,
printing this process's (the client's) peak RSS once n/4, n/2 and n utterances are in the store (the
target: flat, as results are flushed as they arrive and at most a window of tasks is in flight). Then it
extracts the same corpus with the local joblib backend (:func:`featurekit.extraction.extract`, same number
of worker processes) and prints both throughputs. Both backends are warmed up first (worker processes
started, libraries imported) on a separate store, so the numbers are steady-state.

Usage::

    python benchmarks/scale.py                    # 20,000 utterances, 2 workers
    python benchmarks/scale.py --n 4000 --workers 2 --dir /tmp/scale

The data is SYNTHETIC (featurekit.corpora.synthetic); it measures the machinery, not recognition.
"""

from __future__ import annotations

import os
import sys

# `python benchmarks/scale.py` puts benchmarks/ first on sys.path, where sibling scripts (ssl.py) would
# shadow standard-library modules of the same name (dask imports ssl); this script needs none of them.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402

from featurekit.audio import AudioOptions  # noqa: E402
from featurekit.corpora.synthetic import CLASSES, MANIFEST_NAME, SR, read_synthetic, synth_utterance  # noqa: E402
from featurekit.extraction import extract, parse_features  # noqa: E402
from featurekit.store import FeatureStore, FeatureTable  # noqa: E402

FEATURES = "mfcc"  # mfcc.mean_std: cheap
CORPUS = "synthetic"


def build_corpus(root: Path, n: int, *, distinct: int, duration: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """Write ``n`` utterances (``distinct`` different signals, hard-linked) and return the manifest."""
    import soundfile as sf

    if (root / MANIFEST_NAME).exists() and len(pd.read_csv(root / MANIFEST_NAME)) == n:
        return read_synthetic(root)
    shutil.rmtree(root, ignore_errors=True)
    (root / "src").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    labels = list(CLASSES)
    sources = []
    for k in range(distinct):
        female = k % 2 == 0
        f0 = rng.uniform(190, 230) if female else rng.uniform(100, 130)
        formants = tuple((1.15 if female else 1.0) * f * rng.uniform(0.93, 1.07) for f in (700, 1220, 2600))
        label = labels[k % len(labels)]
        y = synth_utterance(rng=rng, f0=f0, formants=formants, duration=duration, **CLASSES[label])
        path = root / "src" / f"{k:05d}.wav"
        sf.write(path, y, SR, subtype="PCM_16")
        sources.append((path, label))
    rows = []
    for i in range(n):
        src, label = sources[i % distinct]
        spk = f"s{i % 50:02d}"
        rel = Path("wav") / spk / f"u{i:06d}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(src, root / rel)
        rows.append({"id": f"u{i:06d}", "path": rel.as_posix(), "speaker": spk, "session": spk,
                     "label": label, "gender": "f" if (i % distinct) % 2 == 0 else "m"})
    pd.DataFrame(rows).to_csv(root / MANIFEST_NAME, index=False)
    return read_synthetic(root)


class PeakRSS:
    """Samples this process's resident memory every ``interval`` seconds; ``peak`` is the maximum so far."""

    def __init__(self, interval: float = 0.02) -> None:
        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def sample(self) -> int:
        rss = self._proc.memory_info().rss
        self.peak = max(self.peak, rss)
        return rss

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class MilestoneStore(FeatureStore):
    """A store that reports, when the rows appended cross each milestone, the client's peak RSS so far."""

    def __init__(self, root: Path, milestones: list[int], rss: PeakRSS, t0: float) -> None:
        super().__init__(root)
        self.milestones = sorted(milestones)
        self.rss = rss
        self.t0 = t0
        self.rows = 0
        self.seen: list[tuple[int, float, float, float]] = []  # (rows, seconds, peak MiB, current MiB)

    def table(self, *args, **kwargs) -> FeatureTable:
        table = super().table(*args, **kwargs)
        store = self

        class Counting(FeatureTable):
            def append(self, df: pd.DataFrame):
                path = super().append(df)
                store._count(len(df))
                return path

        return Counting(table.directory, table.key)

    def _count(self, n: int) -> None:
        before, self.rows = self.rows, self.rows + n
        current = self.rss.sample()
        for m in self.milestones:
            if before < m <= self.rows:
                secs = time.perf_counter() - self.t0
                self.seen.append((self.rows, secs, self.rss.peak / 2**20, current / 2**20))


class CPUTime:
    """CPU seconds (user + system) used by some processes and their descendants between start and stop."""

    def __init__(self, *roots: int) -> None:
        self.roots = roots
        self.seconds = 0.0

    def _now(self) -> dict[int, float]:
        out = {}
        for root in self.roots:
            try:
                top = psutil.Process(root)
                procs = [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in procs:
                try:
                    t = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                out[proc.pid] = t.user + t.system
        return out

    def __enter__(self) -> CPUTime:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.seconds = sum(v - self._start.get(pid, 0.0) for pid, v in end.items())


def start_cluster(workers: int) -> tuple[subprocess.Popen, str]:
    """``featurekit cluster local`` in its own process group; returns it and the scheduler address."""
    cli = "import sys; from featurekit.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", cli, "cluster", "local", "--workers", str(workers),
                             "--threads-per-worker", "1", "--port", "0", "--dashboard-port", "-1"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stdout:
        if line.startswith("scheduler:"):
            return proc, line.split()[1]
    raise RuntimeError(f"featurekit cluster local exited with {proc.wait()}")


def stop_cluster(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="utterances (default 20000)")
    p.add_argument("--distinct", type=int, default=300, help="different signals among them (default 300)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of both backends (default 2)")
    p.add_argument("--repeat", type=int, default=1,
                   help="timed runs of each backend, alternating (default 1; the median is reported)")
    p.add_argument("--dir", default=None, help="working directory (default: a temporary one, removed)")
    p.add_argument("--skip-local", action="store_true", help="only the distributed run")
    args = p.parse_args(argv)

    from featurekit.executor import DaskExecutor

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="featurekit-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    requests = parse_features(FEATURES)
    audio = AudioOptions()
    t = time.perf_counter()
    manifest = build_corpus(base / "corpus", args.n, distinct=args.distinct)
    print(f"corpus: {len(manifest)} utterances of 0.5 s ({args.distinct} distinct signals) in "
          f"{time.perf_counter() - t:.1f} s at {base / 'corpus'}; {os.cpu_count()} cores, "
          f"{args.workers} workers; load average {os.getloadavg()[0]:.1f}", flush=True)
    warm = manifest.iloc[:max(8, 4 * args.workers)]
    milestones = [args.n // 4, args.n // 2, args.n]
    runs: dict[str, list[tuple[float, float]]] = {"distributed": [], "local": []}  # (seconds, CPU seconds)
    first: MilestoneStore | None = None
    dist_peak = local_peak = 0.0
    proc, address = start_cluster(args.workers)
    try:
        extract(warm, requests, FeatureStore(base / "store-warm"), corpus=CORPUS, audio=audio,
                executor=DaskExecutor(address), progress=False)
        if not args.skip_local:
            extract(warm, requests, FeatureStore(base / "store-warm-local"), corpus=CORPUS, audio=audio,
                    jobs=args.workers, progress=False)
        for _ in range(args.repeat):
            shutil.rmtree(base / "store-dist", ignore_errors=True)
            with PeakRSS() as rss, CPUTime(os.getpid(), proc.pid) as cpu:
                t0 = time.perf_counter()
                store = MilestoneStore(base / "store-dist", milestones, rss, t0)
                with DaskExecutor(address) as executor:
                    summary = extract(manifest, requests, store, corpus=CORPUS, audio=audio,
                                      executor=executor, progress=False)
                seconds = time.perf_counter() - t0
            assert summary.computed == args.n and not summary.failures, summary.lines()
            runs["distributed"].append((seconds, cpu.seconds))
            dist_peak = max(dist_peak, rss.peak / 2**20)
            first = first or store
            if args.skip_local:
                continue
            shutil.rmtree(base / "store-local", ignore_errors=True)
            # the cluster's processes are idle now; its CPU time is counted too, as for the distributed runs
            with PeakRSS() as rss, CPUTime(os.getpid(), proc.pid) as cpu:
                t0 = time.perf_counter()
                local = extract(manifest, requests, FeatureStore(base / "store-local"), corpus=CORPUS,
                                audio=audio, jobs=args.workers, progress=False)
                seconds = time.perf_counter() - t0
            assert local.computed == args.n and not local.failures, local.lines()
            runs["local"].append((seconds, cpu.seconds))
            local_peak = max(local_peak, rss.peak / 2**20)
    finally:
        stop_cluster(proc)

    assert first is not None
    print(f"\nclient peak RSS, distributed ({address}, {args.workers} workers; first run):")
    print(f"{'utterances':>10s} {'seconds':>8s} {'peak RSS MiB':>13s} {'RSS MiB':>8s}")
    for rows, secs, peak, current in first.seen:
        print(f"{rows:10d} {secs:8.1f} {peak:13.0f} {current:8.0f}")
    print(f"whole run (incl. final compaction): peak {dist_peak:.0f} MiB" +
          ("" if args.skip_local else f"; local joblib backend: peak {local_peak:.0f} MiB"))
    print(f"\n{'backend':12s} {'seconds':>8s} {'utt/s':>7s} {'CPU ms/utt':>11s}   (median of {args.repeat}; "
          f"CPU: client + cluster/joblib processes)")
    medians = {}
    for name, rs in runs.items():
        if rs:
            secs, cpu_s = float(np.median([r[0] for r in rs])), float(np.median([r[1] for r in rs]))
            medians[name] = secs
            print(f"{name:12s} {secs:8.1f} {args.n / secs:7.0f} {1000 * cpu_s / args.n:11.2f}")
    if len(medians) == 2:
        print(f"distributed / local throughput: {medians['local'] / medians['distributed']:.2f}")
        a, b = (FeatureStore(base / d).tables(CORPUS)[0].read().sort_values("id").reset_index(drop=True)
                for d in ("store-dist", "store-local"))
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6)
        print("the two stores hold the same rows")
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

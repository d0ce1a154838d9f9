"""The Dask executor (featurekit.executor.DaskExecutor) on a real dask.distributed LocalCluster
(loopback, 2 worker processes).

Distributed extraction and evaluation must equal the local backends; a worker killed mid-run must
leave a complete store without duplicate rows; errors must say what to do.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from featurekit.corpora.synthetic import make_synthetic_corpus  # noqa: E402
from featurekit.executor import DaskExecutor  # noqa: E402
from featurekit.extraction import extract, parse_features  # noqa: E402
from featurekit.store import FeatureStore  # noqa: E402

FEATURES = "mfcc,egemaps"  # mfcc.mean_std, egemaps.native, egemaps.mean_std
CORPUS = "synthetic"


def _cluster(**config) -> distributed.LocalCluster:
    import dask

    with dask.config.set(config):
        return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                        dashboard_address=":0", silence_logs=logging.ERROR)


@pytest.fixture(scope="module")
def cluster():
    c = _cluster()
    yield c
    c.close()


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2)
        yield c


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_synthetic_corpus(root, n_speakers=3, n_per_class=2, duration=1.0, seed=0)


@pytest.fixture(scope="module")
def local_store(corpus, tmp_path_factory) -> FeatureStore:
    """The reference: the same corpus extracted by the local backend."""
    store = FeatureStore(tmp_path_factory.mktemp("local-store"))
    summary = extract(corpus[1], parse_features(FEATURES), store, corpus=CORPUS, jobs=1, progress=False)
    assert summary.computed == 3 * len(corpus[1]) and not summary.failures
    return store


def _tables(store: FeatureStore) -> dict[str, pd.DataFrame]:
    return {str(t.directory.relative_to(store.root)): t.read().sort_values("id").reset_index(drop=True)
            for t in store.tables(CORPUS)}


def assert_same_store(store: FeatureStore, reference: FeatureStore) -> None:
    """Same tables, same (id, fingerprint) keys, no duplicate rows in any part, values to float tolerance."""
    got, want = _tables(store), _tables(reference)
    assert sorted(got) == sorted(want)
    for name, ref in want.items():
        table = next(t for t in store.tables(CORPUS) if str(t.directory.relative_to(store.root)) == name)
        keys = table.keys().sort_values("id").reset_index(drop=True)
        pd.testing.assert_frame_equal(keys, ref[["id", "fingerprint"]], check_dtype=False)
        raw = pd.concat([pd.read_parquet(p, columns=["id", "fingerprint"]) for p in table.parts()])
        assert not raw.duplicated().any(), f"{name}: duplicate rows written"
        pd.testing.assert_frame_equal(got[name], ref, check_exact=False, rtol=1e-5, atol=1e-6)


# -- extraction ------------------------------------------------------------------------------------
def test_extract_distributed_equals_local(corpus, local_store, cluster, client, tmp_path, monkeypatch):
    root, manifest = corpus
    store = FeatureStore(tmp_path / "store")
    with DaskExecutor(cluster.scheduler_address, max_in_flight=3) as executor:
        summary = extract(manifest, parse_features(FEATURES), store, corpus=CORPUS, executor=executor,
                          chunk_size=3, flush_every=5, progress=False)
    assert summary.computed == 3 * len(manifest) and summary.cache_hits == 0 and not summary.failures
    assert summary.tables == {"mfcc.mean_std": (24, 80), "egemaps.native": (24, 88),
                              "egemaps.mean_std": (24, 50)}
    assert_same_store(store, local_store)

    # a rerun finds everything stored; the scheduler comes from FEATUREKIT_SCHEDULER
    monkeypatch.setenv("FEATUREKIT_SCHEDULER", cluster.scheduler_address)
    with DaskExecutor() as executor:
        again = extract(manifest, parse_features(FEATURES), store, corpus=CORPUS, executor=executor,
                        progress=False)
    assert again.computed == 0 and again.cache_hits == 3 * len(manifest)


def test_cli_extract_with_scheduler(corpus, local_store, cluster, tmp_path):
    from featurekit.cli import main

    root, manifest = corpus
    rc = main(["extract", "--corpus", CORPUS, "--root", str(root), "--features", "mfcc", "--store",
               str(tmp_path / "store"), "--scheduler", cluster.scheduler_address, "--quiet"])
    assert rc == 0
    got = _tables(FeatureStore(tmp_path / "store"))
    want = _tables(local_store)
    assert len(got) == 1
    name = next(iter(got))
    pd.testing.assert_frame_equal(got[name], want[name], check_exact=False, rtol=1e-5, atol=1e-6)


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


# -- DaskExecutor.map / the sliding window ---------------------------------------------------------
def _affine(x: np.ndarray, a: float, i: int) -> tuple[int, float]:
    return i, float(a * x.sum())


def _fail(i: int) -> int:
    if i == 3:
        raise ValueError("fold 3 is broken")
    return i


def test_dask_map_shares_large_arguments(cluster, client):
    big = np.arange(300_000, dtype=np.float64)  # 2.4 MB, shared by every call: sent once
    tasks = [(a, {"x": big, "a": float(a), "i": a}) for a in range(10)]
    submitted = []
    real_submit = client.submit

    def spy(fn, *args, **kw):
        submitted.append(fn)
        return real_submit(fn, *args, **kw)

    client.submit = spy
    try:
        executor = DaskExecutor(client, max_in_flight=3, share_min_bytes=1 << 20)
        out = dict(executor.map(_affine, tasks))
    finally:
        del client.submit
    assert out == {a: (a, a * float(big.sum())) for a in range(10)}
    assert len(submitted) == 10 + 1  # the ten calls and the array, once
    _wait_until(lambda: not client.futures)  # shared data and results are released

    with DaskExecutor(cluster.scheduler_address, retries=0) as executor, \
            pytest.raises(ValueError, match="fold 3 is broken") as info:
        list(executor.map(_fail, [(f"fold-{i}", {"i": i}) for i in range(6)]))
    assert "in task 'fold-3' of '_fail'" in info.value.__notes__


def test_sliding_window_is_bounded(client):
    from featurekit.executor.window import sliding_window

    outstanding, peak = [0], [0]

    def submit(i: int):
        outstanding[0] += 1
        peak[0] = max(peak[0], outstanding[0])
        return client.submit(time.sleep, 0.01 * (i % 3), pure=False)

    done = []
    for i, fut in sliding_window(client, iter(range(40)), submit, lambda: 4):
        fut.result()
        outstanding[0] -= 1
        done.append(i)
    # 4 in the window, plus the finished one handed to the caller while the next is submitted
    assert sorted(done) == list(range(40)) and peak[0] == 4 + 1


# -- evaluation ------------------------------------------------------------------------------------
SPEC = {
    "name": "dist",
    "seed": 0,
    "corpus": {"name": CORPUS},
    "task": {"type": "classification", "target": "label"},
    "protocol": {"name": "loso", "group": "speaker"},
    "features": {"sets": ["mfcc.mean_std", "egemaps"]},
    "evaluation": {"normalisation": ["speaker"], "balancing": "class_weight", "bootstrap": 20},
    "models": {"svm": {"grid": {"kernel": ["linear"], "C": [0.01, 1.0]}}},
}


def test_evaluation_distributed_equals_local(corpus, local_store, cluster, tmp_path):
    from featurekit.evaluation import run, validate

    root, _ = corpus
    local = run(validate(SPEC), root, tmp_path / "local", store=local_store.root, jobs=1, progress=False)
    dist = run(validate(SPEC), root, tmp_path / "dist", store=local_store.root, jobs=1, progress=False,
               scheduler=cluster.scheduler_address)
    assert len(local) > 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dist" / "results.csv"),
                                  pd.read_csv(tmp_path / "local" / "results.csv"))
    pd.testing.assert_frame_equal(dist, local)


# -- errors and the CLI ----------------------------------------------------------------------------
def test_unreachable_scheduler_and_missing_address(corpus, tmp_path, monkeypatch):
    from featurekit.executor import SchedulerError

    _, manifest = corpus
    t0 = time.perf_counter()
    with pytest.raises(SchedulerError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        extract(manifest, parse_features("mfcc"), FeatureStore(tmp_path / "s"), corpus=CORPUS,
                executor=DaskExecutor("tcp://127.0.0.1:9", connect_timeout=1), progress=False)
    assert time.perf_counter() - t0 < 20
    with pytest.raises(SchedulerError, match="cannot reach"):
        DaskExecutor("tcp://127.0.0.1:9", connect_timeout=1).map(_fail, [(0, {"i": 0})])
    monkeypatch.delenv("FEATUREKIT_SCHEDULER", raising=False)
    with pytest.raises(SchedulerError, match="FEATUREKIT_SCHEDULER"):
        DaskExecutor().map(_fail, [(0, {"i": 0})])


def test_workers_with_other_versions_are_refused(corpus, cluster, tmp_path, monkeypatch):
    from featurekit import extraction
    from featurekit.executor import EnvironmentMismatchError

    # the client believes in other library versions than the workers have
    monkeypatch.setattr(extraction, "_library_versions", lambda names: tuple((n, "0.0-test") for n in names))
    with DaskExecutor(cluster.scheduler_address, retries=0) as executor, \
            pytest.raises(EnvironmentMismatchError, match="client 0.0-test"):
        extract(corpus[1], parse_features("mfcc"), FeatureStore(tmp_path / "s"), corpus=CORPUS,
                executor=executor, progress=False)


def test_missing_dask_names_the_extra(monkeypatch):
    from featurekit.executor import DaskNotInstalledError, executor_for

    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now raises ImportError
    with pytest.raises(DaskNotInstalledError, match=r"pip install featurekit\[dask\]"):
        executor_for(scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(DaskNotInstalledError, match=r"pip install featurekit\[dask\]"):
        DaskExecutor("tcp://127.0.0.1:8786").map(_fail, [(0, {"i": 0})])


def test_cli_import_is_cheap():
    code = ("import sys; from featurekit.cli import build_parser; build_parser(); "
            "print(any(m == 'dask' or m.startswith(('dask.', 'distributed')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_cluster_local_starts_and_stops_on_ctrl_c():
    cli = "import sys; from featurekit.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", cli, "cluster", "local", "--workers", "1", "--port", "0",
                             "--dashboard-port", "-1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("press Ctrl-C"):
                break
        address = next(ln.split()[1] for ln in lines if ln.startswith("scheduler:"))
        assert address.startswith("tcp://127.0.0.1:")
        assert any(ln.startswith("dashboard:") for ln in lines)
        with distributed.Client(address, timeout=30, set_as_default=False) as c:
            assert c.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopping the cluster" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


# -- a worker dies mid-run -------------------------------------------------------------------------
def _kill_a_busy_worker(client: distributed.Client, store_root: Path, record: dict) -> None:
    """After the first rows reach the store, SIGKILL a worker process that is running a task."""
    pids = client.run(os.getpid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(store_root.rglob("part-*.parquet")):
        time.sleep(0.01)
    while time.monotonic() < deadline:
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        if busy:
            record["parts_before"] = len(list(store_root.rglob("part-*.parquet")))
            os.kill(pids[busy[0]], signal.SIGKILL)
            record["killed"] = busy[0]
            return
        time.sleep(0.01)


def _extract_while_killing(cluster, corpus, store: FeatureStore, *, chunk_size: int):
    record: dict = {}
    with distributed.Client(cluster, set_as_default=False) as watcher:
        watcher.wait_for_workers(2)
        store.root.mkdir(parents=True, exist_ok=True)
        killer = threading.Thread(target=_kill_a_busy_worker, args=(watcher, store.root, record), daemon=True)
        killer.start()
        with DaskExecutor(cluster.scheduler_address, max_in_flight=2) as executor:
            summary = extract(corpus[1], parse_features(FEATURES), store, corpus=CORPUS, executor=executor,
                              chunk_size=chunk_size, flush_every=1, compact=False, progress=False)
        killer.join(timeout=5)
        watcher.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker
    assert "killed" in record, "no worker was killed during the run"
    return summary, record


def test_worker_killed_during_extraction(corpus, local_store, cluster, tmp_path):
    """dask reschedules the dead worker's task and recomputes results it held: nothing lost or doubled."""
    store = FeatureStore(tmp_path / "store")
    summary, record = _extract_while_killing(cluster, corpus, store, chunk_size=1)
    n_tasks = len(corpus[1])
    assert record["parts_before"] < 3 * n_tasks  # killed mid-run, not after the end
    assert not summary.failures and summary.computed == 3 * n_tasks
    assert_same_store(store, local_store)


def test_killed_worker_without_dask_retries(corpus, local_store, cluster, tmp_path, monkeypatch):
    """With allowed-failures=0 the killed task errs at once (KilledWorker): the client retries its chunk one
    utterance at a time, still giving a complete store without duplicates."""
    from featurekit.executor import cluster as dask_backend

    retried = []

    class SpyQueue(dask_backend.TaskQueue):
        def __next__(self):
            if self.retries:
                retried.append(self.retries[0][0])  # the task id: its chunk's first utterance
            return super().__next__()

    monkeypatch.setattr(dask_backend, "TaskQueue", SpyQueue)
    # distributed.scheduler.allowed-failures, changed on the running (in-process) scheduler
    monkeypatch.setattr(cluster.scheduler, "allowed_failures", 0)
    store = FeatureStore(tmp_path / "store")
    summary, record = _extract_while_killing(cluster, corpus, store, chunk_size=4)
    assert retried, "the killed chunk was not retried by the client"
    assert not summary.failures and summary.computed == 3 * len(corpus[1])
    assert_same_store(store, local_store)

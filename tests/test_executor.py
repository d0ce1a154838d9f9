"""featurekit.executor: every backend maps, bounds what is in flight and names a failing task; the one
factory decides; extraction and evaluation give the same results whichever executor runs them."""

from __future__ import annotations

import logging
import time

import pandas as pd
import pytest

from featurekit.corpora.synthetic import make_synthetic_corpus
from featurekit.evaluation import run, validate
from featurekit.executor import DaskExecutor, Executor, JoblibExecutor, SerialExecutor, executor_for
from featurekit.extraction import extract, parse_features
from featurekit.store import FeatureStore


# module-level: worker processes import them
def square(i: int, pause: float = 0.0) -> int:
    time.sleep(pause)
    return i * i


def fail_on_three(i: int) -> int:
    if i == 3:
        raise KeyError(f"no value for {i}")
    return i


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    yield cluster
    cluster.close()


BACKENDS = ["serial", "joblib-processes", "joblib-threads", "dask"]


@pytest.fixture(params=BACKENDS)
def backend(request) -> tuple[Executor, bool]:
    """An executor and the ``releases_gil`` hint to map with."""
    name = request.param
    if name == "serial":
        return SerialExecutor(), False
    if name.startswith("joblib"):
        return JoblibExecutor(2), name.endswith("threads")
    return DaskExecutor(request.getfixturevalue("dask_cluster")), False


def test_maps_every_task_once_with_its_id(backend):
    executor, threads = backend
    with executor:
        out = list(executor.map(square, ((f"t{i}", {"i": i}) for i in range(25)), releases_gil=threads))
    assert sorted(out) == sorted((f"t{i}", i * i) for i in range(25))
    assert isinstance(executor, Executor)
    assert executor.workers >= 1


def test_a_failing_task_raises_its_own_error_naming_the_task(backend):
    executor, threads = backend
    with executor, pytest.raises(KeyError, match="no value for 3") as info:
        list(executor.map(fail_on_three, ((f"fold-{i}", {"i": i}) for i in range(8)), releases_gil=threads))
    assert "in task 'fold-3' of 'fail_on_three'" in info.value.__notes__


def test_tasks_in_flight_are_bounded_while_the_caller_is_slow(backend):
    """The task iterable is read only as results are taken: at most ``max_in_flight`` tasks submitted
    and not yet handed over, plus the one the caller holds."""
    executor, threads = backend
    read = [0]

    def tasks():
        for i in range(30):
            read[0] += 1
            yield i, {"i": i, "pause": 0.005}

    limit = 1 if isinstance(executor, SerialExecutor) else 3
    taken, peak = 0, 0
    with executor:
        for _ in executor.map(square, tasks(), max_in_flight=limit, releases_gil=threads):
            taken += 1
            peak = max(peak, read[0] - taken + 1)
            time.sleep(0.02)  # a caller slower than the workers
    assert taken == 30
    assert peak <= limit + 1


def test_max_in_flight_must_be_positive(backend):
    executor, _ = backend
    with executor, pytest.raises(ValueError, match="max_in_flight must be >= 1"):
        list(executor.map(square, [(0, {"i": 0})], max_in_flight=0))


def test_the_factory_decides(dask_cluster):
    assert isinstance(executor_for(jobs=1), SerialExecutor)
    assert isinstance(executor_for(jobs=3), JoblibExecutor) and executor_for(jobs=3).workers == 3
    assert isinstance(executor_for(), (SerialExecutor, JoblibExecutor))  # all cores
    ex = executor_for(jobs=3, scheduler=dask_cluster.scheduler_address)
    assert isinstance(ex, DaskExecutor)
    with ex:
        assert ex.workers == 2  # the cluster's threads, not jobs


# -- extraction and evaluation give the same results on every executor -----------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_synthetic_corpus(root, n_speakers=4, n_per_class=2, duration=0.6, seed=1)


def test_extraction_with_local_processes_equals_serial(corpus, tmp_path):
    """The same rows, whichever executor computed them (only this process writes the store)."""
    _, manifest = corpus
    tables = {}
    for name, executor in (("serial", SerialExecutor()), ("joblib", JoblibExecutor(2))):
        store = FeatureStore(tmp_path / name)
        summary = extract(manifest, parse_features("mfcc"), store, corpus="synthetic", executor=executor,
                          chunk_size=2, progress=False)
        assert summary.computed == len(manifest) and not summary.failures
        (table,) = store.tables("synthetic")
        tables[name] = table.read().sort_values("id").reset_index(drop=True)
    # the same rows; values to float32 rounding (workers run their BLAS/FFT with one thread each)
    pd.testing.assert_frame_equal(tables["joblib"], tables["serial"], check_exact=False, rtol=1e-5, atol=1e-6)


SPEC = {
    "name": "executors",
    "seed": 3,
    "corpus": {"name": "synthetic"},
    "task": {"type": "classification", "target": "label"},
    "protocol": {"name": "loso", "group": "speaker"},
    "features": {"sets": ["mfcc.mean_std"], "late_fusion": [["mfcc.mean_std", "mfcc.stats"]]},
    "evaluation": {"normalisation": ["global", "speaker"], "bootstrap": 20},
    "models": {"svm": {"grid": {"kernel": ["linear"], "C": [0.1, 1.0]}},
               "logreg": {"grid": {"C": [0.1, 1.0]}}},
}


@pytest.mark.parametrize("models", [["svm"], ["svm", "logreg"]], ids=["threads", "processes"])
def test_evaluation_results_are_identical_serial_and_joblib(corpus, tmp_path, models):
    """Folds finish in any order on two workers; the results files are byte for byte those of a
    serial run (svm alone runs in threads, logreg in processes)."""
    root, _ = corpus
    spec = dict(SPEC, models={m: SPEC["models"][m] for m in models})
    store = tmp_path / "store"
    for name, executor in (("serial", SerialExecutor()), ("joblib", JoblibExecutor(2))):
        run(validate(spec), root, tmp_path / name, store=store, executor=executor, progress=False)
    for file in ("results.csv", "predictions.csv", "params.csv"):
        assert (tmp_path / "joblib" / file).read_bytes() == (tmp_path / "serial" / file).read_bytes(), file
    assert len(pd.read_csv(tmp_path / "serial" / "results.csv")) > 0

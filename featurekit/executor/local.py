"""Tasks in local worker processes (or threads): :class:`JoblibExecutor`.

The processes are a loky pool (joblib's process backend) owned by the executor: started on its first
map, kept for the next ones (extraction, then the folds, of one command) and stopped by ``close()``
(idle workers also exit after :data:`IDLE_WORKER_TIMEOUT` seconds). It is not joblib's shared
reusable pool, so ``joblib.Parallel`` calls elsewhere (e.g. a hyperparameter search) never find a pool
configured by us. The bounded window is ours, not ``joblib.Parallel``'s: Parallel dispatches a new
task whenever one finishes, so results pile up while the caller is busy with one. Here the next task
is submitted only when the caller has taken a result, so at most ``max_in_flight`` tasks are
submitted and not yet handed over.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import Executor as FuturesExecutor
from typing import TypeVar

from featurekit.executor.base import ExecutorBase, OnLost, Task, call_task, check_max_in_flight

R = TypeVar("R")
#: Variables that size native thread pools (BLAS, OpenMP...); set in the workers as joblib does, so
#: that ``n_jobs`` workers do not each start one thread per core.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: Seconds an idle worker process waits for more tasks before it exits (joblib's default).
IDLE_WORKER_TIMEOUT = 300
_END = object()


def worker_environment(n_jobs: int) -> dict[str, str]:
    """The thread-pool variables of each of ``n_jobs`` worker processes: a fair share of the cores,
    unless this process' environment sets them."""
    from joblib import cpu_count

    share = str(max(cpu_count() // n_jobs, 1))
    env = {var: os.environ.get(var, share) for var in THREAD_VARIABLES}
    env.setdefault("ENABLE_IPC", os.environ.get("ENABLE_IPC", "1"))  # TBB pools coordinate across processes
    return env


class JoblibExecutor(ExecutorBase):
    """``n_jobs`` local workers: joblib's loky processes, or threads for tasks that release the GIL.

    Parameters
    ----------
    n_jobs
        Workers (None or <= 0: all cores).
    max_in_flight
        Default of :meth:`map`'s ``max_in_flight`` (None: ``2 * n_jobs``).
    """

    def __init__(self, n_jobs: int | None = None, *, max_in_flight: int | None = None) -> None:
        self.n_jobs = n_jobs
        self.max_in_flight = max_in_flight
        self._pool: FuturesExecutor | None = None

    def close(self) -> None:
        """Stop the worker processes (a later :meth:`map` starts new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    @property
    def workers(self) -> int:
        return self.n_jobs if self.n_jobs and self.n_jobs > 0 else os.cpu_count() or 1

    def map(self, fn: Callable[..., R], tasks: Iterable[Task], *, max_in_flight: int | None = None,
            releases_gil: bool = False, on_lost: OnLost | None = None) -> Iterator[tuple[Hashable, R]]:
        """See :meth:`featurekit.executor.Executor.map`. A worker process that dies stops the map
        (loky's ``TerminatedWorkerError``); ``on_lost`` is not used."""
        limit = check_max_in_flight(self.max_in_flight if max_in_flight is None else max_in_flight,
                                    2 * self.workers)
        if releases_gil:
            pool: FuturesExecutor = ThreadPoolExecutor(self.workers, thread_name_prefix="featurekit")
            return _window(pool, fn, iter(tasks), limit, owned=True)
        if self._pool is None:
            from joblib.externals.loky import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.workers, timeout=IDLE_WORKER_TIMEOUT,
                                             env=worker_environment(self.workers))
        return _window(self._pool, fn, iter(tasks), limit, owned=False)

    def __repr__(self) -> str:
        return f"JoblibExecutor(n_jobs={self.n_jobs})"


def _window(pool: FuturesExecutor, fn: Callable[..., R], tasks: Iterator[Task], limit: int, *,
            owned: bool) -> Iterator[tuple[Hashable, R]]:
    """Submit ``tasks`` to ``pool``, at most ``limit`` submitted and not yet yielded; yield results as
    they finish. The window is refilled before each yield. On exit (end, error or ``close()``) the
    tasks not started are cancelled; an ``owned`` pool is shut down."""
    pending: dict[Future, Hashable] = {}

    def fill() -> None:
        while len(pending) < limit:
            task = next(tasks, _END)
            if task is _END:
                return
            task_id, kwargs = task  # type: ignore[misc]
            pending[pool.submit(call_task, fn, task_id, kwargs)] = task_id

    try:
        fill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                del pending[fut]
                result = fut.result()
                fill()
                yield result
    finally:
        for fut in pending:
            fut.cancel()
        if owned:
            pool.shutdown(wait=False, cancel_futures=True)

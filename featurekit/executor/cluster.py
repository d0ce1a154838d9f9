"""Tasks on a dask.distributed cluster: :class:`DaskExecutor` (``pip install featurekit[dask]``).

Tasks go to the cluster through a bounded sliding window of futures (:mod:`.window`), so the client's
memory does not grow with the number of tasks. Workers read their inputs (e.g. audio files) from
storage shared with this process and send results back; whatever the caller writes (the feature
store, results) is written by the calling process only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, TypeVar

from featurekit.executor.base import ExecutorBase, OnLost, Task, call_task, check_max_in_flight
from featurekit.executor.scheduler import (
    DEFAULT_CONNECT_TIMEOUT,
    connect,
    lost,
    require_distributed,
    scheduler_alive,
    total_threads,
)
from featurekit.executor.window import TaskQueue, sliding_window, window_limit

R = TypeVar("R")
#: Argument values at least this large (dask's ``sizeof``) that several tasks share are sent once.
SHARE_MIN_BYTES = 1 << 20
#: Times a task whose result could not be fetched (the scheduler still up) is sent again.
RESEND_MAX = 3


def _identity(x: Any) -> Any:
    return x


class DaskExecutor(ExecutorBase):
    """A dask.distributed cluster, connected on first use and held until :meth:`close`.

    Parameters
    ----------
    scheduler
        A scheduler address (``tcp://host:8786``), a scheduler file (``*.json``), a cluster object
        (``LocalCluster``, ``SLURMCluster``...), a ``Client`` (used as it is, never closed), or None
        for ``$FEATUREKIT_SCHEDULER``.
    max_in_flight
        Default of :meth:`map`'s ``max_in_flight`` (None: twice the cluster's worker threads, at least
        4, re-read as the cluster scales).
    retries
        Times dask reruns a task that raised (a lost worker's tasks are rescheduled by dask anyway).
    share_min_bytes
        An argument value at least this large that several tasks share (the same object, e.g. one
        feature matrix for every fold of a cell) is sent to the cluster once, when the first of those
        tasks is submitted, and dropped after the last one finishes; it is held as a task, so a lost
        worker's copy is recomputed rather than lost.
    connect_timeout
        Seconds to wait for the scheduler before :class:`~featurekit.executor.SchedulerError`.

    Notes
    -----
    A task whose worker keeps dying (``KilledWorker``) goes to
    ``on_lost``; a result that cannot be fetched is asked for again while the scheduler answers,
    else :class:`~featurekit.executor.SchedulerError` says it was lost.
    """

    local = False

    def __init__(self, scheduler: Any = None, *, max_in_flight: int | None = None, retries: int = 1,
                 share_min_bytes: int = SHARE_MIN_BYTES,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.scheduler = scheduler
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.share_min_bytes = share_min_bytes
        self.connect_timeout = connect_timeout
        self._connection: Any = None
        self._client: Any = None

    def client(self) -> Any:
        """The ``distributed.Client`` (connecting now if not yet connected)."""
        if self._client is None:
            require_distributed()
            connection = connect(self.scheduler, timeout=self.connect_timeout)
            self._client = connection.__enter__()
            self._connection = connection
        return self._client

    def close(self) -> None:
        """Close the connection this executor opened (a given ``Client`` stays open)."""
        connection, self._connection, self._client = self._connection, None, None
        if connection is not None:
            connection.__exit__(None, None, None)

    @property
    def workers(self) -> int:
        return max(1, total_threads(self.client()))

    def map(self, fn: Callable[..., R], tasks: Iterable[Task], *, max_in_flight: int | None = None,
            releases_gil: bool = False, on_lost: OnLost | None = None) -> Iterator[tuple[Hashable, R]]:
        """See :meth:`featurekit.executor.Executor.map`. The scheduler is contacted (and its errors
        raised) by this call; ``releases_gil`` is the workers' business (their threads per worker)."""
        from dask.sizeof import sizeof

        max_in_flight = self.max_in_flight if max_in_flight is None else max_in_flight
        if max_in_flight is not None:
            check_max_in_flight(max_in_flight, 1)
        queue: TaskQueue[Task] = TaskQueue(tasks)
        client = self.client()
        limit = window_limit(client, max_in_flight)
        sizes: dict[int, int] = {}

        def big(v: Any) -> bool:
            if id(v) not in sizes:
                sizes[id(v)] = sizeof(v)
            return sizes[id(v)] >= self.share_min_bytes

        return self._results(client, fn, queue, limit, big, on_lost)

    def _results(self, client: Any, fn: Callable[..., R], queue: TaskQueue[Task], limit: Callable[[], int],
                 big: Callable[[Any], bool], on_lost: OnLost | None) -> Iterator[tuple[Hashable, R]]:
        from concurrent.futures import CancelledError

        from distributed import KilledWorker

        # large values shared by tasks: id -> [value, its future, tasks submitted and not finished]; the
        # value pins its id. A shared value is dropped once no submitted task needs it: a task read
        # later that shares it sends it again (lazy task iterables are not read ahead to count uses).
        shared: dict[int, list] = {}
        resent: dict[int, int] = {}

        def submit(task: Task):
            task_id, kwargs = task
            kw = dict(kwargs)
            for k, v in kwargs.items():
                if big(v):
                    entry = shared.get(id(v))
                    if entry is None:
                        entry = shared[id(v)] = [v, client.submit(_identity, v, pure=False), 0]
                    entry[2] += 1
                    kw[k] = entry[1]
            return client.submit(call_task, fn, task_id, kw, retries=self.retries, pure=False)

        def release(task: Task) -> None:
            for v in task[1].values():
                entry = shared.get(id(v))
                if entry is not None and entry[0] is v:
                    entry[2] -= 1
                    if entry[2] == 0:
                        shared.pop(id(v))[1].release()

        try:
            for task, fut in sliding_window(client, queue, submit, limit):
                try:
                    result = fut.result()
                except KilledWorker as err:
                    if on_lost is None:
                        raise
                    queue.retries.extend(on_lost(task[0], task[1], err))
                    continue
                except (OSError, CancelledError) as err:  # the result could not be fetched
                    if not scheduler_alive(client):
                        raise lost(client, err, "what was received until then is kept") from err
                    resent[id(task)] = resent.get(id(task), 0) + 1
                    if resent[id(task)] > RESEND_MAX:
                        raise
                    queue.retries.append(task)
                    continue
                finally:
                    fut.release()
                    release(task)
                yield result
        finally:
            shared.clear()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.scheduler!r})"

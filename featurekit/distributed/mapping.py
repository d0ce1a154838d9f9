"""Run many independent calls (e.g. evaluation folds) on a Dask cluster, a bounded number at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from featurekit.distributed._dask import (
    DEFAULT_CONNECT_TIMEOUT,
    TaskQueue,
    connect,
    lost,
    require_distributed,
    scheduler_alive,
    sliding_window,
    window_limit,
)

R = TypeVar("R")
#: Argument values at least this large (dask's ``sizeof``) are sent to the cluster once and shared.
SHARE_MIN_BYTES = 1 << 20


def _identity(x: Any) -> Any:
    return x


def _call(fn: Callable[..., R], kwargs: dict[str, Any]) -> R:
    return fn(**kwargs)


def map_distributed(fn: Callable[..., R], kwargs_list: Iterable[dict[str, Any]], *, scheduler: Any = None,
                    max_in_flight: int | None = None, retries: int = 1,
                    share_min_bytes: int = SHARE_MIN_BYTES,
                    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Iterator[R]:
    """``fn(**kwargs)`` for every ``kwargs`` of ``kwargs_list`` on a dask.distributed cluster.

    Results are yielded as they complete (any order). At most ``max_in_flight`` calls are submitted
    and not yet consumed at once; the next ones are submitted as earlier ones finish.

    Parameters
    ----------
    fn
        A function importable on the workers (defined in a module, not in ``__main__``).
    kwargs_list
        Keyword arguments of each call.
    scheduler
        Scheduler address (``tcp://host:8786``), scheduler file, cluster object or ``Client``;
        None reads ``$FEATUREKIT_SCHEDULER``.
    max_in_flight
        Most calls in flight (default: twice the cluster's worker threads, at least 4).
    retries
        Times dask reruns a call that raised (a lost worker's calls are rescheduled by dask anyway).
    share_min_bytes
        An argument value at least this large that several calls share (the same object, e.g. one
        feature matrix for every fold of a cell) is sent to the cluster once, when the first of those
        calls is submitted, and dropped after the last one finishes; it is held as a task, so a lost
        worker's copy is recomputed rather than lost.
    connect_timeout
        Seconds to wait for the scheduler.

    Returns
    -------
    Iterator
        The results. The scheduler is contacted (and errors raised) when this is called; the cluster
        is released when the iterator is exhausted or closed.

    Raises
    ------
    DaskNotInstalledError
        dask.distributed is not installed (``pip install featurekit[dask]``).
    SchedulerError
        No scheduler given, or it cannot be reached.
    Exception
        The first exception a call raised (after ``retries``); the calls still running are cancelled.
    """
    from dask.sizeof import sizeof

    require_distributed()
    calls = list(kwargs_list)
    sizes: dict[int, int] = {}
    uses: dict[int, int] = {}  # id(shared value) -> calls using it not yet finished
    for kw in calls:
        for v in kw.values():
            if id(v) not in sizes:
                sizes[id(v)] = sizeof(v)
            if sizes[id(v)] >= share_min_bytes:
                uses[id(v)] = uses.get(id(v), 0) + 1
    uses = {k: n for k, n in uses.items() if n > 1}
    ctx = connect(scheduler, timeout=connect_timeout)
    client = ctx.__enter__()
    return _results(ctx, client, fn, calls, uses, max_in_flight=max_in_flight, retries=retries)


def _results(ctx: Any, client: Any, fn: Callable[..., R], calls: list[dict[str, Any]],
             uses: dict[int, int], *, max_in_flight: int | None, retries: int) -> Iterator[R]:
    shared: dict[int, tuple[Any, Any]] = {}  # id -> (value, its future); the value pins the id

    def submit(i: int):
        kw = dict(calls[i])
        for k, v in kw.items():
            if id(v) in uses:
                if id(v) not in shared:
                    shared[id(v)] = (v, client.submit(_identity, v, pure=False))
                kw[k] = shared[id(v)][1]
        return client.submit(_call, fn, kw, retries=retries, pure=False)

    from concurrent.futures import CancelledError

    queue: TaskQueue[int] = TaskQueue(range(len(calls)))
    resent: dict[int, int] = {}
    try:
        limit = window_limit(client, max_in_flight)
        for i, fut in sliding_window(client, queue, submit, limit):
            try:
                result = fut.result()
            except (OSError, CancelledError) as err:  # the result could not be fetched
                if not scheduler_alive(client):
                    raise lost(client, err, "featurekit evaluate reuses finished cells on a rerun") from err
                resent[i] = resent.get(i, 0) + 1
                if resent[i] > 3:
                    raise
                queue.retries.append(i)
                continue
            finally:
                fut.release()
            for v in calls[i].values():
                if id(v) in uses:
                    uses[id(v)] -= 1
                    if uses[id(v)] == 0:
                        shared.pop(id(v))[1].release()
            calls[i] = {}
            yield result
    finally:
        shared.clear()
        ctx.__exit__(None, None, None)

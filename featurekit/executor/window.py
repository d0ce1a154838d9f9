"""The bounded sliding window of futures on a dask.distributed client (used by :class:`DaskExecutor`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from featurekit.executor.scheduler import total_threads

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client, Future

#: How often an automatic window size re-reads the cluster's thread count (clusters may scale).
REFRESH_S = 5.0

T = TypeVar("T")
_END = object()


def window_limit(client: Client, max_in_flight: int | None) -> Callable[[], int]:
    """The window size: ``max_in_flight``, or twice the cluster's threads (at least 4), re-read every 5 s."""
    if max_in_flight is not None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight}")
        return lambda: max_in_flight
    state = {"at": -REFRESH_S, "limit": 4}

    def limit() -> int:
        now = time.monotonic()
        if now - state["at"] >= REFRESH_S:
            state["at"] = now
            try:
                state["limit"] = max(4, 2 * total_threads(client))
            except OSError:  # the scheduler is unreachable: keep the last size, futures will tell
                pass
        return state["limit"]

    return limit


class TaskQueue(Iterator[T]):
    """Tasks from an iterable, with ``retries`` (pushed by the consumer) served first.

    Unlike a generator it may run dry, be refilled through ``retries`` and give more tasks again,
    which :func:`sliding_window` relies on.
    """

    def __init__(self, tasks: Iterable[T]) -> None:
        self._tasks = iter(tasks)
        self.retries: deque[T] = deque()

    def __next__(self) -> T:
        if self.retries:
            return self.retries.popleft()
        return next(self._tasks)


def sliding_window(client: Client, tasks: Iterator[T], submit: Callable[[T], Future], limit: Callable[[], int]
                   ) -> Iterator[tuple[T, Future]]:
    """Submit ``tasks`` lazily, at most ``limit()`` in flight at once; yield them as they finish.

    ``submit`` turns a task into a future of ``client``. Yields ``(task, future)`` pairs in completion
    order; the future is done (finished or failed). The window is refilled before each yield, so the
    cluster keeps working while the caller handles a result: at most ``limit()`` futures are in flight
    (or finished and waiting), plus the one the caller holds. ``tasks`` is asked for more with
    ``next()`` whenever there is room, also after it once ran dry: an iterator that the caller refills
    (e.g. with retries) is drained again. On exit (end, error or ``close()``) the futures still in
    flight are cancelled.
    """
    from distributed import as_completed

    ac = as_completed(loop=client.loop)
    owner: dict[Future, T] = {}

    def fill() -> None:
        while len(owner) < limit():
            task = next(tasks, _END)
            if task is _END:
                return
            fut = submit(task)  # type: ignore[arg-type]
            owner[fut] = task  # type: ignore[assignment]
            ac.add(fut)

    try:
        while True:
            fill()
            if ac.is_empty():
                return
            fut = next(ac)
            task = owner.pop(fut)
            fill()
            yield task, fut
    finally:
        for fut in owner:
            fut.cancel()
        owner.clear()

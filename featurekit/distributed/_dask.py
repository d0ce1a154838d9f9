"""Connecting to a dask.distributed scheduler, and the bounded sliding window of futures.

dask is imported here, inside functions only, so that importing :mod:`featurekit.distributed`
(which the CLI does to register ``featurekit cluster``) stays cheap and works without dask.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client, Future

SCHEDULER_ENV = "FEATUREKIT_SCHEDULER"
INSTALL_HINT = "pip install featurekit[dask]"
DEFAULT_CONNECT_TIMEOUT = 20.0
#: How often an automatic window size re-reads the cluster's thread count (clusters may scale).
_REFRESH_S = 5.0

T = TypeVar("T")
_END = object()


class DaskNotInstalledError(ImportError):
    """dask.distributed is needed (``pip install featurekit[dask]``) but not installed."""


class SchedulerError(ConnectionError):
    """No scheduler was given, or the one given cannot be reached (or was lost)."""


class EnvironmentMismatchError(RuntimeError):
    """A worker's library or extractor versions differ from the client's.

    The store keys tables by the client's versions, so rows computed with other versions would be
    stored under the wrong key: the run stops instead.
    """


def require_distributed() -> Any:
    """The ``distributed`` module; raises :class:`DaskNotInstalledError` with the install hint."""
    try:
        import distributed
    except ImportError as err:
        raise DaskNotInstalledError(
            f"running on a Dask cluster needs dask.distributed, which is not installed ({err}); "
            f"install it with: {INSTALL_HINT}") from err
    return distributed


def resolve_scheduler(scheduler: str | None) -> str:
    """``scheduler``, else ``$FEATUREKIT_SCHEDULER``; raises :class:`SchedulerError` when neither is set."""
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if not address:
        raise SchedulerError(f"no Dask scheduler given: pass scheduler= (--scheduler ADDRESS) or set "
                             f"{SCHEDULER_ENV}=tcp://HOST:8786 (start one with `featurekit cluster local`)")
    return str(address)


@contextmanager
def connect(scheduler: Any = None, *, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Iterator[Client]:
    """A :class:`distributed.Client` for ``scheduler``, closed on exit (unless it was given as a Client).

    Parameters
    ----------
    scheduler
        A scheduler address (``tcp://host:8786``), a scheduler file (``*.json``, as written by
        ``dask scheduler --scheduler-file``), a cluster object (``LocalCluster``, ``SLURMCluster``...),
        an existing ``Client`` (used as it is, not closed), or None for ``$FEATUREKIT_SCHEDULER``.
    timeout
        Seconds to wait for the scheduler before raising :class:`SchedulerError`.
    """
    distributed = require_distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if hasattr(scheduler, "scheduler_address"):  # a cluster object
        scheduler = scheduler.scheduler_address
    address = resolve_scheduler(scheduler)
    is_file = address.endswith(".json") and os.path.isfile(address)
    where: dict[str, Any] = {"scheduler_file": address} if is_file else {"address": address}
    try:
        client = distributed.Client(**where, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise SchedulerError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                             f"({type(err).__name__}: {err}); is it running (`featurekit cluster local`, "
                             f"`dask scheduler`) and reachable from this machine?") from err
    try:
        yield client
    finally:
        client.close()


def scheduler_alive(client: Client, timeout: float = 5.0) -> bool:
    """Whether ``client`` is connected and its scheduler answers within ``timeout`` seconds."""
    if client.status != "running":
        return False
    try:
        client.sync(client.scheduler.identity, callback_timeout=timeout)
    except Exception:  # noqa: BLE001  (any failure means: not reachable now)
        return False
    return True


def lost(client: Client, err: BaseException, hint: str = "") -> SchedulerError:
    """The error for a scheduler that went away during a run (``hint``: what the user may do now)."""
    return SchedulerError(f"lost the Dask scheduler at {client.scheduler.address} "
                          f"({type(err).__name__}: {err}){'; ' + hint if hint else ''}")


def total_threads(client: Client) -> int:
    """Worker threads the cluster has now (0 while an adaptive cluster has no workers yet)."""
    return int(sum(client.nthreads().values()))


def window_limit(client: Client, max_in_flight: int | None) -> Callable[[], int]:
    """The window size: ``max_in_flight``, or twice the cluster's threads (at least 4), re-read every 5 s."""
    if max_in_flight is not None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight}")
        return lambda: max_in_flight
    state = {"at": -_REFRESH_S, "limit": 4}

    def limit() -> int:
        now = time.monotonic()
        if now - state["at"] >= _REFRESH_S:
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

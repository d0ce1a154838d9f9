"""The executor interface: run ``fn(**kwargs)`` for many tasks, yield ``(task id, result)`` as they finish.

A task is a pair ``(task id, kwargs)``; the id is any hashable the caller uses to reassemble the
results (they come back in completion order) and names the task when it fails. Every backend keeps
a bounded window of tasks in flight, taking tasks from the (possibly lazy) iterable only as room
frees up, so memory does not grow with the number of tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

R = TypeVar("R")
#: ``(task id, keyword arguments of the call)``.
Task = tuple[Hashable, dict[str, Any]]
#: Called with a task whose worker died (a remote backend's lost worker): the tasks to run instead.
OnLost = Callable[[Hashable, dict[str, Any], BaseException], list[Task]]


@runtime_checkable
class Executor(Protocol):
    """Where tasks run: :class:`~featurekit.executor.SerialExecutor` (this process),
    :class:`~featurekit.executor.JoblibExecutor` (local processes or threads) or
    :class:`~featurekit.executor.DaskExecutor` (a dask.distributed cluster).

    Choose one with :func:`featurekit.executor.executor_for`; hand it to
    :func:`featurekit.extraction.extract` and :func:`featurekit.evaluation.run` (``executor=``).
    """

    #: Whether the workers run on this machine (so a handful of short tasks is cheaper run in this
    #: process than by starting workers).
    local: bool

    @property
    def workers(self) -> int:
        """Tasks that run at the same time (a remote backend asks its cluster, connecting if needed)."""
        ...

    def map(self, fn: Callable[..., R], tasks: Iterable[Task], *, max_in_flight: int | None = None,
            releases_gil: bool = False, on_lost: OnLost | None = None) -> Iterator[tuple[Hashable, R]]:
        """``(task id, fn(**kwargs))`` for every task, in completion order.

        Parameters
        ----------
        fn
            A function importable by the workers (defined in a module, not in ``__main__``).
        tasks
            ``(task id, kwargs)`` pairs; read lazily, a few ahead of the results. An iterator that
            runs dry and is refilled (see ``on_lost``) is read again.
        max_in_flight
            Most tasks started and not yet finished (default: the backend's, about twice
            :attr:`workers`).
        releases_gil
            The tasks spend their time in native code that releases the GIL: a local pool may use
            threads (no copies of the arguments) instead of processes.
        on_lost
            For a task whose worker died (a remote backend that rescheduled it until it gave up):
            returns the tasks to run instead (e.g. the task split in parts). None raises.

        Raises
        ------
        Exception
            The first exception a task raised, with a note naming the task (``task <id>``); tasks
            still running are cancelled.
        """
        ...

    def close(self) -> None:
        """Release the workers or the connection (a later :meth:`map` acquires them again)."""
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


class ExecutorBase:
    """Context-manager plumbing shared by the backends."""

    local = True

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def name_task(err: BaseException, task_id: Hashable, fn: Callable) -> BaseException:
    """``err`` with a note naming the task and the function (once), for the caller's traceback."""
    note = f"in task {task_id!r} of {getattr(fn, '__qualname__', fn)!r}"
    if note not in getattr(err, "__notes__", ()):
        err.add_note(note)
    return err


def call_task(fn: Callable[..., R], task_id: Hashable, kwargs: dict[str, Any]) -> tuple[Hashable, R]:
    """Worker side of every backend: ``(task_id, fn(**kwargs))``; an exception leaves with the task named."""
    try:
        return task_id, fn(**kwargs)
    except Exception as err:
        name_task(err, task_id, fn)
        raise


def check_max_in_flight(max_in_flight: int | None, default: int) -> int:
    """``max_in_flight`` checked (>= 1), or ``default``."""
    if max_in_flight is None:
        return max(1, default)
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight}")
    return int(max_in_flight)

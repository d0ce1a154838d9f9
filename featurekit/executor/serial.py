"""Tasks one after another in this process (``jobs=1``; also the in-process path for a few tasks)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

from featurekit.executor.base import ExecutorBase, OnLost, Task, call_task, check_max_in_flight

R = TypeVar("R")


class SerialExecutor(ExecutorBase):
    """Runs each task in this process when the caller asks for its result (one in flight)."""

    workers = 1

    def map(self, fn: Callable[..., R], tasks: Iterable[Task], *, max_in_flight: int | None = None,
            releases_gil: bool = False, on_lost: OnLost | None = None) -> Iterator[tuple[Hashable, R]]:
        """See :meth:`featurekit.executor.Executor.map` (here in task order, one at a time)."""
        check_max_in_flight(max_in_flight, 1)
        return (call_task(fn, task_id, kwargs) for task_id, kwargs in tasks)

    def __repr__(self) -> str:
        return "SerialExecutor()"

"""The one place that decides where tasks run: :func:`executor_for`."""

from __future__ import annotations

import os
from typing import Any

from featurekit.executor.base import Executor
from featurekit.executor.cluster import DaskExecutor
from featurekit.executor.local import JoblibExecutor
from featurekit.executor.scheduler import require_distributed
from featurekit.executor.serial import SerialExecutor


def executor_for(*, jobs: int | None = None, scheduler: Any = None) -> Executor:
    """The executor for a command line's or a call's ``--jobs`` / ``--scheduler``.

    Parameters
    ----------
    jobs
        Local worker processes: 1 runs in this process (:class:`SerialExecutor`), more use
        :class:`JoblibExecutor`; None or <= 0: all cores.
    scheduler
        A dask.distributed scheduler (address, scheduler file, cluster object or ``Client``): the
        tasks run there (:class:`DaskExecutor`; ``jobs`` is then unused). Not read from
        ``$FEATUREKIT_SCHEDULER`` here: the CLI's ``--scheduler`` defaults to it.

    Raises
    ------
    DaskNotInstalledError
        A scheduler is given and dask.distributed is not installed.
    """
    if scheduler:
        require_distributed()
        return DaskExecutor(scheduler)
    n = jobs if jobs and jobs > 0 else os.cpu_count() or 1
    return SerialExecutor() if n == 1 else JoblibExecutor(n)

"""Where tasks run: one interface, three backends, one factory.

* :class:`Executor` -- ``map(fn, tasks)`` yields ``(task id, fn(**kwargs))`` as tasks finish, with a
  bounded window in flight (:mod:`.base`).
* :class:`SerialExecutor` (this process), :class:`JoblibExecutor` (local processes or threads),
  :class:`DaskExecutor` (a dask.distributed cluster; ``pip install featurekit[dask]``).
* :func:`executor_for` -- the one place that turns ``--jobs`` / ``--scheduler`` into an executor; the
  CLI and :mod:`featurekit.api` call it and hand the executor to extraction and evaluation.

A new backend is a class with ``local``, ``workers``, ``map`` and ``close`` (see :class:`Executor`) in
a module of this package, chosen by :func:`executor_for`. Importing this package is cheap: joblib and
dask are imported when tasks run.
"""

from featurekit.executor.base import Executor, OnLost, Task
from featurekit.executor.cluster import DaskExecutor
from featurekit.executor.factory import executor_for
from featurekit.executor.local import JoblibExecutor
from featurekit.executor.scheduler import (
    INSTALL_HINT,
    SCHEDULER_ENV,
    DaskNotInstalledError,
    EnvironmentMismatchError,
    SchedulerError,
)
from featurekit.executor.serial import SerialExecutor

__all__ = ["INSTALL_HINT", "SCHEDULER_ENV", "DaskExecutor", "DaskNotInstalledError",
           "EnvironmentMismatchError", "Executor", "JoblibExecutor", "OnLost", "SchedulerError",
           "SerialExecutor", "Task", "executor_for"]

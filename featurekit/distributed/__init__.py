"""Scale out on a Dask cluster: feature extraction and evaluation folds (``pip install featurekit[dask]``).

* :func:`extract_distributed` -- :func:`featurekit.extraction.extract` with the chunks computed on
  the cluster; workers read the audio from shared storage, only the calling process writes the store.
* :func:`map_distributed` -- ``fn(**kwargs)`` for many kwargs on the cluster, yielded as they finish
  (the evaluation runner's folds, with ``featurekit evaluate --scheduler``).
* ``featurekit cluster local`` -- start a local cluster (:mod:`featurekit.commands.distributed`).

Both functions keep a bounded sliding window of futures in flight, so the client's memory does not
grow with the number of tasks. The scheduler is an address (``tcp://host:8786``), a scheduler file,
a cluster object or a ``Client``; None reads ``$FEATUREKIT_SCHEDULER``.

Importing this package is cheap: dask and the extraction code are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from featurekit.distributed._dask import (
        SCHEDULER_ENV,
        DaskNotInstalledError,
        EnvironmentMismatchError,
        SchedulerError,
    )
    from featurekit.distributed.extract import extract_distributed
    from featurekit.distributed.mapping import map_distributed

__all__ = ["SCHEDULER_ENV", "DaskNotInstalledError", "EnvironmentMismatchError", "SchedulerError",
           "extract_distributed", "extract_here_or_there", "map_distributed"]

_WHERE = {"extract_distributed": "extract", "EnvironmentMismatchError": "_dask",
          "map_distributed": "mapping", "SCHEDULER_ENV": "_dask", "DaskNotInstalledError": "_dask",
          "SchedulerError": "_dask"}


def extract_here_or_there(manifest, requests, store, *, corpus: str, audio, scheduler: Any = None,
                          jobs: int | None = None, progress: bool = True, **kwargs: Any):
    """:func:`extract_distributed` when a ``scheduler`` is given, else :func:`featurekit.extraction.extract`
    with ``jobs`` local processes (the choice ``featurekit extract`` and ``featurekit evaluate`` make)."""
    if scheduler:
        from featurekit.distributed.extract import extract_distributed

        return extract_distributed(manifest, requests, store, corpus=corpus, audio=audio, scheduler=scheduler,
                                   progress=progress, **kwargs)
    from featurekit.extraction import extract

    return extract(manifest, requests, store, corpus=corpus, audio=audio, jobs=jobs, progress=progress,
                   **kwargs)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""Connecting to a dask.distributed scheduler (``$FEATUREKIT_SCHEDULER``), and its errors.

dask is imported inside functions only, so that importing this module (which the CLI's ``cluster``
command does) stays cheap and works without dask.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

SCHEDULER_ENV = "FEATUREKIT_SCHEDULER"
INSTALL_HINT = "pip install featurekit[dask]"
DEFAULT_CONNECT_TIMEOUT = 20.0


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

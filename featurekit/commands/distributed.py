"""CLI subcommands of the Dask executor (:mod:`featurekit.executor`), registered on import; dask is
loaded when one runs.

``featurekit cluster local --workers N [--threads-per-worker 1] [--port 8786]`` starts a Dask
``LocalCluster`` on this machine, prints its scheduler and dashboard addresses and blocks until
Ctrl-C (or SIGTERM). Point ``featurekit extract/evaluate --scheduler`` (or ``FEATUREKIT_SCHEDULER``)
at the printed address.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from featurekit.commands.base import _args, command


def _cluster_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="cluster_kind", required=True, metavar="KIND")
    local = sub.add_parser("local", help="a Dask LocalCluster on this machine (blocks until Ctrl-C)",
                           description="Start a Dask LocalCluster of worker processes on this machine, print "
                                       "its addresses and block until Ctrl-C.")
    local.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="worker processes (default: all cores)")
    local.add_argument("--threads-per-worker", type=int, default=1,
                       help="threads per worker (default 1: extractors are not all thread-safe)")
    local.add_argument("--port", type=int, default=8786,
                       help="scheduler port (default 8786; 0: any free port)")
    local.add_argument("--host", default="127.0.0.1",
                       help="interface to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for "
                            "clients on other machines)")
    local.add_argument("--dashboard-port", type=int, default=8787,
                       help="dashboard port (default 8787; 0: any free port; -1: no dashboard; needs bokeh)")
    local.add_argument("--memory-limit", default="auto",
                       help="memory limit per worker, e.g. 4GiB (default auto: this machine's memory / "
                            "workers)")


def _dashboard_address(host: str, port: int) -> str | None:
    if port < 0:
        return None
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return None
    return f"{host}:{port}"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@command("cluster", "start a Dask cluster for --scheduler: `cluster local --workers N`")
@_args(_cluster_args)
def cmd_cluster(args: argparse.Namespace) -> int:
    from featurekit.executor.scheduler import INSTALL_HINT, SCHEDULER_ENV, require_distributed

    try:
        distributed = require_distributed()
    except ImportError:
        print(f"featurekit cluster: error: dask.distributed is not installed; {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    if args.workers < 1 or args.threads_per_worker < 1:
        print("featurekit cluster: error: --workers and --threads-per-worker must be >= 1", file=sys.stderr)
        return 2
    dashboard = _dashboard_address(args.host, args.dashboard_port)
    # Worker processes started while SIGINT is ignored keep ignoring it: Ctrl-C in the terminal (sent to
    # the whole process group) then stops the cluster through this process only, without a traceback
    # from every worker.
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=args.threads_per_worker,
                                           processes=True, host=args.host, scheduler_port=args.port,
                                           dashboard_address=dashboard, memory_limit=args.memory_limit)
    finally:
        signal.signal(signal.SIGINT, interrupt)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        address = cluster.scheduler_address
        print(f"scheduler: {address}")
        print(f"dashboard: {cluster.dashboard_link if dashboard else 'off (pip install bokeh to get one)'}")
        print(f"workers:   {args.workers} x {args.threads_per_worker} thread(s), "
              f"memory limit {args.memory_limit}")
        print(f"use it:    export {SCHEDULER_ENV}={address}   (or --scheduler {address})")
        print("press Ctrl-C to stop", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the cluster", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        cluster.close()
    return 0

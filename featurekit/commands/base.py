"""Shared pieces of the command modules: the command registry and the common arguments.

The CLI layer (:mod:`featurekit.cli` and the modules of :mod:`featurekit.commands`) sits on top of
everything; no module below it imports it (``tests/test_layers.py``). Importing this module must stay
cheap: the parser is built from it on every ``featurekit`` call.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

from featurekit.registry import Registry

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]
COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str):
    def decorator(fn):
        COMMANDS.add(name, (fn.arguments, fn, help))
        return fn

    return decorator


def _args(builder):
    def decorator(fn):
        fn.arguments = builder
        return fn

    return decorator


def _default_jobs() -> int:
    return os.cpu_count() or 1


log = logging.getLogger("featurekit.cli")


class UsageError(Exception):
    """A command line that cannot be run as given (exit status 2, one line on stderr)."""


def jobs_argument(p: argparse.ArgumentParser, *, default: int | None = None, what: str = "") -> None:
    """``--jobs N``, documented the same way on every command that takes it."""
    default = _default_jobs() if default is None else default
    p.add_argument("--jobs", type=int, default=default, metavar="N",
                   help=f"worker processes{what} (default: {default}"
                        f"{', all cores' if default == _default_jobs() else ''})")


def store_argument(p: argparse.ArgumentParser) -> None:
    """``--store DIR`` with the one default shared by every command (see :func:`resolve_store`)."""
    p.add_argument("--store", default=None, metavar="DIR",
                   help="feature store directory (default: $FEATUREKIT_STORE, else ./store; printed)")


def resolve_store(args: argparse.Namespace) -> str:
    """``--store``, or the shared default (:func:`featurekit.defaults.default_store`), which is logged."""
    if args.store is not None:
        return args.store
    from featurekit.defaults import STORE_ENV, default_store

    path = default_store()
    origin = f"${STORE_ENV}" if os.environ.get(STORE_ENV) else f"default; --store or ${STORE_ENV} to change"
    log.info(f"feature store: {path.resolve()} ({origin})")
    return str(path)


def resolve_root(spec, root: str | None) -> str:
    """``--root``, else the spec's ``corpus.root_env`` variable (:func:`featurekit.api.resolve_root`)."""
    from featurekit import api

    try:
        return api.resolve_root(spec, root)
    except api.MissingRootError as err:
        raise UsageError(str(err)) from None

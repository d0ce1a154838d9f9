"""The ``featurekit`` command line: the entry point (:func:`main`), the parser built from the
registered subcommands, messages and exit statuses. The subcommands live in :mod:`featurekit.commands`
(``core``: corpora, corpus, features, models, extract, evaluate, audit, report, demo; ``deploy``,
``distributed``, ``store``); their modules import what they need lazily, so start-up stays fast (the
classical path never imports torch)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from featurekit.commands.base import COMMANDS, UsageError


def build_parser() -> argparse.ArgumentParser:
    # the other command modules register their subcommands with @command on import (each cheap)
    from featurekit._version import __version__
    from featurekit.commands import core, deploy, distributed, encoder, store  # noqa: F401

    parser = argparse.ArgumentParser(prog="featurekit", description="speech emotion recognition toolkit",
                                     epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"featurekit {__version__}")
    _verbosity_arguments(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)  # the same flags after the subcommand
    _verbosity_arguments(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (builder, fn, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        builder(p)
        p.set_defaults(func=fn)
    return parser


EXIT_STATUS = """exit status:
  0    success
  1    data failures: some audio files or data could not be processed (the rest is done and kept)
  2    usage or spec errors: bad arguments, unknown names, a wrong corpus root, an invalid spec
  141  standard output closed early (e.g. `featurekit corpora | head -1`); nothing is printed"""


def _verbosity_arguments(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    """-v / -q; with ``suppress`` (a subcommand's copy) an absent flag keeps the value given before it."""
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS if suppress else 0,
                   help="more messages (debug logging)")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="only warnings and errors; no progress bars")


class _Messages(logging.Formatter):
    """``featurekit COMMAND: message`` (``... warning: message`` from warnings up)."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"featurekit {self.command}: {level}{record.getMessage()}"


def log_level(*, verbose: int, quiet: bool) -> int:
    """Info by default, debug with -v, warnings and errors only with -q."""
    return logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO


@contextmanager
def messages_on_stderr(command: str, *, verbose: int, quiet: bool) -> Iterator[None]:
    """While a command runs, the ``featurekit`` loggers' messages go to stderr (the state is restored
    afterwards, so calling :func:`main` in a program leaves its logging as it was)."""
    logger = logging.getLogger("featurekit")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Messages(command))
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(log_level(verbose=verbose, quiet=quiet))
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


# Errors reported as one line (exit 2) instead of a traceback. Looked up lazily in sys.modules: an
# exception class whose module was never imported cannot have been raised, and importing the evaluation
# stack just to name its errors would cost a second on every `featurekit extract`.
EXPECTED_ERRORS = {
    "featurekit.audio": ("AudioError",),
    "featurekit.corpora.base": ("CorpusLayoutError",),
    "featurekit.registry": ("UnknownNameError",),
    "featurekit.extras": ("MissingExtraError",),
    "featurekit.evaluation.spec": ("SpecError",),
    "featurekit.evaluation.errors": ("DataError",),
    "featurekit.executor.scheduler": ("DaskNotInstalledError", "EnvironmentMismatchError", "SchedulerError"),
}


# Of those, the data failures (exit 1): the input was understood but the data could not be processed.
DATA_ERRORS = {
    "featurekit.audio": ("AudioError",),
    "featurekit.api": ("FeatureExtractionError",),
    "featurekit.evaluation.errors": ("DataError",),
}


def _loaded(errors: dict[str, tuple[str, ...]]) -> tuple[type, ...]:
    return tuple(getattr(sys.modules[m], n) for m, names in errors.items() if m in sys.modules for n in names)


def _expected_error(err: BaseException) -> bool:
    if isinstance(err, (FileNotFoundError, ValueError, UsageError)):
        return True
    return isinstance(err, _loaded(EXPECTED_ERRORS))


def exit_status(err: BaseException) -> int:
    """1 for a data failure, 2 for a usage or spec error (see ``EXIT_STATUS``)."""
    return 1 if isinstance(err, _loaded(DATA_ERRORS)) else 2


def _stdout_closed() -> int:
    """The reader of our standard output went away (``| head``): end quietly, as SIGPIPE would."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
    except (OSError, ValueError):  # stdout is not a file (e.g. captured): nothing to redirect
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.quiet, args.verbose = bool(args.quiet), int(args.verbose)
    try:
        with messages_on_stderr(args.command, verbose=args.verbose, quiet=args.quiet):
            status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _stdout_closed()
    except Exception as err:
        if not _expected_error(err):
            raise
        print(f"featurekit {args.command}: error: {err}", file=sys.stderr)
        return exit_status(err)


if __name__ == "__main__":  # run as a script: use the imported module, so plug-in commands register once
    from featurekit.cli import main as _main

    sys.exit(_main())

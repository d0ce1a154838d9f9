"""The ``featurekit`` command line. Each subcommand is registered with its argument builder;
modules are imported lazily so start-up stays fast (the classical path never imports torch)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

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


# -- corpora -------------------------------------------------------------------------------------
@command("corpora", "list corpus adapters")
@_args(lambda p: None)
def cmd_corpora(args: argparse.Namespace) -> int:
    from featurekit.corpora import CORPORA

    for name, adapter in CORPORA.items():
        print(f"{name:12s} {adapter.description}")
    return 0


def _corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["info"])
    p.add_argument("name")
    p.add_argument("root")
    p.add_argument("--corpus-option", action="append", default=[], metavar="KEY=VALUE")


def corpus_options(items: list[str]) -> dict:
    import json

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"--corpus-option {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@command("corpus", "corpus info NAME ROOT: counts per label, speaker and session")
@_args(_corpus_args)
def cmd_corpus(args: argparse.Namespace) -> int:
    from featurekit.corpora import corpus_summary, load_corpus

    m = load_corpus(args.name, args.root, **corpus_options(args.corpus_option))
    print(
        f"{args.name} at {args.root}: {len(m)} utterances, {m['speaker'].nunique()} speakers, "
        f"{m['session'].nunique()} sessions"
    )
    for col, counts in corpus_summary(m).items():
        print(f"\n{col}:")
        for k, v in counts.items():
            print(f"  {k!s:24s} {v:6d}")
    return 0


@command("features", "list extractors, their tables and dimensions")
@_args(lambda p: p.add_argument("--no-dims", action="store_true", help="skip computing dimensions"))
def cmd_features(args: argparse.Namespace) -> int:
    from featurekit.extractors import EXTRACTORS, FUNCTIONALS, apply_functional
    from featurekit.extractors.base import _probe_signal

    sig = _probe_signal()
    print(f"functionals: {', '.join(FUNCTIONALS.names())} (applied to LLDs), native (toolkit's own)\n")
    for name, cls in EXTRACTORS.items():
        line = f"{name:12s} {cls.description}"
        if not args.no_dims and getattr(cls, "probe", True):
            try:
                ext = cls()
                dims = []
                if cls.has_native:
                    dims.append(f"native={len(ext.native(sig, 16000).names)}")
                if cls.has_lld:
                    fr = ext.lld(sig, 16000)
                    dims.append(f"lld={fr.values.shape[1]}")
                    dims += [
                        f"{f}={len(apply_functional(f, fr, sig, 16000, name).names)}"
                        for f in FUNCTIONALS.names()
                    ]
                line += "\n" + " " * 13 + " ".join(dims)
            except Exception as err:  # e.g. an encoder that needs a model path
                line += f"\n{' ' * 13}(dimensions depend on parameters: {type(err).__name__})"
        print(line)
    return 0


# -- extract -------------------------------------------------------------------------------------
def _extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="corpus adapter name (see `featurekit corpora`)")
    p.add_argument("--root", required=True, help="corpus root directory")
    p.add_argument(
        "--corpus-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="adapter option, e.g. csv=list.csv for the csv adapter (repeatable; JSON values)",
    )
    p.add_argument(
        "--features",
        required=True,
        help="comma-separated extractors, or EXTRACTOR.KIND (e.g. egemaps,mfcc.stats)",
    )
    p.add_argument(
        "--functionals", default="mean_std", help="HSFs for bare LLD extractors (default mean_std)"
    )
    p.add_argument("--lld", action="store_true", help="also store frame-level LLD tables")
    p.add_argument("--store", required=True, help="feature store directory")
    p.add_argument("--jobs", type=int, default=_default_jobs(), help="worker processes (default: all cores)")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument(
        "--trim-db", type=float, default=None, help="trim leading/trailing silence (dB below peak)"
    )
    p.add_argument("--duration", type=float, default=None, help="crop/pad every signal to this many seconds")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="EXTRACTOR.NAME=VALUE",
        help="extractor parameter, e.g. mfcc.n_mfcc=20 (repeatable)",
    )
    p.add_argument(
        "--scheduler",
        default=os.environ.get("FEATUREKIT_SCHEDULER"),
        help="dask.distributed scheduler address (or FEATUREKIT_SCHEDULER)",
    )
    p.add_argument(
        "--flush-every",
        type=int,
        default=4096,  # featurekit.extraction.DEFAULT_FLUSH_EVERY (not imported: keeps the CLI light)
        help="utterances buffered per table before a write (also written at 64 MiB of values)",
    )
    p.add_argument("--quiet", action="store_true")


def parse_params(items: list[str]) -> dict[str, dict]:
    import json

    out: dict[str, dict] = {}
    for item in items:
        key, eq, value = item.partition("=")
        ext, dot, name = key.partition(".")
        if not eq or not dot:
            raise SystemExit(f"--param {item!r}: expected EXTRACTOR.NAME=VALUE")
        try:
            v = json.loads(value)
        except json.JSONDecodeError:
            v = value
        out.setdefault(ext, {})[name] = v
    return out


@command("extract", "compute features of a corpus into the store")
@_args(_extract_args)
def cmd_extract(args: argparse.Namespace) -> int:
    from featurekit.audio import AudioOptions
    from featurekit.corpora import load_corpus
    from featurekit.extraction import parse_features
    from featurekit.store import FeatureStore

    t0 = time.perf_counter()
    requests = parse_features(
        args.features,
        functionals=[f for f in args.functionals.split(",") if f],
        lld=args.lld,
        params=parse_params(args.param),
    )
    manifest = load_corpus(args.corpus, args.root, **corpus_options(args.corpus_option))
    audio = AudioOptions(sample_rate=args.sample_rate, trim_db=args.trim_db, duration=args.duration)
    store = FeatureStore(args.store)
    from featurekit.distributed import extract_here_or_there

    summary = extract_here_or_there(
        manifest,
        requests,
        store,
        corpus=args.corpus,
        audio=audio,
        scheduler=args.scheduler,
        jobs=args.jobs,
        progress=not args.quiet,
        flush_every=args.flush_every,
    )
    summary.seconds = time.perf_counter() - t0
    print("\n".join(summary.lines()))
    if summary.failures:
        print(
            f"{len(summary.failures)} file(s) failed (listed above); the others are stored.", file=sys.stderr
        )
        return 1
    return 0


# -- evaluate / report -----------------------------------------------------------------------------
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="experiment spec (TOML), e.g. pipelines/emodb.toml")
    p.add_argument("--root", help="corpus root (default: the spec's corpus.root_env variable)")
    p.add_argument(
        "--test-root",
        help="root of a cross_corpus protocol's test corpus (default: its protocol.test_corpus.root_env)",
    )
    p.add_argument(
        "--corpus-root",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="root of the spec's [corpora.NAME] (repeatable; default: its corpora.NAME.root_env)",
    )
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument(
        "--store",
        default=os.environ.get("FEATUREKIT_STORE", "store"),
        help="feature store (default: $FEATUREKIT_STORE or ./store)",
    )
    p.add_argument("--jobs", type=int, default=_default_jobs())
    p.add_argument(
        "--scheduler",
        default=os.environ.get("FEATUREKIT_SCHEDULER"),
        help="dask.distributed scheduler address (or FEATUREKIT_SCHEDULER)",
    )
    p.add_argument("--quiet", action="store_true")


def resolve_root(spec, root: str | None) -> str:
    if root:
        return root
    env = spec.corpus.get("root_env")
    if env and os.environ.get(env):
        return os.environ[env]
    raise SystemExit(f"{spec.path}: no corpus root: pass --root" + (f" or set {env}" if env else ""))


@command("evaluate", "run an experiment spec (speaker-independent by default)")
@_args(_evaluate_args)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from featurekit.evaluation import load_spec, run

    spec = load_spec(args.spec)
    roots = dict(item.split("=", 1) for item in args.corpus_root if "=" in item)
    if len(roots) != len(args.corpus_root):
        raise SystemExit("--corpus-root: expected NAME=PATH")
    if spec.corpora and args.root:
        raise SystemExit(f"{spec.path}: a multi-corpus spec takes --corpus-root NAME=PATH, not --root")
    if roots and not spec.corpora:
        raise SystemExit(f"{spec.path}: --corpus-root is for [corpora.NAME] specs; use --root")
    root = None if spec.corpora else resolve_root(spec, args.root)
    test_root = args.test_root
    if test_root is None and spec.protocol["name"] == "cross_corpus":
        env = spec.protocol["test_corpus"].get("root_env")
        test_root = os.environ.get(env) if env else None
    df = run(
        spec,
        root,
        args.out,
        store=args.store,
        jobs=args.jobs,
        progress=not args.quiet,
        scheduler=args.scheduler,
        test_root=test_root,
        roots=roots,
    )
    _print_summary(df, spec)
    print(f"results: {Path(args.out) / 'results.csv'}")
    return 0


def _print_summary(df, spec) -> None:
    primary = "uar" if spec.task_type == "classification" else "ccc"
    for protocol, part in df.groupby("protocol", sort=False):  # several: a cross-corpus matrix
        _print_protocol(part, primary, protocol)


def _print_protocol(df, primary: str, protocol: str) -> None:
    sel = df[(df.fold.isin(["mean", "std", "pooled"])) & (df.metric == primary)]
    piv = sel.pivot_table(
        index=["feature_set", "model", "normalisation", "target"],
        columns="fold",
        values="value",
        aggfunc="first",
    )
    print(f"\n{primary.upper()} ({protocol}):")
    for (fs, model, norm, target), r in piv.iterrows():
        t = "" if target == "label" else f" [{target}]"
        print(
            f"  {fs:40s} {model:10s} {norm:8s}{t} {r['mean']:.3f} +- {r['std']:.3f} "
            f"(pooled {r['pooled']:.3f})"
        )


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", help="results directories written by `featurekit evaluate`")
    p.add_argument("--format", default="md,csv,tex,html", help="comma-separated: md, csv, tex, html")
    p.add_argument("-o", "--out", required=True, help="report directory")


@command("report", "comparison tables, confusion matrices and an HTML page from results")
@_args(_report_args)
def cmd_report(args: argparse.Namespace) -> int:
    from featurekit.report import write_report

    paths = write_report(
        args.results, args.out, formats=[f.strip() for f in args.format.split(",") if f.strip()]
    )
    for p in paths:
        print(p)
    return 0


# -- demo ------------------------------------------------------------------------------------------
@command("demo", "synthetic end-to-end run: corpus -> features -> evaluation (data is SYNTHETIC)")
@_args(
    lambda p: (
        p.add_argument("--dir", default=None, help="working directory (default: a temp dir)"),
        p.add_argument("--jobs", type=int, default=_default_jobs()),
    )
)
def cmd_demo(args: argparse.Namespace) -> int:
    from featurekit.demo import run_demo

    return run_demo(args.dir, jobs=args.jobs)


# Modules that register further subcommands with @command (imported when the parser is built;
# each must be cheap to import).
COMMAND_MODULES = ("featurekit.deploy.commands", "featurekit.distributed.commands")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(prog="featurekit", description="speech emotion recognition toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (builder, fn, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        builder(p)
        p.set_defaults(func=fn)
    return parser


# Errors reported as one line (exit 2) instead of a traceback. Looked up lazily in sys.modules: an
# exception class whose module was never imported cannot have been raised, and importing the evaluation
# stack just to name its errors would cost a second on every `featurekit extract`.
EXPECTED_ERRORS = {
    "featurekit.audio": ("AudioError",),
    "featurekit.corpora.base": ("CorpusLayoutError",),
    "featurekit.registry": ("UnknownNameError",),
    "featurekit.evaluation.spec": ("SpecError",),
    "featurekit.evaluation.runner": ("DataError",),
    "featurekit.distributed._dask": ("DaskNotInstalledError", "EnvironmentMismatchError", "SchedulerError"),
}


def _expected_error(err: BaseException) -> bool:
    if isinstance(err, (FileNotFoundError, ValueError)):
        return True
    types = [getattr(sys.modules[m], n)
             for m, names in EXPECTED_ERRORS.items() if m in sys.modules for n in names]
    return isinstance(err, tuple(types))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as err:
        if not _expected_error(err):
            raise
        print(f"featurekit {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # run as a script: use the imported module, so plug-in commands register once
    from featurekit.cli import main as _main

    sys.exit(_main())

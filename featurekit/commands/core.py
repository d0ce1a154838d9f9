"""The core subcommands: ``corpora``, ``corpus``, ``features``, ``models``, ``extract``, ``evaluate``,
``audit``, ``report`` and ``demo`` (registered on import).

Importing this module must stay cheap (the CLI imports it to build its parser): everything heavy is
imported inside the command functions.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from featurekit.commands.base import (
    UsageError,
    _args,
    command,
    jobs_argument,
    log,
    resolve_root,
    resolve_store,
    store_argument,
)


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
    p.add_argument("name", nargs="?", help=argparse.SUPPRESS)  # the older positional form NAME ROOT
    p.add_argument("root", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--corpus", dest="corpus_name", metavar="NAME",
                   help="corpus adapter name (see `featurekit corpora`)")
    p.add_argument("--root", dest="corpus_root", metavar="ROOT", help="corpus root directory")
    p.add_argument("--corpus-option", action="append", default=[], metavar="KEY=VALUE",
                   help="adapter option, e.g. csv=list.csv for the csv adapter (repeatable; JSON values)")


def corpus_options(items: list[str]) -> dict:
    import json

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--corpus-option {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _one_of(flag: str, value: str | None, positional: str | None) -> str:
    if value and positional and value != positional:
        raise UsageError(f"{flag} {value!r} and the positional {positional!r} disagree; give one")
    if not (value or positional):
        raise UsageError("give --corpus NAME --root ROOT (e.g. featurekit corpus info --corpus emodb "
                         "--root data/emodb)")
    return value or positional


@command("corpus", "corpus info --corpus NAME --root ROOT: counts per label, speaker and session")
@_args(_corpus_args)
def cmd_corpus(args: argparse.Namespace) -> int:
    from featurekit.corpora import corpus_summary, load_corpus

    name = _one_of("--corpus", args.corpus_name, args.name)
    root = _one_of("--root", args.corpus_root, args.root)
    m = load_corpus(name, root, **corpus_options(args.corpus_option))
    counts = ", ".join(f"{m[c].nunique()} {c}s" for c in ("speaker", "session") if c in m.columns)
    print(f"{name} at {root}: {len(m)} utterances" + (f", {counts}" if counts else ""))
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
        missing = cls.missing_extra()
        if missing:
            line += f"\n{' ' * 13}(unavailable: {missing})"
        elif not args.no_dims and getattr(cls, "probe", True):
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
                reason = str(err).splitlines()[0] if str(err) else "they depend on its parameters"
                line += f"\n{' ' * 13}(dimensions not computed: {reason})"
        print(line)
    return 0


@command("models", "list the classifiers and regressors a spec's [models] can name")
@_args(lambda p: None)
def cmd_models(args: argparse.Namespace) -> int:
    from featurekit.evaluation.models import CLASSIFIERS, REGRESSORS

    for title, registry in (("classifiers", CLASSIFIERS), ("regressors", REGRESSORS)):
        print(f"{title}:")
        for name, ms in registry.items():
            missing = ms.missing_extra(name)
            print(f"  {name:12s} (unavailable: {missing})" if missing else f"  {name}")
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
    store_argument(p)
    jobs_argument(p)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument(
        "--trim-db", type=float, default=None, help="trim leading/trailing silence (dB below peak)"
    )
    p.add_argument("--duration", type=float, default=None, help="crop/pad every signal to this many seconds")
    p.add_argument(
        "--max-samples",
        type=int,
        default=2**27,  # featurekit.audio.DEFAULT_MAX_SAMPLES
        help="refuse (before decoding) a file that would decode to more samples (default 2**27)",
    )
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
    p.add_argument(
        "--flush-seconds",
        type=float,
        default=30.0,  # featurekit.extraction.FLUSH_SECONDS
        help="write buffered rows at least this often (default 30 s), so a kill loses little",
    )


def parse_params(items: list[str]) -> dict[str, dict]:
    import json

    out: dict[str, dict] = {}
    for item in items:
        key, eq, value = item.partition("=")
        ext, dot, name = key.partition(".")
        if not eq or not dot:
            raise UsageError(f"--param {item!r}: expected EXTRACTOR.NAME=VALUE")
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
    log.debug("tables: " + ", ".join(f"{r.extractor.name}.{k}" for r in requests for k in r.kinds))
    manifest = load_corpus(args.corpus, args.root, **corpus_options(args.corpus_option))
    log.debug(f"{args.corpus} at {args.root}: {len(manifest)} utterances")
    audio = AudioOptions(sample_rate=args.sample_rate, trim_db=args.trim_db, duration=args.duration,
                         max_samples=args.max_samples)
    store = FeatureStore(resolve_store(args))
    from featurekit.executor import executor_for
    from featurekit.extraction import extract

    with executor_for(jobs=args.jobs, scheduler=args.scheduler) as executor:
        summary = extract(
            manifest,
            requests,
            store,
            corpus=args.corpus,
            audio=audio,
            executor=executor,
            progress=not args.quiet,
            flush_every=args.flush_every,
            flush_seconds=args.flush_seconds,
        )
    summary.seconds = time.perf_counter() - t0
    print("\n".join(summary.lines()))
    if summary.failures:
        print(
            f"featurekit extract: {len(summary.failures)} file(s) failed (listed above); the others "
            "are stored.",
            file=sys.stderr,
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
    store_argument(p)
    jobs_argument(p, what=" for extraction and the folds")
    p.add_argument(
        "--scheduler",
        default=os.environ.get("FEATUREKIT_SCHEDULER"),
        help="dask.distributed scheduler address (or FEATUREKIT_SCHEDULER)",
    )


@command("evaluate", "run an experiment spec (speaker-independent by default)")
@_args(_evaluate_args)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from featurekit.api import evaluate
    from featurekit.evaluation import load_spec
    from featurekit.executor import executor_for

    spec = load_spec(args.spec)
    roots = dict(item.split("=", 1) for item in args.corpus_root if "=" in item)
    if len(roots) != len(args.corpus_root):
        raise UsageError("--corpus-root: expected NAME=PATH")
    if spec.corpora and args.root:
        raise UsageError(f"{spec.path}: a multi-corpus spec takes --corpus-root NAME=PATH, not --root")
    if roots and not spec.corpora:
        raise UsageError(f"{spec.path}: --corpus-root is for [corpora.NAME] specs; use --root")
    df = evaluate(
        spec,
        root=None if spec.corpora else resolve_root(spec, args.root),
        out=args.out,
        store=resolve_store(args),
        executor=executor_for(jobs=args.jobs, scheduler=args.scheduler),
        progress=not args.quiet,
        test_root=args.test_root,
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


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="experiment spec (TOML), e.g. pipelines/emodb.toml")
    p.add_argument("--root", help="corpus root (default: the spec's corpus.root_env variable)")
    p.add_argument("--test-root", help="root of a cross_corpus protocol's test corpus")
    store_argument(p)  # its fingerprint memo spares hashing every file again
    p.add_argument("--out", default=None, help="also write audit.json and audit.md into this directory")


@command("audit", "design audit of a spec on its corpus (confounds, leaks, fold health); fits nothing")
@_args(_audit_args)
def cmd_audit(args: argparse.Namespace) -> int:
    from featurekit.api import resolve_test_root
    from featurekit.audit import audit_spec
    from featurekit.evaluation import load_spec

    spec = load_spec(args.spec)
    root, test_root = resolve_root(spec, args.root), resolve_test_root(spec, args.test_root)
    report = audit_spec(spec, root, store=resolve_store(args), test_root=test_root)
    print(report.to_text())
    if args.out:
        for path in report.write(args.out):
            print(path)
    return 2 if report.blocked else 0


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
        jobs_argument(p),
    )
)
def cmd_demo(args: argparse.Namespace) -> int:
    from featurekit.demo import run_demo

    return run_demo(args.dir, jobs=args.jobs)

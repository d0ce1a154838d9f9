"""CLI subcommands of :mod:`featurekit.deploy` (registered on import): ``train`` and ``predict``.

Importing this module must stay cheap (the CLI imports it to build its parser): everything heavy is
imported inside the command functions.
"""

from __future__ import annotations

import argparse
import os
import sys

from featurekit.commands.base import _args, command, jobs_argument, store_argument


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="experiment spec (TOML), e.g. pipelines/emodb.toml")
    p.add_argument("--system", default=None,
                   help="FEATURESET:MODEL of the spec, e.g. egemaps:svm (optional if it has one of each)")
    p.add_argument("--root", help="corpus root (default: the spec's corpus.root_env variable)")
    p.add_argument("-o", "--out", required=True, help="model directory to write")
    store_argument(p)
    p.add_argument("--normalisation", choices=["none", "global", "speaker"], default=None,
                   help="feature normalisation (default: the spec's first)")
    jobs_argument(p, what=" for extraction and the hyperparameter search")
    p.add_argument("--force", action="store_true", help="replace an existing model directory")


@command("train", "fit a spec's FEATURESET:MODEL on a whole corpus and save a model directory")
@_args(_train_args)
def cmd_train(args: argparse.Namespace) -> int:
    import json

    from featurekit.commands.base import resolve_root, resolve_store
    from featurekit.deploy.training import train
    from featurekit.evaluation.spec import load_spec

    spec = load_spec(args.spec)
    root = resolve_root(spec, args.root)
    try:
        out = train(spec, args.system, root=root, out_dir=args.out, store=resolve_store(args),
                    normalisation=args.normalisation, jobs=args.jobs, overwrite=args.force,
                    progress=not args.quiet)
    except FileExistsError as err:
        print(f"featurekit train: error: {err}", file=sys.stderr)
        return 2
    meta = json.loads((out / "model.json").read_text())
    tr, model = meta["training"], meta["model"]
    print(f"model: {out}")
    inputs = "raw audio" if meta["feature_set"].get("waveform") else \
        f"{meta['feature_set']['n_features']} features"
    print(f"  system {meta['system']} ({meta['task']['type']}), normalisation "
          f"{meta['normalisation']['name']}, {inputs} at {meta['audio']['sample_rate']} Hz")
    print(f"  trained on {tr['n_utterances']} utterances of {tr['n_speakers']} speakers ({tr['corpus']})")
    for target, hp in model["hyperparameters"].items():
        s = model["search"][target]
        score = "" if s.get("best_score") is None else \
            f" (inner-CV {s['metric'].upper()} {s['best_score']:.3f}, {s['n_candidates']} candidates)"
        print(f"  hyperparameters of {target}{score}:")
        for name, value in hp.items():
            print(f"    {name:24s} {value}")
        if not hp:
            print("    (none searched: the model's parameters as given)")
    if meta["task"]["type"] == "classification":
        print(f"  classes: {', '.join(meta['task']['classes'])} ({meta['task']['probabilities']})")
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory written by `featurekit train`")
    p.add_argument("audio", nargs="+",
                   help="audio files, or one .csv with a path column (file or path) and optionally a "
                        "speaker column: each speaker's files are pooled as their enrolment")
    p.add_argument("--window", type=float, default=None,
                   help="window length in seconds (default: whole files)")
    p.add_argument("--hop", type=float, default=None, help="hop in seconds (default: the window length)")
    p.add_argument("-o", "--out", default=None,
                   help="output file, .csv or .json (format from the extension); default: CSV to stdout")
    jobs_argument(p, default=1, what=" across files")
    p.add_argument("--max-windows", type=int, default=50_000,  # deploy.windows.DEFAULT_MAX_WINDOWS
                   help="refuse a file that would yield more windows than this (default 50000)")
    p.add_argument("--speaker-reference", nargs="+", default=None, metavar="FILE",
                   help="enrolment recordings of the speaker of all inputs (models with per-speaker "
                        "normalisation; without enrolment the training population's statistics are used)")


@command("predict", "label recordings with a saved model (per file, or in sliding windows)")
@_args(_predict_args)
def cmd_predict(args: argparse.Namespace) -> int:
    import warnings

    from featurekit.deploy.inference import predict, write_predictions

    if args.out and os.path.splitext(args.out)[1].lower() not in (".csv", ".json"):
        print(f"featurekit predict: error: {args.out}: use a .csv or .json output file", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        try:
            audio, speakers = _predict_inputs(args.audio)
            df = predict(args.model, audio, window=args.window, hop=args.hop, jobs=args.jobs,
                         max_windows=args.max_windows, speaker_reference=args.speaker_reference,
                         speakers=speakers)
        except ValueError as err:
            print(f"featurekit predict: error: {err}", file=sys.stderr)
            return 2
    for w in caught:
        print(f"featurekit predict: warning: {w.message}", file=sys.stderr)
    write_predictions(df, args.out)
    failed = df[(df["level"] == "file") & df["error"].notna()]
    for _, r in failed.iterrows():
        print(f"featurekit predict: error: {r['error']}", file=sys.stderr)
    if args.out:
        print(f"{len(df)} rows -> {args.out}", file=sys.stderr)
    if len(failed):
        print(f"featurekit predict: {len(failed)} of {df['file'].nunique()} file(s) failed (rows with an "
              f"error); the others are predicted", file=sys.stderr)
        return 1
    return 0


def _predict_inputs(audio: list[str]) -> tuple[list[str], list[str] | None]:
    """Audio paths and their speakers (None) from the arguments, or from one CSV (paths relative to it)."""
    if len(audio) != 1 or not audio[0].lower().endswith(".csv"):
        return audio, None
    import pandas as pd

    table = pd.read_csv(audio[0], dtype=str, keep_default_na=False)
    col = next((c for c in ("path", "file") if c in table.columns), None)
    if col is None:
        raise ValueError(f"{audio[0]}: no path column (path or file); it has {list(table.columns)}")
    base = os.path.dirname(os.path.abspath(audio[0]))
    paths = [p if os.path.isabs(p) else os.path.join(base, p) for p in table[col]]
    if "speaker" not in table.columns:
        return paths, None
    if (table["speaker"].str.strip() == "").any():
        raise ValueError(f"{audio[0]}: empty speaker in row(s) "
                         f"{[i + 2 for i in table.index[table['speaker'].str.strip() == ''][:5]]}")
    return paths, table["speaker"].str.strip().tolist()

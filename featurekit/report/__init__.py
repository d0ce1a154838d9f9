"""Reports from ``featurekit evaluate`` results: comparison tables, confusion matrices, layer plots.

:func:`write_report` reads one or several results directories (``results.csv``,
``predictions.csv``, ``spec.json``), groups comparable results into experiments (same corpus,
task and protocol) and writes, into the report directory::

    results.csv            the results (several directories: concatenated, with a ``source`` column)
    report.md              all tables (best per column in bold) and figures        (format md)
    tables/KEY.csv         one file per table: numbers (mean, std, ci_low, ci_high, flags) (format csv)
    tables/KEY.tex         booktabs tables; report.tex includes them                (format tex)
    index.html             one self-contained page with every table and figure     (format html)
    figures/results_*.png  every system's pooled primary metric with its 95 % interval
    figures/cm_*.png       confusion matrices of the best system per feature group, the top 3, declared
    figures/layers_*.png   the primary metric per encoder layer (feature sets with ``@LAYER``)
    figures/attribution_*.png, importance_*.png   saliency / integrated-gradients maps of the best torch
                           system and permutation importance of the best classical one (runs with
                           ``[attribution]``; :mod:`featurekit.report.attribution`)
    figures/*.pdf          every figure again as PDF (vector, for a paper)

Each results directory's design audit (``audit.json``, see :mod:`featurekit.audit`), when it has one,
comes first in report.md, index.html and report.tex.

Tables per classification experiment: UAR mean ± std across folds (rows: feature sets grouped by
extractor, so that native / HSF1 / HSF2 / stats / LLD / layers of one extractor sit together;
columns: model / normalisation), pooled UAR with its 95 % bootstrap interval, and the best systems.
Per regression experiment: CCC per target and the mean CCC, pooled CCC with intervals, best
systems. Every caption names the protocol and flags a speaker-dependent one. Names are display names
(:mod:`featurekit.report.names`; the spec's ``[report] display_names`` override them); the main table is
split by normalisation when it would not fit a page. Every grid states how many systems were compared
(the best of many is optimistic), marks the overall best (``†``), the systems not significantly worse
than it (``‡``, paired tests in :mod:`featurekit.report.significance`) and the systems the spec
declared before its run (``§``, ``[report] declared``); recall per class of the best systems and a
significance table follow.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from featurekit.report.attribution import attribution_figures, attribution_tables
from featurekit.report.audit import load_audits
from featurekit.report.figures import Figure, make_figures, matrix_figures
from featurekit.report.formats import FORMATS, Report, Section, writer
from featurekit.report.tables import (
    Experiment,
    ReportError,
    Table,
    build_tables,
    load_experiments,
    parse_feature_set_name,
)

DEFAULT_FORMATS = ("md", "csv", "tex", "html")


def _copy_results(dirs: Sequence[Path], out_dir: Path) -> Path:
    """``results.csv`` of one directory copied as is, or those of several concatenated with ``source``."""
    path = out_dir / "results.csv"
    if len(dirs) == 1:
        shutil.copyfile(dirs[0] / "results.csv", path)
        return path
    frames = []
    for d in dirs:
        df = pd.read_csv(d / "results.csv", dtype={"fold": str, "target": str})
        df.insert(0, "source", str(d))
        frames.append(df)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False, float_format="%.6g")
    return path


def build_report(results_dirs: Sequence[str | Path], out_dir: str | Path, *, top: int = 3) -> Report:
    """Load the results, build every table and write the figures (PNG) into ``out_dir/figures``.

    Parameters
    ----------
    results_dirs
        Results directories written by ``featurekit evaluate``.
    out_dir
        The report directory (created).
    top
        Confusion matrices and the best-systems table cover at least the overall ``top`` systems.

    Returns
    -------
    Report
        What the writers of :data:`featurekit.report.formats.FORMATS` render.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    experiments = load_experiments(list(results_dirs))
    used: set[str] = set()
    sections = [Section(exp, build_tables(exp) + attribution_tables(exp),
                        make_figures(exp, out_dir, used=used, top=top)
                        + attribution_figures(exp, out_dir, used=used))
                for exp in experiments]
    heatmaps = matrix_figures(experiments, out_dir, used=used)  # cross-corpus matrices: first section
    if heatmaps and sections:
        sections[0].figures[:0] = heatmaps
    return Report(sections, [Path(d) for d in results_dirs], audits=load_audits(results_dirs))


def write_report(results_dirs: Sequence[str | Path] | str | Path, out_dir: str | Path, *,
                 formats: Iterable[str] = DEFAULT_FORMATS) -> list[Path]:
    """Write the comparison report of one or several results directories.

    Parameters
    ----------
    results_dirs
        Directories written by ``featurekit evaluate`` (a single path is accepted too). Their
        results are concatenated; comparable ones (same corpus, task, protocol) share tables.
    out_dir
        Report directory (created if needed); existing files of the same names are replaced.
    formats
        Any of ``md``, ``csv``, ``tex``, ``html`` (see :mod:`featurekit.report.formats`).

    Returns
    -------
    list of pathlib.Path
        Every file written: ``results.csv``, the figures, then each format's files.

    Raises
    ------
    ValueError
        For an unknown format; :class:`ReportError` (a ``ValueError``) for a missing or malformed
        results directory.
    """
    if isinstance(results_dirs, (str, Path)):
        results_dirs = [results_dirs]
    formats = [formats] if isinstance(formats, str) else list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; known: {', '.join(FORMATS.names())}")
    dirs = list(dict.fromkeys(Path(d) for d in results_dirs))
    out_dir = Path(out_dir)
    report = build_report(dirs, out_dir)
    paths = [_copy_results(dirs, out_dir)]
    paths += [out_dir / p for sec in report.sections for f in sec.figures for p in (f.path, f.vector) if p]
    for name in formats:
        paths += writer(name)(report, out_dir)
    return paths


__all__ = ["DEFAULT_FORMATS", "FORMATS", "Experiment", "Figure", "Report", "ReportError", "Section", "Table",
           "build_report", "build_tables", "load_experiments", "parse_feature_set_name", "write_report"]

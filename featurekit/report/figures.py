"""Report figures (PNG and PDF, matplotlib's Agg canvas; pyplot and its global backend are not touched).

Every figure is written as ``figures/NAME.png`` (embedded in ``index.html``, linked from the markdown)
and ``figures/NAME.pdf`` (vector, for a paper; ``Figure.vector``). Titles use display names.

- The results figure (:func:`results_figure`): the systems' pooled primary metric with its 95 %
  bootstrap interval, best first, the overall best and the systems not significantly worse marked.
- Confusion matrices of the best systems (:func:`confusion_figures`): predictions of all folds
  pooled, each cell the row-normalised recall with the count below it.
- Primary metric per encoder layer (:func:`layer_figures`) for feature sets with ``@LAYER``
  variants of one extractor.
- Cross-corpus matrix heatmaps (:func:`matrix_figures`): pooled UAR of every (training corpus, test
  corpus) pair with its 95 % bootstrap interval, one panel per system.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurekit.evaluation.metrics import confusion
from featurekit.featureset import TableKind, TableRef, format_feature_set
from featurekit.report.tables import (
    BEST_MARK,
    DECLARED_MARK,
    METRIC_LABELS,
    PM,
    SIMILAR_MARK,
    Experiment,
    best_systems,
    layer_sort_key,
    parse_feature_set_name,
    safe_name,
    system_scores,
)

FIGURES_DIR = "figures"


@dataclass
class Figure:
    """A written figure.

    Attributes
    ----------
    path
        Path relative to the report directory (``figures/NAME.png``), with ``/`` separators.
    caption
        What it shows.
    kind
        ``results``, ``confusion``, ``layers`` or ``matrix``.
    vector
        The same figure as PDF, relative to the report directory (``None``: none).
    """

    path: str
    caption: str
    kind: str
    vector: str | None = None


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _unique(directory: Path, stem: str, used: set[str]) -> Path:
    name, k = f"{stem}.png", 2
    while name in used:
        name, k = f"{stem}_{k}.png", k + 1
    used.add(name)
    return directory / name


def save_figure(fig, path: Path) -> str:
    """Write ``fig`` as ``path`` (PNG) and beside it as PDF; returns the PDF's path relative to the report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    fig.savefig(path.with_suffix(".pdf"))
    return f"{FIGURES_DIR}/{path.with_suffix('.pdf').name}"


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], path: Path,
                   title: str) -> Path:
    """Write a confusion-matrix PNG: row-normalised recall (colour, value) and counts.

    Parameters
    ----------
    y_true, y_pred
        Class labels (strings) of the pooled predictions.
    classes
        Class order of rows (true) and columns (predicted).
    path
        Output PNG.
    title
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    counts = confusion(np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object), classes)
    support = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, support, out=np.zeros(counts.shape, float), where=support > 0)
    n = len(classes)
    size = max(3.6, 0.75 * n + 2.2)
    fig = _new_figure(size + 0.8, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="recall (row-normalised)")
    fontsize = 9 if n <= 8 else 7
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{recall[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center",
                    fontsize=fontsize, color="white" if recall[i, j] > 0.55 else "black")
    ax.set_xticks(range(n), labels=classes, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def confusion_figures(exp: Experiment, out_dir: Path, *, top: int = 3, used: set[str] | None = None
                      ) -> list[Figure]:
    """Confusion matrices of the best system per feature group and of the overall ``top`` systems.

    Parameters
    ----------
    exp
        A classification experiment with predictions.
    out_dir
        The report directory; PNGs go to ``out_dir/figures``.
    top
        How many of the overall best systems to include at least.
    used
        File names already taken in ``figures/`` (updated).

    Returns
    -------
    list of Figure
        Best system first; empty for regression or without ``predictions.csv``.
    """
    if exp.task_type != "classification" or exp.predictions is None:
        return []
    used = set() if used is None else used
    preds = exp.predictions
    target = exp.targets[0]
    if "target" in preds:
        preds = preds[preds["target"].astype(str) == target]
    metric, _ = exp.primary
    label = METRIC_LABELS.get(metric, metric)
    out = []
    for _, r in best_systems(exp, top).iterrows():
        sel = preds[(preds["feature_set"] == r["feature_set"]) & (preds["model"] == r["model"])
                    & (preds["normalisation"] == r["normalisation"])]
        if sel.empty:
            continue
        y_true, y_pred = sel["y_true"].astype(str).to_numpy(), sel["y_pred"].astype(str).to_numpy()
        classes = sorted(set(exp.classes) | set(y_true) | set(y_pred))
        stem = safe_name(f"cm_{exp.key}_{r['feature_set']}_{r['model']}_{r['normalisation']}")
        path = _unique(out_dir / FIGURES_DIR, stem, used)
        names = exp.names
        title = (f"{names.feature_set(r['feature_set'])}\n{names.model(r['model'])}, "
                 f"{names.normalisation(r['normalisation'])}: {label} "
                 f"{r['score']:.3f} {PM} {r['score_std']:.3f} across folds, pooled {r['pooled']:.3f}")
        plot_confusion(y_true, y_pred, classes, path, title)
        caption = (f"{names.system(r['feature_set'], r['model'], r['normalisation'])}: confusion "
                   f"matrix of the pooled predictions ({len(sel)} utterances); recall per true class, counts "
                   f"in brackets. "
                   f"{label} {r['score']:.3f} {PM} {r['score_std']:.3f} across folds.")
        out.append(Figure(f"{FIGURES_DIR}/{path.name}", caption, "confusion",
                          f"{FIGURES_DIR}/{path.with_suffix('.pdf').name}"))
    return out


def layer_figures(exp: Experiment, out_dir: Path, *, used: set[str] | None = None) -> list[Figure]:
    """One plot per extractor (and table kind) with ``@LAYER`` variants: metric per layer.

    Each model/normalisation is a line with across-fold std error bars; classification plots show
    the chance level. Only extractors with at least two layers get a plot.

    Parameters
    ----------
    exp
        The experiment.
    out_dir
        The report directory; PNGs go to ``out_dir/figures``.
    used
        File names already taken in ``figures/`` (updated).

    Returns
    -------
    list of Figure
    """
    used = set() if used is None else used
    scores = system_scores(exp)
    if scores.empty:
        return []
    infos = {f: parse_feature_set_name(f) for f in scores["feature_set"].unique()}
    scores = scores[[infos[f].layer is not None for f in scores["feature_set"]]]
    if scores.empty:
        return []
    scores = scores.assign(extractor=[infos[f].extractor for f in scores["feature_set"]],
                           kind=[infos[f].kind for f in scores["feature_set"]],
                           layer=[infos[f].layer for f in scores["feature_set"]])
    metric, _ = exp.primary
    label = METRIC_LABELS.get(metric, metric)
    if exp.task_type == "regression" and len(exp.targets) > 1:
        label = f"mean {label} over {len(exp.targets)} targets"
    out = []
    for (extractor, kind), part in scores.groupby(["extractor", "kind"], sort=False):
        layers = sorted(part["layer"].unique(), key=layer_sort_key)
        if len(layers) < 2:
            continue
        x = {lay: i for i, lay in enumerate(layers)}
        fig = _new_figure(max(5.0, 0.45 * len(layers) + 3.0), 3.8)
        ax = fig.add_subplot(1, 1, 1)
        for (model, norm), line in part.groupby(["model", "normalisation"], sort=False):
            line = line.assign(pos=line["layer"].map(x)).sort_values("pos")
            yerr = line["score_std"].to_numpy(float)
            ax.errorbar(line["pos"], line["score"],
                        yerr=None if np.isnan(yerr).all() else np.nan_to_num(yerr), marker="o", capsize=3,
                        label=f"{exp.names.model(model)} / {exp.names.normalisation(norm)}")
        if exp.task_type == "classification" and exp.classes:
            ax.axhline(1 / len(exp.classes), color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(range(len(layers)), labels=[str(v) for v in layers])
        ax.set_xlabel("encoder layer (negative: counted from the last)")
        ax.set_ylabel(f"{label} (mean {PM} std)")
        what = exp.names.feature_set(format_feature_set(TableRef(
            extractor, None if kind == parse_feature_set_name(extractor).kind else TableKind(kind))))
        ax.set_title(f"{what}: {label} per layer", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = _unique(out_dir / FIGURES_DIR, safe_name(f"layers_{exp.key}_{extractor}_{kind}"), used)
        vector = save_figure(fig, path)
        caption = (f"{what}: {label} (mean {PM} std across folds) per encoder layer, one line per model / "
                   f"normalisation.")
        out.append(Figure(f"{FIGURES_DIR}/{path.name}", caption, "layers", vector))
    return out


def results_figure(exp: Experiment, out_dir: Path, *, used: set[str] | None = None,
                   limit: int = 30) -> list[Figure]:
    """The systems (best first, at most ``limit`` plus the declared ones) with their 95 % intervals.

    Pooled primary metric with its bootstrap interval where ``results.csv`` has one, else the mean
    across folds with its std; the overall best, the systems not significantly worse than it and the
    declared systems are marked as in the tables.

    Returns
    -------
    list of Figure
        One figure (none without systems).
    """
    used = set() if used is None else used
    sig = exp.significance
    if sig.empty:
        return []
    shown = sig[(sig.index < limit) | sig["declared"]]
    metric, _ = exp.primary
    label = METRIC_LABELS.get(metric, metric)
    if exp.task_type == "regression" and len(exp.targets) > 1:
        label = f"mean {label} over {len(exp.targets)} targets"
    pooled = exp.task_type == "classification" and shown["pooled_low"].notna().any()
    if pooled:
        value, low, high = shown["pooled"], shown["pooled_low"], shown["pooled_high"]
        what = f"pooled {label} with 95% bootstrap interval"
    else:
        value = shown["score"]
        low, high = value - shown["score_std"].fillna(0), value + shown["score_std"].fillna(0)
        what = f"{label}, mean {PM} std across folds"
    names = [exp.names.system(*k) for k in shown[["feature_set", "model", "normalisation"]].itertuples(
        index=False, name=None)]
    marks = [(BEST_MARK if b else SIMILAR_MARK if nw else "") + (DECLARED_MARK if d else "")
             for b, nw, d in zip(shown["overall_best"], shown["not_worse"], shown["declared"])]
    n = len(shown)
    fig = _new_figure(7.5, 0.26 * n + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(n)[::-1]
    colours = ["#c0392b" if b else "#2e86c1" if nw else "#7f8c8d"
               for b, nw in zip(shown["overall_best"], shown["not_worse"])]
    v = value.to_numpy(float)
    err = np.vstack([np.clip(v - low.to_numpy(float), 0, None), np.clip(high.to_numpy(float) - v, 0, None)])
    for k in range(n):
        ax.errorbar(v[k], y[k], xerr=np.nan_to_num(err[:, k:k + 1]), fmt="o", color=colours[k], capsize=2,
                    markersize=4)
    if exp.task_type == "classification" and exp.classes:
        ax.axvline(1 / len(exp.classes), color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, labels=[f"{t} {m}".rstrip() for t, m in zip(names, marks)], fontsize=7)
    ax.set_xlabel(what)
    more = f" (top {limit} of {exp.n_systems} shown)" if exp.n_systems > n else ""
    ax.set_title(f"{exp.title}: {exp.n_systems} systems{more}", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path = _unique(out_dir / FIGURES_DIR, safe_name(f"results_{exp.key}"), used)
    vector = save_figure(fig, path)
    caption = (f"{what} per system, best first{more}; red {BEST_MARK}: overall best, blue {SIMILAR_MARK}: "
               f"not significantly worse than the best (Holm-corrected paired test), {DECLARED_MARK}: "
               f"declared in the spec"
               + ("; dashed: chance level" if exp.task_type == "classification" else "") + ".")
    return [Figure(f"{FIGURES_DIR}/{path.name}", caption, "results", vector)]


def matrix_values(results) -> dict[tuple[str, str, str], dict[tuple[str, str], tuple[float, float, float]]]:
    """``{(feature set, model, normalisation): {(train, test): (uar, low, high)}}`` from the pooled rows
    of a cross-corpus matrix run (protocols ``matrix A -> B (...)``)."""
    from featurekit.evaluation.protocols import parse_matrix_scope

    out: dict = {}
    pooled = results[results["fold"].astype(str) == "pooled"]
    for _, r in pooled.iterrows():
        pair = parse_matrix_scope(r["protocol"])
        if pair is None or r["metric"] not in ("uar", "uar_ci95_low", "uar_ci95_high"):
            continue
        cell = out.setdefault((r["feature_set"], r["model"], r["normalisation"]), {}).setdefault(pair, {})
        cell[r["metric"]] = float(r["value"])
    return {k: {p: (v.get("uar", np.nan), v.get("uar_ci95_low", np.nan), v.get("uar_ci95_high", np.nan))
                for p, v in pairs.items()} for k, pairs in out.items()}


def plot_matrix_heatmaps(values: dict, path: Path, title: str) -> Path:
    """Write one PNG of UAR heatmaps (rows: training corpus, columns: test corpus), a panel per system,
    each cell annotated with the UAR and its 95 % interval."""
    systems = sorted(values)
    corpora = list(dict.fromkeys(c for pairs in values.values() for pair in pairs for c in pair))
    ncol = min(4, len(systems))
    nrow = -(-len(systems) // ncol)
    size = 0.9 * len(corpora) + 1.0
    fig = _new_figure(ncol * size + 1.2, nrow * (size + 0.3) + 0.5)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    image = None
    for ax, system in zip(axes.flat, systems):
        grid = np.full((len(corpora), len(corpora)), np.nan)
        for (a, b), (uar, lo, hi) in values[system].items():
            i, j = corpora.index(a), corpora.index(b)
            grid[i, j] = uar
            ax.text(j, i, f"{uar:.3f}\n[{lo:.2f}, {hi:.2f}]", ha="center", va="center", fontsize=7,
                    color="white" if uar < 0.55 else "black")
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(corpora)), corpora, fontsize=7)
        ax.set_yticks(range(len(corpora)), corpora, fontsize=7)
        ax.set_title(textwrap.fill(" | ".join(system), width=38), fontsize=7)
        if ax in axes[-1] or ax is axes.flat[len(systems) - 1]:
            ax.set_xlabel("test corpus", fontsize=7)
        if ax in axes[:, 0]:
            ax.set_ylabel("training corpus", fontsize=7)
    for ax in list(axes.flat)[len(systems):]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="UAR")
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    return path


def matrix_figures(experiments, out_dir: Path, *, used: set[str] | None = None) -> list[Figure]:
    """The heatmap of every results directory that holds a cross-corpus matrix (several experiments of
    a report, one per matrix entry, share it)."""
    import pandas as pd

    used = set() if used is None else used
    frames = [e.results for e in experiments if e.task_type == "classification"]
    if not frames:
        return []
    results = pd.concat(frames, ignore_index=True)
    out = []
    for source, part in results.groupby("source", sort=False):
        values = matrix_values(part)
        if not values:
            continue
        path = _unique(out_dir / FIGURES_DIR, safe_name(f"matrix_{Path(str(source)).name}"), used)
        plot_matrix_heatmaps(values, path, "Cross-corpus matrix: pooled UAR [95 % bootstrap interval]")
        caption = ("Cross-corpus matrix: pooled UAR of every training corpus (rows) x test corpus "
                   "(columns); the diagonal is leave-one-speaker-out within the corpus, off-diagonal cells "
                   "train on all of one corpus and test on all of the other. Brackets: 95 % bootstrap "
                   "interval.")
        out.append(Figure(f"{FIGURES_DIR}/{path.name}", caption, "matrix",
                          f"{FIGURES_DIR}/{path.with_suffix('.pdf').name}"))
    return out


def make_figures(exp: Experiment, out_dir: Path, *, used: set[str] | None = None,
                 top: int = 3) -> list[Figure]:
    """All figures of one experiment (results with intervals, confusion matrices, then layer plots)."""
    used = set() if used is None else used
    return (results_figure(exp, out_dir, used=used) + confusion_figures(exp, out_dir, top=top, used=used)
            + layer_figures(exp, out_dir, used=used))


__all__ = ["FIGURES_DIR", "Figure", "confusion_figures", "layer_figures", "make_figures", "matrix_figures",
           "matrix_values", "plot_confusion", "plot_matrix_heatmaps", "results_figure", "save_figure"]

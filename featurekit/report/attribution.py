"""Attribution in the report: gradient maps of the best torch system, permutation importance of the
best classical system (figures) and the top features of every system with permutation importance
(a table).

Reads what :mod:`featurekit.evaluation.attribution` stored per cell (``attribution.json`` of each
results directory); a results directory without attribution adds nothing, so reports of runs without an
``[attribution]`` section are unchanged.

- Gradient maps (:func:`plot_attribution_maps`): one panel per class, input feature (e.g. mel band)
  x normalised time, the mean over every test utterance of that class in all folds (each scored by
  its own fold's model), and the per-feature profile (mass per band summed over time) per class.
- Importance (:func:`plot_importance`): the ``top_k`` features by mean UAR drop across folds, with
  the across-fold std as error bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from featurekit.evaluation.attribution import GRADIENT_METHODS, CellAttribution, load_cell_attribution
from featurekit.report.figures import FIGURES_DIR, Figure, _new_figure, _unique, save_figure
from featurekit.report.tables import KEY_COLUMNS, PM, Experiment, Table, fmt, safe_name, system_scores

#: Figure kinds of this module (the markdown and HTML writers put them under "Attribution").
ATTRIBUTION_KINDS = ("attribution_map", "importance")

METHOD_LABELS = {"saliency": "Saliency |gradient|", "integrated_gradients": "Integrated gradients |IG|",
                 "permutation": "Permutation importance"}


@dataclass
class ExperimentAttribution:
    """The stored attribution of an experiment's systems, ranked like the report's tables."""

    systems: list[CellAttribution]  # best system first
    top_k: int


def experiment_attribution(exp: Experiment) -> ExperimentAttribution:
    """Every system of ``exp`` with stored attribution (a later source wins), best first."""
    found: dict[tuple[str, str, str], CellAttribution] = {}
    top_k = 10
    for source in exp.sources:
        cells, top_k = load_cell_attribution(source)
        found.update({(c.feature_set, c.model, c.normalisation): c for c in cells})
    if not found:
        return ExperimentAttribution([], top_k)
    ranked = [tuple(k) for k in system_scores(exp)[KEY_COLUMNS].itertuples(index=False, name=None)]
    return ExperimentAttribution([found[k] for k in ranked if k in found], top_k)


def _feature_axis_label(names: list[str]) -> str:
    return "mel band" if names and all("mel" in n.lower() for n in names) else "input feature"


def plot_attribution_maps(maps: np.ndarray, profile: np.ndarray, counts: np.ndarray, classes: list[str],
                          feature_names: list[str], path: Path, title: str) -> Path:
    """Write the per-class maps ``(K, F, B)`` (feature x normalised time) and profiles ``(K, F)``."""
    shown = [k for k in range(len(classes)) if counts[k] > 0]
    n = len(shown) + 1
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig = _new_figure(3.2 * cols + 0.8, 2.9 * rows + 0.6)
    fig.subplots_adjust(hspace=0.6, wspace=0.45, top=0.86, bottom=0.1, left=0.07, right=0.86)
    vmax = float(max(maps[shown].max(), 1e-12)) if shown else 1.0
    ylabel = _feature_axis_label(feature_names)
    for i, k in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        im = ax.imshow(maps[k], aspect="auto", origin="lower", cmap="magma", vmin=0.0, vmax=vmax,
                       extent=(0.0, 1.0, -0.5, maps.shape[1] - 0.5), interpolation="nearest")
        ax.set_title(f"{classes[k]} (n={int(counts[k])})", fontsize=9)
        ax.set_xlabel("normalised time", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=fig.axes, fraction=0.02, pad=0.02, label="share of attribution mass")
    ax = fig.add_subplot(rows, cols, n)
    for k in shown:
        ax.plot(profile[k], np.arange(profile.shape[1]), label=classes[k], linewidth=1)
    ax.set_xlabel("mass per band (over time)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title("profile", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
    return path


def plot_importance(names: list[str], mean: np.ndarray, std: np.ndarray, path: Path, title: str) -> Path:
    """Write a horizontal bar chart: the given features' mean UAR drop with across-fold std."""
    fig = _new_figure(7.0, 0.32 * len(names) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(names))[::-1]
    ax.barh(y, mean, xerr=std, color="#4c72b0", capsize=2)
    ax.set_yticks(y, labels=names, fontsize=7)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel(f"drop in UAR when shuffled (mean {PM} std across folds)", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def _system_text(exp: Experiment, c: CellAttribution) -> str:
    return exp.names.system(c.feature_set, c.model, c.normalisation)


def attribution_figures(exp: Experiment, out_dir: Path, *, used: set[str] | None = None) -> list[Figure]:
    """Gradient maps of the best system with them (a torch head) and the permutation importance of the
    best system with it (a classical model on vectors); empty without stored attribution."""
    used = set() if used is None else used
    found = experiment_attribution(exp)
    out: list[Figure] = []
    torch_best = next((c for c in found.systems if any(m.value in c.methods for m in GRADIENT_METHODS)), None)
    if torch_best is not None:
        for m in (g.value for g in GRADIENT_METHODS):
            if m not in torch_best.methods:
                continue
            a = torch_best.arrays
            counts = a[f"{m}_count"]
            stem = safe_name(f"attribution_{m}_{exp.key}_{torch_best.feature_set}_{torch_best.model}_"
                             f"{torch_best.normalisation}")
            path = _unique(out_dir / FIGURES_DIR, stem, used)
            system = _system_text(exp, torch_best)
            plot_attribution_maps(a[f"{m}_maps"], a[f"{m}_profile"], counts, torch_best.classes,
                                  torch_best.feature_names, path, f"{METHOD_LABELS[m]}: {system}")
            what = ("|gradient| of the true class' logit per input standard deviation" if m == "saliency"
                    else "|integrated gradients| of the true class' logit from the training-mean input")
            caption = (f"{METHOD_LABELS[m]} of {system} (the best system with gradient attribution): "
                       f"{what}, per class the mean over its {int(counts.sum())} test utterances of all "
                       f"{len(torch_best.folds)} folds, each map from its own fold's model on a normalised "
                       f"time axis (0 = start, 1 = end) and scaled to unit mass; right: mass per "
                       f"{_feature_axis_label(torch_best.feature_names)}.")
            out.append(Figure(f"{FIGURES_DIR}/{path.name}", caption, "attribution_map",
                              f"{FIGURES_DIR}/{path.with_suffix('.pdf').name}"))
    classical = next((c for c in found.systems if c.permutation() is not None), None)
    if classical is not None:
        mean, std = classical.permutation()
        top = np.argsort(-mean, kind="stable")[:found.top_k]
        stem = safe_name(f"importance_{exp.key}_{classical.feature_set}_{classical.model}_"
                         f"{classical.normalisation}")
        path = _unique(out_dir / FIGURES_DIR, stem, used)
        system = _system_text(exp, classical)
        plot_importance([classical.feature_names[i] for i in top], mean[top], std[top], path,
                        f"Permutation importance: {system}")
        caption = (f"Permutation importance of {system} (the best system with it): the top {len(top)} of "
                   f"{len(mean)} features by the drop in UAR when the feature is shuffled in a fold's test "
                   f"data (fold's own fitted model), mean {PM} std across {len(classical.folds)} folds.")
        out.append(Figure(f"{FIGURES_DIR}/{path.name}", caption, "importance",
                          f"{FIGURES_DIR}/{path.with_suffix('.pdf').name}"))
    return out


def attribution_tables(exp: Experiment) -> list[Table]:
    """The top features by permutation importance of every system with it (best system first); no
    table without stored permutation importance."""
    found = experiment_attribution(exp)
    rows, nums = [], []
    for c in found.systems:
        perm = c.permutation()
        if perm is None:
            continue
        mean, std = perm
        for rank, i in enumerate(np.argsort(-mean, kind="stable")[:found.top_k], start=1):
            rows.append({"system": _system_text(exp, c), "rank": str(rank), "feature": c.feature_names[i],
                         f"UAR drop (mean {PM} std)": f"{fmt(mean[i])} {PM} {fmt(std[i])}"})
            nums.append({"feature_set": c.feature_set, "model": c.model, "normalisation": c.normalisation,
                         "rank": rank, "feature": c.feature_names[i], "mean": float(mean[i]),
                         "std": float(std[i]), "n_folds": len(c.folds)})
    if not rows:
        return []
    data = pd.DataFrame(rows)
    caption = (f"Attribution: the top {found.top_k} features of each system with permutation importance "
               f"(best system first): the drop in UAR when one feature is shuffled in a fold's test data, "
               f"scored with that fold's fitted model, mean {PM} std across folds. {exp.protocol_text}.")
    return [Table(f"{exp.key}_attribution", "Attribution: permutation importance", caption, data,
                  pd.DataFrame(False, index=data.index, columns=data.columns), group_column=None,
                  warning=not exp.speaker_independent, numbers=pd.DataFrame(nums))]


__all__ = ["ATTRIBUTION_KINDS", "ExperimentAttribution", "attribution_figures", "attribution_tables",
           "experiment_attribution", "plot_attribution_maps", "plot_importance"]

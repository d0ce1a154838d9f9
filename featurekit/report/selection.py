"""The systems of an experiment: their summary, order and scores, the best of them, the paired tests
against the best and the marks that tables and figures show.

A *system* is a (feature set, model, normalisation) triple (:data:`KEY_COLUMNS`). :func:`system_scores`
ranks every system of an experiment by its primary metric, :func:`best_systems` picks the best of every
feature group, the overall top and the declared ones, and :func:`significance_frame` tests the best
against every other one (:mod:`featurekit.report.significance`); :func:`system_marks` gives a system's
marks: ``†`` overall best, ``‡`` not significantly worse than it, ``§`` declared in the spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from featurekit.report.names import FUSION, FeatureSetInfo, parse_feature_set_name
from featurekit.report.significance import compare_to_best

if TYPE_CHECKING:  # the experiment imports this module (Experiment.significance)
    from featurekit.report.experiments import Experiment


SUMMARY_FOLDS = ("mean", "std", "pooled")
KEY_COLUMNS = ["feature_set", "model", "normalisation"]
BEST_MARK = "\u2020"  # dagger: the overall best system
SIMILAR_MARK = "\u2021"  # double dagger: not significantly worse than the best
DECLARED_MARK = "\u00a7"  # section sign: a system declared in the spec before its run


# -- summary and order of the systems ------------------------------------------------------------
def summary_values(exp: Experiment) -> pd.DataFrame:
    """One row per (feature set, model, normalisation, target) and one column per ``fold:metric``.

    Columns are ``"mean:uar"``, ``"std:uar"``, ``"pooled:uar"``, ``"pooled:uar_ci95_low"``, ... (the
    across-fold summaries and pooled values present in ``results.csv``).
    """
    r = exp.results[exp.results["fold"].isin(SUMMARY_FOLDS)]
    wide = r.assign(col=r["fold"] + ":" + r["metric"]).pivot_table(
        index=KEY_COLUMNS + ["target"], columns="col", values="value", aggfunc="last")
    wide.columns.name = None
    return wide.reset_index()


def _systems_order(exp: Experiment) -> list[FeatureSetInfo]:
    """Feature sets grouped by extractor (groups in order of first appearance, fusion last)."""
    names = list(dict.fromkeys(exp.results["feature_set"].astype(str)))
    infos = [parse_feature_set_name(n) for n in names]
    groups = list(dict.fromkeys(i.group for i in infos if i.group != FUSION))
    if any(i.group == FUSION for i in infos):
        groups.append(FUSION)
    rank = {g: k for k, g in enumerate(groups)}
    return sorted(infos, key=lambda i: (rank[i.group], i.order))


# -- selection: the best of many, significance, declared systems ---------------------------------
def significance_frame(exp: Experiment) -> pd.DataFrame:
    """Every system (best first) with the paired tests against the best and its marks.

    Classification: the exact McNemar test on the pooled predictions (same utterances) and, with at
    least :data:`~featurekit.report.significance.MIN_FOLDS` folds, the Wilcoxon signed-rank test of
    the per-fold primary metric; both Holm-corrected over the compared systems. Regression: the
    per-fold test on the primary metric averaged over targets.

    Returns
    -------
    pandas.DataFrame
        :func:`featurekit.report.significance.compare_to_best` columns plus ``score, score_std,
        pooled, pooled_low, pooled_high, overall_best, declared``.
    """
    scores = system_scores(exp)
    if scores.empty:
        return scores.assign(overall_best=[], declared=[], not_worse=[], tested=[])
    metric, higher = exp.primary
    preds = None
    if exp.task_type == "classification" and exp.predictions is not None:
        preds = exp.predictions
        if "target" in preds:
            preds = preds[preds["target"].astype(str) == exp.targets[0]]
    r = exp.results
    per_fold = r[(r["metric"] == metric) & ~r["fold"].isin(SUMMARY_FOLDS)]
    per_fold = per_fold.groupby(KEY_COLUMNS + ["fold"], sort=False, as_index=False)["value"].mean()
    tests = compare_to_best(scores, preds, per_fold, higher=higher)
    out = scores.merge(tests, on=KEY_COLUMNS, how="left", sort=False)
    out["overall_best"] = out.index == 0
    declared = set(exp.declared)
    out["declared"] = [tuple(k) in declared for k in out[KEY_COLUMNS].itertuples(index=False)]
    return out


def system_marks(exp: Experiment, fs: str, model: str, norm: str) -> str:
    """``†`` overall best, ``‡`` not significantly worse than it, ``§`` declared in the spec."""
    sig = exp.significance
    hit = sig[(sig["feature_set"] == fs) & (sig["model"] == model) & (sig["normalisation"] == norm)]
    if hit.empty:
        return DECLARED_MARK if (fs, model, norm) in exp.declared else ""
    r = hit.iloc[0]
    marks = BEST_MARK if r["overall_best"] else (SIMILAR_MARK if bool(r["not_worse"]) else "")
    return marks + (DECLARED_MARK if r["declared"] else "")


def system_scores(exp: Experiment) -> pd.DataFrame:
    """Every system with its group/variant and scores, best first.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature_set, model, normalisation, group, variant, score, score_std, pooled,
        pooled_low, pooled_high`` (classification: UAR; regression: the primary metric averaged
        over targets) and, for regression, ``mean:METRIC[TARGET]`` per target.
    """
    metric, higher = exp.primary
    s = summary_values(exp)
    for col in (f"mean:{metric}", f"std:{metric}", f"pooled:{metric}", f"pooled:{metric}_ci95_low",
                f"pooled:{metric}_ci95_high"):
        if col not in s:
            s[col] = np.nan
    agg = s.groupby(KEY_COLUMNS, sort=False).agg(
        score=(f"mean:{metric}", "mean"), score_std=(f"std:{metric}", "mean"),
        pooled=(f"pooled:{metric}", "mean"),
        pooled_low=(f"pooled:{metric}_ci95_low", "mean"), pooled_high=(f"pooled:{metric}_ci95_high", "mean"))
    if exp.task_type == "classification":
        for extra in ("accuracy", "macro_f1"):
            if f"mean:{extra}" in s:
                agg[extra] = s.groupby(KEY_COLUMNS, sort=False)[f"mean:{extra}"].mean()
    else:
        per = s.pivot_table(index=KEY_COLUMNS, columns="target", values=f"mean:{metric}", aggfunc="last")
        for t in exp.targets:
            if t in per:
                agg[f"target:{t}"] = per[t]
    agg = agg.reset_index()
    infos = {i.name: i for i in _systems_order(exp)}
    agg.insert(3, "group", [infos[f].group for f in agg["feature_set"]])
    agg.insert(4, "variant", [infos[f].variant for f in agg["feature_set"]])
    agg = agg[agg["score"].notna()]
    return agg.sort_values("score", ascending=not higher, kind="stable").reset_index(drop=True)


def best_systems(exp: Experiment, top: int = 3) -> pd.DataFrame:
    """The best system of every feature group, the overall ``top`` systems and the declared ones, best first.

    Returns
    -------
    pandas.DataFrame
        Rows of :func:`system_scores` (feature_set, model, normalisation, group, variant, score, ...).
    """
    scores = system_scores(exp)
    if scores.empty:
        return scores
    declared = set(exp.declared)
    is_declared = [tuple(k) in declared for k in scores[KEY_COLUMNS].itertuples(index=False)]
    keep = (set(scores.index[:top]) | set(scores.groupby("group", sort=False).head(1).index)
            | set(scores.index[is_declared]))
    return scores.loc[sorted(keep)].reset_index(drop=True)

"""Paired significance tests of the best system against every other one of an experiment.

- On the same utterances: the exact McNemar test (a two-sided binomial test on the discordant
  pairs, :func:`scipy.stats.binomtest`) of per-utterance correctness in the pooled predictions.
- Per fold, where there are at least :data:`MIN_FOLDS` folds: the Wilcoxon signed-rank test
  (:func:`scipy.stats.wilcoxon`) of the per-fold primary metric.

Each family of p-values (one per compared system) is Holm-corrected (:func:`holm`). A system is
*not significantly worse* than the best when the Holm-corrected McNemar p-value is at least
``alpha`` (or, without predictions, the Holm-corrected per-fold p-value), or when it is not the
worse of the two on the compared measure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest, wilcoxon

MIN_FOLDS = 6
ALPHA = 0.05


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int, float]:
    """Exact two-sided McNemar test of paired correctness.

    Parameters
    ----------
    correct_a, correct_b
        Per-utterance correctness of two systems on the same utterances, in the same order.

    Returns
    -------
    (b, c, p)
        ``b``: utterances only A got right; ``c``: only B got right; ``p``: the two-sided binomial
        p-value of ``b`` in ``b + c`` trials at 0.5 (1.0 when there are no discordant pairs).
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"mcnemar_exact: {a.shape} vs {b_.shape} utterances")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return b, c, p


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count).

    Parameters
    ----------
    pvalues
        Raw p-values of one family of tests.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, same order: ``max_{j<=i} min(1, (m - j) p_(j))`` over the sorted ones.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def fold_test(scores_a: Sequence[float], scores_b: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired per-fold scores (1.0 when all are equal)."""
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    d = a - b
    if not len(d) or np.allclose(d, 0):
        return 1.0
    return float(wilcoxon(a, b).pvalue)


def compare_to_best(systems: pd.DataFrame, predictions: pd.DataFrame | None, fold_scores: pd.DataFrame | None,
                    *, higher: bool = True, alpha: float = ALPHA) -> pd.DataFrame:
    """The first system of ``systems`` (the best) against every other one.

    Parameters
    ----------
    systems
        ``feature_set, model, normalisation`` (and ``score``), best first.
    predictions
        Pooled predictions (``feature_set, model, normalisation, id, y_true, y_pred``) of one target,
        or ``None``.
    fold_scores
        ``feature_set, model, normalisation, fold, value``: the primary metric per fold, or ``None``.
    higher
        Whether a higher score is better.
    alpha
        Level of the Holm-corrected tests.

    Returns
    -------
    pandas.DataFrame
        One row per system (the best first, with empty tests): ``n_utterances, only_best, only_other,
        p_mcnemar, p_mcnemar_holm, n_folds, p_fold, p_fold_holm, not_worse`` (``True`` for the best).
    """
    keys = ["feature_set", "model", "normalisation"]
    rows = [dict(zip(keys, r)) for r in systems[keys].itertuples(index=False)]
    if not rows:
        return pd.DataFrame(columns=[*keys, "not_worse"])
    best = tuple(rows[0][k] for k in keys)
    correct = _correctness(predictions)
    folds = _fold_table(fold_scores)
    for r in rows:
        sysk = tuple(r[k] for k in keys)
        r.update(n_utterances=np.nan, only_best=np.nan, only_other=np.nan, p_mcnemar=np.nan, n_folds=np.nan,
                 p_fold=np.nan, fold_diff=np.nan)
        if sysk == best:
            continue
        if correct is not None and best in correct and sysk in correct:
            both = pd.concat([correct[best], correct[sysk]], axis=1, join="inner")
            if len(both):
                b, c, p = mcnemar_exact(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy())
                r.update(n_utterances=len(both), only_best=b, only_other=c, p_mcnemar=p)
        if folds is not None and best in folds and sysk in folds:
            both = pd.concat([folds[best], folds[sysk]], axis=1, join="inner").dropna()
            if len(both) >= MIN_FOLDS:
                r.update(n_folds=len(both), p_fold=fold_test(both.iloc[:, 0], both.iloc[:, 1]),
                         fold_diff=float((both.iloc[:, 0] - both.iloc[:, 1]).mean()))
    out = pd.DataFrame(rows)
    out["p_mcnemar_holm"] = holm(out["p_mcnemar"].to_numpy(float))
    out["p_fold_holm"] = holm(out["p_fold"].to_numpy(float))
    sign = 1.0 if higher else -1.0
    worse_utt = (out["p_mcnemar_holm"] < alpha) & (out["only_best"] > out["only_other"])
    worse_fold = (out["p_fold_holm"] < alpha) & (sign * out["fold_diff"] > 0)
    # the utterance-level test decides where it exists; the per-fold test otherwise
    decided = np.where(out["p_mcnemar_holm"].notna(), worse_utt,
                       np.where(out["p_fold_holm"].notna(), worse_fold, False))
    tested = out["p_mcnemar_holm"].notna() | out["p_fold_holm"].notna()
    out["not_worse"] = np.where(tested, ~decided.astype(bool), False)
    out.loc[0, "not_worse"] = True
    out["tested"] = tested
    out.loc[0, "tested"] = True
    return out.drop(columns="fold_diff")[[*keys, "n_utterances", "only_best", "only_other", "p_mcnemar",
                                          "p_mcnemar_holm", "n_folds", "p_fold", "p_fold_holm", "tested",
                                          "not_worse"]]


def _correctness(predictions: pd.DataFrame | None) -> dict | None:
    if predictions is None or predictions.empty:
        return None
    p = predictions.assign(correct=predictions["y_true"].astype(str) == predictions["y_pred"].astype(str))
    return {k: g.drop_duplicates("id", keep="last").set_index("id")["correct"]
            for k, g in p.groupby(["feature_set", "model", "normalisation"], sort=False)}


def _fold_table(fold_scores: pd.DataFrame | None) -> dict | None:
    if fold_scores is None or fold_scores.empty:
        return None
    return {k: g.drop_duplicates("fold", keep="last").set_index("fold")["value"].astype(float)
            for k, g in fold_scores.groupby(["feature_set", "model", "normalisation"], sort=False)}


__all__ = ["ALPHA", "MIN_FOLDS", "compare_to_best", "fold_test", "holm", "mcnemar_exact"]

"""Metrics: UAR (balanced accuracy), accuracy (WA), macro-F1, per-class P/R/F1 and confusion
matrices for classification; CCC (primary), Pearson r and MAE for regression; bootstrap CIs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from featurekit.registry import Registry

CLASSIFICATION_METRICS: Registry[Callable] = Registry("classification metric")
REGRESSION_METRICS: Registry[Callable] = Registry("regression metric")


def uar(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted average recall over the classes present in ``y_true``."""
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 averaged over the classes present in ``y_true`` (a class never predicted scores 0).

    The same value as ``sklearn.metrics.f1_score(average="macro", labels=np.unique(y_true),
    zero_division=0)``, computed with numpy (scikit-learn's input validation costs ~7 ms a call).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in np.unique(y_true):
        tp = np.sum((y_pred == c) & (y_true == c))
        denom = np.sum(y_pred == c) + np.sum(y_true == c)  # 2 tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


CLASSIFICATION_METRICS.add("uar", uar)
CLASSIFICATION_METRICS.add("accuracy", accuracy)
CLASSIFICATION_METRICS.add("macro_f1", macro_f1)


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Concordance correlation coefficient (Lin, 1989), population moments."""
    yt, yp = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    mt, mp = yt.mean(), yp.mean()
    cov = np.mean((yt - mt) * (yp - mp))
    denom = yt.var() + yp.var() + (mt - mp) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    yt, yp = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if yt.std() == 0 or yp.std() == 0:
        return 0.0
    return float(np.corrcoef(yt, yp)[0, 1])


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))))


REGRESSION_METRICS.add("ccc", ccc)
REGRESSION_METRICS.add("pearson", pearson)
REGRESSION_METRICS.add("mae", mae)


def per_class(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, float]:
    """``precision[c]``, ``recall[c]``, ``f1[c]`` for every class."""
    out = {}
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        p = tp / max(np.sum(y_pred == c), 1)
        r = tp / max(np.sum(y_true == c), 1)
        out[f"precision[{c}]"] = float(p)
        out[f"recall[{c}]"] = float(r)
        out[f"f1[{c}]"] = float(2 * p * r / (p + r)) if p + r > 0 else 0.0
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class, in ``classes`` order."""
    idx = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(y_true, y_pred):
        m[idx[t], idx[p]] += 1
    return m


def bootstrap_ci(
    metric: Callable,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` over utterances (resampled with replacement)."""
    rng = np.random.default_rng(seed)
    m = len(y_true)
    vals = []
    for _ in range(n):
        i = rng.integers(0, m, m)
        vals.append(metric(y_true[i], y_pred[i]))
    a = (1 - level) / 2
    lo, hi = np.quantile(vals, [a, 1 - a])
    return float(lo), float(hi)

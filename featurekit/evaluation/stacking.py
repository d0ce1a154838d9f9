"""Stacking (``[[features.stacking]]``): per-feature-set models whose out-of-fold class scores feed a
meta-learner, all inside one outer training fold.

For an outer training fold, the training speakers are split into speaker-grouped inner folds
(:func:`featurekit.evaluation.pipeline.inner_cv`, the same folds as the hyperparameter search). Each
member model (with its own nested search) is fit on the inner training speakers and scores the held-out
inner speakers: every training utterance gets a score from a model that never saw its speaker. The
meta-learner is fit (with its own search) on these out-of-fold scores only. For the outer test fold,
each member is refit on the whole training fold and its scores go through the meta-learner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featurekit.evaluation.pipeline import fit_predict, inner_cv


@dataclass
class StackMember:
    """One member: a registered model (``ModelSpec``) with its spec configuration, and its inputs."""

    ms: Any
    grid: dict[str, list]
    params: dict[str, Any]
    inner_folds: int
    x_train: Any
    x_test: Any
    pre: tuple = field(default_factory=tuple)


def class_scores(proba: np.ndarray, fitted_classes: np.ndarray, n_classes: int) -> np.ndarray:
    """``proba`` columns (for ``fitted_classes``, integer codes) placed into ``n_classes`` columns."""
    out = np.zeros((len(proba), n_classes))
    out[:, np.asarray(fitted_classes, dtype=int)] = proba
    return out


def fit_predict_stacked(
    members: list[StackMember],
    meta: StackMember,
    y_train: np.ndarray,
    g_train: np.ndarray,
    *,
    n_classes: int,
    stack_folds: int,
    normalisation: str,
    balancing: str,
    seed: int,
) -> dict[str, Any]:
    """Fit the stack on one training fold and predict the test fold (classification).

    ``meta.x_train`` / ``meta.x_test`` are ignored: the meta-learner's inputs are the members' scores.
    ``stack_folds``: speaker-grouped inner folds for the out-of-fold scores.

    Returns ``pred``, ``proba``, ``best_params`` and ``oof`` (the meta-learner's training matrix),
    ``inner`` (the inner folds that produced it) and ``test_scores``.
    """
    folds = inner_cv(g_train, stack_folds)
    n = len(y_train)
    oof = np.zeros((n, len(members) * n_classes))
    test_scores = np.zeros((_n_rows(members[0].x_test), len(members) * n_classes))
    best: dict[str, Any] = {}

    def run(m: StackMember, tr: np.ndarray, x_eval) -> tuple[np.ndarray, dict]:
        r = fit_predict(m.ms, _rows(m.x_train, tr), y_train[tr], g_train[tr], x_eval, task="classification",
                        normalisation=normalisation, balancing=balancing, grid=m.grid, params=dict(m.params),
                        inner_folds=m.inner_folds, seed=seed, sequences=False, proba=True, pre=m.pre)
        return class_scores(r["proba"], np.unique(y_train[tr]), n_classes), r["best_params"]

    for j, m in enumerate(members):
        cols = slice(j * n_classes, (j + 1) * n_classes)
        for tr, va in folds:
            oof[va, cols], _ = run(m, tr, _rows(m.x_train, va))
        test_scores[:, cols], best[f"member{j}"] = run(m, np.arange(n), m.x_test)
    r = fit_predict(meta.ms, oof, y_train, g_train, test_scores, task="classification",
                    normalisation="none", balancing=balancing, grid=meta.grid, params=dict(meta.params),
                    inner_folds=meta.inner_folds, seed=seed, sequences=False, proba=True)
    best["meta"] = r["best_params"]
    proba = class_scores(r["proba"], np.unique(y_train), n_classes)
    return {"pred": proba.argmax(axis=1), "proba": proba, "best_params": best, "oof": oof,
            "inner": folds, "test_scores": test_scores}


def _rows(x, idx: np.ndarray):
    return x[idx]


def _n_rows(x) -> int:
    return len(x)

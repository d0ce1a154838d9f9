"""Evaluate one feature table without a spec or store: :func:`evaluate_table`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from featurekit.evaluation import metrics as M
from featurekit.evaluation.normalisation import speaker_zscore
from featurekit.evaluation.pipeline import fit_predict
from featurekit.evaluation.protocols import PROTOCOLS, Fold
from featurekit.executor import Executor, executor_for


def evaluate_table(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    *,
    model: str = "svm",
    normalisation: str = "speaker",
    protocol: str = "loso_speaker",
    seed: int = 0,
    grid: dict | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Evaluate one feature table (indexed by utterance id) without a spec or store.

    Returns ``{"uar", "accuracy", "macro_f1", "uar_folds"}`` (classification of ``label``);
    the protocol is ``loso_speaker`` (leave-one-speaker-out) or ``kfold``.
    """
    from featurekit.evaluation.models import CLASSIFIERS

    m = manifest.set_index("id", drop=False).loc[features.index]
    x = features.to_numpy(np.float32)
    speakers = m["speaker"].astype(str).to_numpy()
    if normalisation == "speaker":
        x = speaker_zscore(x, speakers)
    y_lab = m["label"].astype(str).to_numpy()
    classes = sorted(set(y_lab))
    y = np.searchsorted(classes, y_lab)
    pname = "loso" if protocol == "loso_speaker" else protocol
    folds = PROTOCOLS.get(pname).folds(m, group="speaker", seed=seed, y=y_lab)
    grid = grid or CLASSIFIERS.get(model).grid
    tasks = [(i, dict(model=model, x=x, y=y, speakers=speakers, fold=f, normalisation=normalisation,
                      grid=grid, seed=seed)) for i, f in enumerate(folds)]
    if executor is None:
        with executor_for(jobs=jobs) as owned:
            preds = dict(owned.map(_table_fold, tasks))
    else:
        preds = dict(executor.map(_table_fold, tasks))
    pred = np.empty(len(y), dtype=int)
    per_fold = []
    for i, f in enumerate(folds):
        pred[f.test] = preds[i]
        per_fold.append(M.uar(y[f.test], preds[i]))
    return {
        "uar": M.uar(y, pred),
        "accuracy": M.accuracy(y, pred),
        "macro_f1": M.macro_f1(y, pred),
        "uar_folds": per_fold,
    }


def _table_fold(*, model: str, x: np.ndarray, y: np.ndarray, speakers: np.ndarray, fold: Fold,
                normalisation: str, grid: dict, seed: int) -> np.ndarray:
    """One fold of :func:`evaluate_table`: the test rows' predicted class indices."""
    from featurekit.evaluation.models import CLASSIFIERS

    r = fit_predict(
        CLASSIFIERS.get(model),
        x[fold.train],
        y[fold.train],
        speakers[fold.train],
        x[fold.test],
        task="classification",
        normalisation="global" if normalisation != "none" else "none",
        balancing="class_weight",
        grid=grid,
        params={},
        inner_folds=3,
        seed=seed,
        sequences=False,
        proba=False,
    )
    return r["pred"]

"""One training fold: build the pipeline, search hyperparameters on the training speakers only,
predict the test fold. Every scaler and model is fit inside the training fold; the inner search
folds are grouped by speaker (GroupKFold), so no speaker is in both an inner training and an
inner validation fold, and the outer test speaker never takes part.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from featurekit.evaluation.models import ModelSpec


def inner_cv(groups: np.ndarray, n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-grouped inner folds (explicit list, so callers can inspect them)."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(
            "the training fold has a single speaker: no speaker-grouped hyperparameter search "
            "is possible (use a grid with one value per parameter)"
        )
    return list(GroupKFold(n_splits=min(n_splits, n_groups)).split(np.zeros(len(groups)), groups=groups))


def build_pipeline(
    spec: ModelSpec,
    *,
    normalisation: str,
    seed: int,
    class_weight: str | None,
    params: dict[str, Any],
    sequences: bool,
    pre: tuple[tuple[str, Any], ...] = (),
) -> Pipeline:
    """Scaler (``global``), then the ``pre`` steps (e.g. a learned layer weighting), then the model."""
    steps = []
    if normalisation == "global" and not sequences:
        steps.append(("scale", StandardScaler()))
    steps += [(name, step) for name, step in pre]
    steps.append(("model", spec.build(seed, class_weight, **params)))
    return Pipeline(steps)


def with_speaker_step(pipe: Pipeline, normaliser) -> Pipeline:
    """``pipe`` (fit on speaker-normalised features) with the fitted
    :class:`~featurekit.evaluation.normalisation.SpeakerNormaliser` as its first step ``"speaker"``,
    as a saved model holds it. The step needs the speaker's statistics at predict time (see its
    ``transform``), so callers apply it themselves and hand the rest to :func:`model_steps`."""
    return Pipeline([("speaker", normaliser), *pipe.steps])


def speaker_step(pipe: Pipeline):
    """The pipeline's ``"speaker"`` normaliser, or None."""
    return pipe.named_steps.get("speaker")


def model_steps(pipe: Pipeline) -> Pipeline:
    """The pipeline without its ``"speaker"`` step (the model's input is speaker-normalised)."""
    return pipe[1:] if speaker_step(pipe) is not None else pipe


def undersample(y: np.ndarray, seed: int) -> np.ndarray:
    """Indices of a random subset with every class cut to the smallest class' size."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    n = counts.min()
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c in classes]))


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    classes, counts = np.unique(y, return_counts=True)
    w = {c: len(y) / (len(classes) * k) for c, k in zip(classes, counts)}
    return np.array([w[v] for v in y])


def _scorer(task: str):
    from sklearn.metrics import make_scorer

    from featurekit.evaluation.metrics import ccc, uar

    return make_scorer(uar) if task == "classification" else make_scorer(ccc)


def fit_searched(
    ms,
    x,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    task: str,
    normalisation: str,
    balancing: str,
    grid: dict[str, list],
    params: dict[str, Any],
    inner_folds: int,
    seed: int,
    sequences: bool,
    jobs: int = 1,
    pre: tuple[tuple[str, Any], ...] = (),
    scored: np.ndarray | None = None,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Fit a pipeline on all of ``x`` with the hyperparameter search of the evaluation.

    Balancing (undersampling or class weights), the pipeline (:func:`build_pipeline`), and, when the
    grid has more than one candidate, a search scored by UAR (CCC for regression) over
    speaker-grouped inner folds (:func:`inner_cv`) of ``groups``; the best candidate is refit on all
    of ``x``. ``scored`` (a boolean mask, default all rows): the rows inner validation folds score
    (augmented copies are fit on, never scored; :mod:`featurekit.evaluation.augmentation`). Used for
    every training fold by :func:`fit_predict` and for final models by :mod:`featurekit.deploy`.

    Returns
    -------
    pipeline, best_params, search
        ``search`` holds the inner-CV metric, the best mean score and the number of candidates/folds.
    """
    if balancing == "undersample" and task == "classification":
        keep = undersample(y, seed)
        x, y, groups = x[keep], y[keep], groups[keep]
        scored = None if scored is None else scored[keep]
    class_weight = "balanced" if balancing == "class_weight" and task == "classification" else None
    fit_params: dict[str, Any] = {}
    if class_weight and ms.sample_weight:
        fit_params["model__sample_weight"] = _balanced_weights(y)
    if ms.groups:
        fit_params["model__groups"] = groups
    pipe = build_pipeline(
        ms,
        normalisation=normalisation,
        seed=seed,
        class_weight=class_weight,
        params=params,
        sequences=sequences,
        pre=pre,
    )
    n_candidates = grid_size(grid)
    metric = "uar" if task == "classification" else "ccc"
    search_info: dict[str, Any] = {"metric": metric, "n_candidates": n_candidates, "n_samples": int(len(y))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        if n_candidates > 1:
            from sklearn.model_selection import GridSearchCV

            cv = inner_cv(groups, inner_folds)
            if scored is not None:
                cv = [(tr, va[scored[va]]) for tr, va in cv]
            search = GridSearchCV(
                pipe,
                {f"model__{k}": v for k, v in grid.items()},
                scoring=_scorer(task),
                cv=cv,
                n_jobs=jobs,
                refit=True,
                error_score="raise",
            )
            search.fit(x, y, **fit_params)
            model = search.best_estimator_
            best = {k.removeprefix("model__"): v for k, v in search.best_params_.items()}
            search_info.update(
                inner_folds=len(cv),
                best_score=float(search.best_score_),
                scores=[
                    {
                        "params": {k.removeprefix("model__"): v for k, v in p.items()},
                        "mean": float(m),
                        "std": float(s),
                    }
                    for p, m, s in zip(
                        search.cv_results_["params"],
                        search.cv_results_["mean_test_score"],
                        search.cv_results_["std_test_score"],
                    )
                ],
            )
        else:
            best = {k: v[0] for k, v in grid.items()}
            pipe.set_params(**{f"model__{k}": v for k, v in best.items()})
            model = pipe.fit(x, y, **fit_params)
            search_info.update(inner_folds=0, best_score=None)
    return model, best, search_info


def fit_predict(
    spec: ModelSpec,
    x_train,
    y_train: np.ndarray,
    g_train: np.ndarray,
    x_test,
    *,
    task: str,
    normalisation: str,
    balancing: str,
    grid: dict[str, list],
    params: dict[str, Any],
    inner_folds: int,
    seed: int,
    sequences: bool,
    proba: bool,
    pre: tuple[tuple[str, Any], ...] = (),
    keep_model: bool = False,
    scored: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit on one training fold (with nested search) and predict the test fold.

    Returns ``pred``, ``proba`` (classification, when available, else None) and ``best_params``;
    with ``keep_model`` also ``model``, the fitted pipeline (for attribution on the test fold).
    """
    model, best, _ = fit_searched(
        spec,
        x_train,
        y_train,
        g_train,
        task=task,
        normalisation=normalisation,
        balancing=balancing,
        grid=grid,
        params=params,
        inner_folds=inner_folds,
        seed=seed,
        sequences=sequences,
        pre=pre,
        scored=scored,
    )
    out: dict[str, Any] = {"pred": model.predict(x_test), "proba": None, "best_params": best}
    if keep_model:
        out["model"] = model
    if task == "classification" and proba:
        if hasattr(model, "predict_proba") and _has_proba(model):
            out["proba"] = model.predict_proba(x_test)
        else:
            d = model.decision_function(x_test)
            e = np.exp(d - d.max(axis=1, keepdims=True))
            out["proba"] = e / e.sum(axis=1, keepdims=True)
    return out


def _has_proba(model) -> bool:
    try:
        return (
            bool(getattr(model, "predict_proba", None))
            and getattr(model[-1], "probability", True) is not False
        )
    except (AttributeError, TypeError):
        return True


def grid_size(grid: dict[str, list]) -> int:
    return len(list(itertools.product(*grid.values()))) if grid else 1

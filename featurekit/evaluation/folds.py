"""One outer fold of one cell: fit on the training rows (search included), predict the test rows.

:func:`run_fold` is what an executor's workers run (its arguments are plain data: arrays, the spec's
model table, the fold), so it must stay importable and free of the runner's state.

A fold runs with one BLAS / OpenMP thread (:data:`FOLD_THREADS`, through threadpoolctl): the folds are
the unit of parallelism, and iterative optimisers (MLP, lbfgs, torch) follow the floating-point order
of their matrix products, so a thread count that followed ``--jobs`` or the machine's cores would make
the numbers depend on them (measured: GeMAPS + MLP on Emo-DB, LOSO UAR 0.667698 with one thread,
0.669213 with two). Torch heads set their own thread count (``n_threads``).
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from featurekit.evaluation import attribution as A
from featurekit.evaluation.models import model_registry
from featurekit.evaluation.pipeline import fit_predict
from featurekit.evaluation.protocols import Fold

#: BLAS / OpenMP threads of a fold (recorded in spec.json).
FOLD_THREADS = 1


def run_fold(cell_key: str, fold: Fold, inputs, y: np.ndarray, groups: np.ndarray, **kwargs) -> dict:
    """One outer fold (see :func:`_fold`), with :data:`FOLD_THREADS` BLAS / OpenMP threads."""
    with threadpool_limits(limits=FOLD_THREADS):
        return _fold(cell_key, fold, inputs, y, groups, **kwargs)


def _fold(
    cell_key: str,
    fold: Fold,
    inputs,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    spec_models: dict,
    task: str,
    model: str,
    norm: str,
    balancing: str,
    inner_folds: int,
    seed: int,
    sequences: list[bool],
    late: bool,
    corpora: np.ndarray | None = None,
    pre: list[tuple] | None = None,
    stack: list[str] | None = None,
    inner_by_model: dict[str, int] | None = None,
    attribution: dict | None = None,
    copies=None,
) -> dict:
    t0 = time.perf_counter()
    cfg = spec_models[model]
    ms = model_registry(task).get(cfg["model"])
    members = inputs if (late or stack) else [inputs]
    pre = pre or [()] * len(members)
    if norm == "corpus":  # per-corpus z-score with this fold's statistics (normalisation module)
        from featurekit.evaluation.normalisation import corpus_zscore

        members = [corpus_zscore(x, corpora, fold.train) for x in members]
    if stack:
        return run_stacked_fold(cell_key, fold, members, y, groups, spec_models=spec_models, task=task,
                                 meta=model, stack=stack, norm=norm, balancing=balancing, seed=seed, pre=pre,
                                 inner_by_model=inner_by_model or {}, inner_folds=inner_folds, t0=t0)
    outs = []
    for j, (x, seq, steps) in enumerate(zip(members, sequences, pre)):
        params = dict(cfg["params"])
        x_train, y_train, g_train, scored = x[fold.train], y[fold.train], groups[fold.train], None
        if copies is not None:  # waveform augmentation: + copies of this fold's training utterances
            x_train, y_train, g_train, scored = copies.training_rows(j, x, y, groups, fold.train)
        outs.append(
            fit_predict(
                ms,
                x_train,
                y_train,
                g_train,
                x[fold.test],
                task=task,
                normalisation=norm,
                balancing=balancing,
                grid=cfg["grid"],
                params=params,
                inner_folds=inner_folds,
                seed=seed,
                sequences=seq,
                proba=late or task == "classification",
                pre=steps,
                keep_model=attribution is not None,
                scored=scored,
            )
        )
    if late:
        proba = np.mean([o["proba"] for o in outs], axis=0)
        pred = proba.argmax(axis=1)
        best = {f"member{i}": o["best_params"] for i, o in enumerate(outs)}
    else:
        pred, proba, best = outs[0]["pred"], outs[0]["proba"], outs[0]["best_params"]
    result = {
        "cell": cell_key,
        "fold": fold.name,
        "test": fold.test,
        "pred": pred,
        "proba": proba,
        "best": best,
        "seconds": time.perf_counter() - t0,
        "scopes": fold.scopes,
    }
    if attribution is not None:  # after the fit: the fold's model on its test utterances only
        result["attribution"] = A.attribute_fold(outs[0]["model"], members[0][fold.test], y[fold.test],
                                                 seed=seed, **attribution)
    return result


def run_stacked_fold(cell_key, fold, members, y, groups, *, spec_models, task, meta, stack, norm, balancing,
                      seed, pre, inner_by_model, inner_folds, t0) -> dict:
    """One outer fold of a stacked system (:mod:`featurekit.evaluation.stacking`)."""
    from featurekit.evaluation.stacking import StackMember, fit_predict_stacked

    def member(name, x, steps):
        cfg = spec_models[name]
        return StackMember(model_registry(task).get(cfg["model"]), cfg["grid"], cfg["params"],
                           inner_by_model[name], None if x is None else x[fold.train],
                           None if x is None else x[fold.test], steps)

    ms = [member(name, x, steps) for name, x, steps in zip(stack, members, pre)]
    r = fit_predict_stacked(ms, member(meta, None, ()), y[fold.train], groups[fold.train],
                            n_classes=int(y.max()) + 1, stack_folds=inner_folds,
                            normalisation="none" if norm == "corpus" else norm, balancing=balancing,
                            seed=seed)
    return {"cell": cell_key, "fold": fold.name, "test": fold.test, "pred": r["pred"], "proba": r["proba"],
            "best": r["best_params"], "seconds": time.perf_counter() - t0, "scopes": fold.scopes}

"""Model registry: name -> how to build a classifier / regressor and its default search grid.

Every model is a scikit-learn estimator. Grids are searched by a speaker-grouped inner
cross-validation inside each training fold (see :mod:`featurekit.evaluation.runner`). Torch heads
(:mod:`featurekit.heads`) are registered here too but imported only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from featurekit.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes
    ----------
    build
        ``build(seed, class_weight, **params) -> estimator``; ``class_weight`` is ``"balanced"`` or None.
    grid
        Default hyperparameter grid (``{param: [values]}``), overridable in the spec.
    sequences
        Whether the model takes variable-length LLD sequences (torch sequence heads).
    vectors
        Whether the model takes utterance-level vectors.
    sample_weight
        Whether class balancing is passed as ``sample_weight`` (instead of ``class_weight``).
    groups
        Whether ``fit`` takes ``groups=`` (speaker-grouped early stopping).
    threads
        Whether fitting spends its time in native code that releases the GIL (libsvm, liblinear,
        tree building, XGBoost), so folds can run in threads of one process: no worker start-up and
        no copying of feature matrices, which is what small problems are dominated by.
    """

    build: Callable[..., Any]
    grid: dict[str, list] = field(default_factory=dict)
    sequences: bool = False
    vectors: bool = True
    sample_weight: bool = False
    groups: bool = False
    threads: bool = False


CLASSIFIERS: Registry[ModelSpec] = Registry("classifier")
REGRESSORS: Registry[ModelSpec] = Registry("regressor")


def _svc(seed, class_weight, **p):
    from featurekit.evaluation.svm import SVMClassifier

    return SVMClassifier(random_state=seed, class_weight=class_weight, **p)


def _rf_c(seed, class_weight, **p):
    from sklearn.ensemble import RandomForestClassifier

    p = {"n_estimators": 500, "n_jobs": 1, **p}
    return RandomForestClassifier(random_state=seed, class_weight=class_weight, **p)


def _mlp_c(seed, class_weight, **p):
    from sklearn.neural_network import MLPClassifier

    p = {"hidden_layer_sizes": (256,), "max_iter": 500, "early_stopping": False, **p}
    p["hidden_layer_sizes"] = (
        tuple(p["hidden_layer_sizes"])
        if isinstance(p["hidden_layer_sizes"], list)
        else p["hidden_layer_sizes"]
    )
    return MLPClassifier(random_state=seed, **p)


def _xgb_c(seed, class_weight, **p):
    from xgboost import XGBClassifier

    p = {
        "n_estimators": 300,
        "learning_rate": 0.1,
        "max_depth": 4,
        "subsample": 0.8,
        "colsample_bytree": 0.5,
        "tree_method": "hist",
        "n_jobs": 1,
        **p,
    }
    return XGBClassifier(random_state=seed, **p)


def _knn_c(seed, class_weight, **p):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(**p)


def _logreg(seed, class_weight, **p):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(random_state=seed, class_weight=class_weight, max_iter=2000, **p)


# C is per feature (featurekit.evaluation.svm): one grid suits 88 and 6373 dimensions alike
SVM_GRID = {"kernel": ["linear"], "C": [0.1, 0.3, 1.0, 3.0, 10.0], "multiclass": ["ovo", "ovr"]}
CLASSIFIERS.add("svm", ModelSpec(_svc, SVM_GRID, threads=True))
CLASSIFIERS.add("rf", ModelSpec(_rf_c, {"max_features": ["sqrt"]}, threads=True))
CLASSIFIERS.add("mlp", ModelSpec(_mlp_c, {"alpha": [0.01, 1.0]}, sample_weight=True))
CLASSIFIERS.add("xgb", ModelSpec(_xgb_c, {"max_depth": [4]}, sample_weight=True, threads=True))
CLASSIFIERS.add("knn", ModelSpec(_knn_c, {"n_neighbors": [5, 15]}))
CLASSIFIERS.add("logreg", ModelSpec(_logreg, {"C": [0.01, 0.1, 1.0]}))


def _svr(seed, class_weight, **p):
    from sklearn.svm import SVR

    return SVR(**p)


def _rf_r(seed, class_weight, **p):
    from sklearn.ensemble import RandomForestRegressor

    p = {"n_estimators": 500, "n_jobs": 1, **p}
    return RandomForestRegressor(random_state=seed, **p)


def _mlp_r(seed, class_weight, **p):
    from sklearn.neural_network import MLPRegressor

    p = {"hidden_layer_sizes": (256,), "max_iter": 500, **p}
    p["hidden_layer_sizes"] = (
        tuple(p["hidden_layer_sizes"])
        if isinstance(p["hidden_layer_sizes"], list)
        else p["hidden_layer_sizes"]
    )
    return MLPRegressor(random_state=seed, **p)


def _xgb_r(seed, class_weight, **p):
    from xgboost import XGBRegressor

    p = {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "max_depth": 4,
        "subsample": 0.8,
        "colsample_bytree": 0.5,
        "tree_method": "hist",
        "n_jobs": 1,
        **p,
    }
    return XGBRegressor(random_state=seed, **p)


def _ridge(seed, class_weight, **p):
    from sklearn.linear_model import Ridge

    return Ridge(**p)


REGRESSORS.add("svr", ModelSpec(_svr, {"kernel": ["linear"], "C": [0.001, 0.01, 0.1]}, threads=True))
REGRESSORS.add("rf", ModelSpec(_rf_r, {"max_features": ["sqrt"]}, threads=True))
REGRESSORS.add("mlp", ModelSpec(_mlp_r, {"alpha": [0.01, 1.0]}))
REGRESSORS.add("xgb", ModelSpec(_xgb_r, {"max_depth": [4]}, threads=True))
REGRESSORS.add("ridge", ModelSpec(_ridge, {"alpha": [1.0, 10.0, 100.0, 1000.0]}))


def _head(name: str, task: str):
    def build(seed, class_weight, **p):
        from featurekit.heads import make_head

        if task == "classification":
            p.setdefault("class_weight", class_weight)
        return make_head(name, task=task, random_state=seed, **p)

    return build


# torch_mlp takes vectors, and LLD sequences through a pooling layer (mean_pool unless its layers name
# one, e.g. "stats_pool -> dense(256)"); the recurrent and convolutional heads take sequences only.
for _name, _seq, _vec in (("torch_mlp", True, True), ("lstm", True, False), ("gru", True, False),
                          ("conv1d", True, False)):
    for _reg, _task in ((CLASSIFIERS, "classification"), (REGRESSORS, "regression")):
        _reg.add(_name, ModelSpec(_head(_name, _task), {}, sequences=_seq, vectors=_vec, groups=True))


def model_registry(task: str) -> Registry[ModelSpec]:
    """The registry for ``task`` (``classification`` or ``regression``)."""
    if task == "classification":
        return CLASSIFIERS
    if task == "regression":
        return REGRESSORS
    raise ValueError(f"unknown task type {task!r}; use classification or regression")

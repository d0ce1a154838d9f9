"""The ``svm`` classifier: libsvm/liblinear support vector machines behind one estimator.

There is no ``predict_proba``: late fusion averages the softmax of the decision values (see
:func:`featurekit.evaluation.pipeline.fit_predict`) instead of libsvm's Platt scaling, whose internal
folds are not grouped by speaker.

Two choices that matter for speech-emotion features are hyperparameters here, so the nested,
speaker-grouped search can pick them per training fold:

- ``multiclass``: ``"ovo"`` trains one SVM per pair of classes (libsvm's ``SVC``); ``"ovr"`` one per
  class against the rest (liblinear's ``LinearSVC`` for the linear kernel, a one-vs-rest ``SVC``
  otherwise).
- ``scale_C``: with standardised features a linear kernel grows with the number of features, so
  the C that suits 88 eGeMAPS functionals is ~70 times too large for 6373 ComParE ones. With
  ``scale_C=True`` (default) the linear kernel is divided by the number of features (the inputs by
  its square root), so one C grid means the same on every feature set, as ``gamma="scale"`` does for
  the RBF kernel. ``scale_C=False`` gives plain ``SVC`` semantics.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

MULTICLASS = ("ovo", "ovr")


class SVMClassifier(ClassifierMixin, BaseEstimator):
    """Support vector classifier with one-vs-one / one-vs-rest choice and dimension-scaled C.

    Parameters
    ----------
    kernel : {"linear", "rbf", "poly", "sigmoid"}
        Kernel; ``linear`` with ``multiclass="ovr"`` uses liblinear.
    C : float
        Regularisation (per feature when ``scale_C``, see the module docstring).
    gamma : float or {"scale", "auto"}
        Kernel coefficient of the non-linear kernels.
    degree : int
        Degree of the polynomial kernel.
    multiclass : {"ovo", "ovr"}
        One-vs-one or one-vs-rest.
    scale_C : bool
        Divide the linear kernel by the number of features.
    class_weight : "balanced", dict or None
        Class weights.
    max_iter : int
        Iteration limit of liblinear (``ovr`` + linear).
    random_state : int or None
        Seed of libsvm's / liblinear's shuffling.
    """

    # scikit-learn's parameter declarations: checked when a spec is loaded (featurekit.evaluation.models)
    _parameter_constraints: dict = {
        "kernel": [StrOptions({"linear", "rbf", "poly", "sigmoid"})],
        "C": [Interval(Real, 0.0, None, closed="neither")],
        "gamma": [StrOptions({"scale", "auto"}), Interval(Real, 0.0, None, closed="left")],
        "degree": [Interval(Integral, 0, None, closed="left")],
        "multiclass": [StrOptions(set(MULTICLASS))],
        "scale_C": ["boolean"],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        kernel: str = "linear",
        C: float = 1.0,
        gamma: float | str = "scale",
        degree: int = 3,
        multiclass: str = "ovo",
        scale_C: bool = True,
        class_weight: str | dict | None = None,
        max_iter: int = 10000,
        random_state: int | None = None,
    ) -> None:
        self.kernel = kernel
        self.C = C
        self.gamma = gamma
        self.degree = degree
        self.multiclass = multiclass
        self.scale_C = scale_C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return X / np.sqrt(X.shape[1]) if self.scale_C and self.kernel == "linear" else X

    def _inputs(self, X: Any) -> np.ndarray:
        return self._scaled(validate_data(self, X, reset=False, dtype=np.float64))


    def fit(self, X: Any, y: Any) -> SVMClassifier:
        """Fit on ``X`` (n_samples, n_features) and class labels ``y``."""
        from sklearn.svm import SVC, LinearSVC

        if self.multiclass not in MULTICLASS:
            raise ValueError(f"multiclass must be one of {MULTICLASS}, got {self.multiclass!r}")
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        X = self._scaled(X)
        common = {"C": self.C, "class_weight": self.class_weight, "random_state": self.random_state}
        if self.multiclass == "ovr" and self.kernel == "linear":
            model = LinearSVC(max_iter=self.max_iter, **common)
        else:
            model = SVC(
                kernel=self.kernel,
                gamma=self.gamma,
                degree=self.degree,
                decision_function_shape="ovr",
                break_ties=False,
                **common,
            )
            if self.multiclass == "ovr":
                from sklearn.multiclass import OneVsRestClassifier

                model = OneVsRestClassifier(model)
        self.model_ = model.fit(X, y)
        self.classes_ = self.model_.classes_
        inner = getattr(self.model_, "estimators_", [self.model_])
        self.n_iter_ = int(max(np.max(e.n_iter_) for e in inner))  # solver iterations (worst sub-problem)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Per-class decision values ``(n, n_classes)`` (``(n,)`` for two classes)."""
        check_is_fitted(self)
        return self.model_.decision_function(self._inputs(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels."""
        check_is_fitted(self)
        return self.model_.predict(self._inputs(X))

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
    waveforms
        Whether the model takes raw audio (``finetune``: audio file paths, not features).
    threads
        Whether fitting spends its time in native code that releases the GIL (libsvm, liblinear,
        tree building, XGBoost), so folds can run in threads of one process: no worker start-up and
        no copying of feature matrices, which is what small problems are dominated by.
    extra
        The optional dependency group (:mod:`featurekit.extras`) the model needs, None for core.
    """

    build: Callable[..., Any]
    grid: dict[str, list] = field(default_factory=dict)
    sequences: bool = False
    vectors: bool = True
    sample_weight: bool = False
    groups: bool = False
    waveforms: bool = False
    threads: bool = False
    extra: str | None = None

    def missing_extra(self, name: str) -> str | None:
        """None when the model can be built here, else why not and the ``pip install`` command."""
        if self.extra is None:
            return None
        from featurekit.extras import missing_message, missing_modules

        missing = missing_modules(self.extra)
        return missing_message(self.extra, f"the {name} model", missing) if missing else None


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
    from featurekit.extras import import_optional

    XGBClassifier = import_optional("xgboost", "xgb", "the xgb model").XGBClassifier  # noqa: N806

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
CLASSIFIERS.add("xgb", ModelSpec(_xgb_c, {"max_depth": [4]}, sample_weight=True, threads=True, extra="xgb"))
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
    from featurekit.extras import import_optional

    XGBRegressor = import_optional("xgboost", "xgb", "the xgb model").XGBRegressor  # noqa: N806

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
REGRESSORS.add("xgb", ModelSpec(_xgb_r, {"max_depth": [4]}, threads=True, extra="xgb"))
REGRESSORS.add("ridge", ModelSpec(_ridge, {"alpha": [1.0, 10.0, 100.0, 1000.0]}))


def _head(name: str, task: str):
    def build(seed, class_weight, **p):
        from featurekit.extras import require_extra

        require_extra("deep", f"the {name} model")
        from featurekit.heads import make_head

        if task == "classification":
            p.setdefault("class_weight", class_weight)
        return make_head(name, task=task, random_state=seed, **p)

    return build


# torch_mlp takes vectors, and LLD sequences through a pooling layer (mean_pool unless its layers name
# one, e.g. "stats_pool -> dense(256)"); the recurrent and convolutional heads take sequences only.
# The spectrogram presets (featurekit.heads.presets.SPECTROGRAM_PRESETS) take frame tables as images.
for _name, _seq, _vec in (("torch_mlp", True, True), ("lstm", True, False), ("gru", True, False),
                          ("conv1d", True, False), ("cnn_lstm_mel", True, False), ("fcn_mfcc", True, False),
                          ("cnn_att_mfcc", True, False), ("cnn_spec", True, False),
                          ("vgg_mel", True, False)):
    for _reg, _task in ((CLASSIFIERS, "classification"), (REGRESSORS, "regression")):
        _reg.add(_name, ModelSpec(_head(_name, _task), {}, sequences=_seq, vectors=_vec, groups=True,
                                  extra="deep"))


def _finetune(task: str):
    def build(seed, class_weight, **p):
        from featurekit.extras import require_extra

        require_extra("ssl", "the finetune model", ("torch", "transformers"))
        from featurekit.heads.finetune import FineTuneClassifier, FineTuneRegressor

        if task == "classification":
            return FineTuneClassifier(random_state=seed, **{"class_weight": class_weight, **p})
        return FineTuneRegressor(random_state=seed, **p)

    return build


# finetune: a transformers speech encoder fine-tuned end to end on raw audio (featurekit.heads.finetune)
for _reg, _task in ((CLASSIFIERS, "classification"), (REGRESSORS, "regression")):
    _reg.add("finetune", ModelSpec(_finetune(_task), {}, sequences=False, vectors=False, groups=True,
                                   waveforms=True, extra="ssl"))


def model_registry(task: str) -> Registry[ModelSpec]:
    """The registry for ``task`` (``classification`` or ``regression``)."""
    if task == "classification":
        return CLASSIFIERS
    if task == "regression":
        return REGRESSORS
    raise ValueError(f"unknown task type {task!r}; use classification or regression")


# -- parameter checks (spec load) -----------------------------------------------------------------
def check_model_params(ms: ModelSpec, params: dict[str, Any], grid: dict[str, list] | None, *, where: str
                       ) -> list[tuple[str, str]]:
    """Problems of a ``[models.NAME]`` entry's ``params`` and ``grid`` against the estimator it builds.

    Keys must be parameters of the estimator (its ``get_params()``); each value is checked on an
    estimator that differs from the defaults in that one parameter, by the estimator's own declaration:
    scikit-learn's ``_parameter_constraints`` (with bool refused where a number is expected), the
    torch heads' ``_check_params`` (layer grammar included), else the annotated types of ``__init__``
    (XGBoost, featurekit's own). Cheap: estimators do no work in ``__init__``.
    """
    from featurekit.parameters import unknown

    try:
        known = ms.build(0, None).get_params(deep=False)
    except Exception as err:  # pragma: no cover - a registered builder that fails on its defaults
        return [(where, f"cannot build the model with its defaults: {err}")]
    default_grid = grid is None
    grid = ms.grid if grid is None else grid
    problems = [unknown(f"{where}.{section}.{k}", k, known, "parameter")
                for section, keys in (("params", params), ("grid", grid)) for k in keys if k not in known]
    if default_grid:
        problems += [(f"{where}.params.{k}", f"searched by the model's default grid ({k} = {grid[k]}), "
                      f"which would override it; give {where}.grid.{k} = [...] instead")
                     for k in params if k in grid]
    else:
        problems += [(f"{where}.grid.{k}", f"also fixed in {where}.params; give it in one place")
                     for k in grid if k in params]
    if problems:
        return problems
    for k, v in params.items():
        problems += _check_one(ms, {k: v}, k, v, f"{where}.params.{k}")
    for k, values in grid.items():
        for i, v in enumerate(values):
            problems += _check_one(ms, {}, k, v, f"{where}.grid.{k}[{i}]")
    return problems


def _check_one(ms: ModelSpec, build_params: dict, key: str, value: Any, loc: str) -> list[tuple[str, str]]:
    try:
        est = ms.build(0, None, **build_params)
        if not build_params:
            est.set_params(**{key: value})
    except TypeError as err:  # a parameter the builder sets itself (random_state, class_weight)
        return [(loc, f"set by featurekit (from seed / evaluation.balancing), not in the spec ({err})")]
    except ValueError as err:
        return [(loc, str(err))]
    return estimator_value_problems(est, key, est.get_params(deep=False)[key], loc)


def estimator_value_problems(est: Any, key: str, value: Any, loc: str) -> list[tuple[str, str]]:
    """Problems of ``est``'s parameter ``key`` set to ``value`` (see :func:`check_model_params`)."""
    from featurekit.parameters import check_value, declared_parameters, describe

    constraints = getattr(type(est), "_parameter_constraints", None)
    if constraints is not None and key in constraints:
        from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

        try:
            validate_parameter_constraints({key: constraints[key]}, {key: value},
                                           caller_name=type(est).__name__)
        except InvalidParameterError as err:
            return [(loc, str(err))]
        admits_bool = any(c in ("boolean", "no_validation", "verbose") or c in (bool, object)
                          for c in constraints[key] if isinstance(c, (str, type)))
        if isinstance(value, bool) and not admits_bool:
            return [(loc, f"expected a number, got {describe(value)}")]
        return []
    if hasattr(est, "_check_params"):  # featurekit.heads: checks every parameter, layers included
        try:
            est._check_params()
        except ValueError as err:
            return [(loc, str(err))]
        return []
    for cls in type(est).__mro__:
        if "__init__" in vars(cls) and cls is not object:
            declared = declared_parameters(cls)
            if key in declared:
                return check_value(declared[key].annotation, value, loc)
    return []

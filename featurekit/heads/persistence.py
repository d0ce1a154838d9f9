"""Saving and loading fitted heads: ``torch.save`` of the state dict plus a JSON description.

A saved head is a directory with

* ``weights.pt`` -- the network's ``state_dict`` (CPU tensors; loaded with ``weights_only=True``);
* ``head.json`` -- the estimator class, its parameters and the fitted attributes needed to rebuild
  the network (feature width, classes, target scaling, ...).

No pickle of arbitrary objects is involved: ``torch.load(..., weights_only=True)`` unpickles only
tensors and plain containers and refuses any other object (a ``__reduce__`` payload included) before
it is built, so loading a head does not execute code from the files. :func:`read_head` builds a head
from the files' bytes as given by a reader (the model directory's reader checks paths and hashes).
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from featurekit.heads.estimators import TorchClassifier, TorchRegressor
from featurekit.heads.layers import build_network

__all__ = ["FORMAT_VERSION", "jsonable", "load_head", "params_from_json", "params_to_json", "read_head",
           "save_head", "set_target_attributes", "target_attributes"]

FORMAT_VERSION = 1
_WEIGHTS = "weights.pt"
_META = "head.json"
_CLASSES = {"TorchClassifier": TorchClassifier, "TorchRegressor": TorchRegressor}


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars, tuples and paths as JSON values (dict keys as strings)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    """An estimator's ``get_params()`` as JSON (a ``class_weight`` dict as its ``pairs``: JSON keys are
    strings); :func:`params_from_json` reverses it."""
    params = dict(params)
    if isinstance(params.get("class_weight"), dict):
        pairs = [[jsonable(k), jsonable(v)] for k, v in params["class_weight"].items()]
        params["class_weight"] = {"pairs": pairs}
    return jsonable(params)


def params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters :func:`params_to_json` wrote (``class_weight`` pairs, ``task_weights`` tuple)."""
    params = dict(params)
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = {k: v for k, v in params["class_weight"]["pairs"]}
    if isinstance(params.get("task_weights"), list):
        params["task_weights"] = tuple(params["task_weights"])
    return params


def target_attributes(est: Any, classifier: bool) -> tuple[dict[str, Any], int]:
    """The fitted attributes that describe the targets (classes and class weights, or the targets'
    scaling) as JSON values, and the number of network outputs; :func:`set_target_attributes` reverses it."""
    if classifier:
        return {"classes_": est.classes_.tolist(),
                "classes_dtype": est.classes_.dtype.str if est.classes_.dtype != object else "object",
                "class_weight_": None if est.class_weight_ is None else est.class_weight_.tolist()}, \
            len(est.classes_)
    return {"y_mean_": est.y_mean_.tolist(), "y_scale_": est.y_scale_.tolist(), "y_ndim_": est.y_ndim_,
            "n_outputs_": est.n_outputs_}, est.n_outputs_


def set_target_attributes(est: Any, fitted: dict[str, Any], classifier: bool) -> None:
    """Set the attributes :func:`target_attributes` wrote."""
    if classifier:
        dtype = object if fitted["classes_dtype"] == "object" else np.dtype(fitted["classes_dtype"])
        est.classes_ = np.asarray(fitted["classes_"], dtype=dtype)
        est.class_weight_ = None if fitted["class_weight_"] is None else np.asarray(fitted["class_weight_"])
    else:
        est.y_mean_ = np.asarray(fitted["y_mean_"], dtype=np.float64)
        est.y_scale_ = np.asarray(fitted["y_scale_"], dtype=np.float64)
        est.y_ndim_ = fitted["y_ndim_"]
        est.n_outputs_ = fitted["n_outputs_"]


def save_head(est: TorchClassifier | TorchRegressor, directory: str | Path) -> Path:
    """Save a fitted head to ``directory`` (created if needed).

    Parameters
    ----------
    est
        A fitted :class:`TorchClassifier` or :class:`TorchRegressor`.
    directory
        Target directory; ``weights.pt`` and ``head.json`` inside it are overwritten.

    Returns
    -------
    Path
        The directory.
    """
    if type(est).__name__ not in _CLASSES:
        raise TypeError(f"save_head expects a TorchClassifier or TorchRegressor, got {type(est).__name__}")
    check_is_fitted(est)
    params = est.get_params(deep=False)
    if not isinstance(params["random_state"], (int, np.integer, type(None))):
        params["random_state"] = None  # a RandomState instance cannot be stored as JSON
    fitted: dict[str, Any] = {
        "n_features_in_": int(est.n_features_in_),
        "input_kind_": est.input_kind_,
        "layers_": est.layers_,
        "history_": est.history_,
        "n_epochs_": est.n_epochs_,
        "best_epoch_": est.best_epoch_,
        "validation_size_": est.validation_size_,
    }
    if hasattr(est, "feature_names_in_"):
        fitted["feature_names_in_"] = est.feature_names_in_.tolist()
    targets, n_outputs = target_attributes(est, isinstance(est, TorchClassifier))
    fitted.update(targets)
    meta = {"format_version": FORMAT_VERSION, "estimator": type(est).__name__,
            "params": params_to_json(params),
            "fitted": jsonable(fitted), "n_outputs": n_outputs, "torch_version": torch.__version__}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in est.model_.state_dict().items()}
    torch.save(state, directory / _WEIGHTS)
    (directory / _META).write_text(json.dumps(meta, indent=2))
    return directory


def load_head(directory: str | Path) -> TorchClassifier | TorchRegressor:
    """Load a head saved by :func:`save_head` (on the CPU).

    Parameters
    ----------
    directory
        The directory given to :func:`save_head`.

    Returns
    -------
    TorchClassifier or TorchRegressor
        A fitted estimator predicting exactly like the saved one.
    """
    directory = Path(directory)
    return read_head(lambda name: (directory / name).read_bytes(), where=str(directory))


def read_head(read: Callable[[str], bytes], *, where: str) -> TorchClassifier | TorchRegressor:
    """Build a head saved by :func:`save_head` from its files' bytes (on the CPU).

    Parameters
    ----------
    read
        ``read(name) -> bytes`` for the head's file names (``head.json``, ``weights.pt``).
    where
        The head's location, for messages.

    Returns
    -------
    TorchClassifier or TorchRegressor
        A fitted estimator predicting exactly like the saved one.

    Raises
    ------
    ValueError
        An unsupported format, an unknown estimator, or weights that are not a plain state dict of
        tensors (``torch.load`` with ``weights_only=True`` refuses any other object without building it).
    """
    meta = json.loads(read(_META))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{where}: unsupported head format {meta.get('format_version')!r}")
    cls = _CLASSES.get(meta["estimator"])
    if cls is None:
        raise ValueError(f"{where}: unknown estimator {meta['estimator']!r}")
    params = params_from_json(meta["params"])
    est = cls(**params)
    fitted = dict(meta["fitted"])
    for key in ("n_features_in_", "input_kind_", "layers_", "history_", "n_epochs_", "best_epoch_",
                "validation_size_"):
        setattr(est, key, fitted[key])
    if "feature_names_in_" in fitted:
        est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    set_target_attributes(est, fitted, cls is TorchClassifier)
    nets = [build_network(est.layers, est.n_features_in_, meta["n_outputs"], fixed_len=est.fixed_len,
                          crop=est.crop)[0]
            for _ in range(params.get("n_members", 1))]
    net = est._combine(nets)
    try:
        state = torch.load(io.BytesIO(read(_WEIGHTS)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{where}/{_WEIGHTS}: refused: not a plain state dict of tensors (torch.load with "
                         f"weights_only=True rejected it, nothing in it was run): {first}") from None
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in state.items())):
        raise ValueError(f"{where}/{_WEIGHTS}: not a state dict (a mapping of names to tensors)")
    net.load_state_dict(state)
    net.eval()
    est.model_ = net
    est.device_ = "cpu"
    return est

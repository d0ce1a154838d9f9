"""Saving and loading fine-tuned encoders (:mod:`featurekit.heads.finetune`) without pickle.

A fitted estimator is ``network.safetensors`` (the whole network's state dict) plus ``finetune.json``
(format, parameters, fitted attributes and the encoder's config and preprocessor settings). Loading
builds the network from the saved config (random weights, no code from anywhere, no encoder folder)
and loads the state dict, which must match it key for key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from featurekit.extractors.ssl.common import check_folder_confined
from featurekit.heads.finetune import FineTuneClassifier, FineTuneRegressor
from featurekit.heads.finetune_network import FAMILY_ADAPTERS, FineTuneNetwork, build_encoder

__all__ = ["META_NAME", "WEIGHTS_NAME", "finetuned_files", "load_finetuned", "read_finetuned",
           "save_finetuned"]

FORMAT_VERSION = 1
WEIGHTS_NAME = "network.safetensors"
META_NAME = "finetune.json"
_WHO = "finetune"

_CLASSES: dict[str, type] = {"FineTuneClassifier": FineTuneClassifier, "FineTuneRegressor": FineTuneRegressor}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def finetuned_files(est: FineTuneClassifier | FineTuneRegressor) -> dict[str, bytes]:
    """``{file name: bytes}`` of a fitted estimator: ``finetune.json`` and ``network.safetensors``."""
    from safetensors.torch import save

    if type(est).__name__ not in _CLASSES:
        raise TypeError(f"expected a FineTuneClassifier or FineTuneRegressor, got {type(est).__name__}")
    check_is_fitted(est)
    params = est.get_params(deep=False)
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = {
            "pairs": [[_jsonable(k), _jsonable(v)] for k, v in params["class_weight"].items()]
        }
    info = est.encoder_info_
    fitted: dict[str, Any] = {
        "history_": est.history_,
        "n_epochs_": est.n_epochs_,
        "best_epoch_": est.best_epoch_,
        "validation_size_": est.validation_size_,
        "n_trainable_": est.n_trainable_,
        "window_": est.window_,
    }
    if isinstance(est, FineTuneClassifier):
        fitted.update(
            classes_=est.classes_.tolist(),
            classes_dtype=est.classes_.dtype.str if est.classes_.dtype != object else "object",
            class_weight_=None if est.class_weight_ is None else est.class_weight_.tolist(),
        )
        n_outputs = len(est.classes_)
    else:
        fitted.update(
            y_mean_=est.y_mean_.tolist(),
            y_scale_=est.y_scale_.tolist(),
            y_ndim_=est.y_ndim_,
            n_outputs_=est.n_outputs_,
        )
        n_outputs = est.n_outputs_
    encoder = {k: v for k, v in info.items() if k not in ("path", "weights", "config")}
    encoder.update(
        config=info["config"]["config"],
        preprocessor=info["config"]["preprocessor"],
        source=str(info["path"]),
        source_weights=info["weights"],
    )
    meta = {
        "format": "featurekit-finetune",
        "format_version": FORMAT_VERSION,
        "estimator": type(est).__name__,
        "params": _jsonable(params),
        "fitted": _jsonable(fitted),
        "n_outputs": n_outputs,
        "encoder": _jsonable(encoder),
        "torch_version": torch.__version__,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in est.model_.state_dict().items()}
    return {META_NAME: json.dumps(meta, indent=2).encode(), WEIGHTS_NAME: save(state)}


def save_finetuned(est: FineTuneClassifier | FineTuneRegressor, directory: str | os.PathLike) -> Path:
    """Save a fitted estimator to ``directory``: ``finetune.json`` and ``network.safetensors``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, blob in finetuned_files(est).items():
        (directory / name).write_bytes(blob)
    return directory


def load_finetuned(directory: str | os.PathLike) -> FineTuneClassifier | FineTuneRegressor:
    """Load an estimator saved by :func:`save_finetuned` (on the CPU; the encoder folder is not needed)."""
    directory = Path(directory)
    check_folder_confined(directory, who=_WHO)
    return read_finetuned(lambda name: (directory / name).read_bytes(), where=str(directory))


def read_finetuned(read: Callable[[str], bytes], *, where: str) -> FineTuneClassifier | FineTuneRegressor:
    """Rebuild a fine-tuned estimator from its files' bytes (``read(name) -> bytes``).

    The network is built from the saved encoder config (random weights, no code from anywhere) and
    receives the safetensors state dict, which must match it key for key.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        meta = json.loads(read(META_NAME))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}/{META_NAME}: not valid JSON ({err})") from None
    if meta.get("format") != "featurekit-finetune" or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{where}/{META_NAME}: not a fine-tuned encoder of format {FORMAT_VERSION}")
    cls = _CLASSES.get(meta.get("estimator"))
    if cls is None:
        raise ValueError(f"{where}: unknown estimator {meta.get('estimator')!r}")
    params = dict(meta["params"])
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = {k: v for k, v in params["class_weight"]["pairs"]}
    if isinstance(params.get("task_weights"), list):
        params["task_weights"] = tuple(params["task_weights"])
    est = cls(**params)
    est._check_params()
    fitted = dict(meta["fitted"])
    for key in ("history_", "n_epochs_", "best_epoch_", "validation_size_", "n_trainable_", "window_"):
        setattr(est, key, fitted[key])
    if cls is FineTuneClassifier:
        dtype = object if fitted["classes_dtype"] == "object" else np.dtype(fitted["classes_dtype"])
        est.classes_ = np.asarray(fitted["classes_"], dtype=dtype)
        est.class_weight_ = None if fitted["class_weight_"] is None else np.asarray(fitted["class_weight_"])
    else:
        est.y_mean_ = np.asarray(fitted["y_mean_"], dtype=np.float64)
        est.y_scale_ = np.asarray(fitted["y_scale_"], dtype=np.float64)
        est.y_ndim_ = fitted["y_ndim_"]
        est.n_outputs_ = fitted["n_outputs_"]
    enc = dict(meta["encoder"])
    family = enc.get("family")
    if family not in FAMILY_ADAPTERS:
        raise ValueError(f"{where}/{META_NAME}: unsupported encoder family {family!r}")
    info = {k: v for k, v in enc.items() if k not in ("config", "preprocessor", "source", "source_weights")}
    info.update(
        path=enc["source"],
        weights=enc["source_weights"],
        config={"config": enc["config"], "preprocessor": enc["preprocessor"]},
    )
    est.encoder_info_ = info
    net = FineTuneNetwork(
        build_encoder(family, enc["config"], None),
        int(info["dim"]),
        int(meta["n_outputs"]),
        pooling=est.pooling,
        dropout=float(est.dropout),
    )
    try:
        state = load(read(WEIGHTS_NAME))
    except SafetensorError as err:
        raise ValueError(f"{where}/{WEIGHTS_NAME}: not a safetensors file ({err})") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{where}/{WEIGHTS_NAME}: does not match the saved network ({err})") from None
    est.model_ = net.eval()
    est.device_ = "cpu"
    est.input_kind_ = "waveforms"
    return est

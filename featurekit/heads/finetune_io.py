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

import torch
from sklearn.utils.validation import check_is_fitted

from featurekit.extractors.ssl.common import check_folder_confined
from featurekit.heads.finetune import FineTuneClassifier, FineTuneRegressor
from featurekit.heads.finetune_network import FAMILY_ADAPTERS, FineTuneNetwork, build_encoder
from featurekit.heads.persistence import (
    jsonable,
    params_from_json,
    params_to_json,
    set_target_attributes,
    target_attributes,
)

__all__ = ["META_NAME", "WEIGHTS_NAME", "finetuned_files", "load_finetuned", "read_finetuned",
           "save_finetuned"]

FORMAT_VERSION = 1
WEIGHTS_NAME = "network.safetensors"
META_NAME = "finetune.json"
_WHO = "finetune"

_CLASSES: dict[str, type] = {"FineTuneClassifier": FineTuneClassifier, "FineTuneRegressor": FineTuneRegressor}


def finetuned_files(est: FineTuneClassifier | FineTuneRegressor) -> dict[str, bytes]:
    """``{file name: bytes}`` of a fitted estimator: ``finetune.json`` and ``network.safetensors``."""
    from safetensors.torch import save

    if type(est).__name__ not in _CLASSES:
        raise TypeError(f"expected a FineTuneClassifier or FineTuneRegressor, got {type(est).__name__}")
    check_is_fitted(est)
    params = est.get_params(deep=False)
    info = est.encoder_info_
    fitted: dict[str, Any] = {
        "history_": est.history_,
        "n_epochs_": est.n_epochs_,
        "best_epoch_": est.best_epoch_,
        "validation_size_": est.validation_size_,
        "n_trainable_": est.n_trainable_,
        "window_": est.window_,
    }
    targets, n_outputs = target_attributes(est, isinstance(est, FineTuneClassifier))
    fitted.update(targets)
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
        "params": params_to_json(params),
        "fitted": jsonable(fitted),
        "n_outputs": n_outputs,
        "encoder": jsonable(encoder),
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
    est = cls(**params_from_json(meta["params"]))
    est._check_params()
    fitted = dict(meta["fitted"])
    for key in ("history_", "n_epochs_", "best_epoch_", "validation_size_", "n_trainable_", "window_"):
        setattr(est, key, fitted[key])
    set_target_attributes(est, fitted, cls is FineTuneClassifier)
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

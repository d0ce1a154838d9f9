"""Deployment: train a system of a spec on a whole corpus, save it, label new recordings.

>>> from featurekit.deploy import train, predict
>>> model_dir = train("pipelines/emodb.toml", "egemaps:svm", root="data/emodb",
...                   out_dir="models/emodb")  # doctest: +SKIP
>>> predict(model_dir, ["call.wav"], window=3.0, hop=1.0)  # doctest: +SKIP

Modules: :mod:`~featurekit.deploy.training` (:func:`train`), :mod:`~featurekit.deploy.inference`
(:func:`predict`), :mod:`~featurekit.deploy.bundle` (the model directory: format, hashes, safe
loading), :mod:`~featurekit.deploy.windows` (streamed sliding windows),
:mod:`~featurekit.deploy.features` (features of a signal as the store holds them) and
:mod:`~featurekit.commands.deploy` (``featurekit train`` / ``featurekit predict``).

Importing this package is cheap (the CLI imports it to build its parser): the names below are
loaded on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "train": "featurekit.deploy.training",
    "resolve_system": "featurekit.deploy.training",
    "predict": "featurekit.deploy.inference",
    "write_predictions": "featurekit.deploy.inference",
    "load_model": "featurekit.deploy.bundle",
    "read_meta": "featurekit.deploy.bundle",
    "SavedModel": "featurekit.deploy.bundle",
    "ModelLoadError": "featurekit.deploy.bundle",
    "FORMAT_VERSION": "featurekit.deploy.bundle",
    "ShortRecordingWarning": "featurekit.deploy.windows",
    "iter_windows": "featurekit.deploy.windows",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'featurekit.deploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

"""Named head presets with SER-oriented default layer specs, and a factory for them."""

from __future__ import annotations

from typing import Any

from featurekit.heads.estimators import TorchClassifier, TorchRegressor

__all__ = ["PRESETS", "make_head"]

#: Registry name -> default layer spec.
PRESETS: dict[str, str] = {
    # HSF functionals (e.g. eGeMAPS / ComParE vectors)
    "torch_mlp": "dense(256) -> dropout(0.3) -> dense(128) -> dropout(0.3)",
    # LLD sequences: recurrent encoders with attentive pooling (Mirsamadi et al., 2017)
    "lstm": "lstm(128, bidirectional) -> attention_pool -> dense(64) -> dropout(0.3)",
    "gru": "gru(128, bidirectional) -> attention_pool -> dense(64) -> dropout(0.3)",
    # LLD sequences: temporal convolutions with masked mean pooling
    "conv1d": "conv1d(128, 5) -> conv1d(128, 3) -> mean_pool -> dense(64)",
}


def make_head(name: str, task: str = "classification", **params: Any) -> TorchClassifier | TorchRegressor:
    """Build a torch head from a preset.

    Parameters
    ----------
    name
        A key of :data:`PRESETS` (``torch_mlp``, ``lstm``, ``gru``, ``conv1d``).
    task
        ``"classification"`` (:class:`TorchClassifier`) or ``"regression"`` (:class:`TorchRegressor`).
    **params
        Estimator parameters; ``layers`` overrides the preset's spec.

    Returns
    -------
    TorchClassifier or TorchRegressor
    """
    if name not in PRESETS:
        raise ValueError(f"unknown head preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    classes = {"classification": TorchClassifier, "regression": TorchRegressor}
    if task not in classes:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    params.setdefault("layers", PRESETS[name])
    return classes[task](**params)

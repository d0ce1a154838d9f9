"""The network that :mod:`featurekit.heads.finetune` fine-tunes: a transformers speech encoder loaded
from a checked local folder, how each encoder family takes audio, and the masked pooling and output layer.

:func:`inspect_encoder` checks an encoder folder before anything is loaded: a local directory (never a
hub download), no symbolic link out of it, no Python file, weights in safetensors only (pickle formats
refused), a ``config.json`` of a supported family and a ``preprocessor_config.json``. The encoder is
loaded with ``trust_remote_code=False``, or built from a saved config (random weights, to receive a
saved state dict).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurekit.extractors.ssl import whisper_frontend as wf
from featurekit.extractors.ssl.common import ModelError, check_folder_confined, check_safetensors_only
from featurekit.extractors.ssl.hf import FAMILIES, HFEncoder, conv_frames

__all__ = ["FAMILY_ADAPTERS", "AttentivePooling", "Family", "FineTuneNetwork", "build_encoder",
           "inspect_encoder"]

_WHO = "finetune"

# --------------------------------------------------------------------------------------------- encoder folder


def inspect_encoder(model: str | os.PathLike | None) -> dict[str, Any]:
    """Check an encoder folder before anything is loaded or trained; return its facts.

    Refused, each with a :class:`~featurekit.extractors.ssl.ModelError` naming the folder and the
    problem: no folder given, a path that is not a local directory (hub ids are not fetched), a
    symbolic link out of the folder, a Python file, pickle-format weights, no safetensors weights,
    a missing or malformed ``config.json``, a ``model_type`` outside :data:`FAMILIES`, a missing
    ``preprocessor_config.json``, a sampling rate other than 16 kHz.

    Returns
    -------
    dict
        :meth:`HFEncoder.info` facts (``path``, ``family``, ``config``, ``weights``, ``normalize``,
        ``mask``, ``kernels``/``strides`` or ``n_mels``/``max_chunk``).
    """
    if model is None or str(model).strip() == "":
        raise ModelError(
            f"{_WHO}: no encoder folder given; pass model=DIR (a local folder written by "
            f"save_pretrained, with config.json, preprocessor_config.json and *.safetensors)"
        )
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelError(
            f"{_WHO}: encoder folder {path} {'is not a directory' if path.exists() else 'does not exist'}"
        )
    check_folder_confined(path, who=_WHO)
    check_safetensors_only(path, who=_WHO)
    try:
        info = HFEncoder(model=str(path)).info()
    except ModelError as err:
        raise ModelError(f"{_WHO}: {str(err).removeprefix('hf_encoder: ')}") from None
    return info


def _encoder_config(family: str, config: dict[str, Any]):
    """A transformers config object from a ``config.json`` dict (SpecAugment inside the encoder off:
    it draws from numpy's global RNG, which would make training depend on outside state)."""
    from transformers import AutoConfig

    if family not in FAMILIES:
        raise ModelError(f"{_WHO}: unsupported encoder family {family!r}; supported: {', '.join(FAMILIES)}")
    body = {k: v for k, v in config.items() if k not in ("model_type", "auto_map", "transformers_version")}
    cfg = AutoConfig.for_model(family, **body)
    cfg.apply_spec_augment = False
    return cfg


def build_encoder(family: str, config: dict[str, Any], path: Path | None) -> torch.nn.Module:
    """The encoder module: loaded from ``path`` (its safetensors weights) or, without a path, built
    from ``config`` with random weights (to receive a saved state dict)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    cfg = _encoder_config(family, config)
    if path is None:
        if family == "whisper":
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            return WhisperEncoder(cfg)
        return AutoModel.from_config(cfg, trust_remote_code=False)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(
            str(path), config=cfg, local_files_only=True, trust_remote_code=False, use_safetensors=True
        )
    except Exception as err:
        raise ModelError(f"{_WHO}: cannot load the encoder in {path}: {type(err).__name__}: {err}") from err
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return model.get_encoder() if family == "whisper" else model


# --------------------------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    """How one encoder family takes audio: input tensors, frame counts and its parts.

    Attributes
    ----------
    frames
        ``frames(info, n_samples) -> encoder frames covering the audio``.
    inputs
        ``inputs(info, signals) -> (encoder positional input, keyword arguments)`` as numpy arrays.
    freeze_conv
        ``freeze_conv(encoder)``: fix the convolutional front end (``freeze_feature_encoder``).
    layers
        ``layers(encoder) -> the transformer layers, first to last``.
    window
        ``window(info) -> longest input in samples`` (None: unbounded).
    """

    frames: Callable[[dict, int], int]
    inputs: Callable[[dict, list[np.ndarray]], tuple[np.ndarray, dict[str, np.ndarray]]]
    freeze_conv: Callable[[torch.nn.Module], None]
    layers: Callable[[torch.nn.Module], torch.nn.ModuleList]
    window: Callable[[dict], int | None]


def _raw_inputs(info: dict, signals: list[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    longest = max(len(s) for s in signals)
    x = np.zeros((len(signals), longest), dtype=np.float32)
    mask = np.zeros((len(signals), longest), dtype=np.int64)
    for row, s in enumerate(signals):
        x[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return x, ({"attention_mask": mask} if info["mask"] else {})


def _whisper_inputs(info: dict, signals: list[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return wf.log_mel_batch(signals, n_mels=info["n_mels"], n_samples=info["max_chunk"]), {}


_RAW = Family(
    frames=lambda info, n: conv_frames(n, info["kernels"], info["strides"]),
    inputs=_raw_inputs,
    # transformers' own switch: it also stops the front end asking for input gradients
    freeze_conv=lambda enc: enc.feature_extractor._freeze_parameters(),
    layers=lambda enc: enc.encoder.layers,
    window=lambda info: None,
)
FAMILY_ADAPTERS: dict[str, Family] = {
    **{name: _RAW for name in FAMILIES if name != "whisper"},
    "whisper": Family(
        frames=lambda info, n: min(wf.encoder_frames_for(n), info["max_frames"]),
        inputs=_whisper_inputs,
        freeze_conv=lambda enc: [
            p.requires_grad_(False) for m in (enc.conv1, enc.conv2) for p in m.parameters()
        ],
        layers=lambda enc: enc.layers,
        window=lambda info: int(info["max_chunk"]),
    ),
}


# --------------------------------------------------------------------------------------------- network


class AttentivePooling(torch.nn.Module):
    """Softmax-weighted mean over the valid frames; the weights are a learned linear score per frame."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = torch.nn.Linear(dim, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(h).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores, dim=1).to(h.dtype)
        return (w.unsqueeze(-1) * h).sum(dim=1)


def _mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class FineTuneNetwork(torch.nn.Module):
    """Encoder -> masked pooling of its last hidden states -> dropout -> linear outputs."""

    def __init__(
        self, encoder: torch.nn.Module, dim: int, n_outputs: int, *, pooling: str, dropout: float
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pool = AttentivePooling(dim) if pooling == "attention" else None
        self.dropout = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(dim, n_outputs)

    def head_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters trained at the head's learning rate (pooling and output layer)."""
        return [p for name, p in self.named_parameters() if not name.startswith("encoder.")]

    def pooled(
        self, inputs: torch.Tensor, kwargs: dict[str, torch.Tensor], frames: torch.Tensor
    ) -> torch.Tensor:
        """Pooled last hidden states ``(B, D)``; ``frames`` = frames covering each item's audio."""
        h = self.encoder(inputs, **kwargs).last_hidden_state
        mask = torch.arange(h.shape[1], device=h.device).unsqueeze(0) < frames.to(h.device).unsqueeze(1)
        return self.pool(h, mask) if self.pool is not None else _mean_pool(h, mask)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(pooled))

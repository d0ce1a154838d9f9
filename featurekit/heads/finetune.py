"""``finetune``: a pretrained transformers speech encoder fine-tuned end to end, as scikit-learn estimators.

:class:`FineTuneClassifier` and :class:`FineTuneRegressor` take raw audio: ``X`` is a sequence of
audio file paths (read and conditioned by :func:`featurekit.audio.load_audio`, the path every
extractor's audio takes) or of 1-D float32 signals at 16 kHz that the caller already conditioned.
The network is the encoder (wav2vec2, HuBERT, WavLM, data2vec-audio, or the Whisper encoder), a
pooling over its last hidden states (mean, or attentive: a learned softmax over frames), both masked
to the frames that cover audio, and a linear output layer: softmax / class-weighted cross-entropy
(classifier), or CCC / MSE on standardised targets (regressor), both inherited from
:class:`~featurekit.heads.TorchClassifier` / ``TorchRegressor``, as is the speaker-grouped inner
split for early stopping (``fit(X, y, groups=speakers)``).

The encoder folder is checked before anything is trained (:func:`inspect_encoder`): a local
directory (never a hub download), no symbolic link out of it, no Python file, weights in
safetensors only (pickle formats refused), a ``config.json`` of a supported family and a
``preprocessor_config.json``; it is loaded with ``trust_remote_code=False``. Its preprocessor
settings are followed as :mod:`featurekit.extractors.ssl.hf` follows them: ``do_normalize``
(per-utterance zero mean, unit variance) and ``return_attention_mask`` (padded batches with masks;
a model trained without masks never sees padding: its training batches are cropped to their
shortest item and its predictions are made on groups of equal-length inputs).

Length: ``max_duration`` seconds at most enter the network. Training takes a random crop (seeded);
prediction, with ``long_inputs="chunks"``, cuts a longer input into consecutive chunks of
``max_duration`` (the last one ending at the end) and averages the chunks' pooled vectors weighted
by their frames before the output layer (for mean pooling: the mean over all frames), or, with
``"center"``, keeps the central ``max_duration``. Whisper's fixed window bounds ``max_duration``.

A fitted estimator is saved with :func:`featurekit.heads.finetune_io.save_finetuned` as
``network.safetensors`` (the whole network's state dict) plus ``finetune.json`` (parameters, fitted
attributes and the encoder's config), and rebuilt by :func:`~featurekit.heads.finetune_io.load_finetuned`
from those two files alone. The encoder folder checks, the families and the network are in
:mod:`featurekit.heads.finetune_network`.

In an evaluation spec the model takes the feature set ``waveform``: the audio as the spec's
``[audio]`` conditions it for every extractor, as 1-D signals (:mod:`featurekit.evaluation.runner`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from featurekit.audio import AudioOptions, load_audio
from featurekit.extractors.ssl.common import group_by_length
from featurekit.extractors.ssl.hf import PAD_UNSAFE, conv_frames
from featurekit.heads.estimators import (
    TorchClassifier,
    TorchRegressor,
    _batches,
    _check_float,
    _check_int,
    _resolve_device,
    _seeded,
    _torch_threads,
)
from featurekit.heads.finetune_network import (
    FAMILY_ADAPTERS,
    FineTuneNetwork,
    build_encoder,
    inspect_encoder,
)

__all__ = ["FineTuneClassifier", "FineTuneRegressor", "inspect_encoder"]

SAMPLE_RATE = 16000
POOLINGS = ("mean", "attention")
LONG_INPUTS = ("chunks", "center")


# --------------------------------------------------------------------------------------------- estimators


def _is_signal(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype.kind == "f"


class _FineTune:
    """Shared machinery of :class:`FineTuneClassifier` and :class:`FineTuneRegressor` (placed before
    the torch head in their bases: its methods replace the head's fit, checks and outputs)."""

    # -- parameters -----------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.long_inputs not in LONG_INPUTS:
            raise ValueError(f"long_inputs must be one of {LONG_INPUTS}, got {self.long_inputs!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        _check_float("lr", self.lr, 0.0, low_open=True)
        _check_float("encoder_lr", self.encoder_lr, 0.0)
        _check_float("weight_decay", self.weight_decay, 0.0)
        _check_float("dropout", self.dropout, 0.0, 1.0)
        _check_float("max_duration", self.max_duration, 0.0, low_open=True, allow_none=True)
        _check_int("freeze_layers", self.freeze_layers, 0)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("accumulate", self.accumulate, 1)
        _check_int("max_epochs", self.max_epochs, 1)
        _check_int("patience", self.patience, 1, allow_none=True)
        _check_float("validation_fraction", self.validation_fraction, 0.0, 1.0, allow_none=True)
        _check_int("n_threads", self.n_threads, 1, allow_none=True)
        _check_int("verbose", self.verbose, 0)
        if not isinstance(self.freeze_feature_encoder, (bool, np.bool_)):
            raise ValueError(
                f"freeze_feature_encoder must be True or False, got {self.freeze_feature_encoder!r}"
            )
        if self.audio is not None:
            self._audio_options()
        device = _resolve_device(self.device)
        if self.mixed_precision not in ("auto", True, False):
            raise ValueError(f"mixed_precision must be 'auto', True or False, got {self.mixed_precision!r}")
        if self.mixed_precision is True and device.type != "cuda":
            raise ValueError(
                f"mixed_precision=True needs a CUDA device, but device={self.device!r} resolves "
                f"to {device.type!r} (use 'auto': on with CUDA, off on the CPU)"
            )

    def _audio_options(self) -> AudioOptions:
        opts = dict(self.audio or {})
        unknown = set(opts) - {"trim_db", "duration", "max_samples", "sample_rate"}
        if unknown:
            raise ValueError(
                f"audio: unknown option(s) {sorted(unknown)}; use trim_db, duration, max_samples"
            )
        if opts.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise ValueError(f"audio.sample_rate must be {SAMPLE_RATE} (the encoders take 16 kHz)")
        opts["sample_rate"] = SAMPLE_RATE
        return AudioOptions(**opts)

    def _amp(self, device: torch.device) -> bool:
        return device.type == "cuda" and self.mixed_precision in ("auto", True)

    def _window(self, info: dict) -> int | None:
        """Samples that enter the network at most (``max_duration``, bounded by the family's window)."""
        limit = FAMILY_ADAPTERS[info["family"]].window(info)
        if self.max_duration is None:
            return limit
        n = int(round(float(self.max_duration) * SAMPLE_RATE))
        if limit is not None and n > limit:
            raise ValueError(
                f"max_duration={self.max_duration} s exceeds the longest input of the encoder in "
                f"{info['path']} ({limit / SAMPLE_RATE:g} s)"
            )
        if info["family"] != "whisper" and conv_frames(n, info["kernels"], info["strides"]) < 1:
            raise ValueError(f"max_duration={self.max_duration} s is shorter than one encoder frame")
        return n

    # -- audio ----------------------------------------------------------------------------------
    def _signals(self, X: Any) -> list[np.ndarray]:
        """The conditioned 16 kHz signals of ``X`` (paths are read with :func:`load_audio`)."""
        if isinstance(X, (str, os.PathLike)) or (isinstance(X, np.ndarray) and X.ndim not in (1, 2)):
            raise ValueError("X must be a sequence of audio file paths or of 1-D float signals (16 kHz)")
        items = list(X.tolist() if hasattr(X, "tolist") and not isinstance(X, np.ndarray) else X)
        if not items:
            raise ValueError("X is empty")
        options = self._audio_options()
        out = []
        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                out.append(load_audio(item, options=options))
            elif _is_signal(np.asarray(item)) and len(item) and np.isfinite(item).all():
                out.append(np.ascontiguousarray(item, dtype=np.float32))
            else:
                raise ValueError(
                    f"X[{i}]: expected an audio file path or a non-empty finite 1-D float signal, "
                    f"got {type(item).__name__}"
                )
        return out

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        if self.encoder_info_["normalize"] and len(x):  # as Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
            return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)
        return x

    # -- batches --------------------------------------------------------------------------------
    def _forward(
        self, net: FineTuneNetwork, pieces: list[np.ndarray], device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled vectors of ``pieces`` (already normalised and cropped) and their frame counts."""
        info = self.encoder_info_
        fam = FAMILY_ADAPTERS[info["family"]]
        x, kwargs = fam.inputs(info, pieces)
        frames = torch.tensor([max(1, fam.frames(info, len(p))) for p in pieces])
        tensors = {k: torch.from_numpy(v).to(device) for k, v in kwargs.items()}
        return net.pooled(torch.from_numpy(x).to(device=device, dtype=dtype), tensors, frames), frames

    def _pad_safe(self) -> bool:
        info = self.encoder_info_
        return info["family"] == "whisper" or (info["mask"] and info["family"] not in PAD_UNSAFE)

    def _crop_train(self, signals: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """Random crops: to ``max_duration``, and for a model without masks to the batch's shortest item."""
        limit = self.window_
        if not self._pad_safe():
            shortest = min(len(s) for s in signals)
            limit = shortest if limit is None else min(limit, shortest)
        out = []
        for s in signals:
            if limit is not None and len(s) > limit:
                a = int(rng.integers(0, len(s) - limit + 1))
                s = s[a : a + limit]
            out.append(s)
        return out

    def _pieces(self, signal: np.ndarray) -> list[np.ndarray]:
        """An input for prediction as the pieces that enter the network (see ``long_inputs``)."""
        limit = self.window_
        if limit is None or len(signal) <= limit:
            return [signal]
        if self.long_inputs == "center":
            a = (len(signal) - limit) // 2
            return [signal[a : a + limit]]
        starts = list(range(0, len(signal) - limit, limit)) + [len(signal) - limit]
        return [signal[a : a + limit] for a in starts]

    def _predict_outputs(
        self, net: FineTuneNetwork, signals: list[np.ndarray], device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """Outputs ``(n, n_outputs)`` of normalised signals (eval mode, no grad), in order."""
        pieces, owner = [], []
        for i, s in enumerate(signals):
            for p in self._pieces(s):
                pieces.append(p)
                owner.append(i)
        lengths = [len(p) for p in pieces]
        groups = group_by_length(lengths, self.batch_size, exact=not self._pad_safe())
        pooled: list[torch.Tensor] = [torch.empty(0)] * len(pieces)
        weights = np.zeros(len(pieces))
        with torch.inference_mode():
            for g in groups:
                vecs, frames = self._forward(net, [pieces[i] for i in g], device, dtype)
                for row, i in enumerate(g):
                    pooled[i] = vecs[row].to(torch.float64).cpu()
                    weights[i] = float(frames[row])
            n = len(signals)
            dim = pooled[0].shape[0]
            sums, totals = torch.zeros(n, dim, dtype=torch.float64), np.zeros(n)
            for i, o in enumerate(owner):
                sums[o] += weights[i] * pooled[i]
                totals[o] += weights[i]
            mean = (sums / torch.from_numpy(totals).unsqueeze(1)).to(device=device, dtype=dtype)
            return net.head(mean).float().cpu()

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, groups: Any = None) -> Self:
        """Fine-tune the encoder with the head.

        Parameters
        ----------
        X
            Audio file paths, or 1-D float32 signals at 16 kHz already conditioned.
        y
            Class labels ``(n,)`` (classifier) or targets ``(n,)`` / ``(n, k)`` (regressor).
        groups
            Speaker per item: the inner validation split for early stopping keeps speakers apart.
        """
        self._check_params()
        info = inspect_encoder(self.model)  # every folder problem before any audio is read
        self.encoder_info_ = info
        self.window_ = self._window(info)
        signals = [self._normalise(s) for s in self._signals(X)]
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != len(signals):
            raise ValueError(f"X has {len(signals)} items but y has {len(y) if y.ndim else 'no'} entries")
        targets, n_outputs, strat = self._prepare_targets(y)
        device = _resolve_device(self.device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        train_idx, val_idx = self._split(len(signals), strat, groups, seed)
        self.train_index_, self.validation_index_ = train_idx, val_idx
        with _torch_threads(self.n_threads), _seeded(seed, device, self.random_state is not None):
            encoder = build_encoder(info["family"], info["config"]["config"], info["path"])
            net = FineTuneNetwork(
                encoder, int(info["dim"]), n_outputs, pooling=self.pooling, dropout=float(self.dropout)
            ).to(device)
            self._freeze(net)
            history, best_epoch = self._train(net, signals, targets, train_idx, val_idx, device, seed)
        self.model_ = net.eval()
        self.history_ = history
        self.n_epochs_ = len(history)
        self.best_epoch_ = best_epoch
        self.validation_size_ = 0 if val_idx is None else len(val_idx)
        self.n_trainable_ = int(sum(p.numel() for p in net.parameters() if p.requires_grad))
        self.device_ = str(device)
        self.input_kind_ = "waveforms"
        return self

    def _freeze(self, net: FineTuneNetwork) -> None:
        fam = FAMILY_ADAPTERS[self.encoder_info_["family"]]
        if self.freeze_feature_encoder:
            fam.freeze_conv(net.encoder)
        layers = fam.layers(net.encoder)
        if self.freeze_layers > len(layers):
            raise ValueError(
                f"freeze_layers={self.freeze_layers} but the encoder in {self.encoder_info_['path']} "
                f"has {len(layers)} transformer layers"
            )
        for module in layers[: self.freeze_layers]:
            for p in module.parameters():
                p.requires_grad_(False)

    def _optimizer(self, net: FineTuneNetwork) -> torch.optim.Optimizer:
        head = net.head_parameters()
        head_ids = {id(p) for p in head}
        encoder = [p for p in net.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = [{"params": head, "lr": float(self.lr)}]
        if encoder and self.encoder_lr > 0:
            groups.append({"params": encoder, "lr": float(self.encoder_lr)})
        else:  # encoder_lr=0: the encoder stays as loaded (a linear probe on its pooled states)
            for p in encoder:
                p.requires_grad_(False)
        cls = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return cls(groups, weight_decay=float(self.weight_decay))

    def _train(
        self,
        net: FineTuneNetwork,
        signals: list[np.ndarray],
        targets: torch.Tensor,
        train_idx: np.ndarray,
        val_idx: np.ndarray | None,
        device: torch.device,
        seed: int,
    ) -> tuple[list[dict[str, float]], int]:
        loss_fn = self._loss_fn(targets.shape[1] if targets.dim() == 2 else 0, device)
        optimizer = self._optimizer(net)
        amp = self._amp(device)
        scaler = torch.amp.GradScaler("cuda") if amp else None
        generator = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        dtype = torch.float32
        history: list[dict[str, float]] = []
        best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
        for epoch in range(self.max_epochs):
            t0 = time.perf_counter()
            net.train()
            order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
            batches = _batches(order, self.batch_size)
            total = 0.0
            optimizer.zero_grad(set_to_none=True)
            for b, idx in enumerate(batches):
                pieces = self._crop_train([signals[i] for i in idx], rng)
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    vecs, _ = self._forward(net, pieces, device, dtype)
                    out = net.head(vecs)
                loss = loss_fn(out.float(), targets[idx].to(device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{type(self).__name__}: the training loss became {loss.item()} in "
                        f"epoch {epoch + 1}; try a smaller lr / encoder_lr"
                    )
                scaled = loss / self.accumulate
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                if (b + 1) % self.accumulate == 0 or b + 1 == len(batches):
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                total += loss.item() * len(idx)
            record = {"epoch": epoch + 1, "train_loss": total / len(train_idx)}
            if val_idx is not None:
                net.eval()
                with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    val_out = self._predict_outputs(net, [signals[i] for i in val_idx], device, dtype)
                record["val_loss"] = float(loss_fn(val_out.to(device), targets[val_idx].to(device)))
                if record["val_loss"] < best_loss:
                    best_loss, best_epoch, stale = record["val_loss"], epoch + 1, 0
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
                else:
                    stale += 1
            else:
                best_epoch = epoch + 1
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            if self.verbose:
                shown = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch")
                print(f"[{type(self).__name__}] epoch {epoch + 1}/{self.max_epochs}: {shown}")
            if val_idx is not None and self.patience is not None and stale >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        return history, best_epoch

    # -- predict --------------------------------------------------------------------------------
    def _outputs(self, X: Any) -> np.ndarray:
        """Network outputs ``(n, n_outputs)`` as float64 (float32 forward passes)."""
        check_is_fitted(self)
        signals = [self._normalise(s) for s in self._signals(X)]
        device = next(self.model_.parameters()).device
        with (
            _torch_threads(self.n_threads),
            torch.autocast("cuda", dtype=torch.float16, enabled=self._amp(device)),
        ):
            out = self._predict_outputs(self.model_.eval(), signals, device, torch.float32)
        return out.numpy().astype(np.float64)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")


_PARAMS_DOC = """
    Parameters
    ----------
    model : str or path
        The encoder folder (``save_pretrained`` output: ``config.json``, ``preprocessor_config.json``,
        ``*.safetensors``); see :func:`inspect_encoder` for what is refused.
    pooling : {"mean", "attention"}
        Over the last hidden states, masked to the frames covering audio.
    dropout : float
        Before the output layer.
    lr : float
        Learning rate of the pooling and output layer.
    encoder_lr : float
        Learning rate of the encoder's trainable parameters (usually 10-100x lower than ``lr``);
        0 keeps the encoder as loaded.
    freeze_feature_encoder : bool
        Keep the convolutional front end (Whisper: its two convolutions) fixed.
    freeze_layers : int
        Keep the first ``freeze_layers`` transformer layers fixed.
    max_duration : float or None
        Seconds that enter the network at most: a random crop in training; see ``long_inputs``.
        None: whole inputs (Whisper: its window).
    long_inputs : {"chunks", "center"}
        Prediction on inputs longer than ``max_duration``: the frame-weighted mean of the pooled
        vectors of consecutive chunks, or the central crop.
    optimizer : {"adam", "adamw"}
    weight_decay : float
    batch_size : int
    accumulate : int
        Gradient accumulation: the optimizer steps every ``accumulate`` batches.
    max_epochs, patience : int
        Early stopping on the inner validation loss; the best epoch's weights are restored.
    validation_fraction : float or None
        Fraction held out for early stopping, grouped by ``fit(..., groups=)`` (speakers) when given.
    audio : dict or None
        :class:`featurekit.audio.AudioOptions` fields (``trim_db``, ``duration``, ``max_samples``)
        for inputs given as paths (16 kHz).
    random_state : int or None
        Seeds the split, the head's initialisation, dropout, batch order and crops; a fixed int gives
        identical results on rerun on the CPU.
    n_threads : int or None
    device : {"cpu", "cuda", "auto"} or "cuda:<i>"
    mixed_precision : {"auto", True, False}
        float16 autocast with gradient scaling; "auto": on CUDA only (True on the CPU is an error).
    verbose : int
"""


class FineTuneClassifier(_FineTune, TorchClassifier):
    __doc__ = (
        """A pretrained speech encoder fine-tuned with a softmax classification head (class-weighted
    cross-entropy), see :mod:`featurekit.heads.finetune`.
"""
        + _PARAMS_DOC
        + """    class_weight : "balanced", dict or None
"""
    )

    def __init__(
        self,
        model: str | None = None,
        *,
        pooling: str = "mean",
        dropout: float = 0.1,
        lr: float = 1e-3,
        encoder_lr: float = 5e-5,
        freeze_feature_encoder: bool = True,
        freeze_layers: int = 0,
        max_duration: float | None = 6.0,
        long_inputs: str = "chunks",
        optimizer: str = "adamw",
        weight_decay: float = 0.01,
        batch_size: int = 8,
        accumulate: int = 1,
        max_epochs: int = 20,
        patience: int | None = 5,
        validation_fraction: float | None = 0.15,
        class_weight: str | dict | None = None,
        audio: dict | None = None,
        random_state: int | None = None,
        n_threads: int | None = None,
        device: str = "auto",
        mixed_precision: str | bool = "auto",
        verbose: int = 0,
    ) -> None:
        self.model = model
        self.pooling = pooling
        self.dropout = dropout
        self.lr = lr
        self.encoder_lr = encoder_lr
        self.freeze_feature_encoder = freeze_feature_encoder
        self.freeze_layers = freeze_layers
        self.max_duration = max_duration
        self.long_inputs = long_inputs
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.accumulate = accumulate
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.audio = audio
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device
        self.mixed_precision = mixed_precision
        self.verbose = verbose

    def _check_params(self) -> None:
        _FineTune._check_params(self)
        cw = self.class_weight
        if not (cw is None or isinstance(cw, dict) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"class_weight must be 'balanced', a dict or None, got {self.class_weight!r}")


class FineTuneRegressor(_FineTune, TorchRegressor):
    __doc__ = (
        """A pretrained speech encoder fine-tuned with a regression head (CCC or MSE loss on standardised
    targets, one or several, e.g. arousal/valence/dominance), see :mod:`featurekit.heads.finetune`.
"""
        + _PARAMS_DOC
        + """    loss : {"ccc", "mse"}
    task_weights : sequence of float or None
"""
    )

    def __init__(
        self,
        model: str | None = None,
        *,
        loss: str = "ccc",
        task_weights: Sequence[float] | None = None,
        pooling: str = "mean",
        dropout: float = 0.1,
        lr: float = 1e-3,
        encoder_lr: float = 5e-5,
        freeze_feature_encoder: bool = True,
        freeze_layers: int = 0,
        max_duration: float | None = 6.0,
        long_inputs: str = "chunks",
        optimizer: str = "adamw",
        weight_decay: float = 0.01,
        batch_size: int = 8,
        accumulate: int = 1,
        max_epochs: int = 20,
        patience: int | None = 5,
        validation_fraction: float | None = 0.15,
        audio: dict | None = None,
        random_state: int | None = None,
        n_threads: int | None = None,
        device: str = "auto",
        mixed_precision: str | bool = "auto",
        verbose: int = 0,
    ) -> None:
        self.model = model
        self.loss = loss
        self.task_weights = task_weights
        self.pooling = pooling
        self.dropout = dropout
        self.lr = lr
        self.encoder_lr = encoder_lr
        self.freeze_feature_encoder = freeze_feature_encoder
        self.freeze_layers = freeze_layers
        self.max_duration = max_duration
        self.long_inputs = long_inputs
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.accumulate = accumulate
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.audio = audio
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device
        self.mixed_precision = mixed_precision
        self.verbose = verbose

    def _check_params(self) -> None:
        _FineTune._check_params(self)
        if self.loss not in ("ccc", "mse"):
            raise ValueError(f"loss must be 'ccc' or 'mse', got {self.loss!r}")

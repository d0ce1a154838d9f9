"""Keras-style torch heads as scikit-learn estimators.

:class:`TorchClassifier` and :class:`TorchRegressor` train a network declared by a layer spec (see
:mod:`featurekit.heads.layers`) on 2-D feature vectors or on variable-length sequences, with an
inner (speaker-)grouped validation split for early stopping.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils import Tags, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featurekit.heads.data import SequenceSet, is_sequence_input, length_chunks, validate_sequences
from featurekit.heads.layers import LayerSpec, build_network, format_specs, parse_layers
from featurekit.heads.losses import concordance_cc, mse_per_target, weighted_task_loss
from featurekit.heads.modules import CROPS, HeadNetwork, MemberAverage, SpecAugment

__all__ = ["EXPECTED_FAILED_CHECKS", "LR_SCHEDULES", "OPTIMIZERS", "TorchClassifier", "TorchRegressor"]

#: Default body: the ``torch_mlp`` preset.
DEFAULT_LAYERS = "dense(256) -> dropout(0.3) -> dense(128) -> dropout(0.3)"

#: Optimizer name -> torch optimizer class.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

#: Learning-rate schedules (``lr_schedule``).
LR_SCHEDULES = ("constant", "cosine")

#: ``sklearn.utils.estimator_checks`` checks that are expected to fail (none, see the class docstrings).
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {"TorchClassifier": {}, "TorchRegressor": {}}

#: A training loss: (network outputs, targets) -> scalar.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_DEVICES = ("cpu", "cuda", "auto")
_PREDICT_CHUNK = 4096  # rows per forward pass at prediction time (vectors)
_PREDICT_FRAMES = 1 << 18  # padded frames per forward pass at prediction time (sequences)


# --------------------------------------------------------------------------------------------- helpers

def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}")


def _check_float(name: str, value: Any, low: float, high: float | None = None, low_open: bool = False,
                 allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{name} must be a number in {rng}{' or None' if allow_none else ''}, got {value!r}")


def _resolve_device(device: Any) -> torch.device:
    if not isinstance(device, str) or not (device in _DEVICES or device.startswith("cuda:")):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:<index>' or 'auto', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return torch.device(device)


@contextlib.contextmanager
def _torch_threads(n_threads: int | None) -> Iterator[None]:
    """Temporarily set ``torch.set_num_threads``; the previous value is restored afterwards."""
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device, deterministic: bool) -> Iterator[None]:
    """Seed torch inside a forked RNG (the caller's global RNG state is left untouched) and switch on
    deterministic algorithms (warn-only, restored afterwards)."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split ``order`` into batches; a trailing batch of one sample joins the previous batch
    (batch norm and the CCC loss need two samples)."""
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = np.concatenate([batches[-2], batches[-1]])
        batches.pop()
    return batches


def _forward_all(net: HeadNetwork, data: SequenceSet, device: torch.device,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Outputs for every item of ``data`` (eval mode, no grad, inputs cast to ``dtype``), in the
    original order."""
    n = len(data)
    if data.vectors is not None:
        chunks = [np.arange(i, min(i + _PREDICT_CHUNK, n)) for i in range(0, n, _PREDICT_CHUNK)]
    else:  # group similar lengths to pad little; padding does not change the outputs
        chunks = length_chunks(data.lengths, _PREDICT_FRAMES)
    outputs: list[torch.Tensor] = []
    with torch.inference_mode():
        for idx in chunks:
            x, lengths = data.batch(idx, device)
            outputs.append(net(x.to(dtype), lengths).cpu())
    out = torch.cat(outputs)
    if data.vectors is None:
        result = torch.empty_like(out)
        result[torch.from_numpy(np.concatenate(chunks))] = out
        return result
    return out


def _finite_targets(y: np.ndarray) -> np.ndarray:
    """Boolean mask of target rows holding no NaN / inf (object arrays: no NaN / None)."""
    if y.dtype.kind in "fc":
        flat = np.isfinite(y)
    elif y.dtype == object:
        flat = np.array([v is not None and not (isinstance(v, float) and not np.isfinite(v))
                         for v in y.ravel()]).reshape(y.shape)
    else:
        flat = np.ones(y.shape, dtype=bool)
    return flat.reshape(len(y), -1).all(axis=1)


# --------------------------------------------------------------------------------------------- base

class _TorchHead(BaseEstimator):
    """Shared fitting machinery; see :class:`TorchClassifier` for the parameters."""

    _task = "base"

    # -- subclass hooks -------------------------------------------------------------------------
    def _prepare_targets(self, y: np.ndarray) -> tuple[torch.Tensor, int, np.ndarray | None]:
        """Set target attributes; return the training targets, the output width and the labels
        to stratify the validation split on (None: not stratified)."""
        raise NotImplementedError

    def _loss_fn(self, n_outputs: int, device: torch.device) -> LossFn:
        raise NotImplementedError

    # -- validation -----------------------------------------------------------------------------
    def _check_params(self) -> list[LayerSpec]:
        specs = parse_layers(self.layers)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        _check_float("lr", self.lr, 0.0, low_open=True)
        _check_float("weight_decay", self.weight_decay, 0.0)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                             f"got {self.lr_schedule!r}")
        _check_int("batch_size", self.batch_size, 1)
        _check_int("max_epochs", self.max_epochs, 1)
        _check_int("patience", self.patience, 1, allow_none=True)
        _check_float("validation_fraction", self.validation_fraction, 0.0, 1.0, allow_none=True)
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ValueError(f"standardize must be True or False, got {self.standardize!r}")
        _check_int("n_threads", self.n_threads, 1, allow_none=True)
        _check_int("n_members", self.n_members, 1)
        _check_int("max_len", self.max_len, 1, allow_none=True)
        _check_int("fixed_len", self.fixed_len, 1, allow_none=True)
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        if self.crop != "start" and self.fixed_len is None:
            raise ValueError(f"crop={self.crop!r} takes windows of fixed_len frames; set fixed_len")
        for name in ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width"):
            _check_int(name, getattr(self, name), 0)
        _check_int("verbose", self.verbose, 0)
        device = _resolve_device(self.device)
        if not isinstance(self.mixed_precision, (bool, np.bool_)):
            raise ValueError(f"mixed_precision must be True or False, got {self.mixed_precision!r}")
        if self.mixed_precision and device.type != "cuda":
            raise ValueError(f"mixed_precision=True needs a CUDA device, but device={self.device!r} "
                             f"resolves to {device.type!r}")
        return specs

    def _frame_limit(self) -> int | None:
        """Frames kept per sequence: ``max_len`` and ``fixed_len`` (which crops anyway unless
        ``crop="random"`` takes windows from anywhere in the sequence), the smaller."""
        cropped = self.fixed_len if self.crop == "start" else None
        limits = [n for n in (self.max_len, cropped) if n is not None]
        return min(limits) if limits else None

    def check_lengths(self, lengths: Sequence[int]) -> None:
        """Raise a ValueError when ``fixed_len`` is longer than every sequence of ``lengths`` (frames):
        a crop that would only pad. Called by :meth:`fit` and, before any fit, by the evaluation."""
        longest = int(max(lengths)) if len(lengths) else 0
        if self.fixed_len is not None and self.fixed_len > longest:
            raise ValueError(f"fixed_len={self.fixed_len} frames is longer than every input sequence "
                             f"(the longest has {longest} frames): the crop would only pad; "
                             f"use fixed_len <= {longest}")

    def _augmenter(self) -> SpecAugment | None:
        if (self.time_masks and self.time_mask_width) or (self.freq_masks and self.freq_mask_width):
            return SpecAugment(self.time_masks, self.time_mask_width, self.freq_masks, self.freq_mask_width)
        return None

    def _validate_X_fit(self, X: Any, y: Any) -> tuple[SequenceSet, np.ndarray]:
        if is_sequence_input(X):
            seqs = validate_sequences(X, max_len=self._frame_limit())
            self.check_lengths([len(s) for s in seqs])
            if y is None:
                raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
            y = np.asarray(y)
            if y.ndim == 0 or len(y) != len(seqs):
                raise ValueError(f"X has {len(seqs)} sequences but y has "
                                 f"{len(y) if y.ndim else 'no'} entries; they must match")
            bad = np.flatnonzero(~_finite_targets(y))
            if len(bad):
                raise ValueError(f"target y contains NaN or infinite values (at index {bad[:10].tolist()})")
            self.n_features_in_ = seqs[0].shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            self.input_kind_ = "sequences"
            return SequenceSet(seqs), y
        if self.fixed_len is not None:
            raise ValueError(f"fixed_len={self.fixed_len} crops sequences, but X holds vectors (2-D); "
                             "pass frame sequences (e.g. an .lld feature set) or set fixed_len=None")
        if self._augmenter() is not None:
            raise ValueError("time_masks / freq_masks (SpecAugment) mask frame sequences, but X holds "
                             "vectors (2-D); pass frame sequences or set them to 0")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=self._task == "regression",
                             multi_output=self._task == "regression")
        self.input_kind_ = "vectors"
        return SequenceSet(np.asarray(X, dtype=np.float32)), y

    def _validate_X_predict(self, X: Any) -> SequenceSet:
        check_is_fitted(self)
        if is_sequence_input(X):
            return SequenceSet(validate_sequences(X, n_features=self.n_features_in_,
                                                  max_len=self._frame_limit()))
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return SequenceSet(np.asarray(X, dtype=np.float32))

    # -- split ----------------------------------------------------------------------------------
    def _split(self, n: int, strat: np.ndarray | None, groups: Any, seed: int
               ) -> tuple[np.ndarray, np.ndarray | None]:
        if groups is not None:
            groups = np.asarray(groups)
            if groups.ndim != 1 or len(groups) != n:
                raise ValueError(f"groups must be 1-D with one entry per sample ({n}), "
                                 f"got shape {groups.shape}")
        frac = self.validation_fraction
        everything = np.arange(n)
        if not frac:
            return everything, None
        if groups is not None:
            if len(np.unique(groups)) < 2:
                raise ValueError("the validation split is grouped by `groups`, which needs at least 2 "
                                 "distinct groups; got 1 (set validation_fraction=None to train without one)")
            splitter: Any = GroupShuffleSplit(n_splits=1, test_size=frac, random_state=seed)
            train, val = next(splitter.split(everything, groups=groups))
        else:
            splitter = (StratifiedShuffleSplit if strat is not None else ShuffleSplit)(
                n_splits=1, test_size=frac, random_state=seed)
            try:
                train, val = next(splitter.split(everything, strat))
            except ValueError:  # too few samples (per class) for a split: train without early stopping
                return everything, None
        if len(train) == 0 or len(val) == 0:
            return everything, None
        return np.sort(train), np.sort(val)

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, groups: Any = None) -> Self:
        """Train the network.

        Parameters
        ----------
        X
            2-D array ``(n, F)`` or ``n`` sequences ``(T_i, F)`` (object array, list, or 3-D array).
        y
            Class labels ``(n,)`` (classifier) or targets ``(n,)`` / ``(n, k)`` (regressor).
        groups
            Group label per sample (e.g. speaker); the inner validation split keeps groups apart.

        Returns
        -------
        self
        """
        specs = self._check_params()
        data, y = self._validate_X_fit(X, y)
        targets, n_outputs, strat = self._prepare_targets(y)
        device = _resolve_device(self.device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        nets, runs = [], []
        for k in range(self.n_members):
            # member 0 uses the estimator's seed (n_members=1 is a plain head); each further member
            # its own seed: own initialisation, batch order and (grouped) validation split
            member_seed = seed if k == 0 else int(np.random.SeedSequence([seed, k]).generate_state(1)[0] >> 1)
            train_idx, val_idx = self._split(len(data), strat, groups, member_seed)
            mean, std = data.subset(train_idx).frame_moments() if self.standardize else (None, None)
            with _torch_threads(self.n_threads), _seeded(member_seed, device, self.random_state is not None):
                net, built = build_network(specs, self.n_features_in_, n_outputs, fixed_len=self.fixed_len,
                                           augment=self._augmenter(), crop=self.crop)
                if self.standardize:
                    std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
                    net.set_standardization(torch.as_tensor(mean, dtype=torch.float32),
                                            torch.as_tensor(std, dtype=torch.float32))
                net.to(device)
                runs.append(self._train(net, data, targets, train_idx, val_idx, device, member_seed))
            nets.append(net)
        self.layers_ = format_specs(built)
        self.model_ = self._combine(nets)
        history, best_epoch, n_val = zip(*runs)
        one = self.n_members == 1
        self.history_ = history[0] if one else list(history)
        self.n_epochs_ = len(history[0]) if one else [len(h) for h in history]
        self.best_epoch_ = best_epoch[0] if one else list(best_epoch)
        self.validation_size_ = n_val[0] if one else list(n_val)
        self.device_ = str(device)
        return self

    def _combine(self, nets: list[HeadNetwork]) -> torch.nn.Module:
        """The fitted network: the single member, or the members averaged (:class:`MemberAverage`)."""
        if len(nets) == 1:
            return nets[0]
        return MemberAverage(nets, probabilities=self._task == "classification").eval()

    def _train(self, net: HeadNetwork, data: SequenceSet, targets: torch.Tensor, train_idx: np.ndarray,
               val_idx: np.ndarray | None, device: torch.device, seed: int
               ) -> tuple[list[dict[str, float]], int, int]:
        """Train ``net`` in place (best validation epoch restored); return its history, best epoch
        and validation size."""
        loss_fn = self._loss_fn(targets.shape[1] if targets.dim() == 2 else 0, device)
        optimizer = OPTIMIZERS[self.optimizer](net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.max_epochs)
                    if self.lr_schedule == "cosine" else None)
        scaler = torch.amp.GradScaler("cuda") if self.mixed_precision else None
        generator = torch.Generator().manual_seed(seed)
        val_data = data.subset(val_idx) if val_idx is not None else None
        val_targets = targets[val_idx].to(device) if val_idx is not None else None
        history: list[dict[str, float]] = []
        best_loss, best_epoch, best_state, stale = np.inf, 0, None, 0
        for epoch in range(self.max_epochs):
            net.train()
            order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
            total = 0.0
            for idx in _batches(order, self.batch_size):
                x, lengths = data.batch(idx, device)
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    loss = loss_fn(net(x, lengths), targets[idx].to(device))
                else:  # float16 autocast on CUDA, loss in float32, scaled gradients
                    with torch.autocast("cuda", dtype=torch.float16):
                        out = net(x, lengths)
                    loss = loss_fn(out.float(), targets[idx].to(device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{type(self).__name__}: the training loss became {loss.item()} "
                                             f"in epoch {epoch + 1}; try a smaller lr")
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                total += loss.item() * len(idx)
            record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                      "train_loss": total / len(train_idx)}
            if schedule is not None:
                schedule.step()
            if val_data is not None:
                net.eval()
                val_out = _forward_all(net, val_data, device).to(device)
                record["val_loss"] = float(loss_fn(val_out, val_targets))
                if record["val_loss"] < best_loss:
                    best_loss, best_epoch, stale = record["val_loss"], epoch + 1, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
            else:
                best_epoch = epoch + 1
            history.append(record)
            if self.verbose:
                shown = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch")
                print(f"[{type(self).__name__}] epoch {epoch + 1}/{self.max_epochs}: {shown}")
            if val_data is not None and self.patience is not None and stale >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return history, best_epoch, 0 if val_idx is None else len(val_idx)

    # -- predict --------------------------------------------------------------------------------
    def _outputs(self, X: Any) -> np.ndarray:
        """Network outputs ``(n, n_outputs)`` as float64.

        On the CPU the forward pass runs in float64 (on a float64 copy of the float32 weights), so an
        item's output does not depend on the other items of its batch beyond ~1e-12 (float32
        kernels differ by ~1e-7 between batch sizes); on CUDA it runs in float32.
        """
        data = self._validate_X_predict(X)
        device = next(self.model_.parameters()).device
        with _torch_threads(self.n_threads):
            if device.type == "cpu":
                net, dtype = copy.deepcopy(self.model_).double().eval(), torch.float64
            else:
                net, dtype = self.model_.eval(), torch.float32
            out = _forward_all(net, data, device, dtype)
        return out.numpy().astype(np.float64)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags


_PARAMS_DOC = """
    Parameters
    ----------
    layers : str or list of str
        Network body, e.g. ``"gru(128, bidirectional) -> attention_pool -> dense(64) -> dropout(0.3)"``
        (see :mod:`featurekit.heads.layers`); the linear output layer is added automatically, and a
        pooling layer too when the body has none. Default: the ``torch_mlp`` preset.
    optimizer : {"adam", "adamw"}
    lr : float
        Learning rate.
    weight_decay : float
        L2 penalty (``adam``) / decoupled weight decay (``adamw``).
    lr_schedule : {"constant", "cosine"}
        ``"cosine"``: the learning rate decays from ``lr`` to 0 along a half cosine over
        ``max_epochs`` (Loshchilov & Hutter, 2017; stepped once per epoch); ``"constant"``: ``lr``
        throughout.
    batch_size : int
    max_epochs : int
    patience : int or None
        Stop after this many epochs without a lower validation loss (None: run ``max_epochs``).
        The weights of the best validation epoch are restored.
    validation_fraction : float or None
        Fraction held out for early stopping. With ``groups`` passed to :meth:`fit` the split is
        grouped (``GroupShuffleSplit``: no speaker in both parts); otherwise it is stratified by
        class (classifier) or random (regressor). None / 0, or data too small to split: no early
        stopping.
    standardize : bool
        Z-score the features with mean / std of the training part (over all frames); stored in the
        network. The regressor always standardises its targets internally (predictions are in the
        original units).
    random_state : int, RandomState or None
        Seeds splits, weight initialisation, dropout and shuffling; a fixed int gives identical
        predictions on rerun (CPU). Torch's global RNG state is left as it was.
    n_threads : int or None
        ``torch.set_num_threads`` during fit / predict, restored afterwards (None: leave as is).
    device : {"cpu", "cuda", "auto"} or "cuda:<i>"
    mixed_precision : bool
        Train under float16 autocast with gradient scaling (CUDA only; a ValueError elsewhere).
    max_len : int or None
        Keep at most the first ``max_len`` frames of each sequence (None: no truncation).
    fixed_len : int or None
        Crop every sequence to its first ``fixed_len`` frames or zero-pad it (after standardisation,
        i.e. with the training mean) to them, as fixed-size spectrogram CNNs do; None: variable
        length under masks. Longer than every training sequence: a ValueError.
    crop : {"start", "random"}
        With ``fixed_len``: ``"start"`` keeps each sequence's first ``fixed_len`` frames;
        ``"random"`` trains on one random window of ``fixed_len`` frames per sequence and batch
        (seeded by ``random_state``) and predicts from the outputs (logits) averaged over windows
        half a window apart that cover the whole sequence: segment-level training with an
        utterance-level decision, so no part of a long utterance is cut off and a short corpus
        yields many distinct training inputs.
    time_masks, time_mask_width, freq_masks, freq_mask_width : int
        SpecAugment (Park et al., 2019) during training only: per training item and batch,
        ``time_masks`` masks of up to ``time_mask_width`` frames and ``freq_masks`` masks of up to
        ``freq_mask_width`` features set to the training mean; seeded by ``random_state``. Never
        applied at prediction. 0: off.
    n_members : int
        Train this many networks with different seeds (initialisation, batch order and inner
        validation split; member 0 uses ``random_state`` itself) and average them: the class
        probabilities (classifier) or the predictions (regressor) -- a seed ensemble (Lakshminarayanan
        et al., 2017), which lowers the variance small corpora give single networks. Costs
        ``n_members`` times the training time.
    verbose : int
        Print the losses of every epoch when > 0.
"""

_ATTRS_DOC = """
    Attributes
    ----------
    model_ : HeadNetwork or MemberAverage
        The trained torch module (eval mode); a :class:`MemberAverage` of the members when
        ``n_members > 1``.
    layers_ : str
        Canonical spec of the built body, including an inserted pooling layer.
    n_features_in_ : int
    feature_names_in_ : ndarray
        Only when fitted on a DataFrame.
    input_kind_ : {"vectors", "sequences"}
    history_ : list of dict
        ``lr`` (the learning rate of the epoch), ``train_loss`` (and ``val_loss``) per epoch.
    n_epochs_, best_epoch_ : int
    validation_size_ : int
        Samples in the inner validation split (0: none).
        With ``n_members > 1``, ``history_``, ``n_epochs_``, ``best_epoch_`` and
        ``validation_size_`` are lists with one entry per member.
    device_ : str
"""

_CHECKS_DOC = """
    Notes
    -----
    Passes ``sklearn.utils.estimator_checks.check_estimator`` on 2-D input (tested with the
    ``torch_mlp`` preset and ``max_epochs=10``) without skipping any check:
    ``EXPECTED_FAILED_CHECKS`` is empty. scikit-learn itself skips ``check_array_api_input``
    unless ``SCIPY_ARRAY_API=1`` is set, and runs no ``sample_weight`` checks because ``fit`` takes
    no ``sample_weight``. ``check_methods_subset_invariance`` (atol 1e-7) passes because CPU
    predictions run in float64, see ``_outputs``.
"""


# --------------------------------------------------------------------------------------------- classifier

class TorchClassifier(ClassifierMixin, _TorchHead):
    __doc__ = ("""Torch classification head (class-weighted cross-entropy) as a scikit-learn estimator.
""" + _PARAMS_DOC + """    class_weight : "balanced", dict or None
        Class weights of the cross-entropy: "balanced" uses ``n / (n_classes * count)`` of the
        training labels; a dict maps class labels to weights (missing classes: 1).
""" + _ATTRS_DOC + """    classes_ : ndarray
    class_weight_ : ndarray or None
""" + _CHECKS_DOC + """
    Examples
    --------
    >>> clf = TorchClassifier("gru(64, bidirectional) -> attention_pool -> dense(32)", max_epochs=30)
    >>> clf.fit(sequences, labels, groups=speakers).predict(sequences)  # doctest: +SKIP
""")

    _task = "classification"

    def __init__(self, layers: str | Sequence[str] | None = DEFAULT_LAYERS, *, optimizer: str = "adam",
                 lr: float = 1e-3, weight_decay: float = 0.0, lr_schedule: str = "constant",
                 batch_size: int = 32, max_epochs: int = 100,
                 patience: int | None = 10, validation_fraction: float | None = 0.1,
                 class_weight: str | dict | None = None, standardize: bool = True,
                 random_state: int | np.random.RandomState | None = None, n_threads: int | None = None,
                 device: str = "cpu", max_len: int | None = None, fixed_len: int | None = None,
                 crop: str = "start",
                 time_masks: int = 0, time_mask_width: int = 0, freq_masks: int = 0, freq_mask_width: int = 0,
                 mixed_precision: bool = False, n_members: int = 1, verbose: int = 0) -> None:
        self.layers = layers
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.standardize = standardize
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device
        self.max_len = max_len
        self.fixed_len = fixed_len
        self.crop = crop
        self.time_masks = time_masks
        self.time_mask_width = time_mask_width
        self.freq_masks = freq_masks
        self.freq_mask_width = freq_mask_width
        self.mixed_precision = mixed_precision
        self.n_members = n_members
        self.verbose = verbose

    def _check_params(self) -> list[LayerSpec]:
        specs = super()._check_params()
        cw = self.class_weight
        if not (cw is None or isinstance(cw, dict) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"class_weight must be 'balanced', a dict or None, got {self.class_weight!r}")
        return specs

    def _prepare_targets(self, y: np.ndarray) -> tuple[torch.Tensor, int, np.ndarray | None]:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; it is raveled.",
                          DataConversionWarning, stacklevel=3)
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D class labels, got shape {y.shape}")
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes, but the training "
                             f"data contains only one class: {classes[0]!r}")
        self.classes_ = classes
        counts = np.bincount(encoded, minlength=len(classes)).astype(np.float64)
        if self.class_weight == "balanced":
            self.class_weight_ = len(encoded) / (len(classes) * counts)
        elif isinstance(self.class_weight, dict):
            unknown = [k for k in self.class_weight if k not in set(classes.tolist())]
            if unknown:
                raise ValueError(f"class_weight names classes not in y: {unknown!r}")
            self.class_weight_ = np.array([float(self.class_weight.get(c, 1.0)) for c in classes.tolist()])
        else:
            self.class_weight_ = None
        return torch.from_numpy(encoded.astype(np.int64)), len(classes), encoded

    def _loss_fn(self, n_outputs: int, device: torch.device) -> LossFn:
        weight = None if self.class_weight_ is None else torch.tensor(self.class_weight_, dtype=torch.float32,
                                                                      device=device)
        return torch.nn.CrossEntropyLoss(weight=weight)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` (columns in the order of ``classes_``)."""
        logits = self._outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels ``(n,)``."""
        outputs = self._outputs(X)
        return self.classes_[np.argmax(outputs, axis=1)]


# --------------------------------------------------------------------------------------------- regressor

class TorchRegressor(RegressorMixin, _TorchHead):
    __doc__ = ("""Torch regression head (CCC or MSE loss, one or several targets) as a scikit-learn estimator.
""" + _PARAMS_DOC + """    loss : {"ccc", "mse"}
        ``"ccc"``: ``1 - CCC`` per target (computed over each batch; the validation loss over the
        whole validation part); ``"mse"``: mean squared error per target (on standardised targets).
    task_weights : sequence of float or None
        Weights of the per-target losses, e.g. ``(alpha, beta, gamma)`` for valence, arousal and
        dominance; the training loss is ``sum_k w_k L_k``. None: the mean over targets.
""" + _ATTRS_DOC + """    n_outputs_ : int
    y_mean_, y_scale_ : ndarray
        Target standardisation (predictions are mapped back).
""" + _CHECKS_DOC)

    _task = "regression"

    def __init__(self, layers: str | Sequence[str] | None = DEFAULT_LAYERS, *, loss: str = "ccc",
                 task_weights: Sequence[float] | None = None, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, lr_schedule: str = "constant", batch_size: int = 32,
                 max_epochs: int = 100,
                 patience: int | None = 10, validation_fraction: float | None = 0.1, standardize: bool = True,
                 random_state: int | np.random.RandomState | None = None, n_threads: int | None = None,
                 device: str = "cpu", max_len: int | None = None, fixed_len: int | None = None,
                 crop: str = "start",
                 time_masks: int = 0, time_mask_width: int = 0, freq_masks: int = 0, freq_mask_width: int = 0,
                 mixed_precision: bool = False, n_members: int = 1, verbose: int = 0) -> None:
        self.layers = layers
        self.loss = loss
        self.task_weights = task_weights
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.standardize = standardize
        self.random_state = random_state
        self.n_threads = n_threads
        self.device = device
        self.max_len = max_len
        self.fixed_len = fixed_len
        self.crop = crop
        self.time_masks = time_masks
        self.time_mask_width = time_mask_width
        self.freq_masks = freq_masks
        self.freq_mask_width = freq_mask_width
        self.mixed_precision = mixed_precision
        self.n_members = n_members
        self.verbose = verbose

    def _check_params(self) -> list[LayerSpec]:
        specs = super()._check_params()
        if self.loss not in ("ccc", "mse"):
            raise ValueError(f"loss must be 'ccc' or 'mse', got {self.loss!r}")
        return specs

    def _task_weights(self, n_targets: int) -> np.ndarray | None:
        if self.task_weights is None:
            return None
        try:
            weights = np.asarray(self.task_weights, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValueError(f"task_weights must be a sequence of numbers, "
                             f"got {self.task_weights!r}") from None
        if len(weights) != n_targets:
            raise ValueError(f"task_weights has {len(weights)} entries but y has {n_targets} targets")
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("task_weights must be finite, non-negative and not all zero, "
                             f"got {self.task_weights!r}")
        return weights

    def _prepare_targets(self, y: np.ndarray) -> tuple[torch.Tensor, int, np.ndarray | None]:
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("y must be numeric for regression") from None
        if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
            raise ValueError(f"y must have shape (n,) or (n, k), got {y.shape}")
        bad = np.flatnonzero(~_finite_targets(y))
        if len(bad):
            raise ValueError(f"target y contains NaN or infinite values (at index {bad[:10].tolist()})")
        self.y_ndim_ = y.ndim
        y2 = y.reshape(len(y), -1)
        self._task_weights(y2.shape[1])
        self.n_outputs_ = y2.shape[1]
        self.y_mean_ = y2.mean(axis=0)
        scale = y2.std(axis=0)
        self.y_scale_ = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(self.y_mean_)), scale, 1.0)
        scaled = (y2 - self.y_mean_) / self.y_scale_
        return torch.from_numpy(scaled.astype(np.float32)), y2.shape[1], None

    def _loss_fn(self, n_outputs: int, device: torch.device) -> LossFn:
        weights = self._task_weights(n_outputs)
        per_target = concordance_cc if self.loss == "ccc" else mse_per_target

        def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            values = per_target(pred, target)
            if self.loss == "ccc":
                values = 1.0 - values
            return weighted_task_loss(values, weights)

        return loss

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``(n,)`` when fitted on 1-D y, else ``(n, k)``."""
        pred = self._outputs(X) * self.y_scale_ + self.y_mean_
        return pred.ravel() if self.y_ndim_ == 1 else pred

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

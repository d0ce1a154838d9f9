"""Named head presets with SER-oriented default layer specs, and a factory for them.

Besides the frame-feature heads (``torch_mlp``, ``lstm``, ``gru``, ``conv1d``) there are presets of
published spectrogram systems (:data:`SPECTROGRAM_PRESETS`). They take frame tables of the store as
images (frequency x time) with the extractor parameters of the publications: window 1024, hop 256,
128 mel bands (``logmel.lld``) or 40 MFCCs (``mfcc.lld``)::

    [extractors.logmel]
    n_fft = 1024
    win_length = 1024
    hop_length = 256

At 16 kHz and hop 256 a frame is 16 ms, so the 5 s crop/pad of the fixed-size presets is
``fixed_len = 313`` frames (``ceil(5 * 16000 / 256)``). Kernels and pools are written
frequency x time (see :mod:`featurekit.heads.layers`). Every parameter can be overridden.

``vgg_mel`` is not a reproduction of a paper: four VGG-style blocks (3x3 convolution, batch norm,
ReLU, 2x2 max pooling; 16/32/64/128 channels), then the mean over time of each channel x mel-band
cell (``to_frames -> mean_pool``: where in frequency the energy lies is kept, which a global
pooling over frequency too throws away; on the band task of tests/test_deep.py global average
pooling generalised to 0.4-0.6, the time mean to 1.0), a dense layer, trained on random 1.5 s
windows of log-mel (``crop="random"``) with the decision averaged over windows covering the
utterance, AdamW and a cosine schedule for a fixed budget. The published fixed-size systems above
train on the first 5 s of each utterance and collapsed on the small acted corpora here (EMOVO,
LOSO: cnn_spec predicted one class for a held-out speaker after ~20 epochs).
"""

from __future__ import annotations

from typing import Any

from featurekit.heads.estimators import TorchClassifier, TorchRegressor

__all__ = ["PRESETS", "PRESET_PARAMS", "SPECTROGRAM_INPUTS", "SPECTROGRAM_PRESETS", "make_head",
           "spectrogram_layers"]


def _blocks(convs: list[tuple[int, str]]) -> str:
    """conv 3x3 -> batchnorm -> ReLU (-> pool) blocks: ``(channels, pool spec or "")``."""
    return " -> ".join(_branch(channels, 3, 3, pool) for channels, pool in convs)


def _branch(channels: int, kf: int, kt: int, pool: str = "") -> str:
    return (f"conv2d({channels}, {kf}, {kt}) -> batchnorm2d -> activation(relu)"
            + (f" -> {pool}" if pool else ""))


def spectrogram_layers(name: str, *, width: float = 1.0) -> str:
    """The layer spec of a spectrogram preset, channel and unit counts scaled by ``width``.

    Parameters
    ----------
    name
        A key of :data:`SPECTROGRAM_PRESETS`.
    width
        Factor on every channel / unit count (at least 1 each); 1.0 is the published system, smaller
        values give the same topology for quick experiments and tests.

    Returns
    -------
    str
        A layer spec for :class:`~featurekit.heads.TorchClassifier`.
    """
    def c(n: int) -> int:
        return max(1, round(n * width))

    if name == "cnn_lstm_mel":  # Zhao, Mao & Chen (2019): 2-D CNN LSTM on log-mel
        return (_blocks([(c(32), "maxpool2d(2)"), (c(48), "maxpool2d(2)"), (c(64), "maxpool2d(2)"),
                         (c(128), "maxpool2d(4)"), (c(256), "maxpool2d(4)")])
                + f" -> to_frames -> lstm({c(128)}, layers=2, dropout=0.3) -> last_pool -> dense({c(64)})")
    if name == "fcn_mfcc":  # fully convolutional: 3x3, spectral 9x1 and temporal 1x11 branches
        branches = " | ".join(_branch(c(32), kf, kt, "avgpool2d(2)") for kf, kt in ((3, 3), (9, 1), (1, 11)))
        return (f"parallel({branches}) -> "
                + _blocks([(c(64), "avgpool2d(2)"), (c(96), "avgpool2d(2)"), (c(128), "avgpool2d(2)"),
                           (c(160), "avgpool2d(2)"), (c(320), "")])
                + " -> global_avg_pool -> dropout(0.3)")
    if name == "cnn_att_mfcc":  # Xu et al. (2021): CNN + head-fusion self-attention, variable length
        return (f"parallel({_branch(c(8), 11, 3)} | {_branch(c(8), 3, 9)}) -> "
                + _blocks([(c(32), "maxpool2d(2)"), (c(48), "maxpool2d(2)"), (c(64), ""), (c(80), "")])
                + f" -> to_frames -> self_attention({c(128)}, 3, fusion=mean) -> mean_pool -> layernorm")
    if name == "vgg_mel":  # VGG-style blocks (Simonyan & Zisserman, 2015) as in audio-tagging CNNs
        return (_blocks([(c(16), "maxpool2d(2)"), (c(32), "maxpool2d(2)"), (c(64), "maxpool2d(2)"),
                         (c(128), "")])
                + f" -> to_frames -> mean_pool -> dense({c(64)})")
    if name == "cnn_spec":  # AlexNet-style (Krizhevsky et al., 2012) with a dense head
        return (f"conv2d({c(64)}, 11, stride=4) -> batchnorm2d -> activation(relu) -> maxpool2d(2) -> "
                f"conv2d({c(128)}, 5) -> batchnorm2d -> activation(relu) -> maxpool2d(2) -> "
                f"conv2d({c(192)}, 3, activation=relu) -> conv2d({c(192)}, 3, activation=relu) -> "
                f"conv2d({c(128)}, 3, activation=relu) -> global_max_pool -> dropout(0.5) -> "
                f"dense({c(256)}) -> dropout(0.5) -> dense({c(256)})")
    raise ValueError(f"unknown spectrogram preset {name!r}; known: {', '.join(SPECTROGRAM_INPUTS)}")


#: 5 s at 16 kHz with hop 256 (frames of 16 ms).
FIVE_SECONDS = 313

#: 1.5 s at 16 kHz with hop 256: the training window of ``vgg_mel``.
SEGMENT = 94

#: Spectrogram preset -> the store frame table it was published on.
SPECTROGRAM_INPUTS: dict[str, str] = {
    "cnn_lstm_mel": "logmel.lld",
    "fcn_mfcc": "mfcc.lld",
    "cnn_att_mfcc": "mfcc.lld",
    "cnn_spec": "logmel.lld",
    "vgg_mel": "logmel.lld",
}

#: Published spectrogram systems: registry name -> layer spec.
SPECTROGRAM_PRESETS: dict[str, str] = {name: spectrogram_layers(name) for name in SPECTROGRAM_INPUTS}

#: Registry name -> default estimator parameters besides the layers (spectrogram presets).
_TRAINING = {"batch_size": 16, "lr": 1e-3, "max_epochs": 50, "patience": 10}
PRESET_PARAMS: dict[str, dict[str, Any]] = {
    "cnn_lstm_mel": {"fixed_len": FIVE_SECONDS, **_TRAINING},
    "fcn_mfcc": {"fixed_len": FIVE_SECONDS, **_TRAINING},
    "cnn_att_mfcc": dict(_TRAINING),
    "cnn_spec": {"fixed_len": FIVE_SECONDS, **_TRAINING},
    # segment-level training: a random 1.5 s window per utterance and batch, the decision averaged
    # over windows covering the utterance; a fixed budget (cosine schedule, no early stopping)
    "vgg_mel": {"fixed_len": SEGMENT, "crop": "random", "optimizer": "adamw", "weight_decay": 1e-2,
                "lr_schedule": "cosine", "batch_size": 16, "lr": 1e-3, "max_epochs": 40,
                "validation_fraction": None, "patience": None},
}

#: Registry name -> default layer spec.
PRESETS: dict[str, str] = {
    # HSF functionals (e.g. eGeMAPS / ComParE vectors)
    "torch_mlp": "dense(256) -> dropout(0.3) -> dense(128) -> dropout(0.3)",
    # LLD sequences: recurrent encoders with attentive pooling (Mirsamadi et al., 2017)
    "lstm": "lstm(128, bidirectional) -> attention_pool -> dense(64) -> dropout(0.3)",
    "gru": "gru(128, bidirectional) -> attention_pool -> dense(64) -> dropout(0.3)",
    # LLD sequences: temporal convolutions with masked mean pooling
    "conv1d": "conv1d(128, 5) -> conv1d(128, 3) -> mean_pool -> dense(64)",
    **SPECTROGRAM_PRESETS,
}


def make_head(name: str, task: str = "classification", **params: Any) -> TorchClassifier | TorchRegressor:
    """Build a torch head from a preset.

    Parameters
    ----------
    name
        A key of :data:`PRESETS` (``torch_mlp``, ``lstm``, ``gru``, ``conv1d``, or a spectrogram
        preset: ``cnn_lstm_mel``, ``fcn_mfcc``, ``cnn_att_mfcc``, ``cnn_spec``, ``vgg_mel``).
    task
        ``"classification"`` (:class:`TorchClassifier`) or ``"regression"`` (:class:`TorchRegressor`).
    **params
        Estimator parameters; ``layers`` overrides the preset's spec, others the preset's
        :data:`PRESET_PARAMS`.

    Returns
    -------
    TorchClassifier or TorchRegressor
    """
    if name not in PRESETS:
        raise ValueError(f"unknown head preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    classes = {"classification": TorchClassifier, "regression": TorchRegressor}
    if task not in classes:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    params = {"layers": PRESETS[name], **PRESET_PARAMS.get(name, {}), **params}
    return classes[task](**params)

"""Keras-style torch heads (MLP, LSTM, GRU, 1-D conv, 2-D spectrogram CNNs) as scikit-learn estimators.

Importing this package imports torch; the rest of featurekit does not.

>>> from featurekit.heads import make_head
>>> clf = make_head("gru", max_epochs=30, random_state=0)  # doctest: +SKIP
"""

from featurekit.heads.estimators import TorchClassifier, TorchRegressor
from featurekit.heads.losses import ccc_loss
from featurekit.heads.persistence import load_head, save_head
from featurekit.heads.presets import PRESETS, make_head

__all__ = ["PRESETS", "TorchClassifier", "TorchRegressor", "ccc_loss", "load_head", "make_head", "save_head"]

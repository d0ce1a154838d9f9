"""Evaluation protocols: how utterances are split into training and test folds.

Each protocol yields :class:`Fold` objects and says whether it is speaker-independent; a
speaker-dependent protocol (stratified k-fold) is labelled as such in every output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from featurekit.registry import Registry


@dataclass(frozen=True)
class Fold:
    name: str
    train: np.ndarray  # integer positions
    test: np.ndarray


@dataclass(frozen=True)
class Protocol:
    name: str
    speaker_independent: bool
    folds: Callable[..., list[Fold]]
    description: str = ""


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def _logo(manifest: pd.DataFrame, *, group: str = "speaker", **_) -> list[Fold]:
    g = manifest[group].astype(str).to_numpy()
    levels = sorted(set(g))
    if len(levels) < 2:
        raise ValueError(f"leave-one-{group}-out needs at least 2 values of {group!r}; found {levels}")
    return [Fold(f"{group}={lv}", np.flatnonzero(g != lv), np.flatnonzero(g == lv)) for lv in levels]


def _kfold(manifest: pd.DataFrame, *, k: int = 5, seed: int = 0, y=None, **_) -> list[Fold]:
    from sklearn.model_selection import StratifiedKFold

    labels = manifest["label"].to_numpy() if y is None else y
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [Fold(f"kfold={i}", tr, te) for i, (tr, te) in enumerate(skf.split(np.zeros(len(labels)), labels))]


def _split(
    manifest: pd.DataFrame, *, column: str = "split", train: list | None = None, test: list | None = None, **_
) -> list[Fold]:
    if column not in manifest:
        raise ValueError(f"protocol.column: the manifest has no column {column!r}")
    v = manifest[column].astype(str).to_numpy()
    tr = np.flatnonzero(np.isin(v, [str(x) for x in (train or ["train", "Train"])]))
    te = np.flatnonzero(np.isin(v, [str(x) for x in (test or ["test", "Test"])]))
    if not len(tr) or not len(te):
        raise ValueError(f"protocol split on {column!r}: empty train ({len(tr)}) or test ({len(te)}) set")
    return [Fold(f"{column}={'+'.join(map(str, test or ['test']))}", tr, te)]


def _cross_corpus(manifest: pd.DataFrame, **_) -> list[Fold]:
    c = manifest["corpus"].to_numpy()
    train_c, test_c = manifest.attrs["train_corpus"], manifest.attrs["test_corpus"]
    return [Fold(f"{train_c}->{test_c}", np.flatnonzero(c == train_c), np.flatnonzero(c == test_c))]


PROTOCOLS.add("loso", Protocol("loso", True, _logo, "leave one group (speaker or session) out"))
PROTOCOLS.add("kfold", Protocol("kfold", False, _kfold, "stratified k-fold: SPEAKER-DEPENDENT"))
PROTOCOLS.add("split", Protocol("split", True, _split, "fixed train/test split from a manifest column"))
PROTOCOLS.add("cross_corpus", Protocol("cross_corpus", True, _cross_corpus, "train on corpus A, test on B"))

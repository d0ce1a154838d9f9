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
    #: ``(scope, positions)``: the test positions split into separately scored evaluations (one fit,
    #: several test corpora: the cross-corpus matrix); empty: the whole test set, one evaluation
    scopes: tuple[tuple[str, np.ndarray], ...] = ()


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


def matrix_scope(train: str, test: str) -> str:
    """The ``protocol`` label of one cross-corpus matrix entry (see :func:`parse_matrix_scope`)."""
    kind = "leave-one-speaker-out" if train == test else "cross-corpus"
    return f"matrix {train} -> {test} ({kind})"


def parse_matrix_scope(label: str) -> tuple[str, str] | None:
    """``(train, test)`` corpora of a :func:`matrix_scope` label, ``None`` for other labels."""
    import re

    m = re.fullmatch(r"matrix (\S+) -> (\S+) \((?:leave-one-speaker-out|cross-corpus)\)", str(label))
    return (m.group(1), m.group(2)) if m else None


def _corpora(manifest: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    if "corpus" not in manifest:
        raise ValueError("multi-corpus protocol: the manifest has no 'corpus' column")
    c = manifest["corpus"].astype(str).to_numpy()
    names = list(dict.fromkeys(c))
    if len(names) < 2:
        raise ValueError(f"multi-corpus protocol: needs at least 2 corpora, found {names}")
    return c, names


def _cross_corpus_matrix(manifest: pd.DataFrame, **_) -> list[Fold]:
    """Per training corpus A: A's leave-one-speaker-out folds (the diagonal), then one fold trained on
    all of A and tested on every other corpus (one fit, scored per test corpus)."""
    c, names = _corpora(manifest)
    folds = []
    for a in names:
        rows = np.flatnonzero(c == a)
        for f in _logo(manifest.iloc[rows], group="speaker"):
            folds.append(Fold(f.name, rows[f.train], rows[f.test],
                              ((matrix_scope(a, a), rows[f.test]),)))
        others = [b for b in names if b != a]
        test = np.flatnonzero(c != a)
        folds.append(Fold(f"{a}->{'+'.join(others)}", rows, test,
                          tuple((matrix_scope(a, b), np.flatnonzero(c == b)) for b in others)))
    return folds


def _leave_one_corpus_out(manifest: pd.DataFrame, **_) -> list[Fold]:
    c, names = _corpora(manifest)
    return [Fold(f"corpus={b}", np.flatnonzero(c != b), np.flatnonzero(c == b)) for b in names]


def _multi_corpus_loso(manifest: pd.DataFrame, **_) -> list[Fold]:
    _corpora(manifest)  # speakers are prefixed with their corpus by the multi-corpus manifest
    return _logo(manifest, group="speaker")


PROTOCOLS.add("loso", Protocol("loso", True, _logo, "leave one group (speaker or session) out"))
PROTOCOLS.add("kfold", Protocol("kfold", False, _kfold, "stratified k-fold: SPEAKER-DEPENDENT"))
PROTOCOLS.add("split", Protocol("split", True, _split, "fixed train/test split from a manifest column"))
PROTOCOLS.add("cross_corpus", Protocol("cross_corpus", True, _cross_corpus, "train on corpus A, test on B"))
PROTOCOLS.add("cross_corpus_matrix", Protocol(
    "cross_corpus_matrix", True, _cross_corpus_matrix,
    "every ordered pair of corpora (train A, test B) plus each corpus' leave-one-speaker-out"))
PROTOCOLS.add("leave_one_corpus_out", Protocol(
    "leave_one_corpus_out", True, _leave_one_corpus_out, "train on all corpora but one, test on it"))
PROTOCOLS.add("multi_corpus_loso", Protocol(
    "multi_corpus_loso", True, _multi_corpus_loso, "leave one speaker out of the pooled corpora"))

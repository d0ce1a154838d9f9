"""Input handling for the torch heads: variable-length sequences, padding and batching.

Heads accept two kinds of ``X``:

* a 2-D float array ``(n, F)`` of vectors (e.g. HSF functionals): each row becomes a length-1
  sequence;
* variable-length sequences (e.g. LLD frames): a 1-D numpy object array or a list/tuple of 2-D
  arrays ``(T_i, F)``, or a 3-D float array ``(n, T, F)`` of equal-length sequences.

Sequences are kept unpadded and padded per batch (right padding, with lengths), so no frame is
dropped unless ``max_len`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SequenceSet", "is_sequence_input", "length_chunks", "pad_sequences", "validate_sequences"]


def _is_matrix_like(obj: Any) -> bool:
    return (isinstance(obj, np.ndarray) or isinstance(obj, torch.Tensor)) and obj.ndim == 2


def is_sequence_input(X: Any) -> bool:
    """Whether ``X`` holds sequences (object array / list of 2-D arrays / 3-D array) rather than vectors."""
    if isinstance(X, np.ndarray):
        return (X.dtype == object and X.ndim == 1) or X.ndim == 3
    if isinstance(X, torch.Tensor):
        return X.ndim == 3
    if isinstance(X, (list, tuple)):
        return any(_is_matrix_like(item) for item in X)
    return False


def validate_sequences(X: Any, n_features: int | None = None, max_len: int | None = None
                       ) -> list[np.ndarray]:
    """Check a collection of sequences and return them as float32 arrays ``(T_i, F)``.

    Parameters
    ----------
    X
        Object array / list / tuple of 2-D arrays, or a 3-D array.
    n_features
        Expected feature width (the fitted one at predict time); None: taken from the first sequence.
    max_len
        Keep at most the first ``max_len`` frames of each sequence (None: no truncation).

    Raises
    ------
    ValueError
        No sequences; a sequence that is not 2-D or not numeric; an empty sequence (its index is
        named); feature widths that differ from each other or from ``n_features``; NaN or inf values.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray) and X.ndim == 3:
        items: Sequence[Any] = list(X)
    else:
        items = list(X)
    if len(items) == 0:
        raise ValueError("X contains no sequences (0 samples); at least one sequence is required")
    seqs: list[np.ndarray] = []
    width = n_features
    width_from = "the fitted model" if n_features is not None else None
    for i, item in enumerate(items):
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        try:
            arr = np.asarray(item, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sequence {i} is not a numeric array: {exc}") from None
        if arr.ndim != 2:
            raise ValueError(f"sequence {i} must be a 2-D array (frames, features), got shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"sequence {i} is empty (0 frames); every sequence needs at least one frame")
        if width is None:
            width, width_from = arr.shape[1], "sequence 0"
        elif arr.shape[1] != width:
            raise ValueError(f"sequence {i} has {arr.shape[1]} features, but {width_from} has {width}; "
                             "all sequences must have the same feature width")
        if not np.isfinite(arr).all():
            raise ValueError(f"sequence {i} contains NaN or infinite values")
        if max_len is not None:
            arr = arr[:max_len]
        seqs.append(arr)
    return seqs


def pad_sequences(seqs: Sequence[np.ndarray], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad sequences with zeros to a common length.

    Parameters
    ----------
    seqs
        Arrays ``(T_i, F)``.
    max_len
        Truncate to this many frames; None pads to the longest sequence.

    Returns
    -------
    padded, lengths
        ``(n, T, F)`` float32 array and ``(n,)`` int64 lengths.
    """
    lengths = np.array([len(s) if max_len is None else min(len(s), max_len) for s in seqs], dtype=np.int64)
    width = seqs[0].shape[1]
    padded = np.zeros((len(seqs), int(lengths.max()), width), dtype=np.float32)
    for i, (seq, n) in enumerate(zip(seqs, lengths)):
        padded[i, :n] = seq[:n]
    return padded, lengths


def length_chunks(lengths: np.ndarray, max_frames: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (shortest first), each holding at most
    ``max_frames`` padded frames (at least one item), so that batches pad little.

    Parameters
    ----------
    lengths
        Frames per item.
    max_frames
        Budget of a batch: its size times its longest item.

    Returns
    -------
    list of numpy.ndarray
        Index arrays that together hold every item once.
    """
    order = np.argsort(lengths, kind="stable")
    chunks, start, n = [], 0, len(order)
    while start < n:
        stop = start + 1
        while stop < n and (stop - start + 1) * lengths[order[stop]] <= max_frames:
            stop += 1
        chunks.append(order[start:stop])
        start = stop
    return chunks


class SequenceSet:
    """A dataset of sequences that builds padded torch batches.

    Parameters
    ----------
    seqs
        List of float32 arrays ``(T_i, F)``, or a 2-D float32 array ``(n, F)`` of vectors (stored
        as length-1 sequences without copying into a list).
    """

    def __init__(self, seqs: list[np.ndarray] | np.ndarray) -> None:
        if isinstance(seqs, np.ndarray):
            self.vectors: np.ndarray | None = np.ascontiguousarray(seqs, dtype=np.float32)
            self.seqs: list[np.ndarray] = []
            self.lengths = np.ones(len(seqs), dtype=np.int64)
        else:
            self.vectors = None
            self.seqs = seqs
            self.lengths = np.array([len(s) for s in seqs], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_features(self) -> int:
        return self.vectors.shape[1] if self.vectors is not None else self.seqs[0].shape[1]

    def batch(self, indices: np.ndarray, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded batch ``(B, T, F)`` and lengths ``(B,)`` for ``indices``."""
        indices = np.asarray(indices)
        if self.vectors is not None:
            x = torch.from_numpy(self.vectors[indices]).unsqueeze(1)
        else:
            x = torch.from_numpy(pad_sequences([self.seqs[i] for i in indices])[0])
        lengths = torch.from_numpy(self.lengths[indices])
        return x.to(device), lengths.to(device)

    def frame_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of every feature over all frames (float64)."""
        if self.vectors is not None:
            frames = self.vectors.astype(np.float64)
            return frames.mean(axis=0), frames.std(axis=0)
        total = np.zeros(self.n_features)
        for s in self.seqs:
            total += s.sum(axis=0, dtype=np.float64)
        count = float(self.lengths.sum())
        mean = total / count
        sq = np.zeros(self.n_features)
        for s in self.seqs:
            sq += ((s.astype(np.float64) - mean) ** 2).sum(axis=0)
        return mean, np.sqrt(sq / count)

    def subset(self, indices: np.ndarray) -> SequenceSet:
        """A new set holding the given items."""
        if self.vectors is not None:
            return SequenceSet(self.vectors[indices])
        return SequenceSet([self.seqs[i] for i in indices])

"""Feature normalisation.

- ``none``: features as stored.
- ``global``: z-score with mean/std fit on the training fold only (a ``StandardScaler`` step
  inside the pipeline, so it is refit inside every inner search fold as well).
- ``speaker``: each speaker's features z-scored with that speaker's own mean and std, computed
  from their features alone (no labels). This is *transductive* for the test speaker: their
  unlabelled test features set their statistics, as is standard in the SER literature (and as a
  deployed system would do after hearing some of a speaker's speech). No label and no other
  speaker's data is involved, so it leaks nothing across the speaker boundary.
- ``corpus`` (multi-corpus specs): each corpus' features z-scored with that corpus' mean and std, to
  remove corpus shift (language, microphone, room). Computed inside every outer fold: a corpus with
  rows in the training fold takes its statistics from those training rows only; a corpus with no
  training rows (the test corpus of a cross-corpus pair) takes them from its own unlabelled test
  features, which is *transductive* in the same way as ``speaker`` (no label is used). The inner
  search folds reuse the outer training fold's statistics (features only, no labels).
"""

from __future__ import annotations

import numpy as np

NORMALISATIONS = ("none", "global", "speaker", "corpus")


def speaker_zscore(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Z-score the rows of ``x`` within each speaker (constant columns become 0)."""
    out = np.empty_like(x, dtype=np.float64)
    for s in np.unique(speakers):
        m = speakers == s
        xs = x[m].astype(np.float64)
        mu, sd = xs.mean(axis=0), xs.std(axis=0)
        out[m] = (xs - mu) / np.where(sd > 0, sd, 1.0)
    return out.astype(np.float32)


def speaker_zscore_sequences(seqs: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Per-speaker z-score of frame-level sequences (statistics over all of a speaker's frames)."""
    out = np.empty(len(seqs), dtype=object)
    for s in np.unique(speakers):
        idx = np.flatnonzero(speakers == s)
        frames = np.concatenate([seqs[i] for i in idx]).astype(np.float64)
        mu, sd = frames.mean(axis=0), frames.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        for i in idx:
            out[i] = ((seqs[i] - mu) / sd).astype(np.float32)
    return out


def corpus_zscore(x: np.ndarray, corpora: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Z-score each corpus' rows of ``x`` with statistics of its rows among ``train`` (positions), or,
    for a corpus with no training rows, of all its rows (transductive; see the module docstring)."""
    out = np.empty_like(x, dtype=np.float64)
    in_train = np.zeros(len(x), dtype=bool)
    in_train[train] = True
    for c in np.unique(corpora):
        m = corpora == c
        ref = m & in_train if (m & in_train).any() else m
        xs = x[ref].astype(np.float64)
        mu, sd = xs.mean(axis=0), xs.std(axis=0)
        out[m] = (x[m] - mu) / np.where(sd > 0, sd, 1.0)
    return out.astype(np.float32)

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
from sklearn.base import BaseEstimator, TransformerMixin

NORMALISATIONS = ("none", "global", "speaker", "corpus")


def speaker_zscore(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Z-score the rows of ``x`` within each speaker (constant columns become 0)."""
    return SpeakerNormaliser().fit_transform(x, speakers=speakers)


def speaker_zscore_sequences(seqs: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Per-speaker z-score of frame-level sequences (statistics over all of a speaker's frames)."""
    return SpeakerNormaliser(sequences=True).fit_transform(seqs, speakers=speakers)


class PopulationStatisticsWarning(UserWarning):
    """Per-speaker normalisation without the speaker's statistics: the training population's were used."""


def _statistics(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (constant columns: 1) of the rows of ``frames``, in float64."""
    frames = frames.astype(np.float64)
    sd = frames.std(axis=0)
    return frames.mean(axis=0), np.where(sd > 0, sd, 1.0)


def _frames(x, sequences: bool) -> np.ndarray:
    return np.concatenate(list(x)) if sequences else np.asarray(x)


class SpeakerNormaliser(TransformerMixin, BaseEstimator):
    """Per-speaker z-score as a fitted transformer (the ``speaker`` normalisation).

    ``fit`` records the training population's pooled mean and standard deviation (``mean_``,
    ``scale_``: over all rows, or all frames of all sequences). ``transform`` z-scores with one of
    three sources of statistics, the first given:

    - ``speakers`` (one group per row): each speaker with the statistics of their own rows in ``x``,
      which is what evaluation does (transductive for a test speaker, as :func:`speaker_zscore`);
    - ``reference``: features of enrolment recordings of the (single) speaker of ``x``; their
      statistics normalise every row of ``x`` (a deployed system that has heard the speaker before);
    - neither: the fitted population statistics, with a :class:`PopulationStatisticsWarning`.

    A recording is thus never normalised against itself alone unless the caller says it is its own
    speaker. ``sequences``: ``x`` is an object array of ``(frames, features)`` arrays, and statistics
    are over all frames.
    """

    def __init__(self, *, sequences: bool = False):
        self.sequences = sequences

    def fit(self, x, y=None, *, speakers: np.ndarray | None = None) -> SpeakerNormaliser:
        self.mean_, self.scale_ = _statistics(_frames(x, self.sequences))
        self.n_speakers_ = int(len(np.unique(speakers))) if speakers is not None else 0
        return self

    def fit_transform(self, x, y=None, *, speakers: np.ndarray | None = None):
        return self.fit(x, speakers=speakers).transform(x, speakers=speakers)

    def _apply(self, x, mu: np.ndarray, sd: np.ndarray, rows=None):
        if not self.sequences:
            return ((np.asarray(x).astype(np.float64) - mu) / sd).astype(np.float32)
        out = np.empty(len(x), dtype=object)
        for i in range(len(x)) if rows is None else rows:
            out[i] = ((x[i] - mu) / sd).astype(np.float32)
        return out

    def transform(self, x, *, speakers: np.ndarray | None = None, reference=None):
        if speakers is not None:
            speakers = np.asarray(speakers)
            if len(speakers) != len(x):
                raise ValueError(f"speakers: {len(speakers)} groups for {len(x)} rows")
            if not self.sequences:
                out = np.empty(np.shape(x), dtype=np.float64)
                for s in np.unique(speakers):
                    m = speakers == s
                    mu, sd = _statistics(np.asarray(x)[m])
                    out[m] = (np.asarray(x)[m].astype(np.float64) - mu) / sd
                return out.astype(np.float32)
            out = np.empty(len(x), dtype=object)
            for s in np.unique(speakers):
                idx = np.flatnonzero(speakers == s)
                part = self._apply(x, *_statistics(_frames([x[i] for i in idx], True)), rows=idx)
                for i in idx:
                    out[i] = part[i]
            return out
        if reference is not None:
            ref = _frames(reference, self.sequences)
            if len(ref) < 2:
                raise ValueError("speaker reference: at least two rows (recordings, or frames) are needed "
                                 f"for a speaker's statistics; got {len(ref)}")
            return self._apply(x, *_statistics(ref))
        import warnings

        warnings.warn("per-speaker normalisation without the speaker's statistics (no enrolment audio and "
                      "no speaker groups): the training population's mean and standard deviation were used",
                      PopulationStatisticsWarning, stacklevel=2)
        return self._apply(x, self.mean_, self.scale_)


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

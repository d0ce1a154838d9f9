"""Waveform augmentation inside training folds (``[augmentation.waveform]``).

What happens, and why:

- **Which utterances are augmented.** Only training utterances: those in the training set of at
  least one outer fold (:func:`training_positions`). An utterance that is only ever tested (the test
  corpus or split of a protocol) is never augmented. Copies are made by
  :class:`featurekit.augmentation.WaveformAugmentation` from the conditioned waveform and featurised
  by :func:`featurekit.extraction.extract` with the same extractors and table kinds as the originals,
  into the store's augmented tables (keyed by source content, chain, seed and copy index), so a
  rerun computes nothing new.
- **Which copies a fold sees.** Outer fold ``f`` appends the copies of *its* training utterances to
  its training set (:meth:`Copies.training_rows`), never a copy of one of its test utterances. A copy
  keeps its source's label, speaker and protocol group, so speaker-grouped inner folds put it in
  its source's inner fold (they group by speaker), and inner validation scores originals only
  (the copies of a validation speaker are dropped from the validation fold: augmentation is for
  fitting, the search is judged on real recordings).
- **Scalers and selectors** (``global`` normalisation, the pipeline's ``pre`` steps) are fit on the
  training set *including* the copies: they are steps of the pipeline that the model is fit with,
  and fitting them on exactly what the model sees keeps the pipeline one sklearn object, as
  ``featurekit train`` would save it; the copies come from training speakers only, so this uses no
  test information.
- **Per-speaker normalisation** (``speaker``) z-scores a copy with the statistics of its speaker's
  *original* utterances, the statistics its source is normalised with, so a copy stays in its
  source's coordinates (gain or noise changes are not normalised away, and the originals'
  normalisation is the same as without augmentation).
- **Models.** Any model listed in ``[augmentation] models`` (see
  :func:`featurekit.evaluation.spec._apply_waveform_augmentation`): torch heads on frame sequences
  (the copies' LLD frames) and classical models on vectors (the copies' HSF vectors) alike, also in
  late fusion (every member gets its copies). Stacked systems are refused at spec validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from featurekit.augmentation import WaveformAugmentation
from featurekit.evaluation.normalisation import SpeakerNormaliser
from featurekit.evaluation.protocols import Fold
from featurekit.evaluation.runner import DataError, FeatureData
from featurekit.evaluation.spec import FeatureSet, Member
from featurekit.executor import Executor, SerialExecutor


def training_positions(folds: list[Fold]) -> np.ndarray:
    """Manifest positions that are in the training set of at least one fold (sorted)."""
    return np.unique(np.concatenate([np.asarray(f.train, dtype=np.int64) for f in folds]))


class AugmentedFeatureData(FeatureData):
    """The copies' features: :class:`~featurekit.evaluation.runner.FeatureData` over the copies of
    ``base``'s rows at ``sources`` (copy ``k`` of every source, then ``k + 1``), read from the store's
    augmented tables. Constructing one reads nothing; :meth:`load_copies` first computes the copies
    the store lacks (on an executor), like :meth:`FeatureData.load`."""

    def __init__(self, base: FeatureData, augmentation: WaveformAugmentation, sources: np.ndarray,
                 feature_sets: list[FeatureSet]) -> None:
        self.augmentation = augmentation
        self.sources = base.manifest.iloc[np.asarray(sources, dtype=np.int64)].reset_index(drop=True)
        #: each copy's source as a position in ``base.manifest``
        self.source_positions = np.tile(np.asarray(sources, dtype=np.int64), augmentation.copies)
        self._wanted = {m.table for fs in feature_sets for m in fs.members}
        super().__init__(base.spec, augmentation.copies_manifest(self.sources), base.store,
                         corpus=base.corpus)

    @classmethod
    def load_copies(cls, base: FeatureData, augmentation: WaveformAugmentation, sources: np.ndarray,
                    feature_sets: list[FeatureSet], *, executor: Executor | None = None,
                    progress: bool = True) -> AugmentedFeatureData:
        """The copies' features, once those the store lacks are computed by ``executor`` (default:
        this process); a :class:`DataError` lists the copies that failed."""
        data = cls(base, augmentation, sources, feature_sets)
        data.extraction = data._extract(executor or SerialExecutor(), progress)
        return data

    def _members(self) -> list[Member]:
        return [m for m in super()._members() if m.table in self._wanted]

    def _store_table(self, ext, kind: str):
        return self.store.table(self.corpus, ext, kind, self.audio, augmentation=self.augmentation.key())

    def _extract(self, executor: Executor, progress: bool):
        from featurekit.extraction import extract

        summary = extract(self.sources, self.requests(), self.store, corpus=self.corpus, audio=self.audio,
                          executor=executor, progress=progress, augmentation=self.augmentation)
        if summary.failures:
            lines = "\n".join(f"  {k}: {v}" for k, v in list(summary.failures.items())[:20])
            raise DataError(f"waveform augmentation failed for {len(summary.failures)} copy(ies):\n{lines}")
        # a copy's rows carry its source file's fingerprint
        fps, _ = self.store.fingerprints(self.corpus, self.manifest["path"].astype(str).tolist())
        self._fingerprints = fps
        return summary


@dataclass
class Copies:
    """The augmented copies of one cell: their model input(s) (one per fused member, like the cell's
    inputs) and each copy's source position in the manifest."""

    inputs: list[Any]
    source: np.ndarray

    def training_rows(self, member: int, x, y: np.ndarray, groups: np.ndarray, train: np.ndarray):
        """The training rows of a fold with the copies of its training utterances appended:
        ``(x, y, groups, originals)``, ``originals`` marking the rows that are not copies."""
        keep = np.flatnonzero(np.isin(self.source, train))
        src = self.source[keep]
        xc = self.inputs[member][keep]
        x_train = np.concatenate([x[train], xc]) if x.dtype != object else _concat_objects(x[train], xc)
        originals = np.concatenate([np.ones(len(train), bool), np.zeros(len(keep), bool)])
        return (x_train, np.concatenate([y[train], y[src]]), np.concatenate([groups[train], groups[src]]),
                originals)


def _concat_objects(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(len(a) + len(b), dtype=object)
    out[: len(a)], out[len(a):] = list(a), list(b)
    return out


def cell_copies(data: FeatureData, copies: AugmentedFeatureData, fs: FeatureSet, norm: str,
                speakers: np.ndarray, members: list[FeatureSet]) -> Copies:
    """The copies' model inputs for a cell on ``fs`` (``members``: its fused member sets), normalised
    as the cell's originals are (``speaker``: with the statistics of the speaker's original
    utterances; see the module docstring)."""
    copy_speakers = speakers[copies.source_positions]

    def one(f: FeatureSet):
        x = copies.sequences(f) if f.sequences else copies.matrix(f)[0]
        if norm != "speaker":
            return x
        ref = data.sequences(f) if f.sequences else data.matrix(f)[0]
        out = np.empty(len(x), dtype=object) if f.sequences else np.empty(x.shape, np.float32)
        for s in np.unique(copy_speakers):
            rows = np.flatnonzero(copy_speakers == s)
            z = SpeakerNormaliser(sequences=f.sequences).transform(x[rows], reference=ref[speakers == s])
            if f.sequences:
                for i, r in enumerate(rows):
                    out[r] = z[i]
            else:
                out[rows] = z
        return out

    return Copies([one(g) for g in members], copies.source_positions)

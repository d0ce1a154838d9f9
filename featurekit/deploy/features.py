"""Features of a signal exactly as the feature store holds them for training.

A :class:`FeatureComputer` is built from ``model.json``'s ``feature_set``: for every member
(``EXTRACTOR.KIND@LAYER``) it calls :func:`featurekit.featurisation.featurise`, the function
:mod:`featurekit.extraction` computes the store's rows with (``native``, or ``lld`` followed by the HSF
functional, or ``lld`` frames for sequence models), and then picks the member's training columns
*by name*, in training order (this also applies encoder layer selections). The ``waveform`` set (a
fine-tuned encoder) is the conditioned signal itself. A window is conditioned by
:func:`featurekit.audio.condition`, the function :func:`featurekit.audio.load_audio` conditions every
file with (silence trimming, fixed duration, padding of clips shorter than one analysis frame).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featurekit.audio import AudioError, AudioOptions, condition
from featurekit.featureset import TableKind
from featurekit.featurisation import featurise


@dataclass
class MemberSpec:
    """One member of the feature set and its training column names."""

    extractor: str
    kind: str
    layer: str | None
    params: dict[str, Any]
    columns: list[str]
    _ext: Any = field(default=None, repr=False)
    _index: np.ndarray | None = field(default=None, repr=False)
    _n_names: int = field(default=-1, repr=False)

    def extractor_instance(self):
        if self._ext is None:
            from featurekit.extractors import make_extractor

            params = {k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in self.params.items()}
            self._ext = make_extractor(self.extractor, **params)
        return self._ext

    def pick(self, names: list[str], values: np.ndarray, where: str) -> np.ndarray:
        """``values[..., columns]`` by name (the index is computed once and reused)."""
        if self._index is None or len(names) != self._n_names:
            pos = {n: i for i, n in enumerate(names)}
            missing = [c for c in self.columns if c not in pos]
            if missing:
                raise ValueError(f"{where}: {self.extractor}.{self.kind} produced no column(s) {missing[:5]} "
                                 f"(of {len(missing)}) that the model was trained on")
            self._index = np.array([pos[c] for c in self.columns], dtype=np.int64)
            self._n_names = len(names)
        return values[..., self._index]


class FeatureComputer:
    """Computes the model's input for one signal (see the module docstring).

    Parameters
    ----------
    feature_set
        ``model.json``'s ``feature_set`` entry.
    audio
        The model's audio options.
    """

    def __init__(self, feature_set: dict[str, Any], audio: AudioOptions) -> None:
        self.audio = audio
        self.sequences = bool(feature_set["sequences"])
        #: the model takes the conditioned signal itself (a fine-tuned encoder on the set ``waveform``)
        self.waveform = bool(feature_set.get("waveform", False))
        self.members = [MemberSpec(m["extractor"], m["kind"], m.get("layer"), dict(m.get("params") or {}),
                                   list(m["columns"])) for m in feature_set["members"]]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["members"] = [MemberSpec(m.extractor, m.kind, m.layer, m.params, m.columns)
                            for m in self.members]
        return state

    def condition(self, signal: np.ndarray, where: str) -> np.ndarray:
        """Trim / fix the length / pad a decoded window with :func:`featurekit.audio.condition`."""
        return condition(signal, options=self.audio, where=where, warn_short=False)

    def compute(self, signal: np.ndarray, where: str) -> np.ndarray:
        """The model input of one (already conditioned) signal.

        Returns
        -------
        numpy.ndarray
            ``(d,)`` float32 vector, or ``(T, F)`` float32 frames for sequence models.

        Raises
        ------
        AudioError
            The extractor failed or produced non-finite values (named by ``where``).
        """
        if self.waveform:
            return np.ascontiguousarray(signal, dtype=np.float32)
        sr = self.audio.sample_rate
        groups: dict[tuple[str, str], list[MemberSpec]] = {}  # members of one extractor: one featurise
        for m in self.members:
            groups.setdefault((m.extractor, repr(sorted(m.params.items()))), []).append(m)
        tables: dict[int, Any] = {}
        with warnings.catch_warnings():
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            for members in groups.values():
                kinds = list(dict.fromkeys(TableKind(m.kind) for m in members))
                out = featurise(members[0].extractor_instance(), kinds, [signal], sr, where=[where])[0]
                if isinstance(out, AudioError):
                    raise out
                for m in members:
                    tables[id(m)] = out[TableKind(m.kind)]
        blocks = [m.pick(tables[id(m)].names, tables[id(m)].values, where) for m in self.members]
        x = blocks[0] if len(blocks) == 1 else np.hstack(blocks)
        x = np.asarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise AudioError(where, "NaN/inf features")
        return x

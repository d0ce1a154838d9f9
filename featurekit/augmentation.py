"""Waveform augmentation: seeded copies of an utterance made with audiomentations transforms.

A :class:`WaveformAugmentation` is a chain of transforms (each a name of :data:`WAVEFORM_TRANSFORMS`
with typed, range-checked parameters and its probability ``p``), a number of ``copies`` per
utterance and a ``seed``. Copy ``k`` of utterance ``u`` is made from the conditioned signal (the one
every extractor sees, :func:`featurekit.audio.load_audio`), run through the chain with the random
state seeded from ``(seed, u, k)`` alone (:func:`copy_seed`), and conditioned again (so a fixed
``duration`` and the minimum length hold for copies too). It does not depend on which other
utterances are augmented, in which order, in which process or thread.

audiomentations draws from the global ``random`` and ``numpy.random`` states;
:meth:`WaveformAugmentation.apply` seeds them under a lock and restores them afterwards, so other
code's random state is untouched.

Copies are stored in the feature store like any utterance (:mod:`featurekit.extraction`), in tables
whose key adds :meth:`WaveformAugmentation.key` (the chain with every parameter, the seed and the
library versions); a row is copy ``k`` of utterance ``u`` under the id :func:`copy_id` ``(u, k)``
and the source file's content fingerprint. Evaluation appends them to training folds only
(:mod:`featurekit.evaluation.augmentation`).

audiomentations was chosen over hand-written transforms (or torch-audiomentations, which needs
torch): it is kept up to date, covers the transforms of the SER literature (noise at an SNR, gain,
pitch shift, time stretch, band-pass) on numpy arrays, and its parameters are plain numbers.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge, Gt, Le

from featurekit.audio import AudioError, AudioOptions, condition
from featurekit.extractors.base import library_versions
from featurekit.parameters import (
    ParameterError,
    Problem,
    check_parameters,
    declared_parameters,
    join,
    unknown,
)
from featurekit.registry import Registry

#: Distributions whose versions enter an augmented table's key (what the copies depend on).
AUGMENTATION_LIBRARIES = ("audiomentations", "numpy", "scipy", "librosa", "python-stretch")
#: ``id`` of copy ``k`` of utterance ``u`` in the store and in evaluation: ``u + COPY_MARK + k``.
COPY_MARK = "#aug"

Probability = Annotated[float, Ge(0.0), Le(1.0)]
StretchMethod = Literal["signalsmith_stretch", "librosa_phase_vocoder"]


# -- the transforms: parameters as typed dataclasses (names, types, ranges and defaults) -----------
@dataclass(frozen=True)
class AddGaussianNoise:
    """White Gaussian noise with an amplitude drawn from ``[min_amplitude, max_amplitude]``."""

    min_amplitude: Annotated[float, Gt(0.0), Le(1.0)] = 0.001
    max_amplitude: Annotated[float, Gt(0.0), Le(1.0)] = 0.015
    p: Probability = 0.5


@dataclass(frozen=True)
class AddGaussianSNR:
    """White Gaussian noise at a signal-to-noise ratio (dB) drawn from ``[min_snr_db, max_snr_db]``."""

    min_snr_db: Annotated[float, Ge(-20.0), Le(100.0)] = 5.0
    max_snr_db: Annotated[float, Ge(-20.0), Le(100.0)] = 40.0
    p: Probability = 0.5


@dataclass(frozen=True)
class Gain:
    """A gain (dB) drawn from ``[min_gain_db, max_gain_db]``."""

    min_gain_db: Annotated[float, Ge(-60.0), Le(60.0)] = -12.0
    max_gain_db: Annotated[float, Ge(-60.0), Le(60.0)] = 12.0
    p: Probability = 0.5


@dataclass(frozen=True)
class PitchShift:
    """A pitch shift (semitones) drawn from ``[min_semitones, max_semitones]``, duration kept."""

    min_semitones: Annotated[float, Ge(-24.0), Le(24.0)] = -4.0
    max_semitones: Annotated[float, Ge(-24.0), Le(24.0)] = 4.0
    method: StretchMethod = "signalsmith_stretch"
    p: Probability = 0.5


@dataclass(frozen=True)
class TimeStretch:
    """A tempo change by a rate drawn from ``[min_rate, max_rate]`` (pitch kept)."""

    min_rate: Annotated[float, Ge(0.1), Le(10.0)] = 0.8
    max_rate: Annotated[float, Ge(0.1), Le(10.0)] = 1.25
    leave_length_unchanged: bool = True
    method: StretchMethod = "signalsmith_stretch"
    p: Probability = 0.5


@dataclass(frozen=True)
class BandPassFilter:
    """A band-pass filter with centre frequency, bandwidth (fraction of the centre) and roll-off
    (dB/octave, multiples of 6) drawn from their ranges."""

    min_center_freq: Annotated[float, Gt(0.0)] = 200.0
    max_center_freq: Annotated[float, Gt(0.0)] = 4000.0
    min_bandwidth_fraction: Annotated[float, Gt(0.0), Le(2.0)] = 0.5
    max_bandwidth_fraction: Annotated[float, Gt(0.0), Le(2.0)] = 1.99
    min_rolloff: Annotated[int, Ge(6)] = 12
    max_rolloff: Annotated[int, Ge(6)] = 24
    zero_phase: bool = False
    p: Probability = 0.5


#: Transform name -> its parameters' declaration; the name is the audiomentations class it builds.
WAVEFORM_TRANSFORMS: Registry[type] = Registry("waveform transform")
for _cls in (AddGaussianNoise, AddGaussianSNR, Gain, PitchShift, TimeStretch, BandPassFilter):
    WAVEFORM_TRANSFORMS.add(_cls.__name__, _cls)


def _ranges(params: Any, where: str) -> list[Problem]:
    """Every ``min_X`` must not exceed its ``max_X``."""
    out = []
    for f in fields(params):
        if f.name.startswith("min_") and hasattr(params, "max_" + f.name[4:]):
            lo, hi = getattr(params, f.name), getattr(params, "max_" + f.name[4:])
            if lo > hi:
                out.append((join(where, f.name), f"{lo} is greater than max_{f.name[4:]} = {hi}"))
    return out


def declared_transform(name: str, params: Mapping[str, Any], *, where: str):
    """The declaration of transform ``name`` (:data:`WAVEFORM_TRANSFORMS`) filled with ``params`` and
    defaults; a :class:`ParameterError` naming ``where.KEY`` for an unknown transform or parameter, a
    wrong type, a value out of range or a ``min_X`` above its ``max_X``."""
    if name not in WAVEFORM_TRANSFORMS:
        raise ParameterError([unknown(join(where, "name"), name, WAVEFORM_TRANSFORMS.names(),
                                      "waveform transform")])
    declaration = WAVEFORM_TRANSFORMS.get(name)
    problems = check_parameters(declared_parameters(declaration), params, where=where)
    if problems:
        raise ParameterError(problems)
    resolved = declaration(**params)
    problems = _ranges(resolved, where)
    if problems:
        raise ParameterError(problems)
    return resolved


def build_transform(name: str, params: Mapping[str, Any], *, where: str):
    """The audiomentations transform ``name`` with ``params`` (checked by :func:`declared_transform`;
    a value audiomentations itself refuses is a :class:`ParameterError` naming ``where`` too)."""
    resolved = declared_transform(name, params, where=where)
    from featurekit.extras import import_optional

    audiomentations = import_optional("audiomentations", "augment", "waveform augmentation")
    try:
        return getattr(audiomentations, name)(**{f.name: getattr(resolved, f.name) for f in fields(resolved)})
    except (ValueError, AssertionError, TypeError) as err:  # audiomentations' own checks (e.g. roll-off)
        raise ParameterError([(where, f"{name}: {err or type(err).__name__}")]) from None


def resolve_transform(entry: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """``{"name": ..., **params}`` -> ``{"name": ..., "params": {every parameter, defaults filled}}``,
    checked by :func:`build_transform`."""
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise ParameterError([(join(where, "name"), "missing: each transform is a table with its 'name' "
                                                    f"(one of {', '.join(WAVEFORM_TRANSFORMS.names())}) "
                                                    "and its parameters")])
    name = entry["name"]
    if not isinstance(name, str):
        raise ParameterError([(join(where, "name"), f"expected a string, got {name!r}")])
    params = {k: v for k, v in entry.items() if k != "name"}
    build_transform(name, params, where=where)
    resolved = declared_transform(name, params, where=where)
    # 3 and 3.0 are one value: floats as floats, so equal chains have equal keys
    return {"name": name, "params": {f.name: float(v) if isinstance(f.default, float) else v
                                     for f in fields(resolved) for v in [getattr(resolved, f.name)]}}


def copy_seed(seed: int, utterance: str, copy: int) -> int:
    """The 32-bit random seed of copy ``copy`` of ``utterance`` (BLAKE2b of the three)."""
    blob = f"{int(seed)}\x1f{utterance}\x1f{int(copy)}".encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=4).digest(), "little")


def copy_id(utterance: str, copy: int) -> str:
    """The id of copy ``copy`` of ``utterance`` (``u#augK``)."""
    return f"{utterance}{COPY_MARK}{int(copy)}"


def source_of(copy: str) -> tuple[str, int]:
    """``(utterance, copy index)`` of a copy's id (inverse of :func:`copy_id`)."""
    utterance, mark, k = copy.rpartition(COPY_MARK)
    if not mark or not k.isdigit():
        raise ValueError(f"{copy!r} is not the id of an augmented copy (UTTERANCE{COPY_MARK}K)")
    return utterance, int(k)


_RNG_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class WaveformAugmentation:
    """A seeded chain of waveform transforms making ``copies`` copies per utterance (see the module
    docstring). Build it with :meth:`from_config`, which checks every transform and parameter."""

    transforms: tuple[dict[str, Any], ...]
    copies: int = 1
    seed: int = 0
    _compose: list = field(default_factory=list, repr=False, compare=False, hash=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, where: str = "augmentation.waveform"
                    ) -> WaveformAugmentation:
        """From ``{"transforms": [{"name": ..., **params}, ...], "copies", "seed"}`` (a spec's table)."""
        transforms = config.get("transforms") or []
        if not transforms:
            raise ParameterError([(join(where, "transforms"), "at least one transform is needed")])
        copies = config.get("copies", 1)
        if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
            raise ParameterError([(join(where, "copies"), f"expected an integer >= 1, got {copies!r}")])
        resolved = []
        for i, t in enumerate(transforms):
            resolved.append(resolve_transform(t, where=f"{where}.transforms[{i}]"))
        return cls(tuple(resolved), copies=copies, seed=int(config.get("seed", 0)))

    @classmethod
    def from_resolved(cls, config: Mapping[str, Any]) -> WaveformAugmentation:
        """From :meth:`config`'s form (``{"transforms": [{"name", "params"}], "copies", "seed"}``)."""
        return cls.from_config({**config, "transforms": [{"name": t["name"], **t["params"]}
                                                         for t in config["transforms"]]})

    def config(self) -> dict[str, Any]:
        """What determines the copies (for a cell's digest): the resolved chain, copies and seed."""
        return {"transforms": [dict(t) for t in self.transforms], "copies": self.copies, "seed": self.seed}

    def key(self) -> dict[str, Any]:
        """The part of an augmented store table's key: the chain, the seed and the library versions.
        ``copies`` is not in it: copy ``k`` is the same whatever the number of copies."""
        return {"waveform": [dict(t) for t in self.transforms], "seed": self.seed,
                "libraries": library_versions(AUGMENTATION_LIBRARIES)}

    def copies_manifest(self, manifest):
        """The copies of ``manifest``'s utterances as a manifest: each row ``copies`` times (copy ``k``
        of every row, then ``k + 1``), ``id`` the copy's (:func:`copy_id`), ``source_id`` the
        utterance's, ``copy`` the index; every other column (path, segment, speaker, labels) the
        source's."""
        import pandas as pd

        parts = []
        for k in range(self.copies):
            part = manifest.copy()
            part["source_id"] = manifest["id"].astype(str).to_numpy()
            part["copy"] = k
            part["id"] = [copy_id(u, k) for u in part["source_id"]]
            parts.append(part)
        return pd.concat(parts, ignore_index=True)

    def _chain(self):
        if not self._compose:
            from featurekit.extras import import_optional

            am = import_optional("audiomentations", "augment", "waveform augmentation")
            chain = [build_transform(t["name"], t["params"], where=f"transforms[{i}]")
                     for i, t in enumerate(self.transforms)]
            self._compose.append(am.Compose(chain, p=1.0, shuffle=False))
        return self._compose[0]

    def apply(self, signal: np.ndarray, *, options: AudioOptions, utterance: str, copy: int,
              where: str = "") -> np.ndarray:
        """Copy ``copy`` of ``utterance`` from its conditioned ``signal``: the chain, seeded from
        ``(seed, utterance, copy)``, then :func:`featurekit.audio.condition` again. Raises
        :class:`~featurekit.audio.AudioError` (naming ``where``) for a non-finite or silent result."""
        chain = self._chain()
        with _RNG_LOCK:
            py_state, np_state = random.getstate(), np.random.get_state()
            try:
                s = copy_seed(self.seed, utterance, copy)
                random.seed(s)
                np.random.seed(s)
                out = chain(samples=np.ascontiguousarray(signal, dtype=np.float32),
                            sample_rate=options.sample_rate)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        out = np.asarray(out, dtype=np.float32)
        where = where or utterance
        if out.ndim != 1 or not len(out):
            raise AudioError(where, f"augmented copy {copy}: the transforms returned no mono signal")
        if not np.isfinite(out).all():
            raise AudioError(where, f"augmented copy {copy}: non-finite samples after the transforms")
        if not np.any(out):
            raise AudioError(where, f"augmented copy {copy}: silent after the transforms")
        return condition(out, options=options, where=where, warn_short=False)

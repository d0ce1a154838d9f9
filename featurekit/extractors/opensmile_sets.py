"""openSMILE extractors: ``gemaps`` (GeMAPS v01b), ``egemaps`` (eGeMAPS v02), ``compare`` (ComParE 2016).

``native`` returns openSMILE's own functionals exactly as ``opensmile.Smile(...).process_signal``
gives them (62, 88 and 6373 values); ``lld`` returns its low-level descriptors (and, for ComParE
with ``deltas=True``, their deltas) with frame centre times.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from featurekit.extractors.base import Extractor, Frames, Vector, register_extractor


class OpenSmileExtractor(Extractor):
    """Shared implementation; subclasses name the feature set."""

    feature_set: ClassVar[str] = ""
    libraries = ("opensmile", "numpy")
    has_native = True

    def __init__(self, *, deltas: bool = False) -> None:
        self.deltas = deltas

    def _smile(self, level: str):
        def build():
            import opensmile

            return opensmile.Smile(
                feature_set=opensmile.FeatureSet[self.feature_set],
                feature_level=opensmile.FeatureLevel[level],
            )

        return self.resource(level, build)

    def native(self, signal: np.ndarray, sr: int) -> Vector:
        df = self._smile("Functionals").process_signal(signal, sr)
        return Vector(values=df.to_numpy(dtype=np.float32)[0], names=[f"{self.name}_{c}" for c in df.columns])

    def lld(self, signal: np.ndarray, sr: int) -> Frames:
        levels = ["LowLevelDescriptors"] + (["LowLevelDescriptors_Deltas"] if self.deltas else [])
        frames = [self._smile(level).process_signal(signal, sr) for level in levels]
        n = min(len(f) for f in frames)
        values = np.hstack([f.to_numpy(dtype=np.float32)[:n] for f in frames])
        names = [f"{self.name}_{c}" for f in frames for c in f.columns]
        idx = frames[0].index[:n]
        start = idx.get_level_values("start").total_seconds().to_numpy()
        end = idx.get_level_values("end").total_seconds().to_numpy()
        return Frames(values=values, times=(start + end) / 2, names=names)


@register_extractor
class GeMAPS(OpenSmileExtractor):
    name = "gemaps"
    feature_set = "GeMAPSv01b"
    description = "openSMILE GeMAPS v01b: 18 LLDs, 62 functionals"


@register_extractor
class EGeMAPS(OpenSmileExtractor):
    name = "egemaps"
    feature_set = "eGeMAPSv02"
    description = "openSMILE eGeMAPS v02: 25 LLDs, 88 functionals"


@register_extractor
class ComParE(OpenSmileExtractor):
    name = "compare"
    feature_set = "ComParE_2016"
    description = "openSMILE ComParE 2016: 65 LLDs (+65 deltas), 6373 functionals"

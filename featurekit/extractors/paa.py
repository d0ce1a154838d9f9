"""pyAudioAnalysis short-term features: ``paa`` (34) and ``paa_d`` (68, with deltas).

Calls ``pyAudioAnalysis.ShortTermFeatures.feature_extraction`` with 50 ms windows and 25 ms
steps (its documented defaults). That function divides its input by 2**15, i.e. it expects
int16-scaled samples, so the float signal in [-1, 1] is multiplied by 2**15 first.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from annotated_types import Gt

from featurekit.extractors.base import Extractor, Frames, register_extractor


class _PAA(Extractor):
    with_deltas: ClassVar[bool] = False
    libraries = ("pyAudioAnalysis", "numpy", "scipy")
    extra = "paa"

    def __init__(self, *, window: Annotated[float, Gt(0)] = 0.050,
                 step: Annotated[float, Gt(0)] = 0.025) -> None:
        self.window = window
        self.step = step

    def lld(self, signal: np.ndarray, sr: int) -> Frames:
        from featurekit.extras import import_optional

        ShortTermFeatures = import_optional("pyAudioAnalysis.ShortTermFeatures", "paa",  # noqa: N806
                                            f"the {self.name} extractor")
        win, step = int(self.window * sr), int(self.step * sr)
        feats, names = ShortTermFeatures.feature_extraction(
            signal.astype(np.float64) * 2**15, sr, win, step, deltas=self.with_deltas
        )
        times = np.arange(feats.shape[1]) * self.step + self.window / 2
        clean = [f"{self.name}_" + n.replace(" ", "_") for n in names]
        return Frames(values=feats.T.astype(np.float32), times=times, names=clean)


@register_extractor
class PAA(_PAA):
    name = "paa"
    description = "pyAudioAnalysis 34 short-term features (50 ms / 25 ms)"


@register_extractor
class PAADelta(_PAA):
    name = "paa_d"
    with_deltas = True
    description = "pyAudioAnalysis 34 short-term features + 34 deltas"

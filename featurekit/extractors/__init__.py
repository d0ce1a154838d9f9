"""Feature extractors (registry) and HSF functionals."""

from featurekit.extractors import (  # noqa: F401  (registers)
           opensmile_sets,
           paa,
           spectral,
           ssl,  # noqa: F401  (registers hf_encoder, whisper_ct2; imports no torch)
)
from featurekit.extractors.base import (
           EXTRACTORS,
           Extractor,
           Frames,
           Vector,
           make_extractor,
           register_extractor,
)
from featurekit.extractors.functionals import FUNCTIONALS, apply_functional

__all__ = ["EXTRACTORS", "FUNCTIONALS", "Extractor", "Frames", "Vector", "apply_functional", "make_extractor",
           "register_extractor"]

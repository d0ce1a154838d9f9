"""Pretrained speech-encoder embeddings: ``hf_encoder`` (transformers) and ``whisper_ct2`` (CTranslate2).

Importing this package registers both extractors and imports neither torch, transformers nor
ctranslate2; those load when a model is first used.
"""

from featurekit.extractors.ssl.common import ModelError, model_tag
from featurekit.extractors.ssl.hf import HFEncoder
from featurekit.extractors.ssl.layers import layer_numbers, select_layers
from featurekit.extractors.ssl.whisper_ct2 import WhisperCT2

__all__ = ["HFEncoder", "ModelError", "WhisperCT2", "layer_numbers", "model_tag", "select_layers"]

"""``whisper_ct2``: Whisper encoder states from a CTranslate2 model (faster-whisper layout).

The log-mel front end is :mod:`featurekit.extractors.ssl.whisper_frontend`; the encoder is
``ctranslate2.models.Whisper(...).encode``, which returns the last layer's states (after the
final layer norm), one 20 ms frame per two mel frames. Whisper was trained on inputs padded to
30 s; the runtime also accepts shorter inputs, which are much faster but see less padding than in
training. ``pad_to`` chooses:

``"30s"``
    every input zero-padded to 30 s (Whisper's training condition);
``"none"``
    each input padded only to a whole number of 20 ms encoder frames (inputs of one length are
    batched together; most are encoded one at a time);
a number of seconds ``b``
    inputs padded to the next multiple of ``b`` seconds (at most 30 s), so inputs in the same
    bucket share a batch.

An utterance's features never depend on what else is in its batch: batches only hold inputs of
the same padded length. ``native`` pools mean and standard deviation over the encoder frames
that cover the audio (``ceil(n_samples / 320)``); columns
``whisper_ct2_{tag}_L{layers:02d}_{mean|std}_{dim:04d}`` with the last layer's number (4 for
tiny). ``lld`` gives those frames. Audio longer than 30 s is encoded in overlapping chunks
(``chunk_s``, ``overlap_s``) whose frames are stitched.

``ctranslate2`` is an optional dependency (``pip install featurekit[ssl]``), imported only when a
model is used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge, Gt

from featurekit.extractors.base import register_extractor
from featurekit.extractors.ssl import whisper_frontend as wf
from featurekit.extractors.ssl.common import (
    EncoderExtractor,
    ModelError,
    file_digest,
    group_by_length,
    read_json,
    resolve_model_dir,
)
from featurekit.extractors.ssl.ct2_format import read_ct2_model
from featurekit.extractors.ssl.whisper_frontend import parse_pad_to

#: CTranslate2 compute types (``ctranslate2.get_supported_compute_types`` lists a device's).
ComputeType = Literal["default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                      "float16", "bfloat16", "float32"]

def import_ctranslate2():
    """``ctranslate2``, or a :class:`~featurekit.extras.MissingExtraError` (an ImportError) that says how
    to install it."""
    from featurekit.extras import import_optional

    return import_optional("ctranslate2", "ssl", "the whisper_ct2 extractor")


def read_ct2_header(path: Path) -> dict[str, Any]:
    """Spec name and variable shapes (aliases included) of a CTranslate2 ``model.bin``, without reading
    the weights; the file is checked by :func:`featurekit.extractors.ssl.ct2_format.read_ct2_model`."""
    model = read_ct2_model(path)
    shapes = {name: model.shape(name) for name in [*model.variables, *model.aliases]}
    return {"spec": model.spec, "revision": model.revision, "binary_version": model.binary_version,
            "shapes": shapes}


@register_extractor
class WhisperCT2(EncoderExtractor):
    """Whisper encoder (CTranslate2, e.g. faster-whisper tiny.en): last-layer states, pooled.

    Parameters
    ----------
    model
        CTranslate2 Whisper model directory (``model.bin``, ``config.json``).
    tag
        Short model name for column names (default: from ``model``).
    pad_to
        ``"30s"`` (Whisper's training condition), ``"none"`` or a bucket length in seconds (see
        module docstring).
    compute_type
        CTranslate2 compute type: ``"default"`` (the saved type, or float32 where the device lacks
        it), ``"float32"``, ``"int8"``, ``"int8_float32"``, ``"float16"`` (CUDA), ...
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    batch_size
        Inputs per ``encode`` call (only inputs of equal padded length share a call).
    threads
        CTranslate2 ``intra_threads`` (0: its default).
    chunk_s, overlap_s
        Chunking of audio longer than ``chunk_s`` (``None``: 30 s, the longest Whisper input).
    """

    name = "whisper_ct2"
    version = "1"
    libraries = ("ctranslate2", "numpy", "librosa")
    extra = "ssl"
    requires = ("ctranslate2",)
    description = "Whisper encoder via CTranslate2 (faster-whisper models): last-layer mean/std"
    key_excludes = ("batch_size", "threads")

    param_checks = {"pad_to": parse_pad_to}

    def __init__(self, *, model: str | None = None, tag: str | None = None, pad_to: str | float = "30s",
                 compute_type: ComputeType = "default", device: Literal["cpu", "cuda", "auto"] = "cpu",
                 batch_size: Annotated[int, Ge(1)] = 8, threads: Annotated[int, Ge(0)] = 0,
                 chunk_s: Annotated[float, Gt(0)] | None = None,
                 overlap_s: Annotated[float, Ge(0)] = 1.0) -> None:
        self.model = model
        self.tag = tag
        self.pad_to = pad_to
        self.compute_type = compute_type
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self.chunk_s = chunk_s
        self.overlap_s = overlap_s

    # -- model facts -------------------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        path = resolve_model_dir(self.model, extractor=self.name, required="model.bin",
                                 allow_patterns=["config.json", "model.bin", "tokenizer.json", "vocabulary*"])
        header = read_ct2_header(path / "model.bin")
        if header["spec"] != "WhisperSpec":
            raise ModelError(f"{self.name}: {path}/model.bin is a CTranslate2 {header['spec']}, "
                             f"not a Whisper model")
        shapes = header["shapes"]
        layers = {int(m.group(1)) for n in shapes if (m := re.match(r"encoder/layer_(\d+)/", n))}
        try:
            positions, dim = shapes["encoder/position_encodings/encodings"]
            n_mels = shapes["encoder/conv1/weight"][1]
        except (KeyError, ValueError):
            raise ModelError(f"{self.name}: {path}/model.bin lacks the Whisper encoder variables") from None
        if not layers:
            raise ModelError(f"{self.name}: {path}/model.bin has no encoder layers")
        config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
        window = positions * wf.ENCODER_HOP
        return {"path": path, "dim": dim, "layers": [max(layers) + 1], "hop": wf.ENCODER_HOP,
                "min_samples": 1, "max_chunk": window, "default_chunk": window,
                "time_offset": wf.ENCODER_HOP / 2 / self.sample_rate,
                "n_mels": n_mels, "max_frames": positions,
                "weights": {"model.bin": file_digest(path / "model.bin")},
                "config": {"config": config, "spec": header["spec"], "revision": header["revision"],
                           "encoder_layers": max(layers) + 1, "d_model": dim, "n_mels": n_mels}}

    def _device(self) -> str:
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        if self.device == "cpu":
            return "cpu"
        ct2 = import_ctranslate2()
        has_cuda = ct2.get_cuda_device_count() > 0
        if self.device == "cuda" and not has_cuda:
            raise RuntimeError("device='cuda' but CTranslate2 sees no CUDA device")
        return "cuda" if has_cuda else "cpu"

    def _runtime_key(self) -> dict[str, Any]:
        return {"device": self._device(), "pad_to": parse_pad_to(self.pad_to)}

    # -- model ---------------------------------------------------------------------------------------
    def _load(self):
        ct2 = import_ctranslate2()
        info = self.info()
        try:
            return ct2.models.Whisper(str(info["path"]), device=self._device(),
                                      compute_type=self.compute_type, intra_threads=int(self.threads))
        except (RuntimeError, ValueError) as err:
            raise ModelError(f"{self.name}: cannot load {info['path']} (compute_type={self.compute_type!r}, "
                             f"device={self.device!r}): {err}") from err

    def _model(self):
        return self.resource("model", self._load)

    def input_samples(self, n: int) -> int:
        """Samples a chunk of ``n`` samples is padded to before the front end (see ``pad_to``)."""
        return wf.padded_samples(n, pad_to=self.pad_to, window=self.info()["max_chunk"])

    def _encode(self, chunks: list[np.ndarray], layers: list[int]) -> list[np.ndarray]:
        ct2 = import_ctranslate2()
        info = self.info()
        model = self._model()
        sizes = [self.input_samples(len(c)) for c in chunks]
        out: list[np.ndarray] = [np.empty(0)] * len(chunks)
        for group in group_by_length(sizes, max(1, int(self.batch_size)), exact=True):
            mel = wf.log_mel_batch([chunks[i] for i in group], n_mels=info["n_mels"],
                                   n_samples=sizes[group[0]])
            encoded = model.encode(ct2.StorageView.from_array(np.ascontiguousarray(mel)), to_cpu=True)
            states = np.asarray(encoded).astype(np.float32, copy=False)
            for row, i in enumerate(group):
                n = min(wf.encoder_frames_for(len(chunks[i])), states.shape[1])
                out[i] = np.ascontiguousarray(states[row, :n])[None]
        return out

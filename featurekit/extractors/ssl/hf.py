"""``hf_encoder``: hidden states of a transformers speech encoder loaded from a local directory.

Families: wav2vec2, HuBERT, WavLM, data2vec-audio (raw waveform in) and the Whisper encoder
(log-mel in, via :mod:`featurekit.extractors.ssl.whisper_frontend`). What the model's own feature
extractor config (``preprocessor_config.json``) says is followed: ``do_normalize`` (zero mean,
unit variance per utterance) and ``return_attention_mask`` (padded batches with masks; models
trained without masks, such as wav2vec2-base, and data2vec-audio, whose stacked positional
convolutions see through masks, only ever see unpadded input: a batch holds chunks of identical
length). An utterance's features therefore do not depend on what else is in its batch (up to
float rounding). Whisper inputs are zero-padded to the model's 30 s window as in training, or, with
``pad_to`` (as in ``whisper_ct2``: ``"none"`` or a bucket length in seconds), to a shorter length
whose encoder sees only the first positional embeddings, which is much faster; only the frames
covering the audio are kept.

Outputs, for hidden-state layers ``0`` (embeddings/feature projection) to ``N`` (last layer):
``native`` = per layer mean and standard deviation over frames, columns
``hf_encoder_{tag}_L{layer:02d}_{mean|std}_{dim:04d}``; ``lld`` = the frame states of layer
``lld_layer``, columns ``hf_encoder_{tag}_L{layer:02d}_{dim:04d}``. Pick layers later with
:func:`featurekit.extractors.ssl.layers.select_layers`.

torch and transformers are imported only when a model is loaded.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge, Gt

from featurekit.extractors.base import register_extractor
from featurekit.extractors.ssl import whisper_frontend as wf
from featurekit.extractors.ssl.common import (
    EncoderExtractor,
    ModelError,
    check_folder_confined,
    group_by_length,
    read_json,
    resolve_model_dir,
    weight_files,
    weights_digest,
)

RAW_FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
FAMILIES = (*RAW_FAMILIES, "whisper")
# Families whose outputs change when a masked batch pads an input (data2vec-audio's stacked
# positional convolutions see the padded frames): their batches hold equal-length chunks only.
PAD_UNSAFE = ("data2vec-audio",)
DEFAULT_CHUNK_S = 20.0
NO_LIMIT = 1 << 40


def conv_frames(n: int, kernels: list[int], strides: list[int]) -> int:
    """Frames a stack of unpadded 1-D convolutions yields for ``n`` input samples."""
    for k, s in zip(kernels, strides):
        n = (n - k) // s + 1 if n >= k else 0
    return max(n, 0)


def receptive_field(kernels: list[int], strides: list[int]) -> int:
    """Input samples one output frame of the convolution stack sees (400 for wav2vec2)."""
    rf, jump = 1, 1
    for k, s in zip(kernels, strides):
        rf += (k - 1) * jump
        jump *= s
    return rf


def check_torch_device(device: str) -> None:
    """Raise ``ValueError`` unless ``device`` is ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``."""
    if device not in ("cpu", "cuda", "auto") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")


def resolve_torch_device(device: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available) -> a torch device string."""
    check_torch_device(device)
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda" if device == "auto" else device
    if device == "auto":
        return "cpu"
    raise RuntimeError(f"device={device!r} but torch sees no CUDA device (torch {torch.__version__})")


def whisper_hidden_states(encoder, mel) -> list:
    """Hidden states ``0..N`` of a transformers ``WhisperEncoder`` for log-mel input shorter than its window.

    ``WhisperEncoder.forward`` accepts only its full window (3000 frames); this runs the same
    modules in the same order on a shorter input, adding the first ``T`` positional embeddings to
    its ``T`` frames (as CTranslate2 and OpenAI's code do for short inputs). State ``0`` is the
    convolutional front end plus positions, state ``N`` the last layer after the final layer norm,
    as in ``forward(output_hidden_states=True)`` (``tests/test_ct2_convert.py`` checks both paths
    agree on a full window).
    """
    import inspect

    import torch.nn.functional as F

    x = F.gelu(encoder.conv1(mel))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    positions = encoder.embed_positions.weight
    if x.shape[1] > positions.shape[0]:
        raise ValueError(f"{x.shape[1]} encoder frames exceed the model's {positions.shape[0]} positions")
    x = x + positions[:x.shape[1]]
    states = [x]
    for layer in encoder.layers:
        # transformers 4.x layers take a positional layer_head_mask and return a tuple
        takes_head_mask = "layer_head_mask" in inspect.signature(layer.forward).parameters
        extra = {"layer_head_mask": None} if takes_head_mask else {}
        out = layer(x, None, **extra)
        x = out[0] if isinstance(out, tuple) else out
        states.append(x)
    states[-1] = encoder.layer_norm(x)
    return states


@register_extractor
class HFEncoder(EncoderExtractor):
    """transformers speech encoder (wav2vec2/HuBERT/WavLM/data2vec-audio/Whisper) from a local directory.

    Parameters
    ----------
    model
        Model directory (``config.json``, ``preprocessor_config.json``, weights, as written by
        ``save_pretrained``), or a hub id found in the local hub cache.
    tag
        Short model name for column names (default: from ``model``, see :func:`model_tag`).
    lld_layer
        Hidden-state layer of the LLD output: 0 = embeddings, N = last; negative counts from the end.
    chunk_s, overlap_s
        Long signals are encoded in chunks of ``chunk_s`` seconds overlapping by ``overlap_s``,
        their frame states stitched. ``None``: 20 s, or the model's window (30 s) for Whisper.
    batch_size
        Chunks per forward pass (grouped by length).
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    fp16
        Half precision on CUDA (ignored on CPU).
    pad_to
        Whisper only: ``"30s"`` (the model's window, as in training), ``"none"`` or a bucket length
        in seconds; see :func:`featurekit.extractors.ssl.whisper_frontend.padded_samples`.
    """

    name = "hf_encoder"
    version = "1"
    libraries = ("transformers", "torch", "numpy", "librosa")
    extra = "ssl"
    requires = ("torch", "transformers")
    description = ("transformers speech encoder (wav2vec2, HuBERT, WavLM, data2vec-audio, Whisper): "
                   "per-layer states")

    param_checks = {"device": check_torch_device, "pad_to": wf.parse_pad_to}

    def __init__(self, *, model: str | None = None, tag: str | None = None, lld_layer: int = -1,
                 chunk_s: Annotated[float, Gt(0)] | None = None, overlap_s: Annotated[float, Ge(0)] = 1.0,
                 batch_size: Annotated[int, Ge(1)] = 8, device: str = "auto", fp16: bool = True,
                 pad_to: str | float = "30s") -> None:
        self.model = model
        self.tag = tag
        self.lld_layer = lld_layer
        self.chunk_s = chunk_s
        self.overlap_s = overlap_s
        self.batch_size = batch_size
        self.device = device
        self.fp16 = fp16
        self.pad_to = pad_to

    # -- model facts (files only, no torch) ------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        path = resolve_model_dir(self.model, extractor=self.name, required="config.json",
                                 allow_patterns=["*.json", "*.safetensors"])
        check_folder_confined(path, who=self.name)  # as for fine-tuning: no code, no link out of it
        config = read_json(path / "config.json")
        family = config.get("model_type")
        if family not in FAMILIES:
            arch = ", ".join(config.get("architectures") or []) or "unknown architecture"
            raise ModelError(f"{self.name}: {path} holds a {family!r} model ({arch}), not a supported speech "
                             f"encoder; supported model_type: {', '.join(FAMILIES)}")
        pre_file = path / "preprocessor_config.json"
        if not pre_file.is_file():
            raise ModelError(f"{self.name}: {path} lacks preprocessor_config.json (the feature extractor's "
                             f"settings); save it beside the model with "
                             f"AutoFeatureExtractor.from_pretrained(...).save_pretrained({str(path)!r})")
        pre = read_json(pre_file)
        files = weight_files(path)
        if not files:
            raise ModelError(f"{self.name}: {path} has a config but no weight files (*.safetensors, *.bin)")
        if family != "whisper" and wf.parse_pad_to(self.pad_to) != "30s":
            raise ModelError(f"{self.name}: pad_to={self.pad_to!r} applies to Whisper models only; {path} "
                             f"holds a {family} model (leave pad_to at '30s')")
        sr = int(pre.get("sampling_rate", 16000))
        if sr != self.sample_rate:
            raise ModelError(f"{self.name}: {path} expects {sr} Hz audio; featurekit's encoders run at "
                             f"{self.sample_rate} Hz")
        info: dict[str, Any] = {"path": path, "family": family, "weights": weights_digest(files),
                                "config": {"config": config, "preprocessor": pre}}
        try:
            if family == "whisper":
                n_mels = int(pre.get("feature_size", config.get("num_mel_bins", 80)))
                if n_mels != int(config.get("num_mel_bins", n_mels)):
                    raise ModelError(f"{self.name}: {path}: feature extractor gives {n_mels} mel bands but "
                                     f"the model takes {config['num_mel_bins']}")
                positions = int(config.get("max_source_positions", 1500))
                window = positions * wf.ENCODER_HOP
                info.update(dim=int(config["d_model"]), layers=list(range(int(config["encoder_layers"]) + 1)),
                            hop=wf.ENCODER_HOP, min_samples=1, max_chunk=window, default_chunk=window,
                            time_offset=wf.ENCODER_HOP / 2 / self.sample_rate, n_mels=n_mels,
                            max_frames=positions, normalize=False, mask=False)
            else:
                kernels = [int(k) for k in config.get("conv_kernel", (10, 3, 3, 3, 3, 2, 2))]
                strides = [int(s) for s in config.get("conv_stride", (5, 2, 2, 2, 2, 2, 2))]
                rf = receptive_field(kernels, strides)
                info.update(dim=int(config["hidden_size"]),
                            layers=list(range(int(config["num_hidden_layers"]) + 1)),
                            hop=int(np.prod(strides)), min_samples=rf, max_chunk=NO_LIMIT,
                            default_chunk=int(DEFAULT_CHUNK_S * self.sample_rate),
                            time_offset=rf / 2 / self.sample_rate,
                            kernels=kernels, strides=strides, normalize=bool(pre.get("do_normalize", True)),
                            mask=bool(pre.get("return_attention_mask", False)))
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ModelError):
                raise
            raise ModelError(f"{self.name}: {path}/config.json is incomplete for a {family} model "
                             f"({err!r})") from None
        return info

    def _device(self) -> tuple[str, str]:
        device = resolve_torch_device(self.device)
        return device, "float16" if device.startswith("cuda") and self.fp16 else "float32"

    def _runtime_key(self) -> dict[str, Any]:
        device, dtype = self._device()
        return {"device": "cuda" if device.startswith("cuda") else device, "dtype": dtype,
                "pad_to": wf.parse_pad_to(self.pad_to)}

    # -- model -----------------------------------------------------------------------------------
    def _load(self):
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        info = self.info()
        device, dtype = self._device()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        # an encoder-only Whisper folder (featurekit.extractors.ssl.ct2_convert writes one) loads as
        # WhisperEncoder; AutoModel would build a whole WhisperModel around it
        encoder_only = (info["family"] == "whisper"
                        and info["config"]["config"].get("architectures") == ["WhisperEncoder"])
        try:
            if encoder_only:
                from transformers.models.whisper.modeling_whisper import WhisperEncoder

                model, loading = WhisperEncoder.from_pretrained(str(info["path"]), output_loading_info=True)
            else:
                model, loading = AutoModel.from_pretrained(str(info["path"]), output_loading_info=True)
        except Exception as err:
            raise ModelError(f"{self.name}: cannot load {info['path']}: {type(err).__name__}: {err}") from err
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        if info["family"] == "whisper" and not encoder_only:
            model = model.encoder if hasattr(model, "encoder") else model.get_encoder()
            prefix = "encoder."
        else:
            prefix = ""
        missing = [k for k in loading.get("missing_keys", ()) if k.startswith(prefix)]
        if missing:  # transformers would fill them with random values: a fake embedding
            raise ModelError(f"{self.name}: {info['path']}: the weight files lack {len(missing)} of the "
                             f"model's weights (e.g. {', '.join(sorted(missing)[:3])})")
        return model.eval().to(device=device, dtype=getattr(torch, dtype))

    def _model(self):
        return self.resource("model", self._load)

    def _frames(self, n: int) -> int:
        info = self.info()
        if info["family"] == "whisper":
            return min(wf.encoder_frames_for(n), info["max_frames"])
        return conv_frames(n, info["kernels"], info["strides"])

    def _prepare(self, signal: np.ndarray) -> np.ndarray:
        x = np.asarray(signal, dtype=np.float32)
        if self.info()["normalize"] and len(x):
            # as transformers' Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
            x = ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)
        return x

    def _encode(self, chunks: list[np.ndarray], layers: list[int]) -> list[np.ndarray]:
        import torch

        info = self.info()
        model = self._model()
        device, dtype = self._device()
        tdtype = getattr(torch, dtype)
        whisper = info["family"] == "whisper"
        lengths = [len(c) for c in chunks]
        if whisper:  # batches hold inputs of one padded length
            sizes = [wf.padded_samples(n, pad_to=self.pad_to, window=info["max_chunk"]) for n in lengths]
            groups = group_by_length(sizes, max(1, int(self.batch_size)), exact=True)
        else:
            exact = not info["mask"] or info["family"] in PAD_UNSAFE
            groups = group_by_length(lengths, max(1, int(self.batch_size)), exact=exact)
        out: list[np.ndarray] = [np.empty(0)] * len(chunks)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*key_padding_mask.*")  # torch, from WavLM
            for group in groups:
                if whisper:
                    size = sizes[group[0]]
                    mel = wf.log_mel_batch([chunks[i] for i in group], n_mels=info["n_mels"], n_samples=size)
                    inputs = torch.from_numpy(mel).to(device=device, dtype=tdtype)
                    if size == info["max_chunk"]:
                        hidden = model(inputs, output_hidden_states=True).hidden_states
                    else:
                        hidden = whisper_hidden_states(model, inputs)
                else:
                    longest = max(lengths[i] for i in group)
                    x = np.zeros((len(group), longest), dtype=np.float32)
                    mask = np.zeros((len(group), longest), dtype=np.int64)
                    for row, i in enumerate(group):
                        x[row, :lengths[i]] = chunks[i]
                        mask[row, :lengths[i]] = 1
                    kwargs = {"attention_mask": torch.from_numpy(mask).to(device)} if info["mask"] else {}
                    inputs = torch.from_numpy(x).to(device=device, dtype=tdtype)
                    hidden = model(inputs, output_hidden_states=True, **kwargs).hidden_states
                states = torch.stack([hidden[layer] for layer in layers]).float().cpu().numpy()
                for row, i in enumerate(group):
                    out[i] = np.ascontiguousarray(states[:, row, :self._frames(lengths[i])])
        return out


__all__ = ["FAMILIES", "HFEncoder", "conv_frames", "receptive_field", "whisper_hidden_states"]

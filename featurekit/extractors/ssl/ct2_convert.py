"""Convert a CTranslate2 Whisper model (faster-whisper layout) into a transformers Whisper encoder folder.

CTranslate2's ``encode`` gives only the last encoder layer; the transformers encoder that this
writes gives every hidden-state layer to the ``hf_encoder`` extractor (``hf_encoder@2``,
``@wsum``, ...). The weights are read with the strict parser of
:mod:`featurekit.extractors.ssl.ct2_format` (no pickle, no ctranslate2) and mapped onto
``transformers.WhisperEncoder``:

===============================================  =============================================
CTranslate2 (``encoder/...``)                    transformers ``WhisperEncoder``
===============================================  =============================================
``conv1``, ``conv2`` (weight, bias)              ``conv1``, ``conv2``
``position_encodings/encodings``                 ``embed_positions.weight``
``layer_i/self_attention/layer_norm``            ``layers.i.self_attn_layer_norm``
``layer_i/self_attention/linear_0`` (q|k|v)      ``layers.i.self_attn.{q,k,v}_proj``
``layer_i/self_attention/linear_1``              ``layers.i.self_attn.out_proj``
``layer_i/ffn/layer_norm``                       ``layers.i.final_layer_norm``
``layer_i/ffn/linear_0``, ``linear_1``           ``layers.i.fc1``, ``layers.i.fc2``
``layer_norm``                                   ``layer_norm``
===============================================  =============================================

CTranslate2 fuses the query/key/value projections into one linear layer; they are split in
thirds. Whisper's key projection has no bias (CTranslate2 stores zeros there); a key bias would
add the same number to every attention score of a query, which softmax ignores, so a non-zero
one is dropped exactly and its size recorded. The decoder is not converted (``hf_encoder`` needs
the encoder only); ``config.json`` names the architecture ``WhisperEncoder``. Weights are stored
as float32 safetensors (the float16 values widened exactly), beside a ``preprocessor_config.json``
(``WhisperFeatureExtractor``: 16 kHz, 30 s, the model's mel bands) and :data:`PROVENANCE_FILE`
(source path, source ``model.bin`` digests, converter version).

torch and transformers are imported only when converting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.extractors.ssl.common import ModelError, read_json
from featurekit.extractors.ssl.ct2_format import CT2FormatError, CT2Model, read_ct2_model

CONVERTER_VERSION = "1"
PROVENANCE_FILE = "featurekit_conversion.json"
FLOAT_DTYPES = ("float32", "float16", "bfloat16")


class ConversionError(ModelError):
    """A source or destination that the converter refuses."""


def _digests(path: Path) -> dict[str, Any]:
    blake, sha = hashlib.blake2b(digest_size=16), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            blake.update(block)
            sha.update(block)
    return {"bytes": path.stat().st_size, "blake2b_128": blake.hexdigest(), "sha256": sha.hexdigest()}


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_destination(src: Path, dst: Path, *, overwrite: bool) -> None:
    """Refuse a ``dst`` inside ``src`` (or holding it), a file, or a non-empty folder unless ``overwrite``.

    With ``overwrite`` an existing non-empty ``dst`` must be an earlier conversion (it holds
    :data:`PROVENANCE_FILE`): the converter never deletes a folder it did not write.
    """
    s, d = src.resolve(), dst.resolve()
    if _inside(d, s):
        raise ConversionError(f"destination {dst} is inside the source model folder {src}; the source is "
                              f"never written to: choose a folder elsewhere")
    if _inside(s, d):
        raise ConversionError(f"destination {dst} contains the source model folder {src}; choose a folder "
                              f"elsewhere")
    if d.exists() and not d.is_dir():
        raise ConversionError(f"destination {dst} exists and is not a folder")
    if d.is_dir() and any(d.iterdir()):
        if not overwrite:
            raise ConversionError(f"destination {dst} exists and is not empty; pass overwrite=True "
                                  f"(--overwrite) to replace an earlier conversion")
        if not (d / PROVENANCE_FILE).is_file():
            raise ConversionError(f"destination {dst} is not empty and is not an earlier conversion (no "
                                  f"{PROVENANCE_FILE}); refusing to replace it even with overwrite")


def _float_var(model: CT2Model, name: str) -> tuple[int, ...]:
    """Shape of the float variable ``name``; an error naming the file if it is missing or not float."""
    if name not in model:
        raise CT2FormatError(f"{model.path}: missing variable {name!r} (not a complete Whisper encoder)")
    var = model.variable(name)
    if var.dtype not in FLOAT_DTYPES:
        raise CT2FormatError(f"{model.path}: {name!r} is stored as {var.dtype}; only float32/float16/"
                             f"bfloat16 models can be converted (re-export it without int8/int16 weights)")
    return var.shape


def _need(model: CT2Model, name: str, shape: tuple[int, ...]) -> None:
    found = _float_var(model, name)
    if found != shape:
        raise CT2FormatError(f"{model.path}: {name!r} has shape {found}, expected {shape}")


def whisper_encoder_dims(model: CT2Model) -> dict[str, int]:
    """Encoder dimensions of a CTranslate2 ``WhisperSpec`` read from its variables' shapes.

    Returns ``d_model``, ``num_mel_bins``, ``encoder_layers``, ``encoder_attention_heads``,
    ``encoder_ffn_dim``, ``max_source_positions`` (and the decoder's where present); every encoder
    variable's shape and dtype is checked.
    """
    path = model.path
    if model.spec != "WhisperSpec":
        raise CT2FormatError(f"{path}: a CTranslate2 {model.spec!r} model, not a Whisper model (WhisperSpec)")
    for name in model.variables:
        if name.startswith("encoder/") and name.endswith(("weight_scale", "weight_zero")):
            raise CT2FormatError(f"{path}: quantized weights ({name}); only float32/float16/bfloat16 models "
                                 f"can be converted")
    conv1 = _float_var(model, "encoder/conv1/weight")
    if len(conv1) != 3 or conv1[2] != 3:
        raise CT2FormatError(f"{path}: encoder/conv1/weight has shape {conv1}, expected (d_model, n_mels, 3)")
    d, n_mels = conv1[0], conv1[1]
    pos = _float_var(model, "encoder/position_encodings/encodings")
    if len(pos) != 2 or pos[1] != d or pos[0] < 1:
        raise CT2FormatError(f"{path}: encoder/position_encodings/encodings has shape {pos}, expected "
                             f"(positions, {d})")
    positions = pos[0]
    indices = sorted({int(m.group(1)) for n in model.variables
                      if (m := re.match(r"encoder/layer_(\d+)/", n))})
    if not indices or indices != list(range(len(indices))):
        raise CT2FormatError(f"{path}: encoder layers {indices} are not numbered 0..N-1")
    if "encoder/num_heads" not in model:
        raise CT2FormatError(f"{path}: missing variable 'encoder/num_heads'")
    heads = model.scalar("encoder/num_heads")
    if not isinstance(heads, int) or heads < 1 or d % heads:
        raise CT2FormatError(f"{path}: encoder/num_heads = {heads!r} does not divide d_model {d}")
    ffn_shape = _float_var(model, "encoder/layer_0/ffn/linear_0/weight")
    if len(ffn_shape) != 2 or ffn_shape[0] < 1:
        raise CT2FormatError(f"{path}: encoder/layer_0/ffn/linear_0/weight has shape {ffn_shape}, expected "
                             f"(ffn_dim, {d})")
    ffn = ffn_shape[0]
    _need(model, "encoder/conv1/bias", (d,))
    _need(model, "encoder/conv2/weight", (d, d, 3))
    _need(model, "encoder/conv2/bias", (d,))
    _need(model, "encoder/layer_norm/gamma", (d,))
    _need(model, "encoder/layer_norm/beta", (d,))
    for i in indices:
        p = f"encoder/layer_{i}"
        for norm in ("self_attention/layer_norm", "ffn/layer_norm"):
            _need(model, f"{p}/{norm}/gamma", (d,))
            _need(model, f"{p}/{norm}/beta", (d,))
        _need(model, f"{p}/self_attention/linear_0/weight", (3 * d, d))
        _need(model, f"{p}/self_attention/linear_0/bias", (3 * d,))
        _need(model, f"{p}/self_attention/linear_1/weight", (d, d))
        _need(model, f"{p}/self_attention/linear_1/bias", (d,))
        _need(model, f"{p}/ffn/linear_0/weight", (ffn, d))
        _need(model, f"{p}/ffn/linear_0/bias", (ffn,))
        _need(model, f"{p}/ffn/linear_1/weight", (d, ffn))
        _need(model, f"{p}/ffn/linear_1/bias", (d,))
    dims = {"d_model": d, "num_mel_bins": n_mels, "encoder_layers": len(indices),
            "encoder_attention_heads": heads, "encoder_ffn_dim": ffn, "max_source_positions": positions}
    # decoder facts, for an honest config (the decoder weights are not converted)
    if "decoder/embeddings/weight" in model:
        dims["vocab_size"] = model.shape("decoder/embeddings/weight")[0]
    if "decoder/position_encodings/encodings" in model:
        dims["max_target_positions"] = model.shape("decoder/position_encodings/encodings")[0]
    dec = {int(m.group(1)) for n in model.variables if (m := re.match(r"decoder/layer_(\d+)/", n))}
    if dec:
        dims["decoder_layers"] = max(dec) + 1
    if "decoder/layer_0/ffn/linear_0/weight" in model:
        dims["decoder_ffn_dim"] = model.shape("decoder/layer_0/ffn/linear_0/weight")[0]
    if "decoder/num_heads" in model:
        dims["decoder_attention_heads"] = int(model.scalar("decoder/num_heads"))
    return dims


def whisper_encoder_state_dict(model: CT2Model, dims: dict[str, int]) -> tuple[dict[str, np.ndarray], float]:
    """The ``WhisperEncoder`` state dict (float32 numpy arrays) and the largest dropped key-bias value."""
    d = dims["d_model"]

    def get(name: str) -> np.ndarray:
        return np.ascontiguousarray(model.read(name), dtype=np.float32)

    state = {"conv1.weight": get("encoder/conv1/weight"), "conv1.bias": get("encoder/conv1/bias"),
             "conv2.weight": get("encoder/conv2/weight"), "conv2.bias": get("encoder/conv2/bias"),
             "embed_positions.weight": get("encoder/position_encodings/encodings"),
             "layer_norm.weight": get("encoder/layer_norm/gamma"),
             "layer_norm.bias": get("encoder/layer_norm/beta")}
    key_bias = 0.0
    for i in range(dims["encoder_layers"]):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        qkv_w = get(f"{src}/self_attention/linear_0/weight")
        qkv_b = get(f"{src}/self_attention/linear_0/bias")
        for k, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"{dst}.self_attn.{proj}.weight"] = np.ascontiguousarray(qkv_w[k * d:(k + 1) * d])
            if proj != "k_proj":
                state[f"{dst}.self_attn.{proj}.bias"] = np.ascontiguousarray(qkv_b[k * d:(k + 1) * d])
        key_bias = max(key_bias, float(np.abs(qkv_b[d:2 * d]).max()))
        pairs = {"self_attn.out_proj": "self_attention/linear_1", "fc1": "ffn/linear_0",
                 "fc2": "ffn/linear_1"}
        for hf_name, ct2_name in pairs.items():
            state[f"{dst}.{hf_name}.weight"] = get(f"{src}/{ct2_name}/weight")
            state[f"{dst}.{hf_name}.bias"] = get(f"{src}/{ct2_name}/bias")
        for hf_name, ct2_name in {"self_attn_layer_norm": "self_attention/layer_norm",
                                  "final_layer_norm": "ffn/layer_norm"}.items():
            state[f"{dst}.{hf_name}.weight"] = get(f"{src}/{ct2_name}/gamma")
            state[f"{dst}.{hf_name}.bias"] = get(f"{src}/{ct2_name}/beta")
    for name, value in state.items():
        if not np.all(np.isfinite(value)):
            raise CT2FormatError(f"{model.path}: non-finite values in the weights mapped to {name}")
    return state, key_bias


def convert_whisper_ct2(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a transformers Whisper encoder folder from a CTranslate2 Whisper model folder.

    Parameters
    ----------
    src
        CTranslate2 Whisper model folder (``model.bin``; ``config.json`` is recorded if present).
        Only read.
    dst
        Output folder (created; must not lie inside ``src``). It receives ``config.json``,
        ``model.safetensors``, ``preprocessor_config.json`` and :data:`PROVENANCE_FILE`.
    overwrite
        Replace an existing non-empty ``dst`` that holds an earlier conversion.

    Returns
    -------
    pathlib.Path
        ``dst``, ready for ``hf_encoder`` (``model = "<dst>"``).
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_dir():
        raise ConversionError(f"source {src} is not a folder (a CTranslate2 model folder holds model.bin)")
    check_destination(src, dst, overwrite=overwrite)
    ct2 = read_ct2_model(src / "model.bin")
    dims = whisper_encoder_dims(ct2)
    state, key_bias = whisper_encoder_state_dict(ct2, dims)
    if (src / "config.json").is_file():
        read_json(src / "config.json")  # a malformed config is an error naming the file

    import torch
    import transformers
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    from transformers.utils import logging as hf_logging

    config = WhisperConfig(**dims, activation_function="gelu", architectures=["WhisperEncoder"])
    encoder = WhisperEncoder(config)
    tensors = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
    result = encoder.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConversionError(f"{ct2.path}: mapping does not fit transformers {transformers.__version__}'s "
                              f"WhisperEncoder (missing {result.missing_keys}, "
                              f"unexpected {result.unexpected_keys})")
    stored_dtypes: dict[str, int] = {}
    for var in ct2.variables.values():
        if var.name.startswith("encoder/") and var.shape:
            stored_dtypes[var.dtype] = stored_dtypes.get(var.dtype, 0) + 1
    provenance = {
        "converter": "featurekit.extractors.ssl.ct2_convert.convert_whisper_ct2",
        "converter_version": CONVERTER_VERSION,
        "source": str(src.resolve()),
        "source_files": {name: _digests(src / name) for name in ("model.bin", "config.json")
                         if (src / name).is_file()},
        "source_format": {"spec": ct2.spec, "revision": ct2.revision, "binary_version": ct2.binary_version,
                          "encoder_dtypes": stored_dtypes},
        "converted": "encoder only (the decoder is not converted)",
        "dtype": "float32",
        "dropped_key_bias_max_abs": key_bias,
        "libraries": {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
                      "numpy": np.__version__},
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.converting-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        encoder.save_pretrained(str(tmp))
        WhisperFeatureExtractor(feature_size=dims["num_mel_bins"], sampling_rate=16000, hop_length=160,
                                chunk_length=30, n_fft=400).save_pretrained(str(tmp))
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        check = WhisperEncoder.from_pretrained(str(tmp)).state_dict()
        for name, value in tensors.items():
            if not torch.equal(check[name], value):
                raise ConversionError(f"{tmp}: {name} reads back different from what was written")
        if dst.exists():
            check_destination(src, dst, overwrite=overwrite)  # unchanged since the first check
            shutil.rmtree(dst)
        tmp.rename(dst)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        if tmp.exists():
            shutil.rmtree(tmp)
    return dst


__all__ = ["CONVERTER_VERSION", "ConversionError", "PROVENANCE_FILE", "check_destination",
           "convert_whisper_ct2", "whisper_encoder_dims", "whisper_encoder_state_dict"]

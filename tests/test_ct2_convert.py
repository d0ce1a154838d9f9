"""CTranslate2 Whisper -> transformers Whisper encoder conversion (featurekit.extractors.ssl.ct2_convert).

A tiny random transformers Whisper is exported with ctranslate2's own converter and converted
back (exact round trip of the encoder weights); the real faster-whisper tiny.en in ../shared is
converted and checked against ctranslate2's ``encode`` and the ``whisper_ct2`` extractor; hostile
``model.bin`` files and destinations are refused with errors that name the file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from featurekit.extractors import make_extractor
from featurekit.extractors.ssl import whisper_frontend as wf
from featurekit.extractors.ssl.common import ModelError, file_digest
from featurekit.extractors.ssl.ct2_convert import PROVENANCE_FILE, ConversionError, convert_whisper_ct2
from featurekit.extractors.ssl.ct2_format import DTYPES, read_ct2_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ct2 = pytest.importorskip("ctranslate2")

SR = 16000
D, LAYERS, HEADS = 32, 2, 4


def load_encoder(path: Path):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperEncoder.from_pretrained(str(path)).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """(transformers Whisper folder, its CTranslate2 export): random weights, 2 s window, float32."""
    root = tmp_path_factory.mktemp("ct2conv")
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(d_model=D, encoder_layers=LAYERS, decoder_layers=1,
                                     encoder_attention_heads=HEADS, decoder_attention_heads=2,
                                     encoder_ffn_dim=48, decoder_ffn_dim=48,
                                     num_mel_bins=80, max_source_positions=100, max_target_positions=16,
                                     vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                     decoder_start_token_id=1)
    model = transformers.WhisperForConditionalGeneration(cfg)
    with torch.no_grad():  # biases and norms away from their 0/1 initialisation, so a mix-up shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    hf_dir = root / "hf"
    model.save_pretrained(hf_dir)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(hf_dir)
    out = root / "ct2"
    ct2.converters.TransformersConverter(str(hf_dir)).convert(str(out), force=True)
    return hf_dir, out


def write_ct2(path: Path, model, *, drop: tuple[str, ...] = (), replace: dict | None = None) -> None:
    """Write ``model`` (a parsed CT2Model) back in CTranslate2's layout, minus ``drop``, with ``replace``d
    arrays (name -> numpy array)."""
    ids = {name: i for i, (name, _) in DTYPES.items()}
    replace = replace or {}

    def string(f, s: str) -> None:
        raw = s.encode() + b"\0"
        f.write(struct.pack("<H", len(raw)) + raw)

    with open(path, "wb") as f:
        f.write(struct.pack("<I", model.binary_version))
        string(f, model.spec)
        f.write(struct.pack("<I", model.revision))
        names = [n for n in model.variables if n not in drop]
        f.write(struct.pack("<I", len(names)))
        for name in names:
            value = replace.get(name, model.read(name))
            string(f, name)
            f.write(struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape))
            f.write(struct.pack("<BI", ids[value.dtype.name], value.nbytes) + value.tobytes())
        aliases = {a: t for a, t in model.aliases.items() if t not in drop}
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            string(f, alias)
            string(f, target)


# -- round trip on a tiny random model ----------------------------------------------------------------
def test_round_trip_restores_the_encoder_exactly(tiny, tmp_path):
    hf_dir, ct2_dir = tiny
    out = convert_whisper_ct2(ct2_dir, tmp_path / "enc")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "model.safetensors", "preprocessor_config.json", PROVENANCE_FILE])
    original = transformers.WhisperModel.from_pretrained(str(hf_dir)).encoder.state_dict()
    converted = load_encoder(out).state_dict()
    assert converted.keys() == original.keys()
    for name, value in original.items():
        assert converted[name].dtype == torch.float32
        assert torch.equal(converted[name], value), name  # float32 export: bit-exact
    config = json.loads((out / "config.json").read_text())
    dims = (config["d_model"], config["encoder_layers"], config["encoder_attention_heads"])
    assert dims == (D, LAYERS, HEADS)
    assert config["architectures"] == ["WhisperEncoder"] and config["max_source_positions"] == 100
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert (pre["feature_size"], pre["sampling_rate"], pre["chunk_length"]) == (80, SR, 30)
    prov = json.loads((out / PROVENANCE_FILE).read_text())
    assert prov["source_files"]["model.bin"]["blake2b_128"] == file_digest(ct2_dir / "model.bin")
    assert prov["converter_version"] == "1" and prov["dropped_key_bias_max_abs"] == 0.0


def test_hf_encoder_reads_the_converted_folder_with_all_layers(tiny, tmp_path):
    hf_dir, ct2_dir = tiny
    out = convert_whisper_ct2(ct2_dir, tmp_path / "enc")
    rng = np.random.default_rng(0)
    sig = (0.1 * rng.standard_normal(20000)).astype(np.float32)
    a = make_extractor("hf_encoder", model=str(out), device="cpu", tag="t").native(sig, SR)
    b = make_extractor("hf_encoder", model=str(hf_dir), device="cpu", tag="t").native(sig, SR)
    assert a.names == b.names and len(a.names) == (LAYERS + 1) * 2 * D
    np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-5)


def test_short_whisper_inputs_follow_the_encoder_and_ctranslate2(tiny, tmp_path):
    """``hf_encoder``'s ``pad_to`` path runs the encoder's own modules: identical to ``forward`` on a
    full window, and on shorter padding equal to ctranslate2 (``whisper_ct2``) on the same model."""
    from featurekit.extractors.ssl.hf import whisper_hidden_states

    _, ct2_dir = tiny
    out = convert_whisper_ct2(ct2_dir, tmp_path / "enc")
    rng = np.random.default_rng(1)
    sigs = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (5000, 9000, 20000)]
    encoder = load_encoder(out)
    mel = torch.from_numpy(wf.log_mel_batch(sigs, n_mels=80, n_samples=100 * wf.ENCODER_HOP))
    with torch.inference_mode():
        full = encoder(mel, output_hidden_states=True).hidden_states
        mine = whisper_hidden_states(encoder, mel)
    assert len(full) == len(mine) == LAYERS + 1
    assert all(torch.equal(x, y) for x, y in zip(full, mine))
    for pad_to in ("none", 0.5):
        hf = make_extractor("hf_encoder", model=str(out), device="cpu", pad_to=pad_to, batch_size=2)
        wc = make_extractor("whisper_ct2", model=str(ct2_dir), pad_to=pad_to, compute_type="float32")
        for a, b in zip(hf.native_batch(sigs, SR), wc.native_batch(sigs, SR)):
            last = [i for i, n in enumerate(a.names) if f"_L{LAYERS:02d}_" in n]
            np.testing.assert_allclose(a.values[last], b.values, rtol=0, atol=1e-4)
        assert hf.key_hash() != make_extractor("hf_encoder", model=str(out), device="cpu").key_hash()


def test_pad_to_is_refused_for_other_families(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    (tmp_path / "preprocessor_config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"never loaded")
    with pytest.raises(ModelError, match="Whisper models only"):
        make_extractor("hf_encoder", model=str(tmp_path), device="cpu", pad_to=2).info()
    with pytest.raises(ValueError, match="pad_to"):
        make_extractor("hf_encoder", model=str(tmp_path), pad_to=45)


def test_cli_converts_and_reports_errors(tiny, tmp_path, capsys):
    from featurekit.cli import main

    _, ct2_dir = tiny
    assert main(["encoder", "convert-whisper-ct2", str(ct2_dir), str(tmp_path / "enc")]) == 0
    assert "[extractors.hf_encoder]" in capsys.readouterr().out
    assert main(["encoder", "convert-whisper-ct2", str(ct2_dir), str(tmp_path / "enc")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["encoder", "convert-whisper-ct2", str(ct2_dir), str(tmp_path / "enc"), "--overwrite"]) == 0


# -- hostile input ------------------------------------------------------------------------------------
def hostile_copy(ct2_dir: Path, tmp_path: Path, data: bytes) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_bytes((ct2_dir / "config.json").read_bytes())
    (src / "model.bin").write_bytes(data)
    return src


def refused(src: Path, tmp_path: Path, match: str) -> None:
    with pytest.raises(ModelError, match=match) as err:
        convert_whisper_ct2(src, tmp_path / "out")
    assert str(src / "model.bin") in str(err.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written


@pytest.mark.parametrize("case", ["truncated", "bad_version", "count_overrun", "byte_size", "length_overrun",
                                  "trailing", "dtype"])
def test_malformed_model_bin_is_refused(tiny, tmp_path, case):
    _, ct2_dir = tiny
    data = bytearray((ct2_dir / "model.bin").read_bytes())
    var = read_ct2_model(ct2_dir / "model.bin").variable("encoder/conv2/weight")
    n_vars_at = 4 + 2 + len(b"WhisperSpec\0") + 4
    if case == "truncated":
        data, match = data[:var.offset + 100], "truncated"
    elif case == "bad_version":
        data[:4], match = b"\x89PNG", "binary version"
    elif case == "count_overrun":
        data[n_vars_at:n_vars_at + 4], match = struct.pack("<I", 10 ** 8), "cannot fit"
    elif case == "byte_size":  # the n_bytes field just before the data
        data[var.offset - 4:var.offset], match = struct.pack("<I", var.n_bytes - 4), "needs .* bytes"
    elif case == "length_overrun":  # shape and byte size agree, but claim far more than the file holds
        dims_at = var.offset - 4 - 1 - 4 * len(var.shape)
        data[dims_at:dims_at + 4] = struct.pack("<I", 10 ** 6)
        n_bytes = 10 ** 6 * int(np.prod(var.shape[1:])) * 4
        data[var.offset - 4:var.offset], match = struct.pack("<I", n_bytes), "only .* left"
    elif case == "trailing":
        data, match = data + b"\0\0", "unexpected bytes"
    else:  # an unknown dtype id
        data[var.offset - 5], match = 9, "unknown dtype"
    refused(hostile_copy(ct2_dir, tmp_path, bytes(data)), tmp_path, match)


@pytest.mark.parametrize("case", ["missing", "shape", "quantized", "spec", "alias"])
def test_inconsistent_model_is_refused(tiny, tmp_path, case):
    _, ct2_dir = tiny
    model = read_ct2_model(ct2_dir / "model.bin")
    src = hostile_copy(ct2_dir, tmp_path, b"")
    if case == "missing":
        write_ct2(src / "model.bin", model, drop=("encoder/layer_1/ffn/linear_1/bias",))
        match = "missing variable 'encoder/layer_1/ffn/linear_1/bias'"
    elif case == "shape":
        bad = np.zeros((D, 3 * D), dtype=np.float32)
        write_ct2(src / "model.bin", model, replace={"encoder/layer_0/self_attention/linear_1/weight": bad})
        match = "has shape"
    elif case == "quantized":
        q = model.read("encoder/layer_0/ffn/linear_0/weight").astype(np.int8)
        write_ct2(src / "model.bin", model, replace={"encoder/layer_0/ffn/linear_0/weight": q})
        match = "int8"
    elif case == "spec":
        model.spec = "TransformerSpec"
        write_ct2(src / "model.bin", model)
        match = "not a Whisper model"
    else:
        model.aliases["decoder/projection/weight"] = "nowhere"
        write_ct2(src / "model.bin", model)
        match = "points to missing variable"
    refused(src, tmp_path, match)


def test_destination_rules(tiny, tmp_path):
    _, ct2_dir = tiny
    src = tmp_path / "src"
    src.mkdir()
    for name in ("model.bin", "config.json"):
        (src / name).write_bytes((ct2_dir / name).read_bytes())
    before = sorted(p.name for p in src.iterdir())
    with pytest.raises(ConversionError, match="inside the source"):
        convert_whisper_ct2(src, src / "hf")
    with pytest.raises(ConversionError, match="inside the source"):
        convert_whisper_ct2(src, src)
    with pytest.raises(ConversionError, match="contains the source"):
        convert_whisper_ct2(src, tmp_path)
    assert sorted(p.name for p in src.iterdir()) == before  # the source is never written
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # a folder that is no earlier conversion is never replaced
        with pytest.raises(ConversionError, match="not empty"):
            convert_whisper_ct2(src, other, overwrite=overwrite)
    assert (other / "notes.txt").read_text() == "mine"
    out = convert_whisper_ct2(src, tmp_path / "out")
    with pytest.raises(ConversionError, match="overwrite"):
        convert_whisper_ct2(src, out)
    assert convert_whisper_ct2(src, out, overwrite=True) == out
    with pytest.raises(ConversionError, match="not a folder"):
        convert_whisper_ct2(tmp_path / "nowhere", tmp_path / "x")


def test_hf_encoder_refuses_a_folder_missing_weights(tiny, tmp_path):
    """A config asking for more layers than the weights hold would be completed with random values."""
    _, ct2_dir = tiny
    out = convert_whisper_ct2(ct2_dir, tmp_path / "enc")
    config = json.loads((out / "config.json").read_text())
    config["encoder_layers"] = LAYERS + 1
    (out / "config.json").write_text(json.dumps(config))
    ext = make_extractor("hf_encoder", model=str(out), device="cpu")
    with pytest.raises(ModelError, match="lack .* of the model's weights"):
        ext.native(np.zeros(8000, dtype=np.float32), SR)


# -- the real model -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(whisper_tiny_dir, tmp_path_factory) -> Path:
    digest = file_digest(whisper_tiny_dir / "model.bin")
    out = convert_whisper_ct2(whisper_tiny_dir, tmp_path_factory.mktemp("real") / "tiny-en")
    prov = json.loads((out / PROVENANCE_FILE).read_text())
    assert prov["source_files"]["model.bin"]["blake2b_128"] == digest
    assert prov["source_format"]["encoder_dtypes"] == {"float16": 55}
    return out


@pytest.fixture(scope="module")
def emodb_signals(emodb_root) -> list[np.ndarray]:
    from featurekit.audio import load_audio

    return [load_audio(w) for w in sorted((emodb_root / "wav").glob("*.wav"))[::150][:3]]


def test_real_tiny_en_matches_ctranslate2(real, whisper_tiny_dir, emodb_signals):
    """The converted encoder's last layer equals ctranslate2's ``encode`` on Emo-DB speech (30 s inputs).

    Both run in float32 from the same float16-stored weights (ctranslate2 widens them on CPU), so
    only float rounding differs: measured max |diff| 2.3e-5 on states of magnitude ~10, correlation
    1 - 1e-11. The bound, 1e-3, leaves room for other BLAS kernels and is still 100x below what a
    mapping error (a swapped projection, a missing bias or layer norm) produces.
    """
    mel = wf.log_mel_batch(emodb_signals, n_mels=80, n_samples=wf.N_SAMPLES_30S)
    model = ct2.models.Whisper(str(whisper_tiny_dir), device="cpu", compute_type="float32", intra_threads=2)
    ref = np.asarray(model.encode(ct2.StorageView.from_array(np.ascontiguousarray(mel)), to_cpu=True))
    with torch.inference_mode():
        out = load_encoder(real)(torch.from_numpy(mel), output_hidden_states=True)
    assert len(out.hidden_states) == 5  # embeddings + 4 layers
    got = out.last_hidden_state.numpy()
    for k, sig in enumerate(emodb_signals):
        n = wf.encoder_frames_for(len(sig))
        a, b = ref[k, :n], got[k, :n]
        assert np.abs(a - b).max() < 1e-3
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99999


@pytest.mark.parametrize("pad_to", ["30s", 2])
def test_real_tiny_en_hf_encoder_layers_agree_with_whisper_ct2(real, whisper_tiny_dir, emodb_signals, pad_to):
    hf = make_extractor("hf_encoder", model=str(real), device="cpu", pad_to=pad_to)
    hf = hf.native_batch(emodb_signals, SR)
    wc = make_extractor("whisper_ct2", model=str(whisper_tiny_dir), pad_to=pad_to, compute_type="float32",
                        threads=2).native_batch(emodb_signals, SR)
    names = hf[0].names
    assert len(names) == 5 * 2 * 384 and names[0] == "hf_encoder_tiny-en_L00_mean_0000"
    assert names[-1] == "hf_encoder_tiny-en_L04_std_0383"
    last = [i for i, n in enumerate(names) if "_L04_" in n]
    for a, b in zip(hf, wc):
        assert [n.replace("hf_encoder_tiny-en", "") for n in np.array(names)[last]] == \
               [n.replace("whisper_ct2_faster-whisper-tiny-en", "") for n in b.names]
        np.testing.assert_allclose(a.values[last], b.values, rtol=0, atol=1e-4)  # measured <= 6e-6
        earlier = a.values[[i for i, n in enumerate(names) if "_L02_" in n]]
        assert np.all(np.isfinite(earlier)) and not np.allclose(earlier, b.values, atol=1e-2)

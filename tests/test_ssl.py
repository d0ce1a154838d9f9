"""Pretrained speech-encoder extractors: ``hf_encoder`` (transformers), ``whisper_ct2`` (CTranslate2).

Backend 1 runs on tiny randomly initialised models written with ``save_pretrained`` (the real
loading path, nothing downloaded). Backend 2 runs on a tiny Whisper converted to CTranslate2 (and
checked against backend 1) and on the real faster-whisper tiny.en from ``../shared``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from featurekit.audio import ShortAudioWarning
from featurekit.extraction import FeatureRequest, extract, load_features
from featurekit.extractors import make_extractor
from featurekit.extractors.ssl import ModelError, layer_numbers, model_tag, select_layers
from featurekit.extractors.ssl import whisper_frontend as wf
from featurekit.extractors.ssl.common import group_by_length, plan_chunks, stitch
from featurekit.extractors.ssl.whisper_ct2 import import_ctranslate2, parse_pad_to
from featurekit.store import FeatureStore

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

SR = 16000
FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper")
HIDDEN = 32
N_LAYERS = 2  # hidden-state layers 0 (embeddings) .. 2
# 4 conv layers, hop 160 samples (100 frames/s), receptive field 345 samples
CONV = dict(conv_dim=(16, 16, 16, 16), conv_stride=(5, 4, 4, 2), conv_kernel=(10, 8, 4, 4))
LENGTHS = (9600, 16000, 20800, 27200)  # 0.6 .. 1.7 s


def build_model(root: Path, family: str, *, seed: int = 0) -> Path:
    """A tiny random model of ``family`` plus its feature extractor, saved like a hub checkpoint."""
    import transformers as tf

    torch.manual_seed(seed)
    path = root / family
    small = dict(hidden_size=HIDDEN, num_hidden_layers=N_LAYERS, num_attention_heads=2, intermediate_size=64)
    if family == "whisper":
        cfg = tf.WhisperConfig(d_model=HIDDEN, encoder_layers=N_LAYERS, decoder_layers=1,
                               encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                               decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=100,  # 2 s window
                               max_target_positions=16, vocab_size=64, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2, decoder_start_token_id=1)
        tf.WhisperForConditionalGeneration(cfg).save_pretrained(path)
        tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
        return path
    config_cls, model_cls = {"wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model),
                             "hubert": (tf.HubertConfig, tf.HubertModel),
                             "wavlm": (tf.WavLMConfig, tf.WavLMModel),
                             "data2vec-audio": (tf.Data2VecAudioConfig, tf.Data2VecAudioModel)}[family]
    kw = {**small, **CONV}
    if family == "data2vec-audio":
        kw.update(num_conv_pos_embeddings=2, conv_pos_kernel_size=16)
    else:  # wav2vec2-base style (group norm, no attention mask) vs large style (layer norm, masks)
        kw.update(num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                  feat_extract_norm="group" if family == "wav2vec2" else "layer")
    model_cls(config_cls(**kw)).save_pretrained(path)
    fe = tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=family != "wav2vec2")
    fe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {family: build_model(root, family) for family in FAMILIES}


def signals(lengths=LENGTHS, seed: int = 0) -> list[np.ndarray]:
    """Speech-like test signals: a vibrato harmonic complex plus noise, different per length."""
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        t = np.arange(n) / SR
        f0 = rng.uniform(110, 220) * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2)
        out.append((0.1 * x + 0.01 * rng.standard_normal(n)).astype(np.float32))
    return out


def hf(model: Path, **params) -> object:
    return make_extractor("hf_encoder", model=str(model), device="cpu", **params)


# -- front end ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_mels", [80, 128])
def test_frontend_matches_transformers(n_mels):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=n_mels)
    for x in signals((16000, 37123)):
        ours = wf.log_mel(x, n_mels=n_mels, n_samples=wf.N_SAMPLES_30S)
        ref = fe(x, sampling_rate=SR, return_tensors="np", padding="max_length").input_features[0]
        assert ours.shape == ref.shape == (n_mels, 3000)
        np.testing.assert_allclose(ours, ref, atol=1e-4)
        unpadded = wf.log_mel(x, n_mels=n_mels)
        ref = fe(x, sampling_rate=SR, return_tensors="np", padding="longest").input_features[0]
        assert unpadded.shape == (n_mels, len(x) // 160)
        np.testing.assert_allclose(unpadded, ref[:, :unpadded.shape[1]], atol=1e-4)


def test_import_does_not_load_torch():
    code = ("import sys, featurekit, featurekit.extractors, featurekit.extraction;"
            "bad = {'torch', 'transformers', 'ctranslate2'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- helpers --------------------------------------------------------------------------------------
def test_chunk_plan_and_stitch():
    assert plan_chunks(1000, 2000, 100, 10) == [(0, 1000)]
    plan = plan_chunks(10_000, 3000, 500, 160)
    assert plan[0][0] == 0 and plan[-1][1] == 10_000
    assert all(a % 160 == 0 for a, _ in plan)
    assert all(b2 - a2 >= 3000 - 160 for a2, b2 in plan) and all(b - a <= 3000 for a, b in plan)
    assert all(plan[i + 1][0] < plan[i][1] for i in range(len(plan) - 1))  # overlapping
    # stitched frame states of a "global" sequence give the sequence back
    full = np.arange(100, dtype=np.float32)[None, :, None]
    offsets = [0, 30, 55]
    parts = [full[:, o:o + 45] for o in offsets]
    np.testing.assert_array_equal(stitch(parts, offsets), full)
    groups = group_by_length([5, 3, 5, 3, 4], 2, exact=True)
    assert sorted(map(sorted, groups)) == [[0, 2], [1, 3], [4]]
    assert model_tag("/x/facebook/wav2vec2-base_960h/") == "wav2vec2-base-960h"
    assert model_tag("org/tiny.en") == "tiny-en" and model_tag("m", tag="My_tag") == "My-tag"


# -- backend 1: transformers ----------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_hf_shapes_names_rerun_and_batch(models, family):
    ext = hf(models[family], batch_size=3)
    sigs = signals()
    batch = ext.native_batch(sigs, SR)
    tag = family.replace("_", "-")
    names = batch[0].names
    assert len(names) == (N_LAYERS + 1) * 2 * HIDDEN == len(batch[0].values)
    assert names[0] == f"hf_encoder_{tag}_L00_mean_0000"
    assert names[-1] == f"hf_encoder_{tag}_L{N_LAYERS:02d}_std_{HIDDEN - 1:04d}"
    assert names == ext.native_names()
    assert layer_numbers(names) == {f"hf_encoder_{tag}": list(range(N_LAYERS + 1))}
    # batch (grouped by length, masks where the model takes them) == one file at a time
    for vec, sig in zip(batch, sigs):
        assert np.all(np.isfinite(vec.values))
        np.testing.assert_allclose(vec.values, ext.native(sig, SR).values, atol=1e-4, rtol=1e-4)
    # identical on rerun, also from a fresh instance
    again = hf(models[family], batch_size=3).native_batch(sigs, SR)
    assert all(np.array_equal(a.values, b.values) for a, b in zip(batch, again))
    # LLDs: last layer by default; 100 frames/s (wav2vec2 family) or 50 (Whisper)
    frames = ext.lld(sigs[1], SR)
    assert frames.names == ext.lld_names() and frames.names[0] == f"hf_encoder_{tag}_L{N_LAYERS:02d}_0000"
    expected = 50 if family == "whisper" else (16000 - 345) // 160 + 1
    assert frames.values.shape == (expected, HIDDEN) and frames.values.dtype == np.float32
    assert np.all(np.diff(frames.times) > 0)
    # the LLD layer's mean equals that layer's native mean
    last = slice(N_LAYERS * 2 * HIDDEN, N_LAYERS * 2 * HIDDEN + HIDDEN)
    np.testing.assert_allclose(frames.values.mean(axis=0), batch[1].values[last], atol=1e-5)
    # LLDs right after native functionals of the same signals reuse that pass's states
    ext.native_batch(sigs, SR)
    reused = ext.lld_batch(sigs, SR)
    for got, fresh in zip(reused, hf(models[family], batch_size=3).lld_batch(sigs, SR)):
        assert got.names == fresh.names
        np.testing.assert_allclose(got.values, fresh.values, atol=1e-5)
    first = hf(models[family], lld_layer=0).lld(sigs[1], SR)
    assert first.names[0] == f"hf_encoder_{tag}_L00_0000"
    np.testing.assert_allclose(first.values.mean(axis=0), batch[1].values[:HIDDEN], atol=1e-5)


@pytest.mark.parametrize("family", ["hubert", "whisper"])
def test_hf_chunking(models, family):
    sigs = signals((16000, 40000))
    whole = hf(models[family])
    chunked = hf(models[family], chunk_s=1.5, overlap_s=0.3)
    # shorter than a chunk: exactly the unchunked result
    np.testing.assert_array_equal(chunked.native(sigs[0], SR).values, whole.native(sigs[0], SR).values)
    # longer: chunks stitched into one frame sequence of the unchunked length
    long_frames = chunked.lld(sigs[1], SR)
    n_expected = wf.encoder_frames_for(40000) if family == "whisper" else (40000 - 345) // 160 + 1
    assert abs(len(long_frames.values) - n_expected) <= 1
    assert np.all(np.isfinite(long_frames.values)) and np.all(np.diff(long_frames.times) > 0)
    if family == "hubert":  # no window limit: compare with the unchunked states away from the seams
        ref = whole.lld(sigs[1], SR).values
        n = min(len(ref), len(long_frames.values))
        corr = np.corrcoef(ref[:n].ravel(), long_frames.values[:n].ravel())[0, 1]
        assert corr > 0.9
    with pytest.raises(ValueError, match="exceeds the longest input"):
        hf(models["whisper"], chunk_s=3.0).native(sigs[0], SR)


def test_hf_short_audio_is_padded_with_warning(models):
    with pytest.warns(ShortAudioWarning, match="receptive field"):
        frames = hf(models["wav2vec2"]).lld(signals((200,))[0], SR)
    assert frames.values.shape == (1, HIDDEN)


def write_corpus(root: Path, lengths=LENGTHS) -> pd.DataFrame:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, x in enumerate(signals(lengths)):
        path = root / f"utt{i}.wav"
        sf.write(path, x, SR, subtype="FLOAT")
        rows.append({"id": f"utt{i}", "path": str(path), "speaker": f"s{i % 2}", "session": f"s{i % 2}",
                     "label": ["a", "b"][i % 2]})
    return pd.DataFrame(rows)


def test_hf_through_extraction_and_store(models, tmp_path):
    manifest = write_corpus(tmp_path / "wav")
    store = FeatureStore(tmp_path / "store")
    ext = hf(models["wavlm"], batch_size=2)
    req = FeatureRequest(ext, ("native", "lld"))
    summary = extract(manifest, [req], store, corpus="syn", jobs=1, chunk_size=4, progress=False)
    assert not summary.failures, summary.failures
    assert summary.tables["hf_encoder.native"] == (4, (N_LAYERS + 1) * 2 * HIDDEN)
    native = load_features(store, manifest, req, "native", corpus="syn")
    assert list(native.index) == list(manifest["id"])
    direct = ext.native(signals(LENGTHS)[2], SR)
    np.testing.assert_allclose(native.loc["utt2"].to_numpy(np.float32), direct.values, atol=1e-5)
    lld = load_features(store, manifest, req, "lld", corpus="syn")
    assert set(lld["id"]) == set(manifest["id"]) and lld.shape[1] == 3 + HIDDEN
    # the layer of choice, without re-extraction
    last = select_layers(native, -1)
    assert last.shape == (4, 2 * HIDDEN) and all("_L02_" in c for c in last.columns)
    mean = select_layers(native, "mean")
    np.testing.assert_allclose(mean.iloc[:, 0], native[[f"hf_encoder_wavlm_L{k:02d}_mean_0000"
                                                         for k in range(3)]].mean(axis=1), rtol=1e-5)
    # rerun: everything from the store; a fresh extraction gives identical values
    again = extract(manifest, [req], store, corpus="syn", jobs=1, progress=False)
    assert again.computed == 0 and again.cache_hits == 8
    store2 = FeatureStore(tmp_path / "store2")
    extract(manifest, [req], store2, corpus="syn", jobs=1, chunk_size=1, progress=False)
    native2 = load_features(store2, manifest, req, "native", corpus="syn")
    np.testing.assert_allclose(native2.to_numpy(), native.to_numpy(), atol=1e-5)


def test_hf_key_changes_with_weights(tmp_path):
    path = build_model(tmp_path, "hubert", seed=0)
    store = FeatureStore(tmp_path / "store")
    from featurekit.audio import AudioOptions

    ext = hf(path)
    key = ext.key()
    assert set(key["model"]["weights"]) == {"model.safetensors"}
    assert key["model"]["config"]["config"]["model_type"] == "hubert"
    assert "batch_size" not in key["params"]
    before = ext.key_hash(), store.table("c", ext, "native", AudioOptions()).directory
    out_before = ext.native(signals()[0], SR).values
    build_model(tmp_path, "hubert", seed=1)  # same directory, new weights
    ext2 = hf(path)
    after = ext2.key_hash(), store.table("c", ext2, "native", AudioOptions()).directory
    assert before[0] != after[0] and before[1] != after[1]
    # the new model computes, not a cached one
    assert not np.allclose(out_before, ext2.native(signals()[0], SR).values)


def test_hf_bad_inputs(models, tmp_path, monkeypatch):
    from transformers import BertConfig

    sig = signals((16000,))[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="not a model directory"):
        hf(empty).native(sig, SR)
    bert = tmp_path / "bert"
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32).save_pretrained(bert)
    with pytest.raises(ModelError, match="'bert' model.*not a supported speech encoder"):
        hf(bert).key()
    with pytest.raises(ModelError, match="does not exist"):
        hf(tmp_path / "missing").native(sig, SR)
    with pytest.raises(ModelError, match="no model given"):
        make_extractor("hf_encoder").native(sig, SR)
    no_pre = tmp_path / "nopre"
    no_pre.mkdir()
    (no_pre / "config.json").write_text((models["hubert"] / "config.json").read_text())
    with pytest.raises(ModelError, match="preprocessor_config.json"):
        hf(no_pre).native(sig, SR)
    pre = models["hubert"] / "preprocessor_config.json"
    (no_pre / "preprocessor_config.json").write_text(pre.read_text())
    with pytest.raises(ModelError, match="no weight files"):
        hf(no_pre).native(sig, SR)
    for bad in (3, -4):
        with pytest.raises(ValueError, match=f"lld_layer={bad} is out of range.*0..2"):
            hf(models["hubert"], lld_layer=bad).lld(sig, SR)
    with pytest.raises(ValueError, match="16000 Hz"):
        hf(models["hubert"]).native(sig, 8000)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match="save_pretrained"):
        hf("someorg/not-a-cached-model").key()


# -- select_layers --------------------------------------------------------------------------------
def test_select_layers():
    cols = [f"hf_encoder_m_L{k:02d}_{s}_{d:04d}" for k in range(3) for s in ("mean", "std") for d in range(2)]
    df = pd.DataFrame(np.arange(4 * len(cols), dtype=np.float32).reshape(4, -1), columns=cols)
    assert select_layers(cols, 1) == [c for c in cols if "_L01_" in c]
    assert select_layers(cols, -1) == [c for c in cols if "_L02_" in c]
    assert select_layers(cols, [0, -1]) == [c for c in cols if "_L00_" in c or "_L02_" in c]
    assert list(select_layers(df, 0).columns) == cols[:4]
    mean = select_layers(df, "mean")
    assert list(mean.columns) == ["hf_encoder_m_Lmean_mean_0000", "hf_encoder_m_Lmean_mean_0001"]
    np.testing.assert_allclose(mean.iloc[:, 1],
                               df[[f"hf_encoder_m_L{k:02d}_mean_0001" for k in range(3)]].mean(axis=1))
    for bad in (3, -4, [0, 5]):
        with pytest.raises(ValueError, match="out of range"):
            select_layers(cols, bad)
    with pytest.raises(ValueError, match="no encoder layer columns"):
        select_layers(["a", "b"], 0)
    with pytest.raises(TypeError):
        select_layers(cols, "mean")


# -- backend 2: CTranslate2 -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ct2(models, tmp_path_factory) -> Path:
    """The tiny random Whisper of backend 1, converted to CTranslate2 (2 s window)."""
    ct2 = pytest.importorskip("ctranslate2")
    out = tmp_path_factory.mktemp("ct2") / "tiny-whisper-ct2"
    ct2.converters.TransformersConverter(str(models["whisper"])).convert(str(out), force=True)
    return out


def ct2x(model: Path, **params) -> object:
    return make_extractor("whisper_ct2", model=str(model), threads=1, **params)


def test_ct2_matches_transformers_encoder(models, tiny_ct2):
    a = hf(models["whisper"])
    b = ct2x(tiny_ct2, pad_to="30s", compute_type="float32")
    for sig in signals((9600, 30000)):
        x, y = a.lld(sig, SR), b.lld(sig, SR)
        assert y.values.shape == x.values.shape == (wf.encoder_frames_for(len(sig)), HIDDEN)
        np.testing.assert_allclose(y.values, x.values, atol=1e-3)
    assert b.native_names()[0] == "whisper_ct2_tiny-whisper-ct2_L02_mean_0000"


def test_ct2_tiny_batching_buckets_and_chunks(tiny_ct2):
    sigs = signals((9600, 16000, 16320, 20800, 50000))
    for pad_to in ("30s", "none", 0.5):
        ext = ct2x(tiny_ct2, pad_to=pad_to, batch_size=4)
        batch = ext.native_batch(sigs, SR)
        for vec, sig in zip(batch, sigs):  # a batch only holds inputs of one padded length
            np.testing.assert_allclose(vec.values, ext.native(sig, SR).values, atol=1e-5)
    ext = ct2x(tiny_ct2, pad_to="none")
    assert [ext.input_samples(n) for n in (1, 320, 321)] == [320, 320, 640]
    assert ct2x(tiny_ct2, pad_to=0.5).input_samples(9000) == 16000
    assert ct2x(tiny_ct2, pad_to="30s").input_samples(10) == 32000  # the model's whole window
    long = ext.lld(sigs[-1], SR)  # 3.1 s > 2 s window: chunked and stitched
    assert len(long.values) == wf.encoder_frames_for(50000)
    with pytest.raises(ValueError, match="pad_to"):
        parse_pad_to("sometimes")
    with pytest.raises(ValueError, match=r"\(0, 30\]"):
        parse_pad_to(45)


def test_ct2_bad_inputs(tmp_path, models, monkeypatch):
    sig = signals((16000,))[0]
    with pytest.raises(ModelError, match="no model.bin"):
        ct2x(models["hubert"]).native(sig, SR)
    with pytest.raises(ModelError, match="does not exist"):
        ct2x(tmp_path / "nothing").native(sig, SR)
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    with pytest.raises(ImportError, match=r'pip install "featurekit\[ssl\]"'):
        import_ctranslate2()


def test_ct2_real_tiny_en(whisper_tiny_dir):
    ext = ct2x(whisper_tiny_dir, pad_to="30s")
    short = ct2x(whisper_tiny_dir, pad_to="none")
    sigs = signals((24000, 44800))
    padded = ext.native_batch(sigs, SR)
    names = padded[0].names
    assert len(names) == 2 * 384 and names[0] == "whisper_ct2_faster-whisper-tiny-en_L04_mean_0000"
    assert names[-1] == "whisper_ct2_faster-whisper-tiny-en_L04_std_0383"
    assert np.array_equal(ext.native(sigs[0], SR).values, padded[0].values)  # rerun identical
    frames = short.lld(sigs[1], SR)
    assert frames.values.shape == (wf.encoder_frames_for(44800), 384)
    assert all(np.all(np.isfinite(v.values)) for v in short.native_batch(sigs, SR))
    key = ext.key()
    assert len(key["model"]["weights"]["model.bin"]) == 32 and key["model"]["config"]["encoder_layers"] == 4
    assert ext.key_hash() != short.key_hash() != ct2x(whisper_tiny_dir, compute_type="int8").key_hash()


def test_ct2_short_inputs_track_30s_padding_on_speech(whisper_tiny_dir, emodb_root):
    """Unpadded inputs give embeddings close to Whisper's 30 s-padded condition on real speech."""
    from featurekit.audio import load_audio

    wavs = sorted((emodb_root / "wav").glob("*.wav"))[::150][:3]
    sigs = [load_audio(w) for w in wavs]
    padded = ct2x(whisper_tiny_dir, pad_to="30s").native_batch(sigs, SR)
    short = ct2x(whisper_tiny_dir, pad_to="none").native_batch(sigs, SR)
    for a, b in zip(padded, short):
        assert np.corrcoef(a.values[:384], b.values[:384])[0, 1] > 0.93  # means (measured: 0.96-0.99)
        assert np.corrcoef(a.values[384:], b.values[384:])[0, 1] > 0.97  # standard deviations


def test_store_gc_keeps_current_encoder_tables(models, tmp_path):
    """An hf_encoder table of today's version is judged usable by ``featurekit store gc`` (its
    ``key_excludes`` parameters, e.g. batch_size, are not in the key and must not count as missing)."""
    from featurekit.audio import AudioOptions
    from featurekit.store_maintenance import unusable_reason

    ext = hf(models["wav2vec2"], batch_size=2)
    for kind in ("native", "lld", "mean_std"):
        key = FeatureStore(tmp_path).table("c", ext, kind, AudioOptions()).key
        assert unusable_reason(key) == (None, None), kind


@pytest.mark.parametrize("problem", ["python", "link_out"])
def test_hf_refuses_a_folder_with_code_or_a_link_out(models, tmp_path, problem):
    """The encoder folder rules of fine-tuning hold for hf_encoder too: no Python file (code a
    remote-code loader would import), no symbolic link leaving the folder; refused before any load."""
    import shutil

    from featurekit.extractors.ssl.common import ModelError

    folder = tmp_path / "model"
    shutil.copytree(models["wav2vec2"], folder)
    if problem == "python":
        (folder / "modeling_evil.py").write_text("raise SystemExit('ran')\n")
    else:
        (tmp_path / "secret.json").write_text("{}")
        (folder / "extra.json").symlink_to(tmp_path / "secret.json")
    with pytest.raises(ModelError, match="modeling_evil.py|outside the model folder") as err:
        hf(folder).info()
    assert str(folder) in str(err.value)
    assert hf(models["wav2vec2"]).info()["layers"]  # the untouched folder still loads

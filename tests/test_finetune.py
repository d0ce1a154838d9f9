"""``finetune``: transformers speech encoders fine-tuned end to end (featurekit.heads.finetune).

Every encoder family is a tiny randomly initialised model that the tests build and save with
``save_pretrained`` (no other weights exist on these machines). The task is synthetic: a low tone
against a high tone, with random pitch, phase, loudness, noise and length, spoken by different
"speakers"; training and held-out speakers are disjoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from featurekit.extractors.ssl import ModelError  # noqa: E402
from featurekit.heads.finetune import (  # noqa: E402
    FineTuneClassifier,
    FineTuneRegressor,
    inspect_encoder,
    load_finetuned,
    save_finetuned,
)

SR = 16000
FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper")
HIDDEN = 32
# 3 conv layers, hop 160 samples (100 frames/s)
CONV = dict(conv_dim=(16, 16, 16), conv_stride=(8, 5, 4), conv_kernel=(16, 10, 4))
WHISPER_POSITIONS = 40  # a 0.8 s window
FAST = dict(
    lr=1e-2,
    encoder_lr=5e-4,
    max_epochs=12,
    batch_size=4,
    patience=None,
    dropout=0.0,
    max_duration=0.8,
    n_threads=1,
    device="cpu",
)


def build_model(root: Path, family: str, *, seed: int = 0) -> Path:
    """A tiny random model of ``family`` plus its feature extractor, saved like a hub checkpoint.

    Whisper's weights are drawn with a larger spread (``init_std``) than its default 0.02, with which
    a random encoder's states depend on the positional embeddings almost only.
    """
    import transformers as tf

    torch.manual_seed(seed)
    path = root / family
    if family == "whisper":
        cfg = tf.WhisperConfig(
            d_model=HIDDEN,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            max_source_positions=WHISPER_POSITIONS,
            max_target_positions=16,
            vocab_size=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            init_std=0.3,
        )
        tf.WhisperModel(cfg).save_pretrained(path)
        tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
        return path
    config_cls, model_cls = {
        "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model),
        "hubert": (tf.HubertConfig, tf.HubertModel),
        "wavlm": (tf.WavLMConfig, tf.WavLMModel),
        "data2vec-audio": (tf.Data2VecAudioConfig, tf.Data2VecAudioModel),
    }[family]
    kw = dict(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **CONV)
    if family == "data2vec-audio":
        kw.update(num_conv_pos_embeddings=2, conv_pos_kernel_size=16)
    else:  # wav2vec2-base style (group norm, no attention mask) vs large style (layer norm, masks)
        kw.update(
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            feat_extract_norm="group" if family == "wav2vec2" else "layer",
        )
    model_cls(config_cls(**kw)).save_pretrained(path)
    tf.Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=family != "wav2vec2"
    ).save_pretrained(path)
    return path


def tones(
    speakers: list[str], per_speaker: int, seed: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Low (150-350 Hz) or high (1.5-3 kHz) tones of 0.4-0.7 s with noise; (signals, labels, speakers)."""
    rng = np.random.default_rng(seed)
    xs, labels, groups = [], [], []
    for spk in speakers:
        gain = rng.uniform(0.2, 0.8)
        for k in range(per_speaker):
            high = k % 2
            f = rng.uniform(1500, 3000) if high else rng.uniform(150, 350)
            t = np.arange(int(rng.uniform(0.4, 0.7) * SR)) / SR
            x = gain * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) + 0.03 * rng.standard_normal(
                len(t)
            )
            xs.append(x.astype(np.float32))
            labels.append("high" if high else "low")
            groups.append(spk)
    return xs, np.array(labels), np.array(groups)


TRAIN = tones([f"tr{i}" for i in range(6)], 6, seed=0)
TEST = tones([f"te{i}" for i in range(3)], 6, seed=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {family: build_model(root, family) for family in FAMILIES}


@pytest.fixture(scope="module")
def fitted(models) -> dict[str, FineTuneClassifier]:
    out = {}
    for family, path in models.items():
        clf = FineTuneClassifier(str(path), validation_fraction=0.25, random_state=0, **FAST)
        out[family] = clf.fit(TRAIN[0], TRAIN[1], groups=TRAIN[2])
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_learns_the_task_on_held_out_speakers(fitted, family):
    clf = fitted[family]
    accuracy = float(np.mean(clf.predict(TEST[0]) == TEST[1]))
    assert accuracy >= 0.9, (family, accuracy, clf.history_)
    proba = clf.predict_proba(TEST[0])
    assert proba.shape == (len(TEST[0]), 2) and np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("family", ["wav2vec2", "whisper"])
def test_save_load_predicts_identically_without_the_encoder_folder(fitted, models, family, tmp_path):
    clf = fitted[family]
    out = save_finetuned(clf, tmp_path / "ft")
    assert sorted(p.name for p in out.iterdir()) == ["finetune.json", "network.safetensors"]
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["encoder"]["family"] == family and meta["encoder"]["source_weights"]
    loaded = load_finetuned(out)
    assert np.array_equal(loaded.predict(TEST[0]), clf.predict(TEST[0]))
    np.testing.assert_allclose(
        loaded.predict_proba(TEST[0]), clf.predict_proba(TEST[0]), rtol=1e-6, atol=1e-7
    )


def test_inner_split_is_speaker_disjoint_and_drives_early_stopping(fitted):
    clf = fitted["hubert"]
    train_speakers = set(TRAIN[2][clf.train_index_])
    val_speakers = set(TRAIN[2][clf.validation_index_])
    assert train_speakers and val_speakers and not train_speakers & val_speakers
    assert clf.validation_size_ == len(clf.validation_index_) and all("val_loss" in h for h in clf.history_)
    best = min(range(len(clf.history_)), key=lambda i: clf.history_[i]["val_loss"])
    assert clf.best_epoch_ == best + 1


def test_seeded_fit_is_deterministic_on_cpu(models):
    kw = dict(FAST, max_epochs=2, validation_fraction=None, random_state=3)
    a = FineTuneClassifier(str(models["wavlm"]), **kw).fit(TRAIN[0][:12], TRAIN[1][:12])
    b = FineTuneClassifier(str(models["wavlm"]), **kw).fit(TRAIN[0][:12], TRAIN[1][:12])
    np.testing.assert_array_equal(a.predict_proba(TEST[0]), b.predict_proba(TEST[0]))


def test_regression_head_ccc_and_attention_pooling_with_accumulation(models, tmp_path):
    # target: the tone's class as a number plus a per-utterance jitter; two targets (e.g. arousal, valence)
    xs, labels, groups = TRAIN
    y = np.stack([(labels == "high") * 1.0, (labels == "low") * 0.5], axis=1)
    y += np.random.default_rng(0).normal(0, 0.05, y.shape)
    reg = FineTuneRegressor(
        str(models["wavlm"]),
        loss="ccc",
        pooling="attention",
        accumulate=2,
        validation_fraction=0.25,
        random_state=0,
        **{**FAST, "batch_size": 4},
    )
    reg.fit(xs, y, groups=groups)
    pred = reg.predict(TEST[0])
    assert pred.shape == (len(TEST[0]), 2) and np.isfinite(pred).all()
    truth = (TEST[1] == "high") * 1.0
    assert np.corrcoef(pred[:, 0], truth)[0, 1] > 0.8
    loaded = load_finetuned(save_finetuned(reg, tmp_path / "reg"))
    np.testing.assert_allclose(loaded.predict(TEST[0]), pred, rtol=1e-5, atol=1e-6)


def test_freezing_and_two_learning_rates(models):
    clf = FineTuneClassifier(
        str(models["hubert"]),
        freeze_feature_encoder=True,
        freeze_layers=1,
        **{**FAST, "max_epochs": 1},
        validation_fraction=None,
        random_state=0,
    )
    before = {
        k: v.clone()
        for k, v in torch.nn.Module.state_dict(
            __import__("transformers").AutoModel.from_pretrained(models["hubert"])
        ).items()
    }
    clf.fit(TRAIN[0][:8], TRAIN[1][:8])
    after = {k.removeprefix("encoder."): v for k, v in clf.model_.state_dict().items()}
    conv = [k for k in before if k.startswith("feature_extractor.")]
    first = [k for k in before if k.startswith("encoder.layers.0.")]
    second = [k for k in before if k.startswith("encoder.layers.1.") and k.endswith("weight")]
    assert conv and first and second
    assert all(torch.equal(before[k], after[k]) for k in conv + first)
    assert any(not torch.equal(before[k], after[k]) for k in second)


def test_paths_go_through_the_extraction_audio_path_and_long_inputs_are_chunked(fitted, tmp_path):
    import soundfile as sf

    from featurekit.audio import AudioOptions, load_audio

    clf = fitted["data2vec-audio"]
    x = np.concatenate([TEST[0][1]] * 4)  # 1.6-2.8 s, longer than max_duration=0.8
    path = tmp_path / "long.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    assert np.array_equal(clf.predict([str(path)]), clf.predict([load_audio(path, options=AudioOptions())]))
    assert clf.predict([str(path)])[0] == TEST[1][1]
    center = FineTuneClassifier(**{**clf.get_params(), "long_inputs": "center"})
    for k in ("model_", "encoder_info_", "window_", "classes_", "class_weight_"):
        setattr(center, k, getattr(clf, k))
    assert center.predict([str(path)])[0] == TEST[1][1]


# -- bad encoder folders: a clear error naming the folder and the problem, before any training ----------
def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _no_training(monkeypatch):
    import featurekit.heads.finetune as ft

    def fail(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(ft, "_build_encoder", fail)
    monkeypatch.setattr(ft, "load_audio", fail)


@pytest.mark.parametrize(
    "problem",
    [
        "missing folder",
        "no config",
        "unknown model_type",
        "python file",
        "pickle weights",
        "symlink out",
        "no preprocessor",
        "no weights",
    ],
)
def test_bad_encoder_folder_is_refused_before_training(models, tmp_path, monkeypatch, problem):
    folder = _copy(models["wavlm"], tmp_path / "enc")
    match = {
        "missing folder": "does not exist",
        "no config": "no config.json",
        "unknown model_type": "'bert'.*supported model_type",
        "python file": "Python code.*modeling_evil.py",
        "pickle weights": "pickle-format weights.*pytorch_model.bin",
        "symlink out": "symbolic link.*outside the model folder",
        "no preprocessor": "lacks preprocessor_config.json",
        "no weights": "no \\*.safetensors weights",
    }[problem]
    if problem == "missing folder":
        folder = tmp_path / "nowhere"
    elif problem == "no config":
        (folder / "config.json").unlink()
    elif problem == "unknown model_type":
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    elif problem == "python file":
        (folder / "modeling_evil.py").write_text("import os; os.system('touch /tmp/pwned')\n")
    elif problem == "pickle weights":
        torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    elif problem == "symlink out":
        secret = tmp_path / "secret.json"
        secret.write_text("{}")
        os.symlink(secret, folder / "tokenizer_config.json")
    elif problem == "no preprocessor":
        (folder / "preprocessor_config.json").unlink()
    elif problem == "no weights":
        for p in folder.glob("*.safetensors"):
            p.unlink()
    _no_training(monkeypatch)
    with pytest.raises(ModelError, match=match) as err:
        FineTuneClassifier(str(folder), **FAST).fit(TRAIN[0][:4], TRAIN[1][:4])
    assert str(folder) in str(err.value)
    with pytest.raises(ModelError, match=match):
        inspect_encoder(folder)


def test_bad_parameters_are_refused_before_training(models, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match="max_duration=5.0 s exceeds the longest input"):
        FineTuneClassifier(str(models["whisper"]), **{**FAST, "max_duration": 5.0}).fit(
            TRAIN[0][:4], TRAIN[1][:4]
        )
    with pytest.raises(ValueError, match="pooling must be one of"):
        FineTuneClassifier(str(models["hubert"]), pooling="max").fit(TRAIN[0][:4], TRAIN[1][:4])
    with pytest.raises(ValueError, match="mixed_precision=True needs a CUDA device"):
        FineTuneClassifier(str(models["hubert"]), device="cpu", mixed_precision=True).fit(
            TRAIN[0][:4], TRAIN[1][:4]
        )


# -- the registry: a spec can name it; its params are checked at spec load -------------------------------
def _spec(params: dict) -> dict:
    return {"name": "ft", "seed": 0, "corpus": {"name": "synthetic"},
            "task": {"type": "classification", "target": "label"},
            "protocol": {"name": "loso", "group": "speaker"}, "features": {"sets": ["egemaps"]},
            "evaluation": {"normalisation": ["none"], "bootstrap": 0},
            "models": {"ft": {"model": "finetune", "params": params}}}


def test_spec_params_are_checked_and_the_runner_refuses_raw_audio_before_anything_runs(models):
    from featurekit.evaluation.models import CLASSIFIERS, REGRESSORS
    from featurekit.evaluation.spec import SpecError, validate

    assert CLASSIFIERS.get("finetune").waveforms and REGRESSORS.get("finetune").waveforms
    clf = CLASSIFIERS.get("finetune").build(7, "balanced", model="m", lr=0.01)
    assert isinstance(clf, FineTuneClassifier) and clf.class_weight == "balanced" and clf.random_state == 7
    with pytest.raises(SpecError, match="pooling must be one of"):
        validate(_spec({"model": str(models["wavlm"]), "pooling": "max"}))
    with pytest.raises(SpecError, match="models.ft: 'finetune' fine-tunes a speech encoder on raw audio"):
        validate(_spec({"model": str(models["wavlm"]), "max_duration": 2.0}))

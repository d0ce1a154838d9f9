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
)
from featurekit.heads.finetune_io import load_finetuned, save_finetuned  # noqa: E402

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


# The base-style wav2vec2 (group norm, no masks) is fine-tuned with its convolutional front end trainable.
# Its first convolution is followed by a group norm with one group per channel, over time: every channel
# is scaled to unit variance over the utterance, which removes the channel gains that tell a stationary
# tone's frequency. A pretrained front end learnt its filters with that normalisation; a *random* frozen
# one keeps the task's information or not by the luck of the draw (measured with FAST on this task:
# held-out accuracy 0.67 / 1.0 / 0.94 / 0.78 for model seeds 0-3 frozen, following how much a linear
# probe of the pooled frozen front-end output separates the training set: 0.78 / 0.92 / 0.97 / 0.78, and
# 0.97 / 0.94 / 0.94 / 0.92 with layer norm; benchmarks/finetune_group_norm.py). Trainable, each learns it
# (0.94 / 1.0 / 1.0 / 1.0; seed 0 with training seeds 0-2: 0.94 / 0.94 / 0.89), through the same code path:
# no padding ever reaches it (test_a_model_without_attention_masks_never_sees_padding).
TRAINABLE_FRONT_END = {"wav2vec2"}


@pytest.fixture(scope="module")
def fitted(models) -> dict[str, FineTuneClassifier]:
    out = {}
    for family, path in models.items():
        clf = FineTuneClassifier(str(path), validation_fraction=0.25, random_state=0,
                                 **{**FAST, "freeze_feature_encoder": family not in TRAINABLE_FRONT_END})
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


def test_a_model_without_attention_masks_never_sees_padding(models, monkeypatch):
    """Base-style wav2vec2 (group norm over time in its first convolution, no attention mask): every
    batch that enters it, in training and in prediction, holds inputs of one length (training crops a
    batch to its shortest item; prediction groups equal lengths), so batched predictions equal
    one-by-one predictions. A model with masks (HuBERT here) gets padded batches with their mask."""
    import featurekit.heads.finetune as ft

    lengths: list[list[int]] = []
    forward = ft._FineTune._forward

    def spy(self, net, pieces, device, dtype):
        lengths.append([len(p) for p in pieces])
        return forward(self, net, pieces, device, dtype)

    monkeypatch.setattr(ft._FineTune, "_forward", spy)
    kw = dict(FAST, max_epochs=1, validation_fraction=None, random_state=0, max_duration=None)
    assert len({len(x) for x in TRAIN[0][:8]}) == 8
    clf = FineTuneClassifier(str(models["wav2vec2"]), **kw).fit(TRAIN[0][:8], TRAIN[1][:8])
    assert len(lengths) == 2 and all(len(set(b)) == 1 for b in lengths)
    lengths.clear()
    batched = clf.predict_proba(TEST[0])
    assert lengths and all(len(set(b)) == 1 for b in lengths)
    one_by_one = np.vstack([clf.predict_proba([x]) for x in TEST[0]])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)
    lengths.clear()
    FineTuneClassifier(str(models["hubert"]), **kw).fit(TRAIN[0][:8], TRAIN[1][:8])
    assert any(len(set(b)) > 1 for b in lengths)


def test_paths_go_through_the_extraction_audio_path_and_long_inputs_are_chunked(fitted, tmp_path):
    import soundfile as sf

    from featurekit.audio import AudioOptions, load_audio

    clf = fitted["data2vec-audio"]
    # an utterance of each class that the model gets right, repeated: chunks and centre crop agree with it
    for label in ("low", "high"):
        i = next(i for i, x in enumerate(TEST[0]) if TEST[1][i] == label and clf.predict([x])[0] == label)
        x = np.concatenate([TEST[0][i]] * 4)  # 1.6-2.8 s, longer than max_duration=0.8
        path = tmp_path / f"long-{label}.wav"
        sf.write(path, x, SR, subtype="FLOAT")
        read = load_audio(path, options=AudioOptions())
        assert np.array_equal(clf.predict([str(path)]), clf.predict([read]))
        assert clf.predict([str(path)])[0] == label
        center = FineTuneClassifier(**{**clf.get_params(), "long_inputs": "center"})
        for k in ("model_", "encoder_info_", "window_", "classes_", "class_weight_"):
            setattr(center, k, getattr(clf, k))
        assert center.predict([str(path)])[0] == label


# -- bad encoder folders: a clear error naming the folder and the problem, before any training ----------
def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _no_training(monkeypatch):
    import featurekit.heads.finetune as ft

    def fail(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(ft, "build_encoder", fail)
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


# -- the registry and the evaluation runner: the conditioned audio as the feature set "waveform" ----------
def _spec(params: dict, **changes) -> dict:
    spec = {"name": "ft", "seed": 0, "corpus": {"name": "synthetic"},
            "task": {"type": "classification", "target": "label", "subset": ["sad", "angry"]},
            "protocol": {"name": "loso", "group": "speaker"}, "features": {"sets": ["waveform"]},
            "evaluation": {"normalisation": ["none"], "bootstrap": 0},
            "models": {"ft": {"model": "finetune", "params": params}}}
    spec.update(changes)
    return spec


def test_spec_params_and_waveform_sets_are_checked_at_spec_load(models):
    from featurekit.evaluation.models import CLASSIFIERS, REGRESSORS
    from featurekit.evaluation.spec import SpecError, validate

    assert CLASSIFIERS.get("finetune").waveforms and REGRESSORS.get("finetune").waveforms
    clf = CLASSIFIERS.get("finetune").build(7, "balanced", model="m", lr=0.01)
    assert isinstance(clf, FineTuneClassifier) and clf.class_weight == "balanced" and clf.random_state == 7
    enc = {"model": str(models["wavlm"])}
    spec = validate(_spec(enc))
    assert [fs.name for fs in spec.feature_sets] == ["waveform"] and spec.feature_sets[0].waveforms
    with pytest.raises(SpecError, match="pooling must be one of"):
        validate(_spec({**enc, "pooling": "max"}))
    svm = {"svm": {"sets": ["waveform"]}}
    for doc, message in [
        (_spec(enc, models={"ft": {"model": "finetune", "params": enc}, **svm}),
         "models.svm.sets: 'waveform' is the raw audio, which 'svm' does not take"),
        (_spec(enc, models={"svm": {}}), "'waveform' .* needs a model that takes raw audio"),
        (_spec(enc, features={"sets": ["egemaps"]}),
         "models.ft: 'finetune' takes the conditioned audio: add"),
        (_spec(enc, features={"sets": ["waveform", "egemaps"]},
               models={"ft": {"model": "finetune", "params": enc, "sets": ["waveform", "egemaps"]}}),
         r"models.ft.sets: \['egemaps'\] are features"),
        (_spec(enc, evaluation={"normalisation": ["none", "speaker"], "bootstrap": 0}),
         r"models.ft: normalisation \['speaker'\] is not defined for raw audio"),
        (_spec(enc, evaluation={"bootstrap": 0}), r"normalisation \['global'\] is not defined for raw"),
        (_spec({**enc, "audio": {"trim_db": 30}}), "models.ft.params.audio: the evaluation conditions"),
        (_spec(enc, audio={"sample_rate": 8000}), "audio.sample_rate = 8000: 'finetune' takes 16 kHz"),
        (_spec(enc, features={"sets": ["waveform"], "late_fusion": [["waveform", "egemaps"]]}),
         "takes part in no late fusion"),
        (_spec(enc, features={"sets": ["waveform+egemaps"]}), "stands alone"),
    ]:
        with pytest.raises(SpecError, match=message):
            validate(doc)


def test_loso_run_fine_tunes_on_conditioned_audio_and_no_test_utterance_reaches_a_fit(
    models, tmp_path, monkeypatch
):
    """featurekit.evaluation.runner.run on a synthetic corpus with the feature set "waveform": every
    fit (with its inner early-stopping split) sees its fold's training speakers' audio only, exactly
    as load_audio conditions it with the spec's [audio]; the prediction sees the test speaker's."""
    import hashlib

    import pandas as pd

    from featurekit.audio import AudioOptions, load_audio
    from featurekit.corpora.synthetic import make_synthetic_corpus
    from featurekit.evaluation import runner as R
    from featurekit.evaluation.spec import validate

    root = tmp_path / "corpus"
    make_synthetic_corpus(root, n_speakers=3, n_per_class=2, duration=0.5, seed=1)
    params = {"model": str(models["wav2vec2"]), **{**FAST, "max_epochs": 2}, "validation_fraction": 0.5}
    spec = validate(_spec(params, audio={"trim_db": 40.0}))
    manifest = R.experiment_manifest(spec, root)
    audio = AudioOptions(trim_db=40.0)

    def key(x) -> str:
        return hashlib.sha1(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()

    speaker_of = {key(load_audio(p, options=audio)): spk
                  for p, spk in zip(manifest["path"], manifest["speaker"])}
    assert len(speaker_of) == len(manifest) == 12
    seen: list[tuple[str, list[str], np.ndarray | None]] = []
    fit, outputs = FineTuneClassifier.fit, FineTuneClassifier._outputs

    def spy_fit(self, X, y, groups=None):
        seen.append(("fit", [speaker_of[key(x)] for x in X], None if groups is None else np.asarray(groups)))
        return fit(self, X, y, groups=groups)

    def spy_outputs(self, X):
        seen.append(("predict", [speaker_of[key(x)] for x in X], None))
        return outputs(self, X)

    monkeypatch.setattr(FineTuneClassifier, "fit", spy_fit)
    monkeypatch.setattr(FineTuneClassifier, "_outputs", spy_outputs)
    results = R.run(spec, root, tmp_path / "out", store=tmp_path / "store", jobs=1, progress=False)

    blocks: list[list] = []  # one per outer fold: its fit, then the predictions made with it
    for kind, who, groups in seen:
        if kind == "fit":
            blocks.append([who, groups, []])
        else:
            blocks[-1][2].append(who)
    assert len(blocks) == 3
    for who, groups, predictions in blocks:
        assert predictions and all(len(set(p)) == 1 and len(p) == 4 for p in predictions)
        test_speaker = predictions[0][0]
        assert all(p[0] == test_speaker for p in predictions)
        assert test_speaker not in who and len(who) == 8  # the other two speakers, every utterance
        assert list(groups) == who  # the speakers reach the inner early-stopping split as groups
    assert sorted(p[0][0] for _, _, p in blocks) == sorted(set(manifest["speaker"]))
    assert not (tmp_path / "store").exists() or not any(
        "waveform" in str(p) for p in (tmp_path / "store").rglob("*"))
    uar = results[(results.metric == "uar") & (results.fold == "pooled")]["value"]
    assert len(uar) == 1 and 0.0 <= float(uar.iloc[0]) <= 1.0
    assert (tmp_path / "out" / "predictions.csv").exists()
    assert set(pd.read_csv(tmp_path / "out" / "predictions.csv")["feature_set"]) == {"waveform"}


def test_unreadable_audio_is_named_before_any_fit(models, tmp_path, monkeypatch):
    from featurekit.corpora.synthetic import make_synthetic_corpus
    from featurekit.evaluation import runner as R
    from featurekit.evaluation.spec import validate

    root = tmp_path / "corpus"
    make_synthetic_corpus(root, n_speakers=2, n_per_class=1, duration=0.3)
    spec = validate(_spec({"model": str(models["hubert"])}))
    manifest = R.experiment_manifest(spec, root)
    bad = Path(manifest["path"].iloc[1])
    bad.write_bytes(b"RIFF not really a wav file")
    _no_training(monkeypatch)
    message = rf"(?s)reading the audio failed for 1 file\(s\):.*{bad.name}: cannot decode"
    with pytest.raises(R.DataError, match=message):
        R.run(spec, root, tmp_path / "out", store=tmp_path / "store", jobs=1, progress=False)
    assert not (tmp_path / "out" / "cells").exists() or not any((tmp_path / "out" / "cells").iterdir())



def test_train_and_predict_a_fine_tuned_encoder_without_pickle(models, tmp_path):
    """featurekit train on the set "waveform" saves the network as a state dict + json (hashed in
    model.json, no pickle anywhere); predict reads it verified and conditions the audio as training did."""
    from featurekit.audio import AudioOptions, load_audio
    from featurekit.corpora.synthetic import make_synthetic_corpus
    from featurekit.deploy import predict, train
    from featurekit.deploy.bundle import load_model
    from featurekit.deploy.trust import ModelLoadError
    from featurekit.evaluation.spec import validate

    root = tmp_path / "corpus"
    manifest = make_synthetic_corpus(root, n_speakers=2, n_per_class=2, duration=0.4, seed=2)
    params = {"model": str(models["hubert"]), **{**FAST, "max_epochs": 2}, "validation_fraction": None}
    spec = validate(_spec(params, audio={"trim_db": 40.0}))
    out = train(spec, root=root, out_dir=tmp_path / "model", store=tmp_path / "store", jobs=1)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["head-label/finetune.json", "head-label/network.safetensors", "model.json",
                     "pipeline-label.skops"]
    meta = json.loads((out / "model.json").read_text())
    assert meta["feature_set"]["waveform"] and meta["normalisation"]["name"] == "none"
    assert set(meta["files"]) == set(files) - {"model.json"}
    loaded = load_model(out)
    network = loaded.pipelines["label"].steps[-1][1]
    assert isinstance(network, FineTuneClassifier)
    paths = [str(p) for p in manifest["path"].iloc[:4]]
    got = predict(out, paths)
    signals = [load_audio(p, options=AudioOptions(trim_db=40.0)) for p in paths]
    x = np.empty(len(signals), dtype=object)
    for i, signal in enumerate(signals):
        x[i] = signal
    expected = [loaded.classes[i] for i in network.predict(x)]
    assert got[got.level == "file"]["label"].tolist() == expected
    weights = out / "head-label" / "network.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelLoadError, match="network.safetensors"):
        load_model(out)

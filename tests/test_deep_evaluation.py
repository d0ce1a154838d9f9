"""Spectrogram presets and augmentation in specs and evaluation runs: errors before any fit, and
augmentation that stays inside the training folds."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from featurekit.corpora.synthetic import make_synthetic_corpus
from featurekit.evaluation import DataError, SpecError, run, validate
from featurekit.evaluation import runner as R
from featurekit.heads import TorchClassifier
from featurekit.heads.modules import SpecAugment

torch.set_num_threads(1)

# the published extractor parameters of the spectrogram presets (window 1024, hop 256)
PUBLISHED = {"n_fft": 1024, "win_length": 1024, "hop_length": 256}
SMALL_CNN = "conv2d(4, 3) -> batchnorm2d -> activation(relu) -> maxpool2d(2) -> global_avg_pool"

BASE = {
    "name": "deep",
    "seed": 0,
    "corpus": {"name": "synthetic"},
    "task": {"type": "classification", "target": "label"},
    "protocol": {"name": "loso", "group": "speaker"},
    "features": {"sets": ["logmel.lld"]},
    "extractors": {"logmel": dict(PUBLISHED, n_mels=32), "mfcc": dict(PUBLISHED)},
    "evaluation": {"normalisation": ["global"], "bootstrap": 0},
    "models": {"cnn": {"model": "cnn_spec", "params": {"layers": SMALL_CNN, "fixed_len": 40, "max_epochs": 2,
                                                      "validation_fraction": None}}},
}


def doc(**changes) -> dict:
    d = copy.deepcopy(BASE)
    d.update(changes)
    return d


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_synthetic_corpus(root, n_speakers=3, n_per_class=2, duration=0.8)


def test_published_extractor_parameters_and_presets_validate():
    presets = ("cnn_lstm_mel", "fcn_mfcc", "cnn_att_mfcc", "cnn_spec", "vgg_mel")
    spec = validate(doc(features={"sets": ["logmel.lld", "mfcc.lld"]}, models={name: {} for name in presets}))
    assert spec.extractors["logmel"]["hop_length"] == 256 and spec.models["fcn_mfcc"]["model"] == "fcn_mfcc"
    with pytest.raises(SpecError, match=r"extractors\.logmel\.hop"):
        validate(doc(extractors={"logmel": {"hop": 256}}))


@pytest.mark.parametrize(("changes", "message"), [
    ({"features": {"sets": ["egemaps"]}},
     r"models\.cnn: 'cnn_spec' takes frame sequences only .* but features\.sets has none: \['egemaps'\]"),
    ({"features": {"sets": ["egemaps", "logmel.lld"]},
      "models": {"cnn": {"model": "cnn_spec", "sets": ["egemaps"]}}},
     r"models\.cnn\.sets: \['egemaps'\] are vector feature sets"),
    ({"augmentation": {"spec_augment": {"time_mask": 2}}},
     r"augmentation\.spec_augment.*unknown key 'time_mask'.*time_masks"),
    ({"augmentation": {"spec_augment": {"time_masks": -1}}}, r"augmentation\.spec_augment\.time_masks"),
    ({"augmentation": {"spec_augment": {"time_masks": 2.0}}}, r"augmentation\.spec_augment\.time_masks"),
    ({"augmentation": {"waveform": {"noise": 1}}}, r"augmentation.waveform.noise: unknown key 'noise'"),
    ({"augmentation": {"spec_augment": {"time_masks": 1, "time_mask_width": 4}, "models": ["cnnn"]}},
     r"augmentation\.models\[0\]: unknown model entry 'cnnn'"),
    ({"features": {"sets": ["egemaps", "logmel.lld"]},
      "models": {"svm": {}, "cnn": {"model": "cnn_spec"}},
      "augmentation": {"spec_augment": {"time_masks": 1, "time_mask_width": 4}, "models": ["svm"]}},
     r"augmentation\.models\[0\]: 'svm' is not a torch head on frame sequences"),
    ({"features": {"sets": ["egemaps", "logmel.lld"]}, "models": {"mlp": {"model": "torch_mlp"}},
      "augmentation": {"spec_augment": {"time_masks": 1, "time_mask_width": 4}, "models": ["mlp"]}},
     r"augmentation\.models\[0\]: 'mlp' also runs on the vector feature sets \['egemaps'\]"),
    ({"models": {"cnn": {"model": "cnn_spec", "params": {"time_masks": 1}}},
      "augmentation": {"spec_augment": {"time_masks": 1, "time_mask_width": 4}}},
     r"models\.cnn: \['time_masks'\] also set by augmentation"),
    ({"models": {"cnn": {"model": "vgg_mel", "params": {"crop": "middle"}}}},
     r"models\.cnn\.params\.crop: crop must be one of start, random, got 'middle'"),
    ({"models": {"cnn": {"model": "cnn_att_mfcc", "params": {"crop": "random", "max_epochs": 2}}}},
     r"models\.cnn\.params\.crop: crop='random' takes windows of fixed_len frames; set fixed_len"),
    ({"models": {"cnn": {"model": "vgg_mel", "params": {"lr_schedule": "step"}}}},
     r"models\.cnn\.params\.lr_schedule: lr_schedule must be one of constant, cosine"),
])
def test_deep_spec_errors_before_anything_runs(changes, message):
    with pytest.raises(SpecError, match=message):
        validate(doc(**changes))


def test_augmentation_section_resolves_into_the_selected_models_only():
    plain = validate(doc(models={"cnn": {"model": "cnn_spec"}, "cnn_aug": {"model": "cnn_spec"}}))
    aug = validate(doc(models={"cnn": {"model": "cnn_spec"}, "cnn_aug": {"model": "cnn_spec"}},
                       augmentation={"spec_augment": {"time_masks": 2, "time_mask_width": 8},
                                     "models": ["cnn_aug"]}))
    assert aug.models["cnn"] == plain.models["cnn"]  # the ablation row keeps its digest
    assert aug.models["cnn_aug"]["params"] == {"time_masks": 2, "time_mask_width": 8, "freq_masks": 0,
                                               "freq_mask_width": 0}
    cells = {c.model: c for c in R.plan_cells(aug)}
    plain_cells = {c.model: c for c in R.plan_cells(plain)}
    assert cells["cnn"].digest(aug) == plain_cells["cnn"].digest(plain)
    assert cells["cnn_aug"].digest(aug) != plain_cells["cnn_aug"].digest(plain)


def test_crop_longer_than_every_file_fails_before_any_fit(corpus, store, tmp_path, monkeypatch):
    root, _ = corpus

    def no_fit(self, *args, **kwargs):
        raise AssertionError("fit was called")

    monkeypatch.setattr(TorchClassifier, "fit", no_fit)
    spec = validate(doc(models={"cnn": {"model": "cnn_spec", "grid": {"fixed_len": [20, 400]}}}))
    with pytest.raises(DataError, match=r"models\.cnn on logmel\.lld: fixed_len=400 frames is longer than "
                                        r"every input sequence \(the longest has \d+ frames\)"):
        run(spec, root, tmp_path / "o", store=store, jobs=1, progress=False)
    assert not list((tmp_path / "o" / "cells").glob("*.json"))


def test_no_test_fold_utterance_is_augmented_or_reaches_a_fit(corpus, store, tmp_path, monkeypatch):
    """Every fit sees exactly the training speakers of its fold; SpecAugment runs only inside fits
    (so only on their training data), never while predicting the test fold."""
    root, manifest = corpus
    spec = validate(doc(augmentation={"spec_augment": {"time_masks": 2, "time_mask_width": 5, "freq_masks": 1,
                                                       "freq_mask_width": 4}}))
    data = R.FeatureData.load(spec, R.prepare_manifest(spec, manifest), R.FeatureStore(store),
                         progress=False)
    seqs = data.sequences(spec.feature_sets[0])
    speaker_of = {seq.tobytes(): spk for seq, spk in zip(seqs, data.manifest["speaker"])}
    fits, augmented, state = [], [], {"in_fit": False}
    fit, forward = TorchClassifier.fit, SpecAugment.forward

    def recording_fit(self, X, y, groups=None):
        fits.append(sorted({speaker_of[np.asarray(x, dtype=np.float32).tobytes()] for x in X}))
        state["in_fit"] = True
        try:
            return fit(self, X, y, groups=groups)
        finally:
            state["in_fit"] = False

    def recording_forward(self, x, lengths):
        augmented.append(state["in_fit"])
        return forward(self, x, lengths)

    monkeypatch.setattr(TorchClassifier, "fit", recording_fit)
    monkeypatch.setattr(SpecAugment, "forward", recording_forward)
    run(spec, root, tmp_path / "o", store=store, jobs=1, progress=False)
    speakers = sorted(set(manifest["speaker"]))
    # jobs=1 runs the folds in order, one fit each (no grid): fold k leaves out speakers[k]
    assert fits == [[s for s in speakers if s != test] for test in speakers]
    assert augmented and all(augmented)

"""Tests for featurekit.heads: torch heads as scikit-learn estimators."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from featurekit.heads import (
    PRESETS,
    TorchClassifier,
    TorchRegressor,
    ccc_loss,
    load_head,
    make_head,
    save_head,
)
from featurekit.heads.data import pad_sequences, validate_sequences
from featurekit.heads.estimators import EXPECTED_FAILED_CHECKS, _TorchHead
from featurekit.heads.layers import LAYER_REGISTRY, build_network, format_specs, parse_layers
from featurekit.heads.losses import concordance_cc

# Small CPUs: one torch thread is much faster than two contending ones for these tiny networks.
torch.set_num_threads(1)
THREADS = 1


def _objects(seqs: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(seqs), dtype=object)
    out[:] = seqs
    return out


def order_task(n: int, seed: int, n_features: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length sequences (12-39 frames) of noise with two bumps two frames apart at a random
    position: class 0 when channel 0 bumps first, class 1 when channel 1 does."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        length = int(rng.integers(12, 40))
        seq = rng.normal(0.0, 0.3, (length, n_features)).astype(np.float32)
        label = i % 2
        pos = int(rng.integers(0, length - 3))
        first, second = (0, 1) if label == 0 else (1, 0)
        seq[pos, first] += 2.0
        seq[pos + 2, second] += 2.0
        seqs.append(seq)
        labels.append(label)
    return _objects(seqs), np.array(labels)


def vad_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2-D features and three targets (valence, arousal, dominance), each driven by its own features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    Y = np.column_stack([X[:, 0] + 0.5 * X[:, 1], np.tanh(X[:, 2]) * 2 + 1, X[:, 3] * X[:, 4]])
    return X, Y + rng.normal(0, 0.05, Y.shape)


def ccc_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Closed-form concordance correlation coefficient (population moments)."""
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (x.var() + y.var() + (mx - my) ** 2)


# --------------------------------------------------------------------------------------------- specs

def test_registry_holds_all_layer_kinds():
    kinds = {"dense", "dropout", "lstm", "gru", "conv1d", "batchnorm", "layernorm", "last_pool", "mean_pool",
             "max_pool", "attention_pool", "stats_pool"}
    assert isinstance(LAYER_REGISTRY, dict)
    assert kinds <= set(LAYER_REGISTRY)


@pytest.mark.parametrize("spec, canonical", [
    ("gru(128, bidirectional) -> attention_pool -> dense(64) -> dropout(0.3)",
     "gru(hidden=128, bidirectional=true) -> attention_pool -> dense(units=64) -> dropout(p=0.3)"),
    ("conv1d(64, 5, stride=2, dilation=2) -> max_pool -> dense(32, tanh)",
     "conv1d(channels=64, kernel=5, stride=2, dilation=2) -> max_pool -> dense(units=32, activation=tanh)"),
    ("lstm(16, layers=2, dropout=0.1, bidirectional=false) -> last_pool",
     "lstm(hidden=16, layers=2, dropout=0.1) -> last_pool"),
    (["dense(256)", "dropout(0.3) -> batchnorm", "layernorm"],
     "dense(units=256) -> dropout(p=0.3) -> batchnorm -> layernorm"),
    ("", ""),
])
def test_parse_layers(spec, canonical):
    assert format_specs(parse_layers(spec)) == canonical


@pytest.mark.parametrize("spec, token", [
    ("dense(64", "end of spec"),
    ("dense(64,,)", "','"),
    ("grux(3)", "'grux'"),
    ("dense(6.5)", "'6.5'"),
    ("dense(64) -> @", "'@'"),
    ("dense(units=64, foo=1)", "'foo'"),
    ("dense(64) dense(3)", "'dense' at position 10"),
    ("dense(64, tanh, 3)", "'3'"),
    ("dense(64, swish)", "'swish'"),
    ("dropout(1.5)", "'1.5'"),
    ("gru(8, bidirectional=maybe)", "'maybe'"),
    ("mean_pool -> gru(8)", "'gru(8)'"),
    ("gru(8) -> last_pool -> max_pool", "'max_pool'"),
    ("dense", "'units'"),
    ("gru(8, dropout=0.2)", "layers > 1"),
])
def test_parse_errors_name_the_bad_token(spec, token):
    with pytest.raises(ValueError) as err:
        parse_layers(spec)
    assert token in str(err.value)


def test_default_pooling_is_inserted():
    _, specs = build_network("gru(8) -> dense(4)", 3, 2)
    assert format_specs(specs) == "gru(hidden=8) -> last_pool -> dense(units=4)"
    _, specs = build_network("conv1d(8, 3) -> dense(4)", 3, 2)
    assert format_specs(specs) == "conv1d(channels=8, kernel=3) -> mean_pool -> dense(units=4)"
    _, specs = build_network("dense(4)", 3, 2)
    assert format_specs(specs) == "mean_pool -> dense(units=4)"


def test_bad_layers_param_errors_at_fit():
    X, y = vad_task(20, 0)
    with pytest.raises(ValueError, match="'@'"):
        TorchRegressor("dense(8) -> @").fit(X, y[:, 0])


# --------------------------------------------------------------------------------------------- learning

@pytest.mark.parametrize("spec", [
    "gru(16, bidirectional) -> attention_pool -> dense(16)",
    "conv1d(16, 5) -> conv1d(16, 3) -> mean_pool -> dense(16)",
])
def test_sequence_task_is_learnt(spec):
    X, y = order_task(200, 0)
    Xt, yt = order_task(200, 1)
    clf = TorchClassifier(spec, lr=1e-2, max_epochs=12, patience=None, random_state=0, n_threads=THREADS)
    clf.fit(X, y)
    assert clf.input_kind_ == "sequences"
    assert clf.n_features_in_ == 3
    assert clf.score(Xt, yt) >= 0.9


def test_dense_head_on_vectors_and_sequence_body_on_vectors():
    X, Y = vad_task(120, 0)
    y = (Y[:, 0] > 0).astype(int)
    for spec in (PRESETS["torch_mlp"], "gru(8) -> dense(8)", "conv1d(8, 3) -> max_pool"):
        clf = TorchClassifier(spec, lr=1e-2, max_epochs=15, random_state=0, n_threads=THREADS).fit(X, y)
        assert clf.input_kind_ == "vectors"
        assert clf.predict_proba(X).shape == (120, 2)
        assert clf.score(X, y) > 0.8


def test_sequence_input_forms_agree(capsys):
    X, y = order_task(30, 0)
    equal = [s[:12] for s in X]  # every sequence has >= 12 frames
    clf = TorchClassifier("gru(4) -> max_pool", max_epochs=2, random_state=0, n_threads=THREADS, verbose=1)
    clf.fit(equal, y)
    assert "epoch 2/2" in capsys.readouterr().out
    expected = clf.predict_proba(_objects(equal))
    for form in (equal, tuple(equal), np.stack(equal), [torch.from_numpy(s) for s in equal]):
        np.testing.assert_allclose(clf.predict_proba(form), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0)


# --------------------------------------------------------------------------------------------- padding

@pytest.mark.parametrize("spec", [
    "gru(8, bidirectional) -> attention_pool -> dense(8)",
    "lstm(8, layers=2, bidirectional) -> last_pool",
    "gru(8) -> dense(8)",
    "conv1d(8, 5) -> conv1d(8, 4, stride=2, dilation=2) -> max_pool -> dense(8)",
    "dense(8) -> batchnorm -> layernorm -> conv1d(8, 3) -> mean_pool -> batchnorm",
    "conv1d(8, 3) -> attention_pool(hidden=4)",
    "conv1d(8, 3) -> stats_pool -> dense(8)",
])
def test_padding_does_not_change_predictions(spec):
    X, y = order_task(40, 0)
    clf = TorchClassifier(spec, max_epochs=2, random_state=0, n_threads=THREADS).fit(X, y)
    rng = np.random.default_rng(5)
    long = rng.normal(size=(400, 3)).astype(np.float32)
    for short in (X[0], X[1][:3], X[2][:1]):
        alone = clf.predict_proba(_objects([short]))[0]
        batched = clf.predict_proba(_objects([long, short]))[1]
        np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-5)


def test_stats_pool_is_mean_and_std_of_the_valid_frames():
    from featurekit.heads.modules import StatsPool

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(9, 3))
    padded, lengths = pad_sequences([a.astype(np.float32), b.astype(np.float32)])
    out, _ = StatsPool()(torch.from_numpy(padded).double(), torch.from_numpy(lengths))
    for i, x in enumerate((a, b)):
        np.testing.assert_allclose(out[i, :3].numpy(), x.mean(0), atol=1e-6)
        np.testing.assert_allclose(out[i, 3:].numpy(), np.sqrt(x.var(0) + 1e-6), atol=1e-6)
    net, _ = build_network("stats_pool -> dense(4)", 3, 2)
    assert net(torch.from_numpy(padded), torch.from_numpy(lengths)).shape == (2, 2)


def test_padding_in_the_network_itself():
    """The float32 network (as used in training) is padding-invariant too, not only float64 predict."""
    net, _ = build_network("conv1d(8, 5) -> gru(8, bidirectional) -> attention_pool -> dense(4)", 3, 2)
    net.eval()
    rng = np.random.default_rng(0)
    short, long = rng.normal(size=(7, 3)), rng.normal(size=(50, 3))
    with torch.no_grad():
        alone = net(torch.tensor(short[None], dtype=torch.float32), torch.tensor([7]))
        padded, lengths = pad_sequences([short.astype(np.float32), long.astype(np.float32)])
        batched = net(torch.from_numpy(padded), torch.from_numpy(lengths))
    np.testing.assert_allclose(batched[0].numpy(), alone[0].numpy(), atol=1e-5)


# --------------------------------------------------------------------------------------------- seeds, threads

def test_same_seed_gives_identical_predictions():
    X, y = order_task(60, 0)
    spec = "conv1d(8, 3) -> gru(8) -> attention_pool -> dense(8) -> dropout(0.3)"
    runs = [TorchClassifier(spec, max_epochs=3, random_state=7, n_threads=THREADS).fit(X, y).predict_proba(X)
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    other = TorchClassifier(spec, max_epochs=3, random_state=8, n_threads=THREADS).fit(X, y).predict_proba(X)
    assert not np.array_equal(runs[0], other)


def test_global_torch_state_is_restored():
    X, Y = vad_task(40, 0)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    TorchRegressor("dense(8) -> dropout(0.5)", max_epochs=2, random_state=0, n_threads=2).fit(X, Y)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.rand(3), expected)  # fit used a forked RNG


# --------------------------------------------------------------------------------------------- CCC

def test_ccc_matches_closed_form():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 3))
    p = 0.7 * y + rng.normal(0.3, 0.5, size=(50, 3))
    got = concordance_cc(torch.tensor(p), torch.tensor(y), eps=0.0).numpy()
    expected = [ccc_numpy(p[:, k], y[:, k]) for k in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    weights = (0.5, 0.3, 0.2)
    loss = ccc_loss(torch.tensor(p), torch.tensor(y), task_weights=weights, eps=0.0).item()
    assert loss == pytest.approx(sum(w * (1 - c) for w, c in zip(weights, expected)), rel=1e-12)
    assert ccc_loss(torch.tensor(p[:, 0]), torch.tensor(y[:, 0]), eps=0.0).item() == \
        pytest.approx(1 - expected[0], rel=1e-12)
    assert concordance_cc(torch.tensor(y), torch.tensor(y)).numpy() == pytest.approx(1.0)


def test_ccc_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    p = torch.tensor(rng.normal(size=(12, 2)), dtype=torch.float64, requires_grad=True)
    y = torch.tensor(rng.normal(size=(12, 2)), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda q: ccc_loss(q, y, task_weights=(0.7, 0.3)), (p,))
    assert torch.autograd.gradcheck(lambda q: ccc_loss(q, y), (p,))


# --------------------------------------------------------------------------------------------- regression

def test_multitask_regression_with_task_weights():
    X, Y = vad_task(300, 0)
    Xt, Yt = vad_task(200, 1)
    kwargs = dict(layers="dense(32) -> dense(32)", lr=1e-2, max_epochs=40, random_state=0, n_threads=THREADS)
    reg = TorchRegressor(task_weights=(0.4, 0.4, 0.2), **kwargs).fit(X, Y)
    pred = reg.predict(Xt)
    assert pred.shape == (200, 3) and pred.dtype == np.float64
    cccs = [ccc_numpy(pred[:, k], Yt[:, k]) for k in range(3)]
    assert min(cccs) > 0.85
    # the weights steer training: a target with weight 0 is not learnt
    valence_only = TorchRegressor(task_weights=(1.0, 0.0, 0.0), **kwargs).fit(X, Y).predict(Xt)
    assert ccc_numpy(valence_only[:, 0], Yt[:, 0]) > 0.9
    assert ccc_numpy(valence_only[:, 2], Yt[:, 2]) < 0.5
    with pytest.raises(ValueError, match="task_weights has 2 entries"):
        TorchRegressor(task_weights=(1.0, 1.0), **kwargs).fit(X, Y)


@pytest.mark.parametrize("loss", ["ccc", "mse"])
def test_regression_on_sequences_and_1d_output(loss):
    X, _ = order_task(80, 0)
    y = np.array([s[:, 0].mean() * 10 for s in X])
    reg = TorchRegressor("conv1d(8, 3) -> mean_pool -> dense(8)", loss=loss, lr=1e-2, max_epochs=30,
                         random_state=0, n_threads=THREADS).fit(X, y)
    pred = reg.predict(X)
    assert pred.shape == (80,)
    assert ccc_numpy(pred, y) > 0.8


# --------------------------------------------------------------------------------------------- save / load

def test_save_load_classifier_gives_identical_predictions(tmp_path):
    X, y = order_task(60, 0)
    labels = np.array(["neutral", "angry"])[y]
    clf = make_head("gru", layers="gru(8, bidirectional) -> attention_pool -> dense(8) -> dropout(0.3)",
                    max_epochs=2, random_state=0, class_weight={"angry": 2.0}, n_threads=THREADS)
    clf.fit(X, labels)
    save_head(clf, tmp_path / "head")
    meta = json.loads((tmp_path / "head" / "head.json").read_text())
    assert meta["estimator"] == "TorchClassifier"
    loaded = load_head(tmp_path / "head")
    assert isinstance(loaded, TorchClassifier)
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_save_load_regressor_gives_identical_predictions(tmp_path):
    X, Y = vad_task(60, 0)
    reg = TorchRegressor("dense(16) -> batchnorm -> dropout(0.2)", task_weights=(0.5, 0.3, 0.2), max_epochs=3,
                         random_state=0, n_threads=THREADS).fit(X, Y)
    loaded = load_head(save_head(reg, tmp_path))
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.task_weights == (0.5, 0.3, 0.2)


# --------------------------------------------------------------------------------------------- seed ensembles

def test_seed_ensemble_averages_member_probabilities(tmp_path):
    from featurekit.heads.modules import MemberAverage

    X, y = order_task(60, 0)
    speakers = np.repeat(np.arange(6), 10)
    spec = "stats_pool -> dense(8) -> dropout(0.2)"
    kw = dict(max_epochs=4, random_state=3, n_threads=THREADS)
    ens = TorchClassifier(spec, n_members=3, **kw).fit(X, y, groups=speakers)
    assert isinstance(ens.model_, MemberAverage) and len(ens.model_.members) == 3
    assert len(ens.history_) == 3 and len(ens.best_epoch_) == 3 and len(ens.validation_size_) == 3
    # each member: its own seed, hence its own weights (and validation speakers)
    w = [m.output.weight.detach().numpy() for m in ens.model_.members]
    assert not np.array_equal(w[0], w[1]) and not np.array_equal(w[1], w[2])
    # member 0 is exactly the single head with the same random_state
    single = TorchClassifier(spec, **kw).fit(X, y, groups=speakers)
    np.testing.assert_array_equal(w[0], single.model_.output.weight.detach().numpy())
    # the ensemble's probabilities are the mean of the members' softmax outputs
    members = []
    for m in ens.model_.members:
        one = TorchClassifier(spec, **kw).fit(X[:10], y[:10])  # a fitted shell; swap in the member
        one.model_ = m
        one.classes_ = ens.classes_
        members.append(one.predict_proba(X))
    np.testing.assert_allclose(ens.predict_proba(X), np.mean(members, axis=0), atol=1e-10)
    np.testing.assert_array_equal(ens.predict(X), ens.classes_[np.mean(members, axis=0).argmax(1)])
    # reruns are identical; save and load keep the predictions
    again = TorchClassifier(spec, n_members=3, **kw).fit(X, y, groups=speakers)
    np.testing.assert_array_equal(again.predict_proba(X), ens.predict_proba(X))
    loaded = load_head(save_head(ens, tmp_path / "ens"))
    np.testing.assert_array_equal(loaded.predict_proba(X), ens.predict_proba(X))


def test_seed_ensemble_regressor_averages_predictions(tmp_path):
    X, Y = vad_task(60, 0)
    reg = TorchRegressor("dense(16)", n_members=2, max_epochs=3, random_state=0, n_threads=THREADS).fit(X, Y)
    scale, mean = reg.y_scale_, reg.y_mean_
    with torch.no_grad():
        x = torch.as_tensor(X, dtype=torch.float32)[:, None, :]
        lengths = torch.ones(len(X), dtype=torch.long)
        outs = [copy.deepcopy(m).double()(x.double(), lengths).numpy() for m in reg.model_.members]
    np.testing.assert_allclose(reg.predict(X), np.mean(outs, axis=0) * scale + mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(load_head(save_head(reg, tmp_path)).predict(X), reg.predict(X))


# --------------------------------------------------------------------------------------------- bad input

@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if training starts: bad input must be rejected before it."""
    def boom(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(_TorchHead, "_train", boom)


def _seqs(*shapes: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=shape).astype(np.float32) for shape in shapes]


@pytest.mark.parametrize("make_input, message", [
    (lambda: (_seqs((5, 3), (0, 3), (4, 3)), [0, 1, 0]), "sequence 1 is empty"),
    (lambda: (_seqs((5, 3), (6, 3), (4, 2)), [0, 1, 0]), "sequence 2 has 2 features"),
    (lambda: ([*_seqs((5, 3), (6, 3)), np.array([[0.0, np.nan, 1.0]])], [0, 1, 0]),
     "sequence 2 contains NaN"),
    (lambda: ([*_seqs((5, 3)), np.array([[0.0, np.inf, 1.0]]), *_seqs((3, 3))], [0, 1, 0]),
     "sequence 1 contains NaN or infinite"),
    (lambda: (_seqs((5, 3), (6, 3), (4, 3)), [1, 1, 1]), "only one class"),
    (lambda: (_seqs((5, 3), (6, 3), (4, 3)), [0.0, np.nan, 1.0]), "NaN"),
    (lambda: (_seqs((5, 3), (6, 3), (4, 3)), [0, 1]), "3 sequences but y has 2"),
    (lambda: (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), [0, 1, 0]), "NaN"),
    (lambda: (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), [0, 1, 0]), "infinity"),
    (lambda: (np.ones((3, 2)), ["a", "a", "a"]), "only one class"),
    (lambda: (np.ones((3, 2)), [0.0, np.nan, 1.0]), "NaN"),
])
def test_bad_input_raises_before_training(no_training, make_input, message):
    X, y = make_input()
    with pytest.raises(ValueError, match=message):
        TorchClassifier("gru(4)", max_epochs=1000).fit(X, y)


@pytest.mark.parametrize("X, y, message", [
    (_seqs((5, 3), (6, 3), (4, 3)), [0.5, np.nan, 1.0], "NaN"),
    (_seqs((5, 3), (6, 3), (4, 3)), [0.5, np.inf, 1.0], "infinite"),
    (np.ones((3, 2)), [0.5, np.nan, 1.0], "NaN"),
    (_seqs((5, 3), (0, 3)), [0.5, 1.0], "sequence 1 is empty"),
])
def test_bad_regression_input_raises_before_training(no_training, X, y, message):
    with pytest.raises(ValueError, match=message):
        TorchRegressor("gru(4)", max_epochs=1000).fit(X, y)


def test_bad_prediction_input_names_the_problem():
    X, y = order_task(20, 0)
    clf = TorchClassifier("conv1d(4, 3)", max_epochs=1, random_state=0, n_threads=THREADS).fit(X, y)
    with pytest.raises(ValueError, match="sequence 1 has 2 features, but the fitted model has 3"):
        clf.predict(_seqs((4, 3), (4, 2)))
    with pytest.raises(ValueError, match="sequence 0 is empty"):
        clf.predict(_seqs((0, 3)))
    with pytest.raises(ValueError, match="X has 2 features"):
        clf.predict(np.ones((2, 2)))


@pytest.mark.parametrize("params, message", [
    ({"optimizer": "sgd"}, "optimizer"),
    ({"lr": 0.0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"device": "tpu"}, "device"),
    ({"class_weight": "auto"}, "class_weight"),
    ({"n_members": 0}, "n_members"),
])
def test_bad_parameters_raise(no_training, params, message):
    X, y = order_task(10, 0)
    with pytest.raises(ValueError, match=message):
        TorchClassifier("conv1d(4, 3)", **params).fit(X, y)


# --------------------------------------------------------------------------------------------- split, max_len

def test_validation_split_is_grouped_by_speaker():
    X, y = order_task(60, 0)
    speakers = np.repeat(np.arange(10), 6)
    clf = TorchClassifier("conv1d(4, 3)", validation_fraction=0.3, random_state=0)
    train, val = clf._split(60, y, speakers, seed=0)
    assert len(val) > 0
    assert not set(speakers[train]) & set(speakers[val])
    clf.set_params(max_epochs=2, n_threads=THREADS).fit(X, y, groups=speakers)
    assert clf.validation_size_ == len(val) and "val_loss" in clf.history_[0]
    with pytest.raises(ValueError, match="at least 2 distinct groups"):
        clf.fit(X, y, groups=np.zeros(60))


def test_stratified_split_without_groups():
    y = np.array([0] * 40 + [1] * 20)
    train, val = TorchClassifier(validation_fraction=0.25)._split(60, y, None, seed=0)
    assert np.bincount(y[val]).tolist() == [10, 5]


def test_max_len_truncates_sequences():
    X, y = order_task(40, 0)
    clf = TorchClassifier("gru(4)", max_len=10, max_epochs=1, random_state=0, n_threads=THREADS).fit(X, y)
    cut = _objects([s[:10] for s in X])
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(cut))
    assert [len(s) for s in validate_sequences(X)] == [len(s) for s in X]  # no truncation by default


def test_presets_and_make_head():
    assert set(PRESETS) == {"torch_mlp", "lstm", "gru", "conv1d", "cnn_lstm_mel", "fcn_mfcc", "cnn_att_mfcc",
                            "cnn_spec", "vgg_mel"}
    for name, spec in PRESETS.items():
        parse_layers(spec)
        assert make_head(name).layers == spec
    reg = make_head("conv1d", task="regression", loss="mse", max_epochs=5)
    assert isinstance(reg, TorchRegressor) and reg.loss == "mse" and reg.max_epochs == 5
    with pytest.raises(ValueError, match="unknown head preset"):
        make_head("transformer")
    with pytest.raises(ValueError, match="task"):
        make_head("gru", task="clustering")


IMPORT_CHECK = """
import importlib, pathlib, sys, featurekit
root = pathlib.Path(featurekit.__path__[0])
names = []
for path in sorted(root.rglob("*.py")):
    parts = path.relative_to(root).with_suffix("").parts
    if parts[0] != "heads" and parts[-1] != "__main__":  # __main__ runs the CLI
        names.append(".".join(("featurekit",) + parts).removesuffix(".__init__"))
for name in names:
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    assert "torch" not in sys.modules, f"torch imported by {name}"
"""


def test_other_featurekit_modules_do_not_import_torch():
    """Only featurekit.heads may import torch at import time."""
    subprocess.run([sys.executable, "-c", IMPORT_CHECK], check=True)


# --------------------------------------------------------------------------------------------- sklearn API

# No check is skipped: EXPECTED_FAILED_CHECKS is empty for both heads. (sklearn itself skips
# check_array_api_input unless SCIPY_ARRAY_API is set, and runs no sample_weight checks because
# fit takes no sample_weight.)
@parametrize_with_checks(
    [TorchClassifier(PRESETS["torch_mlp"], max_epochs=10, random_state=0, n_threads=THREADS),
     TorchRegressor(PRESETS["torch_mlp"], max_epochs=10, random_state=0, n_threads=THREADS)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est).__name__],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)

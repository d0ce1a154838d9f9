"""Tests for the 2-D layers, the spectrogram presets, fixed-length crops and SpecAugment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurekit.heads import TorchClassifier, load_head, make_head, save_head
from featurekit.heads.layers import build_network, format_specs, parse_layers
from featurekit.heads.modules import EVAL_BLOCK, SpecAugment, fix_length, window_starts
from featurekit.heads.presets import (
    PRESET_PARAMS,
    SPECTROGRAM_INPUTS,
    SPECTROGRAM_PRESETS,
    spectrogram_layers,
)

torch.set_num_threads(1)

# every 2-D layer, masked, with odd pools so windows straddle the end of shorter items
MASKED_2D = ("parallel(conv2d(4, 3) -> batchnorm2d -> activation(relu) | conv2d(3, 5, 1, activation=tanh)) "
             "-> maxpool2d(2, 3) -> conv2d(5, 3, stride=2) -> batchnorm2d -> avgpool2d(2) -> to_frames "
             "-> self_attention(6, 2) -> gru(5) -> attention_pool")


def _objects(seqs: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(seqs), dtype=object)
    out[:] = seqs
    return out


def band_task(n: int, seed: int, n_bins: int, n_frames: int, n_classes: int = 3, jitter: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Noise "spectrograms" ``(T, F)`` whose class decides which frequency band carries energy, over a
    random stretch of time (``jitter`` > 0: lengths vary by up to that many frames)."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    band = n_bins // n_classes
    for i in range(n):
        label = i % n_classes
        length = n_frames - int(rng.integers(0, jitter + 1))
        x = rng.normal(0.0, 1.0, (length, n_bins)).astype(np.float32)
        start = int(rng.integers(0, length // 2))
        x[start:start + length // 2, label * band:(label + 1) * band] += 1.5
        seqs.append(x)
        labels.append(label)
    return _objects(seqs), np.array(labels)


# --------------------------------------------------------------------------------------------- layers

def test_2d_layer_shapes_and_canonical_spec_round_trip():
    net, specs = build_network(MASKED_2D, 12, 3)
    text = format_specs(specs)
    assert text.startswith("parallel(conv2d(channels=4, kernel_f=3) -> batchnorm2d -> "
                           "activation(function=relu) | ")
    assert format_specs(parse_layers(text)) == text  # what a saved head stores parses back
    x = torch.randn(2, 17, 12)
    lengths = torch.tensor([17, 9])
    out = x.transpose(1, 2).unsqueeze(1)
    shapes, state = [], lengths
    for layer in net.body[:-1]:  # up to the pooling layer
        out, state = layer(out, state)
        shapes.append((tuple(out.shape), state.tolist()))
    assert shapes == [
        ((2, 7, 12, 17), [17, 9]),  # 4 + 3 channels, "same" padding
        ((2, 7, 6, 6), [6, 3]),  # maxpool 2 (freq, floor) x 3 (time: windows holding a valid frame)
        ((2, 5, 3, 3), [3, 2]),  # stride 2: ceil(n / 2) on both axes
        ((2, 5, 3, 3), [3, 2]),
        ((2, 5, 1, 2), [2, 1]),
        ((2, 2, 5), [2, 1]),  # to_frames: C * F = 5 features per frame
        ((2, 2, 12), [2, 1]),  # 2 heads x 6, concatenated
        ((2, 2, 5), [2, 1]),
    ]
    assert net(x, lengths).shape == (2, 3)
    # a map body without pooling gets global_avg_pool; mean fusion keeps the head width
    _, specs = build_network("conv2d(4, 3)", 12, 3)
    assert format_specs(specs) == "conv2d(channels=4, kernel_f=3) -> global_avg_pool"
    net, _ = build_network("conv2d(4, 3) -> global_max_pool", 12, 3)
    assert net(x, lengths).shape == (2, 3)
    net, _ = build_network("self_attention(8, 3, fusion=mean) -> mean_pool", 12, 3)
    assert net.body[0].qkv.out_features == 3 * 3 * 8 and net(x, lengths).shape == (2, 3)


@pytest.mark.parametrize("train", [False, True])
def test_masked_2d_layers_ignore_padding(train):
    """An item's output does not depend on how much padding its batch adds: alone vs in a batch (eval),
    and the batch statistics of batchnorm2d (train) use valid frames only."""
    torch.manual_seed(0)
    net, _ = build_network(MASKED_2D, 12, 3)
    net = net.double()
    rng = np.random.default_rng(0)
    seqs = [torch.from_numpy(rng.normal(size=(n, 12))) for n in (23, 14, 5, 1)]
    lengths = torch.tensor([len(s) for s in seqs])

    def padded(extra: int) -> torch.Tensor:
        x = torch.zeros(len(seqs), 23 + extra, 12, dtype=torch.float64)
        for i, s in enumerate(seqs):
            x[i, :len(s)] = s
            x[i, len(s):] = 7.0  # garbage in the padding must not matter
        return x

    net.train(train)
    with torch.no_grad():
        base = net(padded(0), lengths)
        assert torch.allclose(net(padded(9), lengths), base, atol=1e-10)
        if not train:
            alone = torch.cat([net(s.unsqueeze(0), torch.tensor([len(s)])) for s in seqs])
            assert torch.allclose(alone, base, atol=1e-10)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net, _ = build_network(MASKED_2D + " -> dense(4) -> dropout(0.1)", 12, 3)
    x = torch.randn(3, 20, 12)
    out = net(x, torch.tensor([20, 13, 6]))
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(("spec", "message"), [
    ("conv2d(4, 3) -> lstm(8)", "takes frames or vectors but gets 2-D feature maps; put to_frames"),
    ("conv2d(4, 3) -> mean_pool", "gets 2-D feature maps"),
    ("conv1d(4, 3) -> global_avg_pool", "takes 2-D feature maps"),
    ("to_frames", "takes 2-D feature maps"),
    ("parallel(conv2d(4, 3))", "at least two branches"),
    ("parallel(conv2d(4, 3) -> global_avg_pool | conv2d(4, 3))", "cannot sit in a parallel branch"),
    ("parallel(conv2d(4, 3) | conv1d(4, 3))", "end in different forms"),
    ("parallel(conv2d(4, 3) | conv2d(4, 3)", "expected '->', '|' or ')'"),
    ("global_avg_pool -> conv2d(4, 3)", "cannot follow the pooling layer"),
    ("conv2d(4, 3, pool=2)", "has no argument 'pool'"),
    ("maxpool2d(0)", "pool_f must be >= 1"),
])
def test_2d_spec_errors(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        parse_layers(spec)


def test_build_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"'maxpool2d\(4\)' leaves no frequency bins"):
        build_network("maxpool2d(2) -> maxpool2d(4)", 6, 2)
    with pytest.raises(ValueError, match="different heights"):
        build_network("parallel(maxpool2d(2) | conv2d(2, 3))", 8, 2)


def test_fix_length_crops_and_pads():
    x = torch.arange(10.0).reshape(1, 5, 2)
    y, lengths = fix_length(x, 3)
    assert y.shape == (1, 3, 2) and torch.equal(y, x[:, :3]) and lengths.tolist() == [3]
    y, lengths = fix_length(x, 7)
    assert torch.equal(y[:, :5], x) and not y[:, 5:].any() and lengths.tolist() == [7]


def test_fixed_len_head_checks_and_persists(tmp_path):
    x, y = band_task(24, 0, 12, 16, jitter=6)
    clf = TorchClassifier("conv2d(4, 3, activation=relu) -> maxpool2d(2)", fixed_len=12, max_epochs=2,
                          validation_fraction=None, random_state=0)
    clf.fit(x, y)
    saved = load_head(save_head(clf, tmp_path / "h"))
    assert np.allclose(saved.predict_proba(x), clf.predict_proba(x))
    with pytest.raises(ValueError, match=r"fixed_len=40 frames is longer than every input sequence "
                                         r"\(the longest has 16 frames\)"):
        clf.set_params(fixed_len=40).fit(x, y)
    with pytest.raises(ValueError, match="X holds vectors"):
        TorchClassifier(fixed_len=4).fit(np.zeros((6, 3)), [0, 1] * 3)
    with pytest.raises(ValueError, match=r"\(SpecAugment\) mask frame sequences, but X holds vectors"):
        TorchClassifier(time_masks=1, time_mask_width=2).fit(np.zeros((6, 3)), [0, 1] * 3)


def test_window_starts_cover_each_sequence_half_a_window_apart():
    items, starts = window_starts(torch.tensor([5, 20, 23, 10]), 10)
    assert items.tolist() == [0, 1, 1, 1, 2, 2, 2, 2, 3]
    assert starts.tolist() == [0, 0, 5, 10, 0, 5, 10, 13, 0]  # the last window ends on the last frame


def test_random_crop_predicts_the_mean_over_covering_windows():
    """Eval mode: the output of a sequence is the mean of the network's outputs on its windows
    (each exactly what crop="start" gives on that window alone); the batch does not matter."""
    torch.manual_seed(0)
    layers = "conv2d(3, 3, activation=relu) -> global_avg_pool"
    net, _ = build_network(layers, 4, 2, fixed_len=6, crop="random")
    alone, _ = build_network(layers, 4, 2, fixed_len=6)
    alone.load_state_dict(net.state_dict())
    net.eval(), alone.eval()
    seqs = [torch.randn(n, 4) for n in (4, 6, 13)]
    batch = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    with torch.no_grad():
        out = net(batch, torch.tensor([4, 6, 13]))
        for k, s in enumerate(seqs):
            _, starts = window_starts(torch.tensor([len(s)]), 6)
            windows = [alone(s[a:a + 6][None], torch.tensor([min(6, len(s) - a)])) for a in starts.tolist()]
            assert torch.allclose(out[k], torch.cat(windows).mean(0), atol=1e-6)
            assert torch.allclose(net(s[None], torch.tensor([len(s)]))[0], out[k], atol=1e-6)
    # more windows than one eval block (EVAL_BLOCK): the body runs block by block, same outputs
    long = torch.randn(1, 6 * EVAL_BLOCK, 4)
    _, starts = window_starts(torch.tensor([long.shape[1]]), 6)
    assert len(starts) > EVAL_BLOCK
    with torch.no_grad():
        windows = torch.cat([alone(long[:, a:a + 6], torch.tensor([6])) for a in starts.tolist()])
        assert torch.allclose(net(long, torch.tensor([long.shape[1]]))[0], windows.mean(0), atol=1e-6)
        many = torch.randn(EVAL_BLOCK + 5, 6, 4)
        assert torch.allclose(alone(many, torch.full((len(many),), 6)),
                              torch.cat([alone(m[None], torch.tensor([6])) for m in many]), atol=1e-6)


def test_random_crop_trains_on_windows_from_anywhere():
    """The class shows only in the last frames of sequences longer than the crop: the first-frames
    crop cannot see it, random windows can (and fit keeps whole sequences, not the first fixed_len)."""
    rng = np.random.default_rng(0)
    x, y = [], []
    for i in range(160):
        seq = rng.normal(size=(int(rng.integers(40, 60)), 3)).astype(np.float32)
        seq[-20:, 0] += 3.0 if i % 2 else -3.0
        x.append(seq)
        y.append(i % 2)
    x, y = np.array(x, dtype=object), np.array(y)
    scores = {}
    for crop in ("start", "random"):
        clf = TorchClassifier("conv1d(8, 3) -> max_pool", fixed_len=16, crop=crop, max_epochs=25,
                              lr_schedule="cosine", validation_fraction=None, random_state=0, n_threads=1)
        scores[crop] = (clf.fit(x[:100], y[:100]).predict(x[100:]) == y[100:]).mean()
    assert scores["start"] <= 0.7 and scores["random"] >= 0.9, scores


def test_crop_and_lr_schedule_are_checked_recorded_and_persisted(tmp_path):
    x, y = band_task(24, 0, 12, 16, jitter=6)
    with pytest.raises(ValueError, match="crop must be one of start, random, got 'middle'"):
        TorchClassifier(fixed_len=8, crop="middle").fit(x, y)
    with pytest.raises(ValueError, match="crop='random' takes windows of fixed_len frames; set fixed_len"):
        TorchClassifier(crop="random").fit(x, y)
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine, got 'step'"):
        TorchClassifier(lr_schedule="step").fit(x, y)
    clf = TorchClassifier("conv2d(4, 3, activation=relu) -> maxpool2d(2)", fixed_len=8, crop="random",
                          max_epochs=4, lr=1e-2, lr_schedule="cosine", validation_fraction=None,
                          random_state=0).fit(x, y)
    assert [round(h["lr"], 6) for h in clf.history_] == [0.01, 0.008536, 0.005, 0.001464]  # half cosine
    assert [h["lr"] for h in TorchClassifier(max_epochs=2, validation_fraction=None).fit(
        np.zeros((6, 3)), [0, 1] * 3).history_] == [1e-3, 1e-3]
    saved = load_head(save_head(clf, tmp_path / "h"))
    assert saved.crop == "random" and saved.model_.crop == "random"
    assert np.allclose(saved.predict_proba(x), clf.predict_proba(x))


# --------------------------------------------------------------------------------------------- presets

def test_presets_are_registered_with_their_parameters():
    from featurekit.evaluation.models import CLASSIFIERS, REGRESSORS

    for name in SPECTROGRAM_PRESETS:
        for reg in (CLASSIFIERS, REGRESSORS):
            ms = reg.get(name)
            assert ms.sequences and not ms.vectors
        head = make_head(name, max_epochs=3)
        assert head.layers == SPECTROGRAM_PRESETS[name] and head.max_epochs == 3
        assert head.fixed_len == PRESET_PARAMS[name].get("fixed_len")
    assert make_head("cnn_lstm_mel").fixed_len == 313  # 5 s at hop 256, 16 kHz
    assert make_head("cnn_att_mfcc").fixed_len is None  # variable length under masks
    assert set(SPECTROGRAM_INPUTS.values()) == {"logmel.lld", "mfcc.lld"}


@pytest.mark.parametrize("name", sorted(SPECTROGRAM_INPUTS))
def test_published_preset_builds_and_runs_forward(name):
    """The published sizes on the published inputs (128 mel bands / 40 MFCCs); a short batch for speed."""
    n_bins = 128 if SPECTROGRAM_INPUTS[name] == "logmel.lld" else 40
    torch.manual_seed(0)
    fixed = PRESET_PARAMS[name].get("fixed_len")
    net, _ = build_network(SPECTROGRAM_PRESETS[name], n_bins, 7, fixed_len=fixed)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 40, n_bins), torch.tensor([40, 25]))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(SPECTROGRAM_INPUTS))
def test_preset_topology_learns_band_task(name):
    """Each preset's topology (channels x 1/4, short images) learns which band carries energy."""
    n_bins = 128 if SPECTROGRAM_INPUTS[name] == "logmel.lld" else 40
    fixed = PRESET_PARAMS[name].get("fixed_len")
    jitter = 0 if fixed else 8
    frames = 48 if name == "cnn_spec" else 24  # its stride-4 first layer needs longer images
    x, y = band_task(48, 0, n_bins, frames, jitter=jitter)
    x_test, y_test = band_task(30, 1, n_bins, frames, jitter=jitter)
    clf = make_head(name, layers=spectrogram_layers(name, width=0.25), fixed_len=frames if fixed else None,
                    max_epochs=15 if name == "cnn_spec" else 12, batch_size=16, lr=3e-3,
                    validation_fraction=None, random_state=0, n_threads=1)
    clf.fit(x, y)
    assert (clf.predict(x_test) == y_test).mean() >= 0.9


# --------------------------------------------------------------------------------------------- SpecAugment

def test_spec_augment_masks_valid_frames_and_bands_only():
    torch.manual_seed(0)
    aug = SpecAugment(time_masks=2, time_width=4, freq_masks=1, freq_width=3)
    x = torch.ones(8, 20, 10)
    lengths = torch.tensor([20, 15, 10, 5, 3, 2, 1, 20])
    out = aug(x, lengths)
    dropped = out == 0
    assert dropped.any()
    bands = dropped.all(dim=1).sum(dim=1)  # features dropped on every frame
    assert (bands <= 3).all()
    for i, n in enumerate(lengths.tolist()):
        frames = dropped[i].all(dim=1)  # frames dropped on every feature
        assert frames.sum() <= 8 and not frames[n:].any()


def test_spec_augment_trains_only_and_reruns_identically():
    x, y = band_task(24, 0, 12, 16, jitter=4)
    params = dict(time_masks=2, time_mask_width=3, freq_masks=1, freq_mask_width=2, max_epochs=3,
                  validation_fraction=None, random_state=0)
    layers = "conv2d(4, 3, activation=relu) -> maxpool2d(2)"
    a = TorchClassifier(layers, **params).fit(x, y)
    b = TorchClassifier(layers, **params).fit(x, y)
    plain = TorchClassifier(layers, **{**params, "time_masks": 0, "freq_masks": 0}).fit(x, y)
    assert np.array_equal(a.predict_proba(x), b.predict_proba(x))  # seeded
    assert not np.allclose(a.predict_proba(x), plain.predict_proba(x))  # it did act in training
    calls = []
    a.model_.augment.register_forward_hook(lambda *args: calls.append(1))
    a.predict(x)
    assert calls == []  # never at prediction


def test_mixed_precision_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: mixed precision is allowed")
    with pytest.raises(ValueError, match="mixed_precision=True needs a CUDA device"):
        TorchClassifier(mixed_precision=True).fit(np.zeros((6, 3)), [0, 1] * 3)
    with pytest.raises(ValueError, match="mixed_precision must be True or False"):
        TorchClassifier(mixed_precision=1).fit(np.zeros((6, 3)), [0, 1] * 3)

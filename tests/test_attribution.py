"""Attribution: saliency / integrated gradients (Captum) of torch heads, permutation importance of
vector models, computed per fold on its test utterances only, the ``[attribution]`` spec section,
cell digests, and the report's Attribution section."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from featurekit.corpora.synthetic import make_synthetic_corpus
from featurekit.evaluation import SpecError, run, validate
from featurekit.evaluation import attribution as A
from featurekit.evaluation import runner as R
from featurekit.heads import TorchClassifier
from featurekit.report import write_report

torch.set_num_threads(1)

N_BANDS = 12
INFORMATIVE = [4, 5, 6]  # class 1 lives in these bands, in the first half of each utterance


def banded_sequences(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Noise frames ``(T, 12)``; class 1 adds +1.5 to bands 4-6 in the first half of the utterance."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        t = int(rng.integers(20, 50))
        x = 0.5 * rng.standard_normal((t, N_BANDS)).astype(np.float32)
        if i % 2:
            x[: t // 2, INFORMATIVE] += 1.5
        xs.append(x)
        ys.append(i % 2)
    return xs, np.array(ys)


@pytest.fixture(scope="module")
def frame_head():
    x, y = banded_sequences(80, seed=0)
    head = TorchClassifier("dense(8) -> mean_pool", max_epochs=30, lr=3e-3, optimizer="adamw",
                           weight_decay=0.1, validation_fraction=None, random_state=0).fit(x, y)
    return head


def test_resample_time_averages_frames_into_normalised_bins():
    values = np.arange(8, dtype=float)[None, :]  # one band, 8 frames
    assert A.resample_time(values, bins=4).tolist() == [[0.5, 2.5, 4.5, 6.5]]
    assert A.resample_time(values[:, :2], bins=4).tolist() == [[0.0, 0.0, 1.0, 1.0]]  # fewer frames: nearest
    with pytest.raises(ValueError, match="at least one frame"):
        A.resample_time(np.zeros((3, 0)), bins=4)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_gradient_mass_concentrates_in_the_informative_bands_and_time(frame_head, method):
    x, y = banded_sequences(30, seed=1)
    assert (frame_head.predict(x) == y).mean() >= 0.9
    out = A.gradient_maps(frame_head, x, y, methods=[method], n_classes=2, time_bins=8, ig_steps=16)[method]
    assert out["count"].tolist() == [15, 15]
    maps = out["sum"] / out["count"][:, None, None]
    profile = out["profile"][1] / out["count"][1]
    assert np.isclose(maps[1].sum(), 1.0) and np.isclose(profile.sum(), 1.0)  # unit mass per utterance
    assert sorted(np.argsort(-profile)[:3].tolist()) == INFORMATIVE
    assert profile[INFORMATIVE].sum() > 0.45  # uniform would be 3/12 = 0.25
    bands = maps[1][INFORMATIVE]
    first_half = bands[:, :4].sum() / bands.sum()
    assert first_half > (0.6 if method == "saliency" else 0.7)


def test_padding_and_batching_do_not_change_the_maps(frame_head):
    x, _ = banded_sequences(2, seed=3)
    short, long = x[0][:15], np.concatenate([x[1], x[1]])
    kw = {"methods": ["saliency"], "n_classes": 2, "time_bins": 5}
    alone = A.gradient_maps(frame_head, [short], np.array([0]), **kw)["saliency"]["sum"][0]
    padded = A.gradient_maps(frame_head, [long, short], np.array([1, 0]), **kw)["saliency"]["sum"][0]
    np.testing.assert_allclose(padded, alone, rtol=1e-5, atol=1e-8)


def test_two_dimensional_head_on_a_fixed_length_crop():
    """A 2-D CNN on a 24-frame crop: maps span the frames the model saw (the crop); a longer
    utterance's map is its crop's map."""
    x, y = banded_sequences(40, seed=4)
    head = TorchClassifier("conv2d(4, 3) -> activation(relu) -> global_avg_pool", fixed_len=24, max_epochs=10,
                           lr=3e-3, validation_fraction=None, random_state=0).fit(x, y)
    long = np.concatenate([x[1], x[1]])  # > 24 frames
    methods = ["saliency", "integrated_gradients"]
    kw = {"methods": methods, "n_classes": 2, "time_bins": 6, "ig_steps": 8}
    whole = A.gradient_maps(head, [long], np.array([1]), **kw)
    crop = A.gradient_maps(head, [long[:24]], np.array([1]), **kw)
    for m in methods:
        assert whole[m]["sum"].shape == (2, N_BANDS, 6) and np.isfinite(whole[m]["sum"]).all()
        assert whole[m]["count"].tolist() == [0, 1] and np.isclose(whole[m]["sum"][1].sum(), 1.0)
        np.testing.assert_allclose(whole[m]["sum"], crop[m]["sum"], rtol=1e-4, atol=1e-7)


def test_permutation_importance_ranks_the_informative_feature_first():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6))
    y = (x[:, 2] + 0.3 * rng.standard_normal(200) > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[:120], y[:120])
    r = A.permutation_scores(model, x[120:], y[120:], n_repeats=5, seed=0)
    assert np.argmax(r["mean"]) == 2 and r["mean"][2] > 0.2
    assert np.abs(np.delete(r["mean"], 2)).max() < 0.05
    assert r["baseline"] > 0.8
    again = A.permutation_scores(model, x[120:], y[120:], n_repeats=5, seed=0)
    np.testing.assert_array_equal(again["mean"], r["mean"])  # seeded


# -- spec -----------------------------------------------------------------------------------------

SMALL_CNN = "conv2d(4, 3) -> batchnorm2d -> activation(relu) -> maxpool2d(2) -> global_avg_pool"
BASE = {
    "name": "attr",
    "seed": 0,
    "corpus": {"name": "synthetic"},
    "features": {"sets": ["logmel.lld", "egemaps"]},
    "extractors": {"logmel": {"n_fft": 1024, "win_length": 1024, "hop_length": 256, "n_mels": 16}},
    "evaluation": {"normalisation": ["global"], "bootstrap": 0},
    "models": {"cnn": {"model": "cnn_spec", "sets": ["logmel.lld"],
                       "params": {"layers": SMALL_CNN, "fixed_len": 40, "max_epochs": 2,
                                  "validation_fraction": None}},
               "logreg": {"sets": ["egemaps"], "grid": {"C": [1.0]}}},
}
ALL_METHODS = {"methods": ["saliency", "integrated_gradients", "permutation"], "time_bins": 6, "ig_steps": 4,
               "n_repeats": 2, "top_k": 5}


def doc(**changes) -> dict:
    d = copy.deepcopy(BASE)
    d.update(changes)
    return d


@pytest.mark.parametrize(("section", "message"), [
    ({"methods": ["saliencey"]},
     r"attribution.*unknown attribution method 'saliencey'; did you mean 'saliency'"),
    ({"methods": ["shap"]}, r"unknown attribution method 'shap'.*known: saliency, integrated_gradients, "
                            r"permutation"),
    ({"methods": []}, r"attribution\.methods"),
    ({"methods": ["saliency", "saliency"]}, r"attribution.*\['saliency'\] more than once"),
    ({"methods": ["saliency"], "steps": 3}, r"attribution.*unknown key 'steps'"),
    ({"methods": ["saliency"], "time_bins": 0}, r"attribution\.time_bins"),
    ({"methods": ["saliency"], "n_repeats": 2.0}, r"attribution\.n_repeats"),
    ({"methods": ["saliency"], "models": ["cnnn"]}, r"attribution\.models\[0\]: unknown model entry 'cnnn'"),
    ({"methods": ["saliency"], "models": ["logreg"]},
     r"attribution\.methods\[0\]: 'saliency' applies to no cell of this spec: it needs a torch head"),
])
def test_bad_attribution_sections_fail_with_a_clear_error(section, message):
    with pytest.raises(SpecError, match=message):
        validate(doc(attribution=section))


def test_methods_that_apply_to_nothing_and_regression_are_errors():
    with pytest.raises(SpecError, match=r"'permutation' applies to no cell.*vector features"):
        validate(doc(features={"sets": ["logmel.lld"]}, models={"cnn": BASE["models"]["cnn"]},
                     attribution={"methods": ["permutation"]}))
    with pytest.raises(SpecError, match=r"attribution: per-class attribution needs a classification task"):
        validate(doc(task={"type": "regression", "target": "arousal"}, features={"sets": ["egemaps"]},
                     models={"ridge": {}}, attribution={"methods": ["permutation"]}))


def test_gradient_methods_without_captum_name_the_extra_at_spec_load(monkeypatch):
    import featurekit.extras

    real = featurekit.extras.missing_modules

    def no_captum(extra, modules=None):
        return ["captum"] if modules == ("captum",) else real(extra, modules)

    monkeypatch.setattr(featurekit.extras, "missing_modules", no_captum)
    message = r'attribution\.methods: saliency needs the optional dependency captum \(not installed\): '
    with pytest.raises(SpecError, match=message + r'pip install "featurekit\[deep\]"'):
        validate(doc(attribution={"methods": ["saliency", "permutation"]}))
    validate(doc(attribution={"methods": ["permutation"]}))  # permutation needs no extra


def test_digests_change_only_for_cells_attribution_applies_to():
    plain = {c.model: c.digest(s) for s in [validate(doc())] for c in R.plan_cells(s)}
    for section, changed in (({"methods": ["permutation"]}, {"logreg"}),
                             ({"methods": ["saliency"]}, {"cnn"}),
                             ({"methods": ["permutation"], "models": ["logreg"]}, {"logreg"}),
                             (ALL_METHODS, {"cnn", "logreg"})):
        spec = validate(doc(attribution=section))
        now = {c.model: c.digest(spec) for c in R.plan_cells(spec)}
        assert {m for m in now if now[m] != plain[m]} == changed, section
    top_k = validate(doc(attribution={**ALL_METHODS, "top_k": 3}))  # display only
    assert {c.digest(top_k) for c in R.plan_cells(top_k)} == {
        c.digest(s) for s in [validate(doc(attribution=ALL_METHODS))] for c in R.plan_cells(s)}


# -- a run -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_synthetic_corpus(root, n_speakers=3, n_per_class=2, duration=0.8)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


def test_a_run_attributes_each_fold_on_its_test_utterances_only_and_the_report_shows_it(
        corpus, store, tmp_path, monkeypatch):
    root, manifest = corpus
    spec = validate(doc(attribution=ALL_METHODS))
    data = R.FeatureData.load(spec, R.prepare_manifest(spec, manifest), R.FeatureStore(store), progress=False)
    speaker_of = {}
    for fs in spec.feature_sets:
        x = data.sequences(fs) if fs.sequences else data.matrix(fs)[0]
        speaker_of.update({np.asarray(v, np.float32).tobytes(): s
                           for v, s in zip(x, data.manifest["speaker"])})
    calls = []
    attribute_fold = A.attribute_fold

    def recording(model, x_test, y_test, **kwargs):
        calls.append((sorted({speaker_of[np.asarray(v, np.float32).tobytes()] for v in x_test}), len(x_test)))
        return attribute_fold(model, x_test, y_test, **kwargs)

    monkeypatch.setattr(A, "attribute_fold", recording)
    out = tmp_path / "o"
    run(spec, root, out, store=store, jobs=1, progress=False)
    speakers = sorted(set(manifest["speaker"]))
    # jobs=1: the folds in order for each cell (cnn on logmel, logreg on egemaps), fold k tests speakers[k]
    assert calls == [([s], 8) for s in speakers] * 2
    index = json.loads((out / A.ATTRIBUTION_INDEX).read_text())
    systems = [(e["feature_set"], e["model"]) for e in index["cells"]]
    assert systems == [("logmel.lld", "cnn"), ("egemaps", "logreg")]
    cells, top_k = A.load_cell_attribution(out)
    cnn, logreg = cells
    assert top_k == 5 and cnn.classes == sorted(set(manifest["label"]))
    assert cnn.folds == [f"speaker={s}" for s in speakers]
    for m in ("saliency", "integrated_gradients"):
        assert cnn.arrays[f"{m}_maps"].shape == (4, 16, 6)  # classes x mel bands x time bins
        assert cnn.arrays[f"{m}_count"].tolist() == [6, 6, 6, 6]  # every utterance once, as a test utterance
    assert len(cnn.feature_names) == 16 and "permutation" not in cnn.methods
    mean, std = logreg.permutation()
    assert logreg.arrays["permutation_folds"].shape == (3, 88) and mean.shape == std.shape == (88,)
    assert logreg.feature_names[0].startswith("egemaps_") and logreg.methods == ["permutation"]

    report = tmp_path / "report"
    write_report(out, report, formats=["md", "html", "csv"])
    md = (report / "report.md").read_text()
    assert "### Attribution" in md and "### Attribution: permutation importance" in md
    for stem in ("attribution_saliency_", "attribution_integrated_gradients_", "importance_"):
        assert len(list((report / "figures").glob(f"{stem}*.png"))) == 1, stem
    top = np.argsort(-mean, kind="stable")[0]
    assert f"| {logreg.feature_names[top]} |" in md.replace("\\_", "_")
    assert 'id="attr_attribution"' in (report / "index.html").read_text()
    damaged = next((out / "cells").glob("*.attribution.npz"))
    damaged.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=rf"{damaged.name}: unreadable attribution"):
        write_report(out, tmp_path / "report2", formats=["md"])


def test_without_attribution_nothing_is_stored_or_reported(corpus, store, tmp_path):
    root, _ = corpus
    spec = validate(doc(features={"sets": ["egemaps"]}, models={"logreg": BASE["models"]["logreg"]}))
    out = tmp_path / "o"
    run(spec, root, out, store=store, jobs=1, progress=False)
    assert not (out / A.ATTRIBUTION_INDEX).exists() and not list((out / "cells").glob("*.attribution.*"))
    write_report(out, tmp_path / "report", formats=["md", "html"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Attribution" not in md and "Attribution" not in (tmp_path / "report" / "index.html").read_text()

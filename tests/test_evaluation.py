"""featurekit evaluate: specs, protocols, leakage, metrics, resumability and bad input."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from featurekit.corpora.synthetic import make_synthetic_corpus
from featurekit.evaluation import DataError, SpecError, run, validate
from featurekit.evaluation import metrics as M
from featurekit.evaluation import pipeline as P
from featurekit.evaluation import runner as R
from featurekit.evaluation.models import CLASSIFIERS, ModelSpec

BASE = {
    "name": "t",
    "seed": 0,
    "corpus": {"name": "synthetic"},
    "task": {"type": "classification", "target": "label"},
    "protocol": {"name": "loso", "group": "speaker"},
    "features": {"sets": ["egemaps"]},
    "evaluation": {"normalisation": ["global"], "bootstrap": 50},
    "models": {"logreg": {"grid": {"C": [0.1, 1.0]}}},
}


def spec(**changes):
    d = copy.deepcopy(BASE)
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            d[section][sub] = value
        else:
            d[section] = value
    return validate(d)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    m = make_synthetic_corpus(root, n_speakers=4, n_per_class=3, duration=0.8)
    return root, m


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


def test_loso_classification_end_to_end(corpus, store, tmp_path):
    root, m = corpus
    df = run(spec(), root, tmp_path / "out", store=store, jobs=1, progress=False)
    assert {"feature_set", "model", "protocol", "fold", "metric", "value"} <= set(df.columns)
    folds = set(df["fold"])
    assert {"speaker=s00", "speaker=s03", "pooled", "mean", "std"} <= folds
    pooled = df[(df.fold == "pooled") & (df.metric == "uar")]["value"].item()
    assert pooled > 0.7  # classes differ strongly in pitch and energy
    preds = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(preds) == len(m) and np.allclose(preds.filter(like="p[").sum(axis=1), 1.0)
    uar = M.uar(preds["y_true"].to_numpy(), preds["y_pred"].to_numpy())
    assert uar == pytest.approx(pooled)
    lo = df[(df.fold == "pooled") & (df.metric == "uar_ci95_low")]["value"].item()
    hi = df[(df.fold == "pooled") & (df.metric == "uar_ci95_high")]["value"].item()
    assert lo <= pooled <= hi
    info = json.loads((tmp_path / "out" / "spec.json").read_text())
    assert info["seed"] == 0 and "scikit-learn" in info["library_versions"]
    assert df["protocol"].iloc[0] == "leave-one-speaker-out"


def test_rerun_is_resumed_and_identical(corpus, store, tmp_path):
    root, _ = corpus
    s = spec(evaluation__normalisation=["global", "speaker"])
    a = run(s, root, tmp_path / "o", store=store, jobs=2, progress=False)
    info = json.loads((tmp_path / "o" / "spec.json").read_text())
    assert info["cells_reused"] == 0
    b = run(s, root, tmp_path / "o", store=store, jobs=1, progress=False)
    assert json.loads((tmp_path / "o" / "spec.json").read_text())["cells_reused"] == 2
    pd.testing.assert_frame_equal(a, b)
    c = run(s, root, tmp_path / "fresh", store=store, jobs=1, progress=False)  # recomputed from scratch
    pd.testing.assert_frame_equal(a, c)


def test_kfold_is_labelled_speaker_dependent(corpus, store, tmp_path):
    root, _ = corpus
    df = run(
        spec(protocol={"name": "kfold", "k": 3}), root, tmp_path / "o", store=store, jobs=1, progress=False
    )
    assert (df["protocol"] == "3-fold stratified (speaker-dependent)").all()
    assert not df["speaker_independent"].any()


def test_early_and_late_fusion_and_undersampling(corpus, store, tmp_path):
    root, _ = corpus
    s = spec(
        features={
            "sets": ["egemaps", "mfcc.mean_std", "egemaps+mfcc.mean_std"],
            "late_fusion": [["egemaps", "mfcc.mean_std"]],
        },
        evaluation__balancing="undersample",
        models={"svm": {}},
    )
    df = run(s, root, tmp_path / "o", store=store, jobs=2, progress=False)
    assert set(df["feature_set"]) == {
        "egemaps",
        "mfcc.mean_std",
        "egemaps+mfcc.mean_std",
        "late(egemaps|mfcc.mean_std)",
    }
    data = R.FeatureData.load(
        s, R.prepare_manifest(s, R.load_corpus_for(s, root)), R.FeatureStore(store), progress=False
    )
    fused, names = data.matrix(s.feature_sets[2])
    assert fused.shape[1] == 88 + 80 and names[0].startswith("egemaps_") and names[-1].startswith("mfcc_")


def test_multitarget_regression_vad(corpus, store, tmp_path):
    root, m = corpus
    rng = np.random.default_rng(0)
    arousal = {"neutral": 0.0, "happy": 0.6, "sad": -0.6, "angry": 0.9}
    valence = {"neutral": 0.0, "happy": 0.8, "sad": -0.7, "angry": -0.6}
    m = m.copy()
    m["arousal"] = m["label"].map(arousal) + 0.1 * rng.standard_normal(len(m))
    m["valence"] = m["label"].map(valence) + 0.1 * rng.standard_normal(len(m))
    m["dominance"] = m["arousal"] * 0.5 + 0.1 * rng.standard_normal(len(m))
    s = spec(
        task={"type": "regression", "targets": ["valence", "arousal", "dominance"]},
        models={"ridge": {}, "svr": {}},
        evaluation__normalisation=["speaker"],
    )
    df = run(s, root, tmp_path / "o", store=store, jobs=2, progress=False, manifest=m)
    pooled = df[(df.fold == "pooled") & (df.metric == "ccc")]
    assert set(pooled["target"]) == {"valence", "arousal", "dominance"}
    assert pooled[pooled.target == "arousal"]["value"].max() > 0.6
    preds = pd.read_csv(tmp_path / "o" / "predictions.csv")
    sub = preds[(preds.model == "ridge") & (preds.target == "arousal")]
    assert M.ccc(sub["y_true"].to_numpy(), sub["y_pred"].to_numpy()) == pytest.approx(
        pooled[(pooled.model == "ridge") & (pooled.target == "arousal")]["value"].item()
    )


def test_ccc_and_uar_closed_form():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert M.ccc(y, y) == pytest.approx(1.0)
    assert M.ccc(y, y + 1) == pytest.approx(2 * 1.25 / (1.25 + 1.25 + 1))
    t = np.array(["a", "a", "a", "b"])
    assert M.uar(t, np.array(["a", "a", "a", "a"])) == pytest.approx(0.5)
    assert M.accuracy(t, np.array(["a", "a", "a", "a"])) == pytest.approx(0.75)


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        t = rng.choice(list("abcde"), 40)
        p = rng.choice(list("abcdef"), 40)  # includes a class absent from y_true and misses some
        expected = f1_score(t, p, average="macro", labels=np.unique(t), zero_division=0)
        assert M.macro_f1(t, p) == pytest.approx(expected)
    assert M.macro_f1(np.array(["a", "b"]), np.array(["c", "c"])) == 0.0


# -- leakage -------------------------------------------------------------------------------------
class _Seen:
    fits: list[tuple[str, set]] = []
    test_rows: set = set()
    inner: list = []


class SpyScaler(P.StandardScaler):
    def fit(self, X, y=None, sample_weight=None):
        rows = set(np.round(X[:, 0]).astype(int).tolist())
        _Seen.fits.append(("scaler", rows))
        return super().fit(X, y, sample_weight)

    def transform(self, X, copy=None):
        out = super().transform(X, copy=copy)
        out[:, 0] = X[:, 0]  # keep the row tag readable for the model spy downstream
        return out


def _spy_model(seed, class_weight, **params):
    from sklearn.linear_model import LogisticRegression

    class Spy(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            _Seen.fits.append(("model", set(np.round(X[:, 0]).astype(int).tolist())))
            return super().fit(X, y, sample_weight)

    return Spy(max_iter=500, **params)


def test_no_test_speaker_row_reaches_any_fit(corpus, store, tmp_path, monkeypatch):
    """Instrument every fit (scaler, model, inner search): the outer test speaker's rows never
    appear, and inner validation folds are speaker-disjoint from their training folds."""
    root, m = corpus
    CLASSIFIERS._items["spy"] = ModelSpec(_spy_model, {"C": [0.1, 1.0]})
    try:
        monkeypatch.setattr(P, "StandardScaler", SpyScaler)
        orig_inner = P.inner_cv

        def spy_inner(groups, n_splits):
            splits = orig_inner(groups, n_splits)
            for tr, va in splits:
                assert not set(groups[tr]) & set(groups[va]), "inner folds share a speaker"
            _Seen.inner.append(set(groups))
            return splits

        monkeypatch.setattr(P, "inner_cv", spy_inner)
        orig_inputs = R._cell_inputs

        def tagged_inputs(data, fs, norm, speakers):
            x = orig_inputs(data, fs, norm, speakers)
            x = x.copy()
            x[:, 0] = np.arange(len(x))  # row number in column 0, untouched by the spy's view
            return x

        monkeypatch.setattr(R, "_cell_inputs", tagged_inputs)
        orig_fold = R._run_fold

        def fold_with_check(**kw):
            _Seen.test_rows = set(kw["fold"].test.tolist())
            before = len(_Seen.fits)
            out = orig_fold(**kw)
            new = _Seen.fits[before:]
            assert new, "no fit was observed"
            for what, rows in new:
                assert not rows & _Seen.test_rows, f"{what} saw test rows in {kw['fold'].name}"
            return out

        monkeypatch.setattr(R, "_run_fold", fold_with_check)
        _Seen.fits, _Seen.inner = [], []
        s = spec(models={"spy": {}}, evaluation__normalisation=["none", "global"])
        run(s, root, tmp_path / "o", store=store, jobs=1, progress=False)
        kinds = {w for w, _ in _Seen.fits}
        assert kinds == {"scaler", "model"}
        # inner searches ran on the 3 training speakers only, never the 4th (test) speaker
        assert _Seen.inner and all(len(g) == 3 for g in _Seen.inner)
        # 2 normalisations x 4 folds x (3 inner fits x 2 candidates + refit) model fits at least
        assert sum(w == "model" for w, _ in _Seen.fits) >= 2 * 4 * 7
    finally:
        del CLASSIFIERS._items["spy"]


def test_svm_classifier_is_a_sklearn_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    from featurekit.evaluation.svm import SVMClassifier

    check_estimator(SVMClassifier())
    check_estimator(SVMClassifier(multiclass="ovr"))


def test_svm_scale_c_is_svc_with_c_per_feature():
    from sklearn.svm import SVC

    from featurekit.evaluation.svm import SVMClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 40))
    y = (x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int) + (x[:, 1] > 1)
    ours = SVMClassifier(C=2.0).fit(x, y)
    plain = SVC(kernel="linear", C=2.0 / 40).fit(x, y)
    np.testing.assert_allclose(ours.decision_function(x), plain.decision_function(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(SVMClassifier(C=0.05, scale_C=False).fit(x, y).predict(x),
                                  SVC(kernel="linear", C=0.05).fit(x, y).predict(x))
    ovr = SVMClassifier(multiclass="ovr").fit(x, y)
    assert ovr.decision_function(x).shape == (60, 3) and set(ovr.predict(x)) <= {0, 1, 2}


def test_labelled_model_entries_run_side_by_side(corpus, store, tmp_path):
    root, m = corpus
    s = spec(models={
        "svm": {"grid": {"kernel": ["linear"], "C": [1.0]}},
        "svm_rbf": {"model": "svm", "grid": {"kernel": ["rbf"], "C": [1.0]}},
    })
    res = run(s, root=root, out=tmp_path / "r", store=store, jobs=1, progress=False)
    assert set(res["model"]) == {"svm", "svm_rbf"}
    params = pd.concat(pd.read_csv(p) for p in (tmp_path / "r" / "cells").glob("*.params.csv"))
    kernels = {row.model: json.loads(row.params).get("kernel") for row in params.itertuples()}
    assert kernels == {"svm": "linear", "svm_rbf": "rbf"}  # each entry ran with its own settings


def test_nearest_frames_aligns_frame_grids():
    from featurekit.store import nearest_frames

    values = np.arange(5, dtype=np.float32)[:, None] * 10  # frames at 0, 20, 40, 60, 80 ms
    times = np.array([0.0, 0.02, 0.04, 0.06, 0.08])
    at = np.array([0.0, 0.009, 0.011, 0.03, 0.1, -0.5])  # 0.03 is a tie: the earlier frame
    np.testing.assert_array_equal(nearest_frames(values, times, at)[:, 0], [0, 0, 10, 10, 40, 0])


def test_lld_sets_concatenate_frame_by_frame(corpus, store, tmp_path):
    root, m = corpus
    s = spec(features={"sets": ["egemaps.lld", "mfcc.lld", "egemaps.lld+mfcc.lld"]})
    data = R.FeatureData.load(s, R.prepare_manifest(s, m), R.FeatureStore(store), progress=False)
    by = {f.name: f for f in s.feature_sets}
    eg, mf = data.sequences(by["egemaps.lld"]), data.sequences(by["mfcc.lld"])
    both = data.sequences(by["egemaps.lld+mfcc.lld"])
    _, eg_t = data._member_sequences(by["egemaps.lld"].members[0])
    _, mf_t = data._member_sequences(by["mfcc.lld"].members[0])
    for i in (0, len(m) - 1):
        assert both[i].shape == (len(eg[i]), eg[i].shape[1] + mf[i].shape[1])  # egemaps' frames
        np.testing.assert_array_equal(both[i][:, : eg[i].shape[1]], eg[i])
        k = np.abs(mf_t[i][None, :] - eg_t[i][:, None]).argmin(axis=1)  # nearest mfcc frame
        np.testing.assert_array_equal(both[i][:, eg[i].shape[1]:], mf[i][k])
    with pytest.raises(SpecError, match="only be concatenated with LLD sequences"):
        spec(features={"sets": ["egemaps+mfcc.lld"]})


def test_speaker_zscore_uses_only_own_rows():
    from featurekit.evaluation.normalisation import speaker_zscore

    x = np.array([[1.0], [3.0], [100.0], [300.0]], np.float32)
    out = speaker_zscore(x, np.array(["a", "a", "b", "b"]))
    np.testing.assert_allclose(out[:, 0], [-1, 1, -1, 1])


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": {"svmm": {}}}, "models.svmm: unknown classification model"),
        ({"features": {"sets": ["egemapz"]}}, r"features.sets\[0\]: unknown extractor 'egemapz'"),
        ({"features": {"sets": ["mfcc.median"]}}, r"features.sets\[0\]: unknown kind 'median'"),
        ({"evaluation": {"metrics": ["auc"]}}, r"evaluation.metrics\[0\]: unknown classification metric"),
        ({"evaluation": {"normalisation": ["pca"]}}, r"evaluation.normalisation\[0\]: expected one of"),
        ({"protocol": {"name": "holdout"}}, "protocol.name: unknown protocol 'holdout'"),
        ({"task": {"type": "clustering"}}, "task.type"),
        ({"models": {"svm": {"grid": {"C": 1.0}}}}, "models.svm.grid.C: expected a list"),
        ({"models": {"svm_rbf": {"model": "svn"}}},
         "models.svm_rbf.model: unknown classification model 'svn'"),
    ],
)
def test_spec_errors_name_the_key(change, message):
    d = copy.deepcopy(BASE)
    d.update(change)
    with pytest.raises(SpecError, match=message):
        validate(d)


def test_missing_column_before_any_compute(corpus, tmp_path):
    root, _ = corpus
    with pytest.raises(DataError, match="no column 'emotion'"):
        run(
            spec(task={"type": "classification", "target": "emotion"}),
            root,
            tmp_path / "o",
            store=tmp_path / "s",
            jobs=1,
            progress=False,
        )
    assert not (tmp_path / "s").exists()  # failed before extracting anything


def test_label_with_too_few_samples(corpus, tmp_path):
    root, m = corpus
    m = m.copy()
    m.loc[m.index[0], "label"] = "rare"
    with pytest.raises(DataError, match=r"fewer than 2 samples: \{'rare': 1\}"):
        run(spec(), root, tmp_path / "o", store=tmp_path / "s", jobs=1, progress=False, manifest=m)


def test_single_speaker(corpus, tmp_path):
    root, m = corpus
    m = m[m.speaker == "s00"]
    with pytest.raises(ValueError, match="at least 2 values of 'speaker'"):
        run(spec(), root, tmp_path / "o", store=tmp_path / "s", jobs=1, progress=False, manifest=m)


def test_training_fold_lacking_a_class(corpus, tmp_path):
    root, m = corpus
    m = m[~((m.label == "sad") & (m.speaker != "s01"))]  # 'sad' only from speaker s01
    with pytest.raises(DataError, match=r"fold speaker=s01: the training fold lacks class\(es\) \['sad'\]"):
        run(spec(), root, tmp_path / "o", store=tmp_path / "s", jobs=1, progress=False, manifest=m)


def test_test_fold_lacking_a_class_scores_present_classes(corpus, store, tmp_path):
    root, m = corpus
    m = m[~((m.label == "sad") & (m.speaker == "s02"))]  # s02 has no 'sad' in its test fold
    df = run(spec(), root, tmp_path / "o", store=store, jobs=1, progress=False, manifest=m)
    preds = pd.read_csv(tmp_path / "o" / "predictions.csv")
    sub = preds[preds.fold == "speaker=s02"]
    expected = M.uar(sub["y_true"].to_numpy(), sub["y_pred"].to_numpy())
    got = df[(df.fold == "speaker=s02") & (df.metric == "uar")]["value"].item()
    assert got == pytest.approx(expected) and "sad" not in set(sub["y_true"])


def test_nan_features_name_the_files(corpus, tmp_path):
    import shutil

    root, m = corpus
    st = tmp_path / "s"
    run(spec(), root, tmp_path / "o1", store=st, jobs=1, progress=False)
    part = next(st.glob("synthetic/egemaps/native-*/part-*.parquet"))
    df = pd.read_parquet(part)
    col = [c for c in df.columns if c.startswith("egemaps_")][3]
    df.loc[df["id"] == m["id"].iloc[5], col] = np.inf
    df.to_parquet(part, index=False)
    shutil.rmtree(tmp_path / "o1")
    with pytest.raises(
        DataError, match=rf"NaN/inf or missing features for 1 utterance\(s\): {m['id'].iloc[5]} \("
    ):
        run(spec(), root, tmp_path / "o2", store=st, jobs=1, progress=False)


def test_cross_corpus_train_on_a_test_on_b(corpus, store, tmp_path):
    root, m = corpus
    other = tmp_path / "other"
    mb = make_synthetic_corpus(other, n_speakers=2, n_per_class=3, duration=0.8, seed=7)
    # corpus B names its classes differently; the spec maps them onto A's labels
    mb.assign(emotion=mb["label"].replace({"angry": "anger", "happy": "joy"}))[
        ["path", "emotion", "speaker"]
    ].to_csv(other / "meta.csv", index=False)
    test_corpus = {
        "name": "csv",
        "options": {"csv": "meta.csv", "columns": {"label": "emotion"}},
        "mapping": {"anger": "angry", "joy": "happy"},
    }
    s = spec(protocol={"name": "cross_corpus", "test_corpus": test_corpus})
    res = run(s, root=root, out=tmp_path / "r", store=store, jobs=1, progress=False, test_root=other)
    folds = set(res["fold"]) - {"mean", "std", "pooled"}
    assert folds == {"synthetic->csv"}
    pred = pd.read_csv(tmp_path / "r" / "predictions.csv")
    assert len(pred) == len(mb) and set(pred["y_true"]) == set(m["label"])  # only B is tested
    info = json.loads((tmp_path / "r" / "spec.json").read_text())
    assert info["folds"] == [{"name": "synthetic->csv", "n_train": len(m), "n_test": len(mb)}]

    # a test label the training corpus lacks, and a missing test root, are named before any fit
    unmapped = {**test_corpus, "mapping": {"anger": "angry"}}
    with pytest.raises(DataError, match=r"csv label\(s\) \['joy'\] do not occur in synthetic"):
        run(spec(protocol={"name": "cross_corpus", "test_corpus": unmapped}), root=root,
            out=tmp_path / "r2", store=store, jobs=1, progress=False, test_root=other)
    with pytest.raises(DataError, match="no root for 'csv'"):
        run(s, root=root, out=tmp_path / "r3", store=store, jobs=1, progress=False)
    with pytest.raises(SpecError, match="protocol.test_corpus: missing"):
        spec(protocol={"name": "cross_corpus"})


def test_folds_fit_with_one_blas_thread_whatever_the_jobs(corpus, store, tmp_path, monkeypatch):
    """Numbers must not depend on --jobs or the machine's cores: every fold's fits see one BLAS thread
    (iterative optimisers follow the summation order), and spec.json records it."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from featurekit.evaluation import folds as F

    seen = []
    real = F.fit_predict

    def spy(*args, **kwargs):
        seen.append({p["internal_api"]: p["num_threads"] for p in threadpool_info()})
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "fit_predict", spy)
    with threadpool_limits(limits=2):  # the caller's setting does not leak into the folds
        run(spec(), corpus[0], tmp_path / "o", store=store, jobs=1, progress=False)
    assert len(seen) == 4 and all(set(s.values()) == {1} for s in seen), seen
    assert json.loads((tmp_path / "o" / "spec.json").read_text())["fold_threads"] == 1

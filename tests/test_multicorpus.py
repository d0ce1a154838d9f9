"""Multi-corpus specs and protocols, stacking and learned layer weighting, on small synthetic corpora."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from featurekit.corpora.synthetic import make_synthetic_corpus
from featurekit.evaluation import DataError, SpecError, run, validate
from featurekit.evaluation import runner as R
from featurekit.evaluation.layerfusion import LayerWeightedSum, layer_blocks
from featurekit.evaluation.models import CLASSIFIERS, ModelSpec
from featurekit.evaluation.multicorpus import CorpusRootError, multi_corpus_manifest
from featurekit.evaluation.normalisation import corpus_zscore
from featurekit.evaluation.protocols import parse_matrix_scope
from featurekit.evaluation.stacking import StackMember, fit_predict_stacked

SUBSET = ["angry", "happy", "neutral", "sad"]
BASE = {
    "name": "m",
    "seed": 0,
    "corpora": {
        "syn": {"adapter": "synthetic"},
        # the second corpus names two classes differently and is read through the csv adapter
        "other": {"adapter": "csv", "options": {"csv": "meta.csv", "columns": {"label": "emotion"}},
                  "mapping": {"anger": "angry", "joy": "happy"}},
    },
    "task": {"subset": SUBSET},
    "protocol": {"name": "cross_corpus_matrix"},
    "features": {"sets": ["egemaps"]},
    "evaluation": {"normalisation": ["speaker"], "bootstrap": 50},
    "models": {"logreg": {"grid": {"C": [1.0]}}},  # one candidate: no inner search (fast)
}


def mspec(**changes):
    d = copy.deepcopy(BASE)
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            d[section][sub] = value
        else:
            d[section] = value
    return validate(d)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two corpora whose utterance ids and speaker codes clash (both s00_angry_00, s00, ...)."""
    a = tmp_path_factory.mktemp("a")
    b = tmp_path_factory.mktemp("b")
    ma = make_synthetic_corpus(a, n_speakers=4, n_per_class=3, duration=0.8)
    mb = make_synthetic_corpus(b, n_speakers=3, n_per_class=3, duration=0.8, seed=7)
    mb = mb.assign(emotion=mb["label"].replace({"angry": "anger", "happy": "joy"}))
    mb[["path", "emotion", "speaker"]].to_csv(b / "meta.csv", index=False)
    return {"syn": a, "other": b}, ma, mb


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


def _recording_folds(monkeypatch):
    """Record every fold that reaches a fit, with the labels and groups the fit gets."""
    seen = []
    real = R._run_fold

    def spy(cell_key, fold, inputs, y, groups, **kw):
        seen.append((fold, y[fold.train], groups[fold.train]))
        return real(cell_key, fold, inputs, y, groups, **kw)

    monkeypatch.setattr(R, "_run_fold", spy)
    return seen


def _check_fits(seen, manifest):
    speakers = manifest["speaker"].to_numpy()
    for fold, _, g in seen:
        assert not set(speakers[fold.test]) & set(g), fold.name  # speaker-disjoint
        assert set(g) == set(speakers[fold.train])


# -- protocols -------------------------------------------------------------------------------------
def test_cross_corpus_matrix(corpora, store, tmp_path, monkeypatch):
    roots, ma, mb = corpora
    seen = _recording_folds(monkeypatch)
    s = mspec(evaluation__normalisation=["corpus", "speaker"])
    df = run(s, None, tmp_path / "r", store=store, jobs=1, progress=False, roots=roots)
    pairs = {parse_matrix_scope(p) for p in df["protocol"]}
    assert pairs == {("syn", "syn"), ("syn", "other"), ("other", "other"), ("other", "syn")}
    manifest, _ = multi_corpus_manifest(s, {"syn": ma, "other": _read_other(roots)})
    _check_fits(seen, manifest)
    corpus = manifest["corpus"].to_numpy()
    # one fit per training corpus for its test corpora: 4 + 3 leave-one-speaker-out folds, 2 cross folds
    names = [f.name for f, _, _ in seen]
    assert len(names) == 2 * (4 + 3 + 2)  # per normalisation
    for fold, _, _ in seen:
        if "->" in fold.name:  # train on one corpus, test on the other: no test-corpus row in the fit
            assert len(set(corpus[fold.train])) == 1 and not set(corpus[fold.train]) & set(corpus[fold.test])
    pred = pd.read_csv(tmp_path / "r" / "predictions.csv")
    cross = pred[(pred.normalisation == "speaker") & (pred.protocol == "matrix syn -> other (cross-corpus)")]
    assert sorted(cross["id"]) == sorted("other:" + mb["id"])  # ids kept apart by their corpus prefix
    assert set(cross["y_true"]) == set(SUBSET)  # "anger"/"joy" mapped onto the common labels
    diag = pred[(pred.normalisation == "speaker")
                & (pred.protocol == "matrix syn -> syn (leave-one-speaker-out)")]
    assert sorted(diag["id"]) == sorted("syn:" + ma["id"])
    # every matrix entry has its pooled UAR and interval
    sel = df[(df.fold == "pooled") & (df.metric.isin(["uar", "uar_ci95_low", "uar_ci95_high"]))]
    assert len(sel) == 2 * 4 * 3
    # the report: one experiment per matrix entry, and the heatmap with every pair and its interval
    from featurekit.report import build_report, load_experiments
    from featurekit.report.figures import matrix_values

    exps = load_experiments([tmp_path / "r"])
    assert len(exps) == 4 and all(len(e.predictions) in (2 * len(ma), 2 * len(mb)) for e in exps)  # 2 norms
    values = matrix_values(df.assign(source="r"))
    uar = df[(df.fold == "pooled") & (df.metric == "uar") & (df.normalisation == "speaker")
             & (df.protocol == "matrix other -> syn (cross-corpus)")]["value"].item()
    assert values[("egemaps", "logreg", "speaker")][("other", "syn")][0] == pytest.approx(uar)
    report = build_report([tmp_path / "r"], tmp_path / "rep")
    heatmaps = [f for s in report.sections for f in s.figures if f.kind == "matrix"]
    assert len(heatmaps) == 1 and (tmp_path / "rep" / heatmaps[0].path).is_file()


def _read_other(roots):
    from featurekit.corpora import load_corpus

    return load_corpus("csv", roots["other"], csv="meta.csv", columns={"label": "emotion"})


def test_leave_one_corpus_out(corpora, store, tmp_path, monkeypatch):
    roots, ma, mb = corpora
    seen = _recording_folds(monkeypatch)
    s = mspec(protocol={"name": "leave_one_corpus_out"})
    df = run(s, None, tmp_path / "r", store=store, jobs=1, progress=False, roots=roots)
    assert set(df["fold"]) - {"mean", "std", "pooled"} == {"corpus=syn", "corpus=other"}
    manifest, _ = multi_corpus_manifest(s, {"syn": ma, "other": _read_other(roots)})
    _check_fits(seen, manifest)
    corpus = manifest["corpus"].to_numpy()
    for fold, _, _ in seen:
        assert not set(corpus[fold.train]) & set(corpus[fold.test])
    assert df["protocol"].iloc[0] == "leave-one-corpus-out (syn, other)"


def test_multi_corpus_loso(corpora, store, tmp_path, monkeypatch):
    roots, ma, mb = corpora
    seen = _recording_folds(monkeypatch)
    s = mspec(protocol={"name": "multi_corpus_loso"})
    df = run(s, None, tmp_path / "r", store=store, jobs=1, progress=False, roots=roots)
    folds = set(df["fold"]) - {"mean", "std", "pooled"}
    # s00 exists in both corpora: the prefix keeps them two speakers
    assert {"speaker=syn:s00", "speaker=other:s00"} <= folds and len(folds) == 7
    manifest, _ = multi_corpus_manifest(s, {"syn": ma, "other": _read_other(roots)})
    _check_fits(seen, manifest)
    pred = pd.read_csv(tmp_path / "r" / "predictions.csv")
    assert len(pred) == len(ma) + len(mb) and pred["id"].is_unique


def test_corpus_zscore_uses_training_rows_of_training_corpora():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(5, 2, (6, 3)), rng.normal(-3, 1, (4, 3))]).astype(np.float32)
    corpora = np.array(["a"] * 6 + ["b"] * 4)
    train = np.arange(4)  # four of a's rows; b is all test
    z = corpus_zscore(x, corpora, train)
    mu, sd = x[:4].mean(axis=0), x[:4].std(axis=0)
    assert np.allclose(z[:6], (x[:6] - mu) / sd, atol=1e-5)  # a's held-out rows use a's training stats
    assert np.allclose(z[6:].mean(axis=0), 0, atol=1e-5)  # b (no training rows): its own statistics
    x2 = x.copy()
    x2[4:6] += 100  # a's test rows never change a's statistics
    assert np.allclose(corpus_zscore(x2, corpora, train)[:4], z[:4])


# -- bad input: clear errors before any compute -----------------------------------------------------
def _nothing_computed(out, store_dir):
    assert not out.exists()
    assert not any(store_dir.iterdir())


def test_label_missing_from_mapping_is_named(corpora, tmp_path):
    roots, *_ = corpora
    s = mspec(corpora__other={**BASE["corpora"]["other"], "mapping": {"anger": "angry"}})
    (tmp_path / "st").mkdir()
    with pytest.raises(DataError, match=r"corpora.other: label\(s\) \['joy'\] of corpus 'other' are not in"):
        run(s, None, tmp_path / "r", store=tmp_path / "st", jobs=1, progress=False, roots=roots)
    _nothing_computed(tmp_path / "r", tmp_path / "st")


def test_mapping_that_empties_a_class_is_named(corpora, tmp_path):
    roots, *_ = corpora
    s = mspec(corpora__other={**BASE["corpora"]["other"], "drop": ["sad"]})
    (tmp_path / "st").mkdir()
    with pytest.raises(DataError, match=r"corpora.other: .*class\(es\) \{'sad': 0\} have fewer than 2"):
        run(s, None, tmp_path / "r", store=tmp_path / "st", jobs=1, progress=False, roots=roots)
    _nothing_computed(tmp_path / "r", tmp_path / "st")


def test_missing_root_is_named(corpora, tmp_path, monkeypatch):
    roots, *_ = corpora
    monkeypatch.delenv("FK_TEST_OTHER", raising=False)
    s = mspec(corpora__other={**BASE["corpora"]["other"], "root_env": "FK_TEST_OTHER"})
    (tmp_path / "st").mkdir()
    with pytest.raises(CorpusRootError, match=r"corpora.other: no root: pass --corpus-root other=PATH or "
                                               r"set FK_TEST_OTHER"):
        run(s, None, tmp_path / "r", store=tmp_path / "st", jobs=1, progress=False,
            roots={"syn": roots["syn"]})
    with pytest.raises(CorpusRootError, match=r"corpora.other: root .* is not a directory"):
        run(s, None, tmp_path / "r", store=tmp_path / "st", jobs=1, progress=False,
            roots={**roots, "other": tmp_path / "absent"})
    _nothing_computed(tmp_path / "r", tmp_path / "st")


def test_clashing_ids_are_kept_apart(corpora):
    roots, ma, mb = corpora
    assert set(ma["id"]) & set(mb["id"])  # the fixture's corpora do clash
    manifest, parts = multi_corpus_manifest(mspec(), {"syn": ma, "other": _read_other(roots)})
    assert manifest["id"].is_unique and len(manifest) == len(ma) + len(mb)
    assert list(parts["syn"]["id"]) == list(ma["id"])  # the store is read with each corpus' own ids


@pytest.mark.parametrize("changes, match", [
    ({"protocol": {"name": "loso"}}, r"protocol.name: \[corpora\] .* needs a multi-corpus protocol"),
    ({"corpus": {"name": "synthetic"}}, r"corpora: give \[corpus\] .* not both"),
    ({"corpora": {"syn": {"adapter": "synthetic"}}}, r"corpora: expected at least 2 items"),
    ({"corpora__other": {"adapter": "csv", "mapings": {}}}, r"corpora.other.mapings.*did you mean 'mapping'"),
    ({"corpora__other": {"adapter": "csv", "mapping": {"anger": "rage"}}},
     r"corpora.other.mapping.anger: 'rage' is not in the common label set"),
    ({"corpora__other": {"adapter": "csv", "mapping": {"anger": "angry"}, "drop": ["anger"]}},
     r"corpora.other.drop: label\(s\) \['anger'\] are both mapped and dropped"),
    ({"corpora__other": {"adapter": "csvv"}}, r"corpora.other.name.*did you mean 'csv'"),
    ({"task": {}}, r"task.subset: missing: a multi-corpus spec names the common label set"),
    ({"task": {"subset": SUBSET, "mapping": {"a": "b"}}}, r"task.mapping: not for a multi-corpus spec"),
])
def test_multi_corpus_spec_errors(changes, match):
    with pytest.raises(SpecError, match=match):
        mspec(**changes)


def test_single_corpus_spec_errors():
    single = {k: v for k, v in copy.deepcopy(BASE).items() if k != "corpora"}
    single["corpus"] = {"name": "synthetic"}
    with pytest.raises(SpecError, match=r"'cross_corpus_matrix' needs several corpora"):
        validate(single)
    single["protocol"] = {"name": "loso"}
    single["evaluation"]["normalisation"] = ["corpus"]
    with pytest.raises(SpecError, match=r"'corpus' \(per-corpus z-score\) needs several corpora"):
        validate(single)
    del single["corpus"]
    with pytest.raises(SpecError, match=r"corpus: missing: give \[corpus\]"):
        validate(single)


# -- stacking ----------------------------------------------------------------------------------------
META_SEEN: list[np.ndarray] = []


class _RecordingLogReg(LogisticRegression):
    """A meta-learner that records the matrix it is fit on."""

    def fit(self, X, y, sample_weight=None):  # noqa: N803 (sklearn's signature)
        META_SEEN.append(np.array(X))
        return super().fit(X, y, sample_weight=sample_weight)


def test_stacking_meta_learner_sees_only_out_of_fold_scores():
    from sklearn.neighbors import KNeighborsClassifier

    from featurekit.evaluation.pipeline import fit_predict

    rng = np.random.default_rng(0)
    groups = np.repeat([f"s{i}" for i in range(5)], 18)
    y = np.tile(np.repeat([0, 1, 2], 6), 5)
    informative = rng.normal(size=(90, 4)) + y[:, None] * 1.5
    noise = rng.normal(size=(90, 6))  # a 1-NN on noise scores its own training rows perfectly
    train, test = np.arange(72), np.arange(72, 90)
    logreg = CLASSIFIERS.get("logreg")
    knn = ModelSpec(build=lambda seed, cw, **p: KNeighborsClassifier(n_neighbors=1))
    meta = ModelSpec(build=lambda seed, cw, **p: _RecordingLogReg())

    def member(ms, x, grid):
        return StackMember(ms, grid, {}, 3, x[train], x[test])

    META_SEEN.clear()
    r = fit_predict_stacked([member(logreg, informative, {"C": [0.1, 1.0]}), member(knn, noise, {})],
                            StackMember(meta, {}, {}, 3, None, None), y[train], groups[train],
                            n_classes=3, stack_folds=4, normalisation="global", balancing="class_weight",
                            seed=0)
    # the inner folds are speaker-grouped and cover every training row once
    covered = np.concatenate([va for _, va in r["inner"]])
    assert sorted(covered) == list(range(72))
    for tr, va in r["inner"]:
        assert not set(groups[train][tr]) & set(groups[train][va])
    # the meta-learner was fit once, on exactly the out-of-fold scores
    assert len(META_SEEN) == 1 and np.array_equal(META_SEEN[0], r["oof"])
    for tr, va in r["inner"]:  # each block: a member fit without the held-out speakers
        xi, yi, gi = informative[train], y[train], groups[train]
        ref = fit_predict(logreg, xi[tr], yi[tr], gi[tr], xi[va], task="classification",
                          normalisation="global",
                          balancing="class_weight", grid={"C": [0.1, 1.0]}, params={}, inner_folds=3, seed=0,
                          sequences=False, proba=True)
        assert np.allclose(r["oof"][va, :3], ref["proba"])
    # in-sample, the noise 1-NN would hand the meta-learner the true labels; out of fold it is at chance
    assert (r["oof"][:, 3:].argmax(axis=1) == y[train]).mean() < 0.6
    assert r["proba"].shape == (18, 3) and set(r["best_params"]) == {"member0", "member1", "meta"}


def test_stacked_system_end_to_end(corpora, store, tmp_path):
    roots, ma, _ = corpora
    d = {
        "name": "s", "corpus": {"name": "synthetic"}, "task": {"target": "label"},
        "features": {"sets": ["egemaps"], "stacking": [{"members": ["egemaps:logreg", "mfcc.mean_std:lr2"],
                                                       "meta": "meta"}]},
        "evaluation": {"normalisation": ["speaker"], "bootstrap": 20},
        "models": {"logreg": {"grid": {"C": [1.0]}, "sets": ["egemaps"]},
                   "lr2": {"model": "logreg", "grid": {"C": [1.0]}, "sets": ["egemaps"]},
                   # the meta-learner: an entry of its own, in no other cell
                   "meta": {"model": "logreg", "grid": {"C": [1.0]}, "inner_folds": 2,
                            "sets": ["stack(egemaps:logreg|mfcc.mean_std:lr2)->meta"]}},
    }
    s = validate(d)
    name = "stack(egemaps:logreg|mfcc.mean_std:lr2)->meta"
    assert name in [fs.name for fs in s.feature_sets]
    df = run(s, roots["syn"], tmp_path / "r", store=store, jobs=1, progress=False)
    uar = df[(df.feature_set == name) & (df.fold == "pooled") & (df.metric == "uar")]["value"].item()
    assert uar > 0.5
    params = pd.read_csv(tmp_path / "r" / "params.csv")
    best = json.loads(params[params.feature_set == name]["params"].iloc[0])
    assert set(best) == {"member0", "member1", "meta"}


@pytest.mark.parametrize("stacking, match", [
    ([{"members": ["egemaps:logreg", "mfcc:nope"], "meta": "logreg"}], r"members\[1\].*'nope'"),
    ([{"members": ["egemaps:logreg", "mfcc"], "meta": "logreg"}], r"expected FEATURE_SET:MODEL"),
    ([{"members": ["egemaps:logreg", "mfcc.lld:logreg"], "meta": "logreg"}], r"stacking takes vector"),
    ([{"members": ["egemaps:logreg", "mfcc:logreg"], "meta": "ridge"}], r"features.stacking\[0\].meta"),
    ([{"members": ["egemaps:logreg"], "meta": "logreg"}], r"at least 2"),
    ([{"members": ["egemaps:logreg", "mfcc:logreg"], "meta": "logreg", "weights": 1}],
     r"unknown key 'weights'"),
])
def test_stacking_spec_errors(stacking, match):
    d = {"corpus": {"name": "synthetic"}, "features": {"sets": ["egemaps"], "stacking": stacking},
         "models": {"logreg": {}}}
    with pytest.raises(SpecError, match=match):
        validate(d)


# -- learned layer weighting ---------------------------------------------------------------------------
def _layer_names(layers, dims=4, stats=("mean", "std")):
    return [f"hf_encoder_t_L{layer:02d}_{st}_{d:04d}"
            for layer in layers for st in stats for d in range(dims)]


def test_layer_blocks_align_layers_and_keep_other_columns():
    names = ["egemaps_F0"] + _layer_names([3, 1, 2], dims=2)
    blocks, passthrough = layer_blocks(names)
    assert passthrough == [0] and len(blocks) == 3
    for b in blocks:  # aligned: the same statistic and dimension at each position
        assert [names[i].split("_L")[1][3:] for i in b] == [names[i].split("_L")[1][3:] for i in blocks[0]]
    assert layer_blocks(_layer_names([5])) is None
    with pytest.raises(ValueError, match="other columns"):
        layer_blocks(_layer_names([1], dims=2) + _layer_names([2], dims=3))


def test_layer_weighted_sum_learns_the_informative_layer():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    layers = [rng.normal(size=(120, 8)) for _ in range(3)]
    layers[1] = layers[1] + np.eye(3, 8)[y] * 3.0  # only layer 1 separates the classes
    x = np.hstack(layers + [rng.normal(size=(120, 2))])
    blocks = [list(range(8 * i, 8 * (i + 1))) for i in range(3)]
    step = LayerWeightedSum(blocks, [24, 25], epochs=150, seed=0).fit(x[:90], y[:90])
    assert step.weights_.argmax() == 1 and step.weights_[1] > 0.6
    assert np.isclose(step.weights_.sum(), 1.0)
    assert step.transform(x).shape == (120, 10)
    # fit on training rows only: the held-out rows never move the weights
    x2 = x.copy()
    x2[90:] = rng.normal(size=(30, 26)) * 100
    other = LayerWeightedSum(blocks, [24, 25], epochs=150, seed=0).fit(x2[:90], y[:90])
    assert np.allclose(step.weights_, other.weights_)


def test_wsum_layer_syntax():
    from featurekit.evaluation.runner import _select_layers
    from featurekit.evaluation.spec import split_weighted_layers

    assert split_weighted_layers("wsum") == (True, None)
    assert split_weighted_layers("wsum(2,3,4)") == (True, "2,3,4")
    assert split_weighted_layers("2,3") == (False, "2,3")
    for bad in ("wsum(2)", "wsum2,3", "wsum()"):
        with pytest.raises(SpecError, match="learned weighted sum"):
            split_weighted_layers(bad)
    table = pd.DataFrame(np.zeros((2, len(_layer_names([0, 1, 2])))), columns=_layer_names([0, 1, 2]))
    assert list(_select_layers(table, "wsum").columns) == _layer_names([0, 1, 2])
    assert list(_select_layers(table, "wsum(1,2)").columns) == _layer_names([1, 2])
    d = {"corpus": {"name": "synthetic"}, "features": {"sets": ["egemaps@wsum"]}, "models": {"logreg": {}}}
    with pytest.raises(SpecError, match="only encoder extractors have layers"):
        validate(d)


def test_cli_names_a_missing_corpus_root_and_writes_nothing(corpora, tmp_path, capsys, monkeypatch):
    from featurekit.cli import main

    roots, *_ = corpora
    monkeypatch.delenv("FK_TEST_OTHER", raising=False)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "m"\n[corpora.syn]\nadapter = "synthetic"\n'
        '[corpora.other]\nadapter = "csv"\nroot_env = "FK_TEST_OTHER"\n'
        'options = { csv = "meta.csv", columns = { label = "emotion" } }\n'
        'mapping = { anger = "angry", joy = "happy" }\n'
        '[task]\nsubset = ["angry", "happy", "neutral", "sad"]\n[protocol]\nname = "leave_one_corpus_out"\n'
        '[features]\nsets = ["egemaps"]\n[models.logreg]\n'
    )
    out, store = tmp_path / "out", tmp_path / "store"
    argv = ["evaluate", str(spec), "--out", str(out), "--store", str(store), "--jobs", "1", "--quiet"]
    assert main([*argv, "--corpus-root", f"syn={roots['syn']}"]) == 2
    err = capsys.readouterr().err
    assert "corpora.other: no root: pass --corpus-root other=PATH or set FK_TEST_OTHER" in err
    assert main([*argv, "--root", str(roots["syn"])]) == 2
    assert "takes --corpus-root NAME=PATH, not --root" in capsys.readouterr().err
    assert not out.exists() and not store.exists()


def test_corpus_normalisation_is_accepted_by_the_two_corpus_cross_corpus_protocol():
    d = {"corpus": {"name": "synthetic"}, "features": {"sets": ["egemaps"]}, "models": {"logreg": {}},
         "protocol": {"name": "cross_corpus", "test_corpus": {"name": "csv", "options": {"csv": "m.csv"}}},
         "evaluation": {"normalisation": ["corpus"]}}
    assert validate(d).evaluation["normalisation"] == ["corpus"]

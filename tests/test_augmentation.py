"""Waveform augmentation ([augmentation.waveform]): specs, seeded copies, the store's augmented tables,
and copies inside training folds only (never a test utterance, never in another inner fold)."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest

from featurekit.audio import AudioOptions, load_audio
from featurekit.augmentation import WaveformAugmentation, copy_id, source_of
from featurekit.corpora.synthetic import make_synthetic_corpus
from featurekit.evaluation import SpecError, run, validate
from featurekit.evaluation import augmentation as A
from featurekit.evaluation import runner as R
from featurekit.evaluation.models import CLASSIFIERS, ModelSpec
from featurekit.executor import SerialExecutor
from featurekit.extraction import FeatureRequest, extract
from featurekit.extractors import make_extractor
from featurekit.parameters import ParameterError
from featurekit.store import FeatureStore, TableKey

CHAIN = [
    {"name": "AddGaussianSNR", "min_snr_db": 10.0, "max_snr_db": 30.0, "p": 1.0},
    {"name": "Gain", "min_gain_db": -6.0, "max_gain_db": 6.0},
    {"name": "PitchShift", "min_semitones": -2.0, "max_semitones": 2.0},
    {"name": "TimeStretch", "min_rate": 0.9, "max_rate": 1.1},
    {"name": "BandPassFilter"},
    {"name": "AddGaussianNoise", "p": 0.2},
]

BASE = {
    "name": "t",
    "seed": 0,
    "corpus": {"name": "synthetic"},
    "task": {"type": "classification", "target": "label"},
    "protocol": {"name": "loso", "group": "speaker"},
    "features": {"sets": ["mfcc"]},
    "evaluation": {"normalisation": ["none"], "bootstrap": 0},
    "models": {"logreg": {"grid": {"C": [0.1, 1.0]}},
               "logreg_aug": {"model": "logreg", "grid": {"C": [0.1, 1.0]}}},
    "augmentation": {"models": ["logreg_aug"], "waveform": {"copies": 2, "seed": 3, "transforms": CHAIN}},
}


def doc(**changes) -> dict:
    d = copy.deepcopy(BASE)
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            d[section][sub] = value
        else:
            d[section] = value
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_synthetic_corpus(root, n_speakers=4, n_per_class=2, duration=0.6)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


# -- specs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("waveform, where, message", [
    ({"transforms": [{"name": "Gian"}]}, "augmentation.waveform.transforms[0].name", "did you mean 'Gain'"),
    ({"transforms": [{"name": "Gain", "min_gain_db": "3"}]}, "transforms[0].min_gain_db",
     "expected a number"),
    ({"transforms": [{"name": "Gain", "gain_db": 3.0}]}, "transforms[0].gain_db", "unknown parameter"),
    ({"transforms": [{"name": "Gain", "p": 1.5}]}, "transforms[0].p", "expected a value <= 1.0"),
    ({"transforms": [{"name": "Gain"}, {"name": "PitchShift", "min_semitones": 3.0, "max_semitones": 1.0}]},
     "transforms[1].min_semitones", "greater than max_semitones"),
    ({"transforms": [{"name": "BandPassFilter", "min_rolloff": 7}]}, "transforms[0]", "multiple of 6"),
    ({"transforms": [{"min_gain_db": 1.0}]}, "transforms[0].name", "missing"),
    ({"transforms": [{"name": "Gain"}], "copies": 0}, "augmentation.waveform.copies", ">= 1"),
    ({"transforms": []}, "augmentation.waveform.transforms", "at least 1"),
    ({"transforms": [{"name": "Gain"}], "copy": 2}, "augmentation.waveform", "unknown key 'copy'"),
])
def test_bad_waveform_specs_name_the_key(waveform, where, message):
    with pytest.raises(SpecError) as err:
        validate(doc(augmentation={"models": ["logreg_aug"], "waveform": waveform}))
    assert where in str(err.value) and message in str(err.value), str(err.value)


def test_waveform_spec_refusals():
    with pytest.raises(SpecError, match="no model takes the waveform augmentation"):
        validate(doc(augmentation={"waveform": {"transforms": [{"name": "Gain"}]}}))  # no torch head
    with pytest.raises(SpecError, match="unknown model entry 'logreg_agu'"):
        validate(doc(augmentation={"models": ["logreg_agu"], "waveform": {"transforms": [{"name": "Gain"}]}}))
    stacking = [{"members": ["mfcc:logreg_aug", "egemaps:logreg"], "meta": "logreg"}]
    stacked = doc(features={"sets": ["mfcc", "egemaps"], "stacking": stacking})
    with pytest.raises(SpecError, match="stacked system"):
        validate(stacked)
    cross = doc(protocol={"name": "cross_corpus", "test_corpus": {"name": "synthetic"}})
    with pytest.raises(SpecError, match="not yet several corpora or cross_corpus"):
        validate(cross)


def test_resolution_and_cell_digests():
    """The augmented model's cells change identity (chain, copies, seed); other cells do not."""
    plain = copy.deepcopy(BASE)
    del plain["augmentation"]
    s0, s1 = validate(plain), validate(doc())
    resolved = s1.models["logreg_aug"]["waveform_augmentation"]
    assert resolved["copies"] == 2 and resolved["seed"] == 3
    assert resolved["transforms"][1] == {"name": "Gain", "params": {"min_gain_db": -6.0, "max_gain_db": 6.0,
                                                                    "p": 0.5}}
    assert "waveform_augmentation" not in s1.models["logreg"]

    def digests(s):
        return {(c.model, c.normalisation): c.digest(s) for c in R.plan_cells(s)}

    d0, d1 = digests(s0), digests(s1)
    assert d0[("logreg", "none")] == d1[("logreg", "none")]
    assert d0[("logreg_aug", "none")] != d1[("logreg_aug", "none")]
    for change in ({"seed": 4}, {"copies": 3}, {"transforms": CHAIN[:2]}):
        other = doc(augmentation={"models": ["logreg_aug"], "waveform": {**BASE["augmentation"]["waveform"],
                                                                          **change}})
        assert digests(validate(other))[("logreg_aug", "none")] != d1[("logreg_aug", "none")], change
    # the seed defaults to the spec's seed; ints and floats of one value resolve alike
    no_seed = doc(seed=5, augmentation={"models": ["logreg_aug"], "waveform": {
        "transforms": [{"name": "Gain", "min_gain_db": -6, "max_gain_db": 6}]}})
    r = validate(no_seed).models["logreg_aug"]["waveform_augmentation"]
    assert r["seed"] == 5 and r["transforms"][0]["params"]["min_gain_db"] == -6.0


def test_train_refuses_waveform_augmentation(corpus, tmp_path):
    from featurekit.deploy.training import train

    root, _ = corpus
    with pytest.raises(SpecError, match="not supported yet"):
        train(validate(doc()), "mfcc:logreg_aug", root=root, out_dir=tmp_path / "m", store=tmp_path / "s")


# -- copies -----------------------------------------------------------------------------------------
def test_copies_are_seeded_by_seed_utterance_and_copy(corpus):
    root, m = corpus
    aug = WaveformAugmentation.from_config({"transforms": CHAIN, "copies": 2, "seed": 3})
    opts = AudioOptions()
    x = load_audio(m["path"].iloc[0], options=opts)
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    a = aug.apply(x, options=opts, utterance="u", copy=0)
    assert (random.random(), np.random.rand()) == before  # the global random states are left as found
    b = aug.apply(x, options=opts, utterance="u", copy=0)
    assert a.dtype == np.float32 and np.array_equal(a, b)  # bit for bit
    assert not np.array_equal(a, aug.apply(x, options=opts, utterance="u", copy=1))
    assert not np.array_equal(a, aug.apply(x, options=opts, utterance="v", copy=0))
    other = WaveformAugmentation.from_config({"transforms": CHAIN, "copies": 2, "seed": 4})
    assert not np.array_equal(a, other.apply(x, options=opts, utterance="u", copy=0))
    assert not np.array_equal(a[: len(x)], x[: len(a)])
    # the same bits in worker processes, in any order
    from joblib import Parallel, delayed

    there = Parallel(n_jobs=2)(delayed(aug.apply)(x, options=opts, utterance="u", copy=k) for k in (1, 0))
    assert np.array_equal(there[1], a) and not np.array_equal(there[0], a)
    # a fixed duration holds for copies too (the copy is conditioned again)
    fixed = AudioOptions(duration=0.5)
    y = aug.apply(load_audio(m["path"].iloc[0], options=fixed), options=fixed, utterance="u", copy=0)
    assert len(y) == 8000
    assert source_of(copy_id("a#aug1", 2)) == ("a#aug1", 2)
    with pytest.raises(ParameterError, match="unknown waveform transform"):
        WaveformAugmentation.from_config({"transforms": [{"name": "Reverb"}]})


def test_augmented_tables_are_keyed_apart_and_reused(corpus, tmp_path):
    root, m = corpus
    m = m.iloc[:3]
    fs = FeatureStore(tmp_path / "s")
    ext = make_extractor("mfcc")
    req = [FeatureRequest(ext, ("mean_std", "lld"))]
    aug = WaveformAugmentation.from_config({"transforms": CHAIN, "copies": 2, "seed": 3})
    plain = fs.table("synthetic", ext, "mean_std", AudioOptions())
    augmented = fs.table("synthetic", ext, "mean_std", AudioOptions(), augmentation=aug.key())
    # tables without augmentation keep their keys (and folders) exactly
    key = plain.key.as_dict()
    assert "augmentation" not in key and plain.key.digest() == TableKey(**key).digest()
    assert augmented.directory.parent == plain.directory.parent and "-aug-" in augmented.directory.name
    reseeded = WaveformAugmentation.from_config({"transforms": CHAIN, "copies": 2, "seed": 4})
    assert fs.table("synthetic", ext, "mean_std", AudioOptions(), augmentation=reseeded.key()).directory \
        != augmented.directory

    first = extract(m, req, fs, corpus="synthetic", jobs=1, progress=False, augmentation=aug)
    assert not first.failures and first.computed == 3 * 2 * 2 and first.cache_hits == 0
    again = extract(m, req, fs, corpus="synthetic", jobs=1, progress=False, augmentation=aug)
    assert again.computed == 0 and again.cache_hits == 3 * 2 * 2
    assert plain.parts() == []  # the originals' table was not touched
    rows = augmented.read()
    fps, _ = fs.fingerprints("synthetic", m["path"].tolist())
    expect = {(copy_id(u, k), f) for u, f in zip(m["id"], fps) for k in range(2)}
    assert set(zip(rows["id"], rows["fingerprint"])) == expect
    # one more copy: only the new copy index is computed
    three = WaveformAugmentation.from_config({"transforms": CHAIN, "copies": 3, "seed": 3})
    more = extract(m, req, fs, corpus="synthetic", jobs=1, progress=False, augmentation=three)
    assert more.computed == 3 * 2 and more.cache_hits == 3 * 2 * 2
    # the same copies from worker processes (another executor, another order)
    fs2 = FeatureStore(tmp_path / "s2")
    par = extract(m.iloc[::-1], req, fs2, corpus="synthetic", jobs=2, chunk_size=1, progress=False,
                  augmentation=aug)
    assert not par.failures
    other = fs2.table("synthetic", ext, "mean_std", AudioOptions(), augmentation=aug.key()).read()
    cols = [c for c in rows.columns if c not in ("id", "fingerprint")]
    a = rows.set_index("id").loc[sorted(i for i, _ in expect)][cols].to_numpy(float)
    b = other.set_index("id").loc[sorted(i for i, _ in expect)][cols].to_numpy(float)
    # the copies are the same bits in any process (test above); the extractor itself may differ in the
    # last bits between this process and a worker (BLAS threads), for originals as well
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# -- training folds only ------------------------------------------------------------------------------
class _Seen:
    fits: list[set] = []
    predicts: list[set] = []
    augmented: list[tuple[str, int]] = []


def _spy_model(seed, class_weight, **params):
    from sklearn.neighbors import NearestCentroid

    class Spy(NearestCentroid):  # cheap to fit: the test is about which rows reach it
        def __init__(self, shrink_threshold=None):
            super().__init__(shrink_threshold=shrink_threshold)

        def fit(self, X, y, sample_weight=None):
            _Seen.fits.append(set(np.round(X[:, 0]).astype(int).tolist()))
            return super().fit(X, y)

        def predict(self, X):
            _Seen.predicts.append(set(np.round(X[:, 0]).astype(int).tolist()))
            return super().predict(X)

    return Spy(**params)


COPY_TAG = 1000  # a copy's tag: COPY_TAG * (copy index + 1) + its source's row


def _tag(k: int, row: int) -> int:
    return COPY_TAG * (k + 1) + row


@pytest.fixture
def instrumented(monkeypatch):
    """A spy model that records the row tags of every fit and prediction, rows tagged in column 0
    (originals: their manifest row; copies: :func:`_tag`), and a record of every augmented copy."""
    CLASSIFIERS._items["spy"] = ModelSpec(_spy_model, {"shrink_threshold": [None, 0.1]})
    orig_inputs, orig_copies, orig_apply = R._cell_inputs, A.cell_copies, WaveformAugmentation.apply

    def tagged_inputs(data, fs, norm, speakers):
        x = orig_inputs(data, fs, norm, speakers).copy()
        x[:, 0] = np.arange(len(x))
        return x

    def tagged_copies(data, copies, fs, norm, speakers, members):
        c = orig_copies(data, copies, fs, norm, speakers, members)
        x = c.inputs[0].copy()
        n = len(copies.sources)
        x[:, 0] = [_tag(i // n, row) for i, row in enumerate(c.source)]
        return A.Copies([x], c.source)

    def recording_apply(self, signal, *, options, utterance, copy, where=""):
        _Seen.augmented.append((utterance, copy))
        return orig_apply(self, signal, options=options, utterance=utterance, copy=copy, where=where)

    monkeypatch.setattr(R, "_cell_inputs", tagged_inputs)
    monkeypatch.setattr(A, "cell_copies", tagged_copies)
    monkeypatch.setattr(WaveformAugmentation, "apply", recording_apply)
    _Seen.fits, _Seen.predicts, _Seen.augmented = [], [], []
    yield _Seen
    del CLASSIFIERS._items["spy"]


def test_no_test_utterance_is_augmented_or_reaches_a_fit(corpus, store, tmp_path, instrumented, monkeypatch):
    """LOSO with 2 copies per training utterance: in every outer fold, every fit (inner search and
    refit) sees originals and copies of training utterances only, a copy always together with its
    source (same inner fold), every prediction sees originals only, and the final refit sees
    exactly the fold's training utterances and all their copies. A rerun augments nothing."""
    root, m = corpus
    waveform = {"copies": 2, "seed": 3, "transforms": CHAIN}
    evaluation = {"normalisation": ["none"], "bootstrap": 0, "inner_folds": 2}
    s = validate(doc(models={"spy": {}}, evaluation=evaluation,
                     augmentation={"models": ["spy"], "waveform": waveform}))
    orig_fold = R._run_fold
    folds_seen = []

    def fold_with_check(**kw):
        fold = kw["fold"]
        train, test = set(fold.train.tolist()), set(fold.test.tolist())
        before_fit, before_pred = len(_Seen.fits), len(_Seen.predicts)
        out = orig_fold(**kw)
        fits, preds = _Seen.fits[before_fit:], _Seen.predicts[before_pred:]
        assert len(fits) == 2 * 2 + 1  # 2 candidates x 2 inner folds + the refit
        for tags in fits:
            originals = {t for t in tags if t < COPY_TAG}
            copies = {(t // COPY_TAG - 1, t % COPY_TAG) for t in tags if t >= COPY_TAG}
            assert originals <= train and not originals & test
            assert {row for _, row in copies} <= train
            # copies land with their source: both copies of every original in this fit, nothing else
            assert copies == {(k, row) for row in originals for k in range(2)}
        assert fits[-1] == train | {_tag(k, r) for r in train for k in range(2)}
        for tags in preds:  # inner validation and the outer test: originals only
            assert all(t < COPY_TAG for t in tags)
        assert preds[-1] == test
        folds_seen.append(fold.name)
        return out

    monkeypatch.setattr(R, "_run_fold", fold_with_check)
    run(s, root, tmp_path / "o", store=store, jobs=1, progress=False)
    assert len(folds_seen) == 4
    # every utterance is a training utterance of some LOSO fold: each augmented once per copy
    assert sorted(_Seen.augmented) == sorted((u, k) for u in m["id"] for k in range(2))
    _Seen.augmented.clear()  # a rerun (another output directory) takes the copies from the store
    man = R.experiment_manifest(s, root)
    data = R.FeatureData.load(s, man, FeatureStore(store), progress=False)
    cells = R.plan_cells(s)
    again = R._waveform_copies(s, data, cells, R.make_folds(s, man), man["speaker"].astype(str).to_numpy(),
                               executor=SerialExecutor(), progress=False)
    assert len(again(cells[0]).source) == 2 * len(m)
    assert _Seen.augmented == []


def test_test_only_utterances_are_never_augmented(corpus, store, tmp_path, instrumented):
    root, m = corpus
    m = m.assign(split=np.where(m["speaker"] == "s03", "test", "train"))
    s = validate(doc(models={"spy": {}}, protocol={"name": "split", "column": "split"},
                     evaluation={"normalisation": ["none"], "bootstrap": 0, "inner_folds": 2},
                     augmentation={"models": ["spy"], "waveform": {"copies": 1, "seed": 9,
                                                                   "transforms": CHAIN[:2]}}))
    run(s, root, tmp_path / "o", store=store, jobs=1, progress=False, manifest=m)
    train_ids = set(m.loc[m["split"] == "train", "id"])
    assert {u for u, _ in _Seen.augmented} == train_ids
    test_rows = set(np.flatnonzero(m["split"] == "test").tolist())
    assert all(not ({t % COPY_TAG for t in tags} & test_rows) for tags in _Seen.fits)


def test_identity_copies_equal_their_sources_under_each_normalisation(corpus, store):
    """With every transform at p = 0 a copy is its source: its features, normalised as the cell's
    originals (speaker: with the statistics of the speaker's originals), equal the source's."""
    root, m = corpus
    s = validate(doc(evaluation={"normalisation": ["none", "global", "speaker"], "bootstrap": 0},
                     augmentation={"models": ["logreg_aug"], "waveform": {
                         "copies": 1, "transforms": [{"name": "Gain", "p": 0.0}]}}))
    man = R.experiment_manifest(s, root)
    data = R.FeatureData.load(s, man, FeatureStore(store), progress=False)
    folds = R.make_folds(s, man)
    speakers = man["speaker"].astype(str).to_numpy()
    aug = WaveformAugmentation.from_resolved(s.models["logreg_aug"]["waveform_augmentation"])
    fs = s.feature_sets[0]
    copies = A.AugmentedFeatureData.load_copies(data, aug, A.training_positions(folds), [fs], progress=False)
    for norm in ("none", "speaker"):
        c = A.cell_copies(data, copies, fs, norm, speakers, [fs])
        x = R._cell_inputs(data, fs, norm, speakers)
        np.testing.assert_allclose(c.inputs[0], x[c.source], rtol=1e-5, atol=1e-5)
    assert list(copies.manifest["source_id"]) == list(man["id"])

"""Deployment normalisation on Emo-DB: a per-speaker normalised model, trained on nine speakers, labels
the tenth speaker's recordings with that speaker's enrolment statistics as evaluation does.

(a) with the speaker's files as enrolment, UAR within 0.05 of that speaker's leave-one-speaker-out fold
of ``evaluate`` (same spec, same system); (b) windowed per-file labels agree with whole-file labels on
>= 80 % of files; (c) a recording made of the speaker's anger clips, with their other files as enrolment,
is labelled anger in >= 80 % of its windows. Skipped without Emo-DB (an error with
``FEATUREKIT_REQUIRE_DATA=1``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from featurekit.deploy import predict, train
from featurekit.evaluation.metrics import uar

SPEC = """
name = "emodb-speaker-deploy"
seed = 0
[corpus]
name = "emodb"
[features]
sets = ["egemaps"]
[evaluation]
normalisation = ["speaker"]
inner_folds = 3
[models.svm]
grid = {kernel = ["linear"], C = [0.01, 0.1]}
"""

SPEAKER = "03"


@pytest.fixture(scope="module")
def setup(emodb_root, tmp_path_factory):
    from featurekit.corpora import load_corpus
    from featurekit.evaluation.runner import run
    from featurekit.evaluation.spec import load_spec

    base = tmp_path_factory.mktemp("speaker_deploy")
    (base / "spec.toml").write_text(SPEC)
    spec = load_spec(base / "spec.toml")
    manifest = load_corpus("emodb", emodb_root)
    run(spec, emodb_root, base / "eval", store=base / "store", jobs=2, progress=False, manifest=manifest)
    preds = pd.read_csv(base / "eval" / "predictions.csv", dtype={"fold": str, "id": str})
    model = train(spec, "egemaps:svm", out_dir=base / "model", store=base / "store",
                  manifest=manifest[manifest["speaker"] != SPEAKER], jobs=2)
    test = manifest[manifest["speaker"] == SPEAKER].reset_index(drop=True)
    return model, test, preds, base


def test_enrolled_speaker_matches_their_evaluation_fold(setup):
    model, test, preds, _ = setup
    files = test["path"].tolist()
    fold = preds[preds["id"].isin(test["id"])]
    assert len(fold) == len(test) and fold["fold"].nunique() == 1
    fold_uar = uar(fold["y_true"].astype(str).to_numpy(), fold["y_pred"].astype(str).to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no population-statistics warning: enrolment was given
        pooled = predict(model, files, speakers=[SPEAKER] * len(files))
    truth = test["label"].astype(str).to_numpy()
    got = uar(truth, pooled.set_index("file").loc[files, "label"].astype(str).to_numpy())
    assert abs(got - fold_uar) <= 0.05, (got, fold_uar)
    # enrolment from the speaker's *other* files only: two halves, each normalised by the other
    half = np.arange(len(files)) % 2 == 0
    labels = pd.Series(index=files, dtype=object)
    for part in (half, ~half):
        df = predict(model, [f for f, p in zip(files, part) if p],
                     speaker_reference=[f for f, p in zip(files, part) if not p])
        labels.loc[df["file"]] = df["label"].to_numpy()
        assert (df["normalisation"] == "speaker:reference").all()
    got_other = uar(truth, labels.loc[files].astype(str).to_numpy())
    assert abs(got_other - fold_uar) <= 0.05, (got_other, fold_uar)


def test_windowed_file_labels_agree_with_whole_file_labels(setup):
    model, test, _, _ = setup
    files = test["path"].tolist()
    speakers = [SPEAKER] * len(files)
    whole = predict(model, files, speakers=speakers).set_index("file")["label"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # recordings shorter than the window
        win = predict(model, files, speakers=speakers, window=1.5, hop=0.5)
    agg = win[win["level"] == "file"].set_index("file")["label"]
    agree = float((agg.loc[files].to_numpy() == whole.loc[files].to_numpy()).mean())
    assert agree >= 0.8, agree


def test_concatenated_anger_is_labelled_anger_in_its_windows(setup):
    model, test, _, base = setup
    anger = test[test["label"] == "anger"]["path"].tolist()[:6]
    others = [p for p in test["path"] if p not in anger]
    parts = [sf.read(p, dtype="float32")[0] for p in anger]
    rate = sf.info(anger[0]).samplerate
    rec = Path(base) / "anger.wav"
    sf.write(rec, np.concatenate(parts), rate)
    df = predict(model, [str(rec)], speaker_reference=others, window=2.0, hop=1.0)
    windows = df[(df["level"] == "window") & df["error"].isna()]
    share = float((windows["label"] == "anger").mean())
    assert len(windows) >= 8 and share >= 0.8, (share, windows["label"].value_counts().to_dict())

"""``featurekit train`` / ``featurekit predict``: saved models that label new recordings.

Most tests run twice, on a model trained on the seeded synthetic corpus (always available) and on a
model trained on three Emo-DB speakers (03, 08, 09; eGeMAPS + linear SVM) and applied to another
speaker's files (skipped without Emo-DB, an error with ``FEATUREKIT_REQUIRE_DATA=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from featurekit.audio import load_audio
from featurekit.cli import main
from featurekit.deploy import ModelLoadError, ShortRecordingWarning, load_model, predict, read_meta, train
from featurekit.deploy.bundle import META_NAME, metadata_checksum, sha256_file
from featurekit.deploy.windows import iter_windows

SYNTH_SPEC = """
name = "synthetic-deploy"
seed = 0
[corpus]
name = "synthetic"
[features]
sets = ["mfcc.mean_std"]
[evaluation]
normalisation = ["speaker", "global"]
inner_folds = 3
[models.svm]
grid = {kernel = ["linear"], C = [0.01, 1.0]}
[models.torch_mlp]
params = {max_epochs = 5, layers = "dense(16)", validation_fraction = 0}
"""

REGRESSION_SPEC = """
seed = 0
[corpus]
name = "synthetic"
[task]
type = "regression"
target = "arousal"
[features]
sets = ["mfcc.mean_std"]
[evaluation]
normalisation = ["speaker"]
[models.ridge]
"""

EMODB_SPEC = """
name = "emodb-deploy"
seed = 0
[corpus]
name = "emodb"
[features]
sets = ["egemaps"]
[evaluation]
normalisation = ["speaker"]
[models.svm]
"""


@dataclass
class Trained:
    name: str
    model_dir: Path
    test_files: list[str]
    classes: list[str]
    work: Path


def _write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, pd.DataFrame, Path]:
    from featurekit.corpora.synthetic import make_synthetic_corpus

    base = tmp_path_factory.mktemp("synthetic")
    manifest = make_synthetic_corpus(base / "corpus", n_speakers=4, n_per_class=3, duration=1.5, seed=0)
    return base, manifest, _write_spec(base / "spec.toml", SYNTH_SPEC)


@pytest.fixture(scope="module")
def synthetic_model(synthetic) -> Trained:
    """SVM on speakers s00-s02 of the synthetic corpus; s03's files are the test files."""
    base, manifest, spec = synthetic
    train_m = manifest[manifest["speaker"] != "s03"]
    out = train(spec, "mfcc.mean_std:svm", out_dir=base / "model", store=base / "store", manifest=train_m,
                jobs=1)
    test = manifest[manifest["speaker"] == "s03"]
    files = test.groupby("label").head(1)["path"].tolist()
    return Trained("synthetic", out, files, sorted(train_m["label"].unique()), base)


def _train_emodb(root: Path, base: Path) -> Trained:
    from featurekit.corpora import load_corpus

    manifest = load_corpus("emodb", root)
    spec = _write_spec(base / "emodb.toml", EMODB_SPEC)
    train_m = manifest[manifest["speaker"].isin(["03", "08", "09"])]
    out = train(spec, "egemaps:svm", root=root, out_dir=base / "model", store=base / "store",
                manifest=train_m, jobs=2)
    test = manifest[manifest["speaker"] == "10"]
    files = test.groupby("label").head(1)["path"].tolist()[:4]
    return Trained("emodb", out, files, sorted(train_m["label"].unique()), base)


@pytest.fixture(scope="module", params=["synthetic", "emodb"])
def trained(request) -> Trained:
    if request.param == "synthetic":
        return request.getfixturevalue("synthetic_model")
    return request.getfixturevalue("emodb_model")


@pytest.fixture(scope="module")
def real_or_synthetic(request) -> Trained:
    """The Emo-DB model where Emo-DB is available (required in CI), else the synthetic one.

    For the slow checks (a fresh interpreter) that need not run twice.
    """
    try:
        request.getfixturevalue("emodb_root")
    except pytest.skip.Exception:
        return request.getfixturevalue("synthetic_model")
    return request.getfixturevalue("emodb_model")


@pytest.fixture(scope="module")
def emodb_model(emodb_root, tmp_path_factory) -> Trained:
    return _train_emodb(emodb_root, tmp_path_factory.mktemp("emodb"))


def _copy_model(trained: Trained, tmp_path: Path) -> Path:
    d = tmp_path / "model-copy"
    shutil.copytree(trained.model_dir, d)
    return d


def _rewrite_meta(d: Path, change) -> None:
    """Edit model.json and re-seal it (checksum), as a consistent but different directory would be."""
    meta = json.loads((d / META_NAME).read_text())
    change(meta)
    meta["files"] = {rel: sha256_file(d / rel) for rel in meta["files"]}
    meta["metadata_sha256"] = metadata_checksum(meta)
    (d / META_NAME).write_text(json.dumps(meta))


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from featurekit.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


# -- predictions -------------------------------------------------------------------------------------------
def test_model_json_records_the_model(trained):
    meta = read_meta(trained.model_dir)
    assert meta["format_version"] == 1 and meta["featurekit_version"]
    assert meta["task"]["classes"] == trained.classes
    fs = meta["feature_set"]
    assert fs["members"][0]["columns"] and fs["n_features"] == sum(len(m["columns"]) for m in fs["members"])
    assert meta["audio"]["sample_rate"] == 16000
    assert meta["normalisation"]["name"] == "speaker"
    assert "enrolment" in meta["normalisation"]["predict_time"]
    step = load_model(trained.model_dir).pipelines["label"].named_steps["speaker"]
    assert type(step).__name__ == "SpeakerNormaliser" and step.mean_.shape == (fs["n_features"],)
    from featurekit.evaluation.models import SVM_GRID

    # the searched parameters: the synthetic spec's grid, or the svm's default grid (Emo-DB spec)
    assert set(meta["model"]["hyperparameters"]["label"]) in ({"kernel", "C"}, set(SVM_GRID))
    assert sum(meta["training"]["per_label"].values()) == meta["training"]["n_utterances"]
    d = trained.model_dir
    on_disk = {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}
    assert set(meta["files"]) == on_disk - {META_NAME}
    assert {"scikit-learn", "skops", "numpy"} <= set(meta["libraries"])


def test_predict_files_gives_probabilities_and_labels(trained):
    df = predict(trained.model_dir, trained.test_files)
    assert list(df["file"]) == trained.test_files
    assert (df["level"] == "file").all() and df["error"].isna().all()
    p = df[[f"p[{c}]" for c in trained.classes]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert (p >= 0).all()
    assert set(df["label"]) <= set(trained.classes)
    assert (df["label"].to_numpy() == np.array(trained.classes)[p.argmax(axis=1)]).all()


def test_windows_cover_each_file_and_aggregate(trained):
    window, hop = (0.5, 0.2) if trained.name == "synthetic" else (1.0, 0.5)
    df = predict(trained.model_dir, trained.test_files, window=window, hop=hop)
    pcols = [f"p[{c}]" for c in trained.classes]
    for path in trained.test_files:
        rows = df[df["file"] == path]
        wins, agg = rows[rows["level"] == "window"], rows[rows["level"] == "file"]
        assert len(agg) == 1 and rows.index[-1] == agg.index[0]  # the file row follows its windows
        duration = sf.info(path).duration
        assert wins["start"].iloc[0] == 0.0
        assert wins["end"].iloc[-1] == pytest.approx(duration, abs=1e-4)
        np.testing.assert_allclose(wins["end"] - wins["start"], window, atol=1e-4)
        steps = np.diff(wins["start"].to_numpy())
        np.testing.assert_allclose(steps[:-1], hop, atol=1e-4)
        assert 0 < steps[-1] <= hop + 1e-4
        np.testing.assert_allclose(wins[pcols].sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_allclose(agg[pcols].to_numpy()[0], wins[pcols].mean().to_numpy(), atol=1e-12)
        assert agg["label"].iloc[0] == trained.classes[int(np.argmax(agg[pcols].to_numpy()[0]))]


def test_fresh_process_gives_identical_outputs_and_bad_files_do_not_stop_others(real_or_synthetic, tmp_path):
    trained = real_or_synthetic
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    files = [trained.test_files[0], str(broken), trained.test_files[1], str(tmp_path / "missing.wav")]
    expected = predict(trained.model_dir, files, window=1.0, hop=0.5)
    out = tmp_path / "pred.csv"
    r = _cli("predict", str(trained.model_dir), *files, "--window", "1.0", "--hop", "0.5", "-o", str(out))
    assert r.returncode == 1, r.stderr
    assert "broken.wav" in r.stderr and "missing.wav" in r.stderr and "2 of 4 file(s) failed" in r.stderr
    got = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(got.columns) == list(expected.columns)
    ok = expected["error"].isna().to_numpy()
    num = ["start", "end", *[f"p[{c}]" for c in trained.classes]]
    np.testing.assert_array_equal(got.loc[ok, num].to_numpy(), expected.loc[ok, num].to_numpy())
    assert list(got.loc[ok, "label"]) == list(expected.loc[ok, "label"])
    bad = expected[~ok]
    assert list(bad["file"]) == [str(broken), str(tmp_path / "missing.wav")]
    assert "cannot decode" in bad["error"].iloc[0] and "not found" in bad["error"].iloc[1]
    assert bad[[f"p[{c}]" for c in trained.classes]].isna().all().all()
    assert len(expected[(expected["level"] == "file") & ok]) == 2


@pytest.mark.parametrize("rate", [8000, 48000])
def test_other_sample_rates_are_resampled(trained, tmp_path, rate):
    import soxr

    src = trained.test_files[0]
    x, sr = sf.read(src, dtype="float32")
    path = tmp_path / f"at{rate}.wav"
    sf.write(path, soxr.resample(x, sr, rate, quality="VHQ"), rate, subtype="FLOAT")
    win = predict(trained.model_dir, [str(path)], window=1.0, hop=0.5)
    assert win["error"].isna().all()
    assert win["end"].max() == pytest.approx(len(x) / sr, abs=2e-3)
    whole = predict(trained.model_dir, [src, str(path)])
    pcols = [f"p[{c}]" for c in trained.classes]
    np.testing.assert_allclose(whole[pcols].sum(axis=1), 1.0, atol=1e-9)
    if rate == 48000:  # 16 kHz -> 48 kHz -> 16 kHz is nearly the identity: about the same prediction
        assert whole["label"].iloc[1] == whole["label"].iloc[0]
        np.testing.assert_allclose(whole[pcols].iloc[1], whole[pcols].iloc[0], atol=0.1)
    # the windows the model sees are at its rate
    wins = list(iter_windows(path, 16000, 1.0, 0.5))
    assert all(len(w.signal) == 16000 for w in wins)


def test_recording_shorter_than_window_is_one_window_with_warning(trained, tmp_path):
    x, sr = sf.read(trained.test_files[0], dtype="float32")
    short = tmp_path / "short.wav"
    sf.write(short, x[: int(0.8 * sr)], sr)
    with pytest.warns(ShortRecordingWarning, match="shorter than the 3 s window"):
        df = predict(trained.model_dir, [str(short)], window=3.0, hop=1.0)
    assert list(df["level"]) == ["window", "file"]
    assert df["start"].tolist() == [0.0, 0.0] and df["end"].tolist() == pytest.approx([0.8, 0.8])
    assert df["error"].isna().all()


# -- refusing bad model directories ------------------------------------------------------------------------
def test_model_changed_on_disk_is_refused(trained, tmp_path):
    d = _copy_model(trained, tmp_path)
    skops_file = next(d.glob("pipeline-*.skops"))
    with open(skops_file, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelLoadError, match=r"pipeline-label\.skops: SHA-256 differs from model\.json's"):
        load_model(d)
    with pytest.raises(ModelLoadError, match="tampered"):
        predict(d, trained.test_files[:1])

    d2 = tmp_path / "edited"
    shutil.copytree(trained.model_dir, d2)
    meta = json.loads((d2 / META_NAME).read_text())
    meta["task"]["classes"] = meta["task"]["classes"][::-1]  # relabel the classes
    (d2 / META_NAME).write_text(json.dumps(meta, indent=2))
    with pytest.raises(ModelLoadError, match=r"model\.json: its content was changed after saving"):
        load_model(d2)


def test_directory_missing_files_is_refused(trained, tmp_path):
    d = _copy_model(trained, tmp_path)
    victim = next(d.glob("pipeline-*.skops"))
    victim.unlink()
    with pytest.raises(ModelLoadError, match=rf"{victim.name}: missing \(listed in model\.json's manifest\)"):
        load_model(d)
    (d / META_NAME).unlink()
    with pytest.raises(ModelLoadError, match="model.json is missing"):
        load_model(d)
    with pytest.raises(ModelLoadError, match="not a model directory"):
        load_model(tmp_path / "nowhere")


def test_incompatible_versions_are_refused(trained, tmp_path):
    d = _copy_model(trained, tmp_path)
    _rewrite_meta(d, lambda m: m.update(format_version=99))
    with pytest.raises(ModelLoadError, match="model format version 99 is not supported"):
        load_model(d)
    _rewrite_meta(d, lambda m: m.update(format_version=1, featurekit_version="7.0.0"))
    with pytest.raises(ModelLoadError, match=r"saved by featurekit 7\.0\.0, which is incompatible"):
        load_model(d)
    saved = read_meta(trained.model_dir)["featurekit_version"]
    _rewrite_meta(d, lambda m: m.update(featurekit_version=saved))
    assert load_model(d).classes == trained.classes


# -- synthetic-only ----------------------------------------------------------------------------------------
def test_untrusted_types_are_refused_before_loading(synthetic_model, tmp_path):
    """A consistent directory (hashes re-sealed) whose skops file holds a function is still refused."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    d = _copy_model(synthetic_model, tmp_path)
    skops_file = next(d.glob("pipeline-*.skops"))
    evil = Pipeline([("model", FunctionTransformer(func=os.getcwd))])
    sio.dump(evil, skops_file)
    _rewrite_meta(d, lambda m: None)
    with pytest.raises(ModelLoadError, match=r"(?s)refusing to load the model.*nothing was loaded.*getcwd"):
        load_model(d)


def test_per_speaker_normalisation_uses_enrolment_or_population_stats_never_the_file_alone(synthetic_model):
    from featurekit.deploy.inference import _normalise
    from featurekit.evaluation.normalisation import PopulationStatisticsWarning

    pipe = load_model(synthetic_model.model_dir).pipelines["label"]
    step = pipe.named_steps["speaker"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, step.mean_.shape[0])).astype(np.float32)
    ref = (rng.standard_normal((5, x.shape[1])) * 2 + 1).astype(np.float32)
    rest, z = _normalise(pipe, x, ref)
    assert rest.steps == pipe.steps[1:]
    mu, sd = ref.astype(np.float64).mean(axis=0), ref.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(z, (x - mu) / sd, rtol=1e-5, atol=1e-5)
    _, z = _normalise(pipe, x, None)  # no enrolment: the population's statistics, not the file's own
    np.testing.assert_allclose(z, (x - step.mean_) / step.scale_, rtol=1e-5, atol=1e-5)
    files = synthetic_model.test_files
    with pytest.warns(PopulationStatisticsWarning, match="population"):
        df = predict(synthetic_model.model_dir, files[:1], window=0.5, hop=0.5)
    assert (df["normalisation"] == "speaker:population").all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PopulationStatisticsWarning)
        df = predict(synthetic_model.model_dir, files[:1], window=0.5, hop=0.5, speaker_reference=files[1:])
        assert (df["normalisation"] == "speaker:reference").all()
        df = predict(synthetic_model.model_dir, files, speakers=["s03"] * len(files))
        assert (df["normalisation"] == "speaker:speakers").all() and df["error"].isna().all()
    with pytest.raises(ValueError, match="at least two"):
        predict(synthetic_model.model_dir, files[:1], speaker_reference=files[1:2])
    with pytest.raises(ValueError, match="not both"):
        predict(synthetic_model.model_dir, files[:1], speaker_reference=files[1:], speakers=["a"])


def test_cli_train_global_and_json_output(synthetic, tmp_path, capsys):
    base, manifest, spec = synthetic
    out = tmp_path / "cli-model"
    rc = main(["train", str(spec), "--system", "mfcc.mean_std:svm", "--root", str(base / "corpus"), "-o",
               str(out), "--store", str(base / "store"), "--normalisation", "global", "--jobs", "1",
               "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "mfcc.mean_std:svm" in text and "normalisation global" in text
    meta = read_meta(out)
    assert meta["normalisation"]["name"] == "global" and meta["training"]["n_speakers"] == 4
    assert main(["train", str(spec), "--system", "mfcc.mean_std:svm", "--root", str(base / "corpus"), "-o",
                 str(out), "--store", str(base / "store"), "--quiet"]) == 2  # exists, no --force
    assert "already exists" in capsys.readouterr().err
    pred = tmp_path / "p.json"
    files = manifest["path"].tolist()[:2]
    assert main(["predict", str(out), *files, "-o", str(pred)]) == 0
    records = json.loads(pred.read_text())
    assert [r["file"] for r in records] == files and all(r["error"] is None for r in records)
    assert sum(v for k, v in records[0].items() if k.startswith("p[")) == pytest.approx(1.0)
    assert main(["predict", str(out), files[0]]) == 0  # CSV on stdout
    assert capsys.readouterr().out.startswith("file,level,start,end,label,p[")


def test_system_and_window_arguments_are_checked(synthetic, synthetic_model, tmp_path):
    from featurekit.evaluation.spec import SpecError

    base, manifest, spec = synthetic
    with pytest.raises(SpecError, match="feature set 'egemaps' is not in the spec"):
        train(spec, "egemaps:svm", out_dir=tmp_path / "m", store=base / "store", manifest=manifest)
    with pytest.raises(SpecError, match="choose a system FEATURESET:MODEL"):
        train(spec, None, out_dir=tmp_path / "m", store=base / "store", manifest=manifest)
    model = synthetic_model.model_dir
    with pytest.raises(ValueError, match="longer than the window"):
        predict(model, manifest["path"].tolist()[:1], window=1.0, hop=2.0)
    with pytest.raises(ValueError, match="hop is given without a window"):
        predict(model, manifest["path"].tolist()[:1], hop=1.0)


def test_regression_model(synthetic, tmp_path):
    base, manifest, _ = synthetic
    m = manifest.copy()
    m["arousal"] = m["label"].map({"neutral": 0.0, "sad": -1.0, "happy": 1.0, "angry": 2.0})
    spec = _write_spec(tmp_path / "reg.toml", REGRESSION_SPEC)
    out = train(spec, "mfcc.mean_std:ridge", out_dir=tmp_path / "model", store=base / "store", manifest=m,
                jobs=1)
    meta = read_meta(out)
    assert meta["task"] == {"type": "regression", "targets": ["arousal"]}
    df = predict(out, m["path"].tolist()[:2], window=0.5, hop=0.5)
    assert list(df.columns) == ["file", "level", "start", "end", "arousal", "normalisation", "error"]
    assert np.isfinite(df["arousal"]).all()
    for f in m["path"].tolist()[:2]:
        rows = df[df["file"] == f]
        assert rows["arousal"].iloc[-1] == pytest.approx(rows["arousal"].iloc[:-1].mean())


def test_torch_head_model_round_trips(synthetic, tmp_path):
    pytest.importorskip("torch")
    base, manifest, _ = synthetic
    spec = base / "spec.toml"
    out = train(spec, "mfcc.mean_std:torch_mlp", out_dir=tmp_path / "model", store=base / "store",
                manifest=manifest, normalisation="global", jobs=1)
    meta = read_meta(out)
    assert {"head-label/weights.pt", "head-label/head.json", "pipeline-label.skops"} == set(meta["files"])
    assert meta["task"]["probabilities"] == "predict_proba"
    files = manifest["path"].tolist()[:3]
    a = predict(out, files)
    b = predict(load_model(out), files)
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_allclose(a[[c for c in a.columns if c.startswith("p[")]].sum(axis=1), 1.0, atol=1e-6)


# -- streaming windows -------------------------------------------------------------------------------------
def test_window_placement_and_whole_file_equivalence(tmp_path):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(int(2.37 * 48000))).astype(np.float32)
    path = tmp_path / "noise48k.wav"
    sf.write(path, x, 48000, subtype="FLOAT")
    wins = list(iter_windows(path, 16000, 1.0, 0.4, block_frames=5000))
    n = len(load_audio(path))  # soxr one-shot at 16 kHz
    assert [w.start for w in wins] == pytest.approx([0.0, 0.4, 0.8, 1.2, (n - 16000) / 16000])
    assert wins[-1].end == n / 16000
    full = load_audio(path)
    for w in wins:  # the streamed resampler gives exactly the one-shot signal
        a = int(round(w.start * 16000))
        np.testing.assert_array_equal(w.signal, full[a:a + 16000])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (one,) = list(iter_windows(path, 16000, 5.0, 1.0))
    assert any(issubclass(c.category, ShortRecordingWarning) for c in caught)
    np.testing.assert_array_equal(one.signal, full)


def test_long_recording_is_streamed_in_bounded_memory(tmp_path):
    sr, seconds = 48000, 150
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as f:
        for _ in range(seconds // 10):
            f.write((0.1 * rng.standard_normal(10 * sr)).astype(np.float32))
    size_mb = path.stat().st_size / 2**20
    tracemalloc.start()
    try:
        count, last = 0, None
        for w in iter_windows(path, 16000, 3.0, 1.0):
            count, last = count + 1, w
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert count == seconds - 3 + 1 and last.end == pytest.approx(seconds, abs=1e-3)
    assert peak_mb < 5 < size_mb, (peak_mb, size_mb)


def test_cli_predict_with_speaker_csv_and_speaker_reference(synthetic_model, tmp_path, capsys):
    files = synthetic_model.test_files
    table = tmp_path / "inputs.csv"
    pd.DataFrame({"path": files, "speaker": ["s03"] * len(files)}).to_csv(table, index=False)
    out = tmp_path / "p.csv"
    assert main(["predict", str(synthetic_model.model_dir), str(table), "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert df["file"].tolist() == files and (df["normalisation"] == "speaker:speakers").all()
    assert "population" not in capsys.readouterr().err
    assert main(["predict", str(synthetic_model.model_dir), files[0], "--speaker-reference", *files[1:],
                 "-o", str(out)]) == 0
    assert (pd.read_csv(out)["normalisation"] == "speaker:reference").all()
    assert main(["predict", str(synthetic_model.model_dir), files[0], "-o", str(out)]) == 0
    assert "training population's statistics" in capsys.readouterr().err
    pd.DataFrame({"path": files, "speaker": [""] * len(files)}).to_csv(table, index=False)
    assert main(["predict", str(synthetic_model.model_dir), str(table)]) == 2
    assert "empty speaker" in capsys.readouterr().err


def test_speaker_normalised_model_without_its_normaliser_step_is_refused(synthetic_model):
    from sklearn.pipeline import Pipeline

    from featurekit.deploy.bundle import SavedModel

    model = load_model(synthetic_model.model_dir)
    stripped = {t: Pipeline(p.steps[1:]) for t, p in model.pipelines.items()}
    old = SavedModel(model.directory, model.meta, stripped)
    with pytest.raises(ValueError, match="older featurekit"):
        predict(old, synthetic_model.test_files[:1])

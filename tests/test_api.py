"""The public Python API (``featurekit.Features``, ``load_corpus``, ``evaluate``, ``load_results``).

The README's "Python API" examples are executed here as doctests on Emo-DB (skipped without it, an
error with ``FEATUREKIT_REQUIRE_DATA=1``); the rest runs on small synthetic WAV files.
"""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import featurekit
from featurekit.api import FailedFilesWarning, FeatureExtractionError, Features
from featurekit.audio import AudioOptions
from featurekit.extraction import load_features, parse_features
from featurekit.registry import UnknownNameError
from featurekit.store import FeatureStore

REPO_ROOT = Path(__file__).resolve().parents[1]
README_EMODB = "../shared/data/emodb"


def readme_api_examples() -> str:
    """The ```pycon blocks of the README's "## Python API" section, in order."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("\n## Python API\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else len(text)]
    blocks = re.findall(r"```pycon\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 6, "the README's Python API section lost its examples"
    return "\n".join(blocks)


def test_readme_python_api_examples_run(emodb_root, tmp_path, monkeypatch):
    """Every README API example, as a doctest, from an empty directory (store and results go there)."""
    examples = readme_api_examples()
    assert README_EMODB in examples
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEATUREKIT_STORE", raising=False)
    (tmp_path / "pipelines").symlink_to(REPO_ROOT / "pipelines")
    test = doctest.DocTestParser().get_doctest(
        examples.replace(README_EMODB, str(emodb_root)), {}, "README.md: Python API", "README.md", 0
    )
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    result = runner.run(test, out=report.append)
    assert result.attempted >= 20
    assert result.failed == 0, "".join(report)
    # the store example kept its rows under the corpus name, where featurekit extract would read them
    assert [t.key.kind for t in FeatureStore("store").tables("csv")] == ["native"]
    assert (tmp_path / "results" / "quick" / "results.csv").is_file()


# -- small synthetic files -----------------------------------------------------------------------------
def tone(seconds: float = 0.6, sr: int = 16000, f0: float = 220.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture()
def wavs(tmp_path) -> list[str]:
    out = []
    for i, f0 in enumerate((180.0, 240.0, 310.0)):
        p = tmp_path / "audio" / f"u{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, tone(f0=f0, seed=i), 16000, subtype="PCM_16")
        out.append(str(p))
    return out


def test_process_files_is_indexed_by_file_in_order_with_prefixed_columns(wavs):
    f = Features(["mfcc.mean_std", "logmel.mean_std"], jobs=1)
    files = [wavs[2], wavs[0], wavs[2]]  # order and repeats kept
    df = f.process_files(files)
    assert df.index.name == "file" and df.index.tolist() == files
    assert df.shape == (3, 80 + 256)
    assert df.columns[0] == "mfcc_00_mean" and df.columns[-1].startswith("logmel_")
    np.testing.assert_array_equal(df.iloc[0].to_numpy(), df.iloc[2].to_numpy())
    assert df.attrs["failures"] == {}
    one = f.process_file(Path(wavs[0]))
    assert one.index.tolist() == [wavs[0]]
    np.testing.assert_array_equal(one.to_numpy(), df.iloc[[1]].to_numpy())


def test_same_numbers_as_the_extraction_and_the_store(wavs, tmp_path):
    """The API reads what featurekit.extraction computes: with a store, the rows are those load_features
    returns; without one, the same numbers."""
    store = tmp_path / "store"
    with_store = Features("mfcc.mean_std", store=store, jobs=1).process_files(wavs)
    without = Features("mfcc.mean_std", jobs=1).process_files(wavs)
    pd.testing.assert_frame_equal(with_store, without)
    ids = [str(Path(w).resolve()) for w in wavs]
    manifest = pd.DataFrame({"id": ids, "path": ids})
    stored = load_features(FeatureStore(store), manifest, parse_features("mfcc.mean_std")[0], "mean_std",
                           corpus="files", audio=AudioOptions())
    np.testing.assert_array_equal(stored.to_numpy(), with_store.to_numpy())
    again = Features("mfcc.mean_std", store=store, jobs=1).process_files(wavs)  # read back from the store
    pd.testing.assert_frame_equal(again, with_store)


@pytest.mark.parametrize("dtype, sr, channels", [("float32", 16000, 1), ("float64", 44100, 2),
                                                 ("int16", 22050, 1)])
def test_process_signal_equals_process_file(tmp_path, dtype, sr, channels):
    x = np.stack([tone(sr=sr, f0=200.0 + 50 * c, seed=c) for c in range(channels)])  # (channels, samples)
    if dtype == "int16":
        x = np.round(x * 2**15).astype(np.int16)
    x = x.astype(dtype)
    signal = x[0] if channels == 1 else x
    path = tmp_path / "held.wav"
    subtype = {"float32": "FLOAT", "float64": "DOUBLE", "int16": "PCM_16"}[dtype]
    sf.write(path, signal.T if signal.ndim == 2 else signal, sr, subtype=subtype)
    f = Features(["egemaps", "mfcc.stats"], jobs=1)
    from_file = f.process_file(path)
    from_signal = f.process_signal(signal, sr, file="mine")
    assert from_signal.index.tolist() == ["mine"] and from_signal.index.name == "file"
    np.testing.assert_array_equal(from_signal.to_numpy(), from_file.to_numpy())  # exactly
    frames_file = Features("mfcc.lld").process_file(path)
    frames_signal = Features("mfcc.lld").process_signal(signal, sr)
    np.testing.assert_array_equal(frames_signal.to_numpy(), frames_file.to_numpy())


def test_process_signal_rejects_bad_input_and_names_the_signal():
    f = Features("mfcc.mean_std")
    with pytest.raises(TypeError, match="complex128"):
        f.process_signal(np.zeros(16000, dtype=complex), 16000)
    with pytest.raises(ValueError, match="shape|not"):
        f.process_signal(np.zeros((2, 2, 2), dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="sampling_rate"):
        f.process_signal(tone(), 0)
    with pytest.raises(FeatureExtractionError, match=r"^silence: signal is all zeros"):
        f.process_signal(np.zeros(16000, dtype=np.float32), 16000, file="silence")


def test_lld_tables_are_frame_level(wavs):
    df = Features("mfcc.lld").process_files(wavs[:2])
    assert list(df.index.names) == ["file", "time"]
    assert df.index.get_level_values("file").unique().tolist() == wavs[:2]
    first = df.xs(wavs[0], level="file")
    assert np.all(np.diff(first.index.to_numpy()) > 0) and df.shape[1] == 40
    with pytest.raises(ValueError, match="must be requested alone"):
        Features(["mfcc.lld", "egemaps"]).tables()


def test_failures_name_the_file_and_keep_the_rest(wavs, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    f = Features("mfcc.mean_std", store=tmp_path / "store", jobs=1)
    with pytest.raises(FeatureExtractionError, match=rf"^{re.escape(str(empty))}: file is empty"):
        f.process_file(empty)
    with pytest.raises(FeatureExtractionError) as err:
        f.process_files([wavs[0], str(empty), "nope.wav", wavs[1]])
    assert "2 of 4 file(s) failed" in str(err.value)
    assert set(err.value.failures) == {str(empty), "nope.wav"}
    assert "file not found" in err.value.failures["nope.wav"]
    assert err.value.features.index.tolist() == [wavs[0], wavs[1]]
    # the good files were stored before raising
    assert set(FeatureStore(tmp_path / "store").tables("files")[0].keys()["id"]) == {
        str(Path(w).resolve()) for w in wavs[:2]}
    with pytest.warns(FailedFilesWarning, match="nope.wav"):
        kept = f.process_files([wavs[0], "nope.wav"], errors="skip")
    assert kept.index.tolist() == [wavs[0]] and list(kept.attrs["failures"]) == ["nope.wav"]
    with pytest.warns(FailedFilesWarning):
        assert Features("mfcc.mean_std", errors=featurekit.Errors.SKIP).process_files(["nope.wav"]).empty
    with pytest.raises(ValueError, match="'ignore' is not a valid Errors"):
        f.process_files(wavs[:1], errors="ignore")


def test_process_manifest_needs_only_paths_and_uses_its_corpus_name(wavs, tmp_path):
    m = pd.DataFrame({"path": wavs, "start": [0.0, 0.1, 0.2], "end": [0.5, 0.5, 0.6]})
    m.attrs["corpus"] = "mine"
    store = tmp_path / "store"
    df = Features("mfcc.mean_std", store=store, jobs=1).process_manifest(m)
    assert df.index.name == "id" and df.index.tolist() == wavs  # id defaults to the path
    assert [t.key.corpus for t in FeatureStore(store).tables()] == ["mine"]
    seg = Features("mfcc.mean_std", jobs=1).process_manifest(m.assign(id=["a", "b", "c"]), corpus="x")
    assert seg.index.tolist() == ["a", "b", "c"]
    whole = Features("mfcc.mean_std", jobs=1).process_files(wavs)
    assert not np.array_equal(seg.to_numpy(), whole.to_numpy())  # start/end select segments
    with pytest.raises(ValueError, match="no 'path' column"):
        Features("mfcc").process_manifest(pd.DataFrame({"file": wavs}))
    with pytest.raises(ValueError, match="duplicate id"):
        Features("mfcc").process_manifest(pd.DataFrame({"path": wavs[:2], "id": ["a", "a"]}))


def test_scikit_learn_conventions_and_table_resolution():
    f = Features("no_such_extractor", jobs=3)  # no work (nor checks) in __init__
    assert f.get_params()["features"] == "no_such_extractor" and f.get_params()["jobs"] == 3
    with pytest.raises(UnknownNameError, match="no_such_extractor"):
        f.tables()
    assert f.set_params(features="egemaps, mfcc,paa.stats") is f
    assert f.tables() == ["egemaps.native", "mfcc.mean_std", "paa.stats"]
    assert Features("mfcc", functionals=["stats", "mean_std_silence"]).tables() == [
        "mfcc.stats", "mfcc.mean_std_silence"]
    with pytest.raises(ValueError, match="no parameter"):
        f.set_params(nope=1)
    assert repr(Features("mfcc")).startswith("Features(features='mfcc', ")
    assert set(Features("mfcc").get_params()) == {
        "features", "functionals", "params", "store", "jobs", "sample_rate", "trim_db", "duration", "errors",
        "progress"}


def test_overlapping_tables_are_an_error(wavs):
    with pytest.raises(ValueError, match="share column 'mfcc_00_mean'"):
        Features(["mfcc.mean_std", "mfcc.stats"], jobs=1).process_files(wavs[:1])


def test_csv_corpus_without_labels_gives_features_and_evaluation_says_what_is_missing(wavs, tmp_path):
    from featurekit.evaluation import DataError

    (tmp_path / "list.csv").write_text("path\n" + "\n".join(wavs) + "\n")
    m = featurekit.load_corpus("csv", tmp_path, csv="list.csv")
    assert m.index.tolist() == ["u0", "u1", "u2"] and "label" not in m.columns and "speaker" not in m.columns
    df = Features("mfcc.mean_std", jobs=1).process_manifest(m)
    assert df.index.tolist() == ["u0", "u1", "u2"]
    spec = tmp_path / "spec.toml"
    spec.write_text('seed = 0\n[corpus]\nname = "csv"\noptions = {csv = "list.csv"}\n'
                    '[features]\nsets = ["mfcc.mean_std"]\n[models.svm]\n')
    with pytest.raises(DataError, match="no column 'label'.*columns=\\{'label'"):
        featurekit.evaluate(spec, root=tmp_path, out=tmp_path / "out", store=tmp_path / "store")
    (tmp_path / "labelled.csv").write_text("path,label\n" + "\n".join(f"{w},x" for w in wavs) + "\n")
    spec.write_text(spec.read_text().replace("list.csv", "labelled.csv"))
    with pytest.raises(DataError, match="no 'speaker' column"):
        featurekit.evaluate(spec, root=tmp_path, out=tmp_path / "out", store=tmp_path / "store")


def test_evaluate_needs_a_root_and_load_results_a_results_directory(tmp_path, monkeypatch):
    from featurekit.api import MissingRootError

    spec = tmp_path / "spec.toml"
    spec.write_text('seed = 0\n[corpus]\nname = "emodb"\nroot_env = "FK_TEST_NO_SUCH_ROOT"\n'
                    '[features]\nsets = ["mfcc.mean_std"]\n[models.svm]\n')
    monkeypatch.delenv("FK_TEST_NO_SUCH_ROOT", raising=False)
    with pytest.raises(MissingRootError, match="FK_TEST_NO_SUCH_ROOT"):
        featurekit.evaluate(spec, out=tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no results.csv"):
        featurekit.load_results(tmp_path)


def test_package_exports_and_cheap_import():
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", featurekit.__version__)
    assert featurekit.Features is Features and featurekit.FeatureExtractionError is FeatureExtractionError
    assert {"Features", "load_corpus", "evaluate", "load_results", "__version__"} <= set(dir(featurekit))
    with pytest.raises(AttributeError):
        featurekit.nothing_here  # noqa: B018
    code = ("import sys, featurekit; heavy = {'numpy', 'pandas', 'featurekit.api', 'featurekit.extraction'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import sys, featurekit.api; print(sorted({'numpy', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

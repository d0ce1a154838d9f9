"""Extraction and the feature store: equality with the underlying libraries, dimensions, caching,
crash safety, concurrency and bad files in a batch."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from featurekit.audio import AudioOptions, load_audio
from featurekit.corpora import load_corpus
from featurekit.corpora.base import CorpusLayoutError
from featurekit.corpora.synthetic import make_synthetic_corpus
from featurekit.extraction import extract, load_features, parse_features
from featurekit.registry import UnknownNameError
from featurekit.store import FeatureStore

FEATUREKIT = [sys.executable, "-m", "featurekit"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> pd.DataFrame:
    return make_synthetic_corpus(tmp_path_factory.mktemp("synth"), n_speakers=2, n_per_class=2, duration=1.0)


@pytest.fixture(scope="module")
def emodb_few(emodb_root) -> pd.DataFrame:
    m = load_corpus("emodb", emodb_root)
    return m[m["id"].isin(["03a01Fa", "08b02Wa", "16a05Tb"]) | (m.index == m.index[0])]


def test_equals_direct_library_calls(emodb_few, tmp_path):
    import librosa
    import opensmile
    from pyAudioAnalysis import ShortTermFeatures

    reqs = parse_features("egemaps,compare,mfcc.lld,logmel.lld,paa.lld", functionals=[])
    store = FeatureStore(tmp_path)
    s = extract(emodb_few, reqs, store, corpus="emodb", jobs=1, progress=False)
    assert not s.failures
    by = {r.extractor.name: r for r in reqs}
    for _, row in emodb_few.iterrows():
        y, sr = sf.read(row["path"], dtype="float32")
        assert sr == 16000
        for name, fs in (("egemaps", "eGeMAPSv02"), ("compare", "ComParE_2016")):
            direct = opensmile.Smile(
                feature_set=opensmile.FeatureSet[fs], feature_level=opensmile.FeatureLevel.Functionals
            ).process_signal(y, sr)
            ours = load_features(store, emodb_few.loc[[row["id"]]], by[name], "native", corpus="emodb")
            np.testing.assert_allclose(ours.to_numpy()[0], direct.to_numpy()[0], rtol=1e-5, atol=1e-5)
        lld = {
            n: load_features(store, emodb_few.loc[[row["id"]]], by[n], "lld", corpus="emodb")
            for n in ("mfcc", "logmel", "paa")
        }
        mf = librosa.feature.mfcc(
            y=y, sr=sr, n_mfcc=40, n_mels=128, n_fft=512, win_length=400, hop_length=160
        )
        np.testing.assert_allclose(lld["mfcc"].filter(like="mfcc_").to_numpy(), mf.T, rtol=1e-4, atol=1e-3)
        mel = librosa.power_to_db(
            librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128, n_fft=512, win_length=400, hop_length=160),
            ref=1.0,
            amin=1e-10,
            top_db=None,
        )
        np.testing.assert_allclose(
            lld["logmel"].filter(like="logmel_").to_numpy(), mel.T, rtol=1e-4, atol=1e-3
        )
        pa, _ = ShortTermFeatures.feature_extraction(y.astype(np.float64) * 2**15, sr, 800, 400, deltas=False)
        np.testing.assert_allclose(lld["paa"].filter(like="paa_").to_numpy(), pa.T, rtol=1e-4, atol=1e-5)


def test_dimensions_on_emodb(emodb_few, tmp_path):
    reqs = parse_features("egemaps,gemaps,compare,paa,paa_d,mfcc,logmel", functionals=["mean_std"], lld=True)
    s = extract(emodb_few, reqs, FeatureStore(tmp_path), corpus="emodb", jobs=2, progress=False)
    n = len(emodb_few)
    expected = {
        "egemaps.native": 88,
        "gemaps.native": 62,
        "compare.native": 6373,
        "paa.lld": 34,
        "paa_d.lld": 68,
        "mfcc.lld": 40,
        "logmel.lld": 128,
        "mfcc.mean_std": 80,
        "paa_d.mean_std": 136,
    }
    for table, cols in expected.items():
        rows, got = s.tables[table]
        assert (rows if not table.endswith(".lld") else n) == n and got == cols, table


def test_functionals_shapes_and_silence(synth, tmp_path):
    reqs = parse_features("mfcc", functionals=["mean_std", "mean_std_silence", "stats"])
    store = FeatureStore(tmp_path)
    extract(synth, reqs, store, corpus="s", jobs=1, progress=False)
    hsf1 = load_features(store, synth, reqs[0], "mean_std", corpus="s")
    hsf2 = load_features(store, synth, reqs[0], "mean_std_silence", corpus="s")
    st = load_features(store, synth, reqs[0], "stats", corpus="s")
    assert list(hsf1.index) == list(synth["id"])
    assert hsf1.shape[1] == 80 and hsf2.shape[1] == 84 and st.shape[1] == 40 * 14
    np.testing.assert_array_equal(hsf2[hsf1.columns].to_numpy(), hsf1.to_numpy())
    ratio = hsf2["mfcc_silence_low_energy_ratio"]
    assert ((ratio > 0) & (ratio < 1)).all()  # synthetic speech has pauses between syllables
    y = load_audio(synth["path"].iloc[0])
    import librosa

    m = librosa.feature.mfcc(y=y, sr=16000, n_mfcc=40, n_mels=128, n_fft=512, win_length=400, hop_length=160)
    np.testing.assert_allclose(hsf1.iloc[0].to_numpy()[0::2], m.mean(axis=1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(st.iloc[0]["mfcc_00_p50"], np.percentile(m[0], 50), rtol=1e-4)


def test_incremental_and_changed_file(synth, tmp_path):
    corpus = tmp_path / "c"
    shutil.copytree(Path(synth["path"].iloc[0]).parent.parent, corpus)
    m = load_corpus("synthetic", corpus)
    reqs = parse_features("mfcc,egemaps", functionals=["mean_std"])
    store = FeatureStore(tmp_path / "store")
    cold = extract(m, reqs, store, corpus="s", jobs=1, progress=False)
    assert cold.computed == 3 * len(m) and cold.cache_hits == 0
    warm = extract(m, reqs, store, corpus="s", jobs=1, progress=False)
    assert warm.computed == 0 and warm.cache_hits == 3 * len(m)
    before = load_features(store, m, reqs[0], "mean_std", corpus="s")
    changed = m["path"].iloc[3]
    y, sr = sf.read(changed, dtype="float32")
    sf.write(changed, y * 0.5, sr)
    again = extract(m, reqs, store, corpus="s", jobs=1, progress=False)
    assert again.computed == 3 and again.cache_hits == 3 * (len(m) - 1)  # only the changed row, per table
    after = load_features(store, m, reqs[0], "mean_std", corpus="s")
    uid = m["id"].iloc[3]
    assert not np.allclose(after.loc[uid], before.loc[uid])
    others = [i for i in m["id"] if i != uid]
    np.testing.assert_array_equal(after.loc[others].to_numpy(), before.loc[others].to_numpy())


def _run_extract(root: Path, store: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *FEATUREKIT,
            "extract",
            "--corpus",
            "synthetic",
            "--root",
            str(root),
            "--features",
            "mfcc,egemaps",
            "--store",
            str(store),
            "--quiet",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(tmp_path):
    root = tmp_path / "c"
    m = make_synthetic_corpus(root, n_speakers=3, n_per_class=4, duration=1.0)
    killed = tmp_path / "killed"
    proc = _run_extract(root, killed, "--jobs", "1", "--flush-every", "2")
    deadline = time.time() + 120
    while time.time() < deadline and not list(killed.glob("s*/**/part-*.parquet")) and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "extraction finished before it could be killed"
    reqs = parse_features("mfcc,egemaps", functionals=["mean_std"])
    partial = extract(m, reqs, FeatureStore(killed), corpus="synthetic", jobs=1, progress=False)
    assert partial.cache_hits > 0 and partial.computed > 0 and not partial.failures
    clean = FeatureStore(tmp_path / "clean")
    extract(m, reqs, clean, corpus="synthetic", jobs=1, progress=False)
    for req in reqs:
        for kind in req.kinds:
            a = load_features(FeatureStore(killed), m, req, kind, corpus="synthetic")
            b = load_features(clean, m, req, kind, corpus="synthetic")
            pd.testing.assert_frame_equal(a, b)


def test_two_processes_into_one_store(tmp_path):
    root = tmp_path / "c"
    m = make_synthetic_corpus(root, n_speakers=2, n_per_class=3, duration=0.8)
    store = tmp_path / "store"
    procs = [_run_extract(root, store, "--jobs", "1", "--flush-every", "1") for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    reqs = parse_features("mfcc,egemaps", functionals=["mean_std"])
    for req in reqs:
        for kind in req.kinds:
            t = FeatureStore(store).table("synthetic", req.extractor, kind, AudioOptions())
            df = t.read()
            assert sorted(df["id"]) == sorted(m["id"])  # each utterance exactly once after de-duplication
    warm = extract(m, reqs, FeatureStore(store), corpus="synthetic", jobs=1, progress=False)
    assert warm.computed == 0


def test_bad_files_in_a_batch(tmp_path):
    good = make_synthetic_corpus(tmp_path / "good", n_speakers=1, n_per_class=1, duration=0.6)
    rows = [{"path": p, "label": lab, "speaker": "a"} for p, lab in zip(good["path"], good["label"])]
    bad = {"missing.wav": None, "empty.wav": b"", "text.wav": b"not audio" * 50}
    for name, content in bad.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        rows.append({"path": str(tmp_path / name), "label": "neutral", "speaker": "b"})
    sf.write(tmp_path / "zeros.wav", np.zeros(8000, np.float32), 16000)
    rows.append({"path": str(tmp_path / "zeros.wav"), "label": "neutral", "speaker": "b"})
    pd.DataFrame(rows).to_csv(tmp_path / "list.csv", index=False)
    store = tmp_path / "store"
    cmd = [
        *FEATUREKIT,
        "extract",
        "--corpus",
        "csv",
        "--root",
        str(tmp_path),
        "--corpus-option",
        "csv=list.csv",
        "--features",
        "mfcc",
        "--store",
        str(store),
        "--jobs",
        "2",
        "--quiet",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    for name in ("missing.wav", "empty.wav", "text.wav", "zeros.wav"):
        assert f"FAILED {Path(name).stem}:" in r.stdout and name in r.stdout
    assert "4 failures" in r.stdout
    table = next(FeatureStore(store).root.glob("csv/mfcc/mean_std-*"))
    stored = pd.concat(pd.read_parquet(p) for p in table.glob("part-*.parquet"))
    assert sorted(stored["id"]) == sorted(good["id"])  # the good files were extracted and stored


def test_unknown_extractor_and_layout(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown extractor 'mfccc'.*known: .*mfcc"):
        parse_features("mfccc")
    with pytest.raises(ValueError, match="unknown functional 'median'"):
        parse_features("mfcc", functionals=["median"])
    (tmp_path / "random").mkdir()
    with pytest.raises(CorpusLayoutError, match="random"):
        load_corpus("emodb", tmp_path / "random")
    r = subprocess.run(
        [
            *FEATUREKIT,
            "extract",
            "--corpus",
            "emodb",
            "--root",
            str(tmp_path / "random"),
            "--features",
            "mfcc",
            "--store",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "random" in r.stderr and "error" in r.stderr


def test_corrupt_part_is_reported_not_dropped(synth, tmp_path):
    reqs = parse_features("mfcc", functionals=["mean_std"])
    store = FeatureStore(tmp_path)
    extract(synth, reqs, store, corpus="s", jobs=1, progress=False)
    part = next(tmp_path.glob("s/mfcc/mean_std-*/part-*.parquet"))
    part.write_bytes(b"garbage")
    with pytest.raises(OSError, match="unreadable feature-store part"):
        load_features(store, synth, reqs[0], "mean_std", corpus="s")


def test_warm_run_reads_part_indexes_not_parquet(synth, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    reqs = parse_features("mfcc", functionals=["mean_std", "stats"])
    store = FeatureStore(tmp_path)
    extract(synth, reqs, store, corpus="s", jobs=1, progress=False)
    indexes = sorted(tmp_path.glob("s/mfcc/*/_part-*.parquet.keys.json"))
    assert len(indexes) == 2

    def no_parquet(*args, **kwargs):
        raise AssertionError("a warm run should not read parquet files")

    with monkeypatch.context() as mp:
        mp.setattr(pq, "read_table", no_parquet)
        mp.setattr(pq, "read_schema", no_parquet)
        warm = extract(synth, reqs, store, corpus="s", jobs=1, progress=False)
    assert warm.computed == 0 and warm.cache_hits == 2 * len(synth)
    assert warm.tables["mfcc.mean_std"] == (len(synth), 80)

    # a store written before the indexes existed: keys come from the parquet files instead
    for index in indexes:
        index.unlink()
    again = extract(synth, reqs, FeatureStore(tmp_path), corpus="s", jobs=1, progress=False)
    assert again.computed == 0 and again.tables["mfcc.mean_std"] == (len(synth), 80)

    # an index whose part never arrived (writer killed in between) is ignored
    orphan = indexes[0].with_name("_part-00000000000000000001-deadbeef.parquet.keys.json")
    orphan.write_text('{"ids": ["ghost"], "fingerprints": ["x"], "n_features": 80}')
    t = FeatureStore(tmp_path).table("s", reqs[0].extractor, "mean_std", AudioOptions())
    assert "ghost" not in set(t.keys()["id"])

"""Hostile audio and manifests (issue 12, part 3): each problem is contained to its file, named with
the manifest's path and the reason, and the rest of the batch is kept.

Every test builds its own hostile input in a temporary directory: WAV headers declaring absurd rates,
FIFOs, devices, symlink loops and dangling links, git-annex-style link farms, float files scaled to
1e30, broken CSV manifests, files changed in place behind the store's back, killed writers.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from featurekit.audio import (
    DEFAULT_MAX_SAMPLES,
    MAX_PEAK,
    AudioError,
    AudioOptions,
    load_audio,
)
from featurekit.corpora import load_corpus
from featurekit.corpora.base import CorpusLayoutError, ManifestWarning
from featurekit.extraction import FLUSH_SECONDS, extract, load_features, parse_features
from featurekit.extractors.base import Frames
from featurekit.store import FeatureStore

FEATUREKIT = [sys.executable, "-m", "featurekit"]


# -- helpers ---------------------------------------------------------------------------------------
def tone(path: Path, *, seconds: float = 1.0, sr: int = 16000, amp: float = 0.3, subtype: str = "PCM_16",
         seed: int = 0) -> Path:
    """A 180 Hz tone with a little noise (speech-like enough for every extractor)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * (180 + 20 * seed) * t) + 0.01 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), sr, subtype=subtype)
    return path


def patch_rate(path: Path, rate: int) -> Path:
    """Rewrite a canonical WAV header's sample rate (and byte rate) in place: the data stay as they are."""
    b = bytearray(path.read_bytes())
    assert b[:4] == b"RIFF" and b[12:16] == b"fmt "
    block_align = struct.unpack_from("<H", b, 32)[0]
    struct.pack_into("<I", b, 24, rate)
    struct.pack_into("<I", b, 28, (rate * block_align) % 2**32)
    path.write_bytes(bytes(b))
    return path


def manifest_of(paths: dict[str, Path | str]) -> pd.DataFrame:
    """A minimal manifest (id, path) as extract() takes it."""
    return pd.DataFrame({"id": list(paths), "path": [str(p) for p in paths.values()]})


def run_extract(manifest: pd.DataFrame, store: Path, features: str = "mfcc", **kw):
    return extract(manifest, parse_features(features), FeatureStore(store), corpus="c", jobs=1,
                   progress=False, **kw)


def stored_ids(store: Path, table: str = "mfcc/mean_std-*") -> list[str]:
    parts = list(store.glob(f"c/{table}/part-*.parquet"))
    return sorted(set(pd.concat(pd.read_parquet(p) for p in parts)["id"])) if parts else []


def write_csv(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Any attempt to decode samples fails the test (proves a refusal came from the header)."""

    def refuse(*args, **kwargs):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(sf.SoundFile, "read", refuse)
    monkeypatch.setattr(sf.SoundFile, "blocks", refuse)


# -- header bounds, before decoding --------------------------------------------------------------------
@pytest.mark.parametrize("rate", [1, 999, 2_000_000_000])
def test_header_sample_rate_out_of_range_is_refused_before_decoding(tmp_path, rate, no_decoding):
    bad = patch_rate(tone(tmp_path / "bad.wav", seconds=2.0), rate)  # 64 KB of 16-bit samples
    with pytest.raises(AudioError, match=f"sample rate of {rate} Hz, outside the supported 1000..384000"):
        load_audio(bad)
    from featurekit.deploy.windows import iter_windows

    with pytest.raises(AudioError, match=f"sample rate of {rate} Hz"):
        next(iter_windows(bad, 16000, 1.0, 0.5))


def test_1hz_header_costs_that_file_in_extract_and_predict(tmp_path):
    good = tone(tmp_path / "good.wav")
    bad = patch_rate(tone(tmp_path / "bad.wav", seconds=2.0), 1)
    summary = run_extract(manifest_of({"good": good, "bad": bad}), tmp_path / "store")
    assert list(summary.failures) == ["bad"]
    assert summary.failures["bad"].startswith(f"{bad}: header declares a sample rate of 1 Hz")
    assert stored_ids(tmp_path / "store") == ["good"]

    # predict's per-file worker (whole file and windowed) reports it as that file's error
    from featurekit.deploy.features import FeatureComputer
    from featurekit.deploy.inference import _file_inputs

    names = [f"mfcc_{i:02d}_{s}" for i in range(40) for s in ("mean", "std")]
    computer = FeatureComputer({"sequences": False, "members": [
        {"extractor": "mfcc", "kind": "mean_std", "columns": names}]}, AudioOptions())
    for window, hop in ((None, None), (1.0, 0.5)):
        out = _file_inputs(str(bad), computer, window, hop)
        assert out["error"].startswith(f"{bad}: header declares a sample rate of 1 Hz") and not out["x"]
        ok = _file_inputs(str(good), computer, window, hop)
        assert ok["error"] is None and ok["x"]


def test_cap_on_decoded_samples_is_configurable_and_not_a_store_key(tmp_path, no_decoding):
    f16 = tone(tmp_path / "a16.wav", seconds=1.0)
    f8 = tone(tmp_path / "a8.wav", seconds=0.75, sr=8000)  # 6000 frames, 12000 samples at 16 kHz
    with pytest.raises(AudioError, match="16000 samples decoded.*above the cap of 10000 samples"):
        load_audio(f16, options=AudioOptions(max_samples=10_000))
    with pytest.raises(AudioError, match="resampled to 16000 Hz.*above the cap of 10000"):
        load_audio(f8, options=AudioOptions(max_samples=10_000))
    with pytest.raises(ValueError, match="max_samples"):
        AudioOptions(max_samples=0)
    assert AudioOptions().max_samples == DEFAULT_MAX_SAMPLES
    # the cap decides whether a file is decoded, never its features: same table either way
    store = FeatureStore(tmp_path / "s")
    ext = parse_features("mfcc")[0].extractor
    assert (store.table("c", ext, "mean_std", AudioOptions()).directory
            == store.table("c", ext, "mean_std", AudioOptions(max_samples=10)).directory)


def test_cli_max_samples(tmp_path):
    tone(tmp_path / "long.wav", seconds=1.0, seed=1)
    tone(tmp_path / "short.wav", seconds=0.5, seed=2)
    write_csv(tmp_path / "list.csv", "path,label,speaker\nlong.wav,a,s1\nshort.wav,b,s2\n")
    r = subprocess.run([*FEATUREKIT, "extract", "--corpus", "csv", "--root", str(tmp_path), "--corpus-option",
                        "csv=list.csv", "--features", "mfcc", "--store", str(tmp_path / "store"),
                        "--jobs", "1",
                        "--quiet", "--max-samples", "12000"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "FAILED long:" in r.stdout and "above the cap of 12000 samples" in r.stdout
    parts = list((tmp_path / "store").glob("csv/mfcc/mean_std-*/part-*.parquet"))
    assert sorted(pd.concat(pd.read_parquet(p) for p in parts)["id"]) == ["short"]


# -- files that are not regular files, symlinks ------------------------------------------------------------
def _alarm(seconds: int):
    def hang(*_):
        raise TimeoutError("extraction hung on a non-regular file")

    signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)


def test_fifo_device_and_directory_are_refused_without_hanging(tmp_path):
    good = tone(tmp_path / "good.wav")
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    (tmp_path / "dir.wav").mkdir()
    paths = {"good": good, "fifo": fifo, "dir": tmp_path / "dir.wav"}
    if os.path.exists("/dev/zero"):
        paths["dev"] = "/dev/zero"
    _alarm(120)
    try:
        summary = run_extract(manifest_of(paths), tmp_path / "store")
    finally:
        signal.alarm(0)
    assert set(summary.failures) == set(paths) - {"good"}
    assert summary.failures["fifo"] == (f"{fifo}: is a FIFO (named pipe), not a regular file; "
                                        "refused before reading")
    assert "is a directory" in summary.failures["dir"]
    if "dev" in paths:
        assert "character device" in summary.failures["dev"]
    assert stored_ids(tmp_path / "store") == ["good"]
    # the same check guards decoding itself (a file swapped for a FIFO after fingerprinting)
    _alarm(60)
    try:
        with pytest.raises(AudioError, match="FIFO"):
            load_audio(fifo)
        from featurekit.deploy.windows import iter_windows

        with pytest.raises(AudioError, match="FIFO"):
            next(iter_windows(fifo, 16000, 1.0, 1.0))
    finally:
        signal.alarm(0)


def test_symlink_loop_and_dangling_link_cost_only_their_files(tmp_path):
    root = tmp_path / "corpus"
    tone(root / "good.wav")
    os.symlink("loop_b.wav", root / "loop_a.wav")
    os.symlink("loop_a.wav", root / "loop_b.wav")
    os.symlink("gone/away.wav", root / "dangling.wav")
    write_csv(root / "list.csv", "path,label,speaker\ngood.wav,a,s1\nloop_a.wav,a,s2\ndangling.wav,b,s2\n")
    with pytest.warns(UserWarning, match="2 audio file"):
        m = load_corpus("csv", root, csv="list.csv")
    assert m.loc["loop_a", "path"] == str(root / "loop_a.wav")  # the manifest's path, never resolved
    assert m.loc["dangling", "path"] == str(root / "dangling.wav")
    summary = run_extract(m, tmp_path / "store")
    assert summary.failures["loop_a"] == (f"{root / 'loop_a.wav'}: symlink loop (too many levels of "
                                          "symbolic links)")
    assert summary.failures["dangling"] == (f"{root / 'dangling.wav'}: dangling symlink (its target "
                                            f"'gone/away.wav' does not exist)")
    assert stored_ids(tmp_path / "store") == ["good"]


def _annex(root: Path, names: dict[str, str]) -> dict[str, Path]:
    """A git-annex/DataLad-style tree: ``wav/NAME`` are relative symlinks into ``.git/annex/objects``,
    whose file names are content keys (``names`` maps link name -> key; equal keys share one object)."""
    objects = {}
    for link, key in names.items():
        obj = root / ".git" / "annex" / "objects" / key[:2] / key / key
        if not obj.exists():
            tone(obj, seed=len(objects) + 1)
        objects[link] = obj
        (root / "wav").mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(obj, root / "wav"), root / "wav" / link)
    return objects


def test_annexed_corpus_takes_ids_and_paths_from_the_links(tmp_path):
    root = tmp_path / "emodb"
    _annex(root, {"03a01Fa.wav": "MD5E-s1--aaaa.wav", "08b02Wa.wav": "MD5E-s2--bbbb.wav"})
    m = load_corpus("emodb", root, listening_test=False)
    assert list(m["id"]) == ["03a01Fa", "08b02Wa"]
    assert list(m["path"]) == [str(root / "wav" / "03a01Fa.wav"), str(root / "wav" / "08b02Wa.wav")]
    write_csv(root / "list.csv", "path,label,speaker\nwav/03a01Fa.wav,happy,03\nwav/08b02Wa.wav,anger,08\n")
    c = load_corpus("csv", root, csv="list.csv")  # default ids: the link's stem, not the annex key
    assert list(c["id"]) == ["03a01Fa", "08b02Wa"]
    summary = run_extract(m, tmp_path / "store")
    assert not summary.failures and stored_ids(tmp_path / "store") == ["03a01Fa", "08b02Wa"]


def test_links_to_one_annexed_object_are_reported(tmp_path):
    root = tmp_path / "corpus"
    _annex(root, {"a.wav": "MD5E-s1--same.wav", "b.wav": "MD5E-s1--same.wav", "c.wav": "MD5E-s2--other.wav"})
    write_csv(root / "list.csv", "path,label,speaker\nwav/a.wav,x,1\nwav/b.wav,y,2\nwav/c.wav,x,1\n")
    with pytest.warns(ManifestWarning, match=r"resolve to the same audio file \(2 utterances.*a, b ->"):
        m = load_corpus("csv", root, csv="list.csv")
    assert list(m["id"]) == ["a", "b", "c"]


def test_same_path_twice_is_an_error(tmp_path):
    root = tmp_path / "corpus"
    tone(root / "a.wav")
    tone(root / "b.wav", seed=1)
    write_csv(root / "list.csv",
              f"id,path,label,speaker\nu1,a.wav,x,s1\nu2,b.wav,x,s1\nu3,{root / 'a.wav'},y,s2\n")
    with pytest.raises(CorpusLayoutError, match=r"listed more than once: .*a\.wav as ids u1, u3"):
        load_corpus("csv", root, csv="list.csv")
    # a hand-made manifest: refused by extract before anything is computed or written
    store = tmp_path / "store"
    with pytest.raises(ValueError, match="as ids u1, u3"):
        run_extract(manifest_of({"u1": root / "a.wav", "u2": root / "b.wav", "u3": root / "a.wav"}), store)
    assert not store.exists() or not list(store.rglob("part-*"))
    # segments of one file are distinct utterances
    seg = manifest_of({"s1": root / "a.wav", "s2": root / "a.wav"}).assign(start=[0.0, 0.5], end=[0.5, 1.0])
    assert not run_extract(seg, store).failures


# -- values: peaks and non-finite features -------------------------------------------------------------
def test_float_wav_scaled_to_1e30_fails_with_the_reason(tmp_path):
    good = tone(tmp_path / "good.wav")
    y, sr = sf.read(tone(tmp_path / "x.wav"), dtype="float32")
    huge = tmp_path / "huge.wav"
    sf.write(huge, (y / np.abs(y).max() * 1e30).astype(np.float32), sr, subtype="FLOAT")
    loud = tmp_path / "loud.wav"  # above full scale but plausible: kept
    sf.write(loud, (y / np.abs(y).max() * 0.9 * MAX_PEAK).astype(np.float32), sr, subtype="FLOAT")
    summary = run_extract(manifest_of({"good": good, "huge": huge, "loud": loud}), tmp_path / "store",
                          features="mfcc,egemaps")
    assert list(summary.failures) == ["huge"]
    assert summary.failures["huge"] == (f"{huge}: samples reach 1e+30, beyond +-10 (digital full scale is "
                                        "1.0): float samples not scaled as audio")
    for table in ("mfcc/mean_std-*", "egemaps/native-*"):
        assert stored_ids(tmp_path / "store", table) == ["good", "loud"]


def test_non_finite_feature_values_fail_that_file(tmp_path, monkeypatch):
    from featurekit.extractors.opensmile_sets import EGeMAPS
    from featurekit.extractors.spectral import MFCC

    files = {k: tone(tmp_path / f"{k}.wav", seconds=s, seed=i)
             for i, (k, s) in enumerate({"good": 1.0, "inf_lld": 0.9, "nan_native": 0.8}.items())}
    real_lld = MFCC.lld

    def lld(self, signal, sr):
        fr = real_lld(self, signal, sr)
        if len(signal) == int(0.9 * sr):
            fr.values[3, 2] = np.inf
        return fr

    def native(self, signal, sr):
        from featurekit.extractors.base import Vector

        values = np.ones(88, np.float32)
        if len(signal) == int(0.8 * sr):
            values[5] = np.nan
        return Vector(values, [f"egemaps_{i}" for i in range(88)])

    monkeypatch.setattr(MFCC, "lld", lld)
    monkeypatch.setattr(EGeMAPS, "native", native)
    summary = run_extract(manifest_of(files), tmp_path / "store", features="mfcc,egemaps.native")
    assert set(summary.failures) == {"inf_lld", "nan_native"}
    assert summary.failures["inf_lld"] == (f"{files['inf_lld']}: mfcc.lld: non-finite feature values (inf in "
                                           "1 of 40 columns: mfcc_02); nothing stored for it")
    assert "egemaps.native: non-finite feature values (NaN in 1 of 88 columns: egemaps_5)" in \
        summary.failures["nan_native"]
    for table in ("mfcc/mean_std-*", "egemaps/native-*"):
        assert stored_ids(tmp_path / "store", table) == ["good"]  # all or nothing per utterance


def test_functionals_never_replace_non_finite_statistics():
    from featurekit.extractors.functionals import FUNCTIONALS

    values = np.array([[1.0, 2.0], [np.inf, 3.0], [2.0, 4.0]], np.float32)
    frames = Frames(values=values, times=np.array([0.0, 0.01, 0.02]), names=["a", "b"])
    signal = np.zeros(1600, np.float32) + 0.1
    v = FUNCTIONALS.get("mean_std")(frames, signal, 16000, "x")
    assert np.isinf(v.values[v.names.index("a_mean")])  # formerly silently 0
    assert np.isnan(v.values[v.names.index("a_std")])
    assert np.isfinite([x for x, n in zip(v.values, v.names) if n.startswith("b_")]).all()


def test_egemaps_on_unvoiced_audio_keeps_opensmiles_zero_f0(tmp_path):
    """The legitimate undefined case: openSMILE reports F0 of unvoiced audio as 0 (documented in
    featurekit.extraction); such a file is stored, all values finite, F0 functionals 0."""
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.wav"
    sf.write(noise, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    summary = run_extract(manifest_of({"noise": noise}), tmp_path / "store", features="egemaps.native")
    assert not summary.failures
    df = pd.concat(pd.read_parquet(p) for p in (tmp_path / "store").glob("c/egemaps/native-*/part-*.parquet"))
    values = df.drop(columns=["id", "fingerprint"])
    assert np.isfinite(values.to_numpy()).all()
    assert values["egemaps_F0semitoneFrom27.5Hz_sma3nz_amean"].iloc[0] == 0.0


# -- CSV manifests ---------------------------------------------------------------------------------------
@pytest.fixture
def csv_root(tmp_path) -> Path:
    root = tmp_path / "corpus"
    for i, name in enumerate("abcd"):
        tone(root / f"{name}.wav", seconds=0.5, seed=i)
    return root


@pytest.mark.parametrize("rows, problem", [
    ("a.wav,x,s1\nb.wav,x,s1,extra\n", r"list\.csv:3: 4 field\(s\) where the header has 3"),
    ("a.wav,x,s1\nb.wav,x\n", r"list\.csv:3: 2 field\(s\) where the header has 3"),
])
def test_csv_rows_with_a_wrong_number_of_fields(csv_root, rows, problem):
    write_csv(csv_root / "list.csv", "path,label,speaker\n" + rows)
    with pytest.raises(CorpusLayoutError, match=problem):
        load_corpus("csv", csv_root, csv="list.csv")


def test_csv_line_numbers_count_quoted_newlines_and_blank_lines(csv_root):
    write_csv(csv_root / "list.csv",
              'path,label,speaker,note\na.wav,x,s1,"two\nlines"\n\nb.wav,x,s1,ok,more\n')
    with pytest.raises(CorpusLayoutError, match=r"list\.csv:5: 5 field"):
        load_corpus("csv", csv_root, csv="list.csv")
    write_csv(csv_root / "list.csv", 'path,label,speaker,valence\na.wav,x,s1,"1\n"\n\nb.wav,x,s1,high\n')
    with pytest.raises(CorpusLayoutError, match=r"'valence' is not a number on line\(s\) \[5\]"):
        load_corpus("csv", csv_root, csv="list.csv")


def test_csv_duplicated_or_empty_header_column(csv_root):
    write_csv(csv_root / "list.csv", "path,label,speaker,label\na.wav,x,s1,y\n")
    with pytest.raises(CorpusLayoutError, match=r"list\.csv:1: header repeats column\(s\) \['label'\]"):
        load_corpus("csv", csv_root, csv="list.csv")
    write_csv(csv_root / "list.csv", "path,label,speaker,\na.wav,x,s1,\n")
    with pytest.raises(CorpusLayoutError, match=r"list\.csv:1: header column\(s\) \[4\] have no name"):
        load_corpus("csv", csv_root, csv="list.csv")


def test_csv_latin1_is_reported_with_file_and_line(csv_root):
    write_csv(csv_root / "list.csv",
              "path,label,speaker\na.wav,anger,s1\nb.wav,\xc4rger,s1\n".encode("latin-1"))
    with pytest.raises(CorpusLayoutError) as err:
        load_corpus("csv", csv_root, csv="list.csv")
    assert f"{csv_root / 'list.csv'}:3: not valid utf-8 (byte 0xc4" in str(err.value)
    assert "encoding='latin-1'" in str(err.value)
    m = load_corpus("csv", csv_root, csv="list.csv", encoding="latin-1")
    assert sorted(m["label"]) == ["anger", "Ärger"]


def test_csv_na_like_strings_are_text(csv_root):
    write_csv(csv_root / "list.csv", "path,label,speaker,session,valence\na.wav,NA,NA,None,NA\n"
                                     "b.wav,None,null,n/a,\nc.wav,null,NaN,x,0.5\n")
    m = load_corpus("csv", csv_root, csv="list.csv")
    assert m["label"].tolist() == ["NA", "None", "null"]
    assert m["speaker"].tolist() == ["NA", "null", "NaN"]
    assert m["session"].tolist() == ["None", "n/a", "x"]
    assert m["valence"].isna().tolist() == [True, True, False]  # numeric column: NA-like means missing
    write_csv(csv_root / "list.csv", "path,label,speaker\na.wav,x,s1\nb.wav,x,\n")
    with pytest.raises(CorpusLayoutError, match=r"empty 'speaker' on line\(s\) \[3\]"):
        load_corpus("csv", csv_root, csv="list.csv")


def test_labels_and_speakers_are_nfc_normalised_and_stripped_with_merges_reported(csv_root):
    nfc, nfd = unicodedata.normalize("NFC", "Ärger"), unicodedata.normalize("NFD", "Ärger")
    assert nfc != nfd
    write_csv(csv_root / "list.csv", f"path,label,speaker\na.wav,{nfc},s1\nb.wav,{nfd},s1 \n"
                                     "c.wav,angry,s2\nd.wav,angry ,s2\n")
    with pytest.warns(ManifestWarning) as rec:
        m = load_corpus("csv", csv_root, csv="list.csv")
    text = " ".join(str(w.message) for w in rec)
    assert "label values that differ only in Unicode form or surrounding whitespace were merged" in text
    assert "'angry' + 'angry ' -> 'angry'" in text and "speaker" in text
    assert sorted(m["label"].unique()) == ["angry", nfc]
    assert sorted(m["speaker"].unique()) == ["s1", "s2"]
    with warnings.catch_warnings():  # values that are already clean: nothing to report
        warnings.simplefilter("error", ManifestWarning)
        write_csv(csv_root / "list.csv", f"path,label,speaker\na.wav,{nfc},s1\nb.wav,angry,s2\n")
        load_corpus("csv", csv_root, csv="list.csv")


# -- the store: content changes, flushing, orphans ---------------------------------------------------------
def test_file_changed_in_place_with_same_size_and_restored_mtime_is_recomputed(tmp_path):
    path = tone(tmp_path / "a.wav")
    m = manifest_of({"a": path})
    store = tmp_path / "store"
    first = run_extract(m, store)
    assert first.computed == 1
    assert run_extract(m, store).computed == 0  # unchanged: the memo is trusted
    st = os.stat(path)
    y, sr = sf.read(path, dtype="int16")
    sf.write(path, (-y).astype("int16"), sr, subtype="PCM_16")  # same size, other content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    again = run_extract(m, store)
    assert again.computed == 1 and again.cache_hits == 0
    req = parse_features("mfcc")[0]
    new = load_features(FeatureStore(store), m, req, "mean_std", corpus="c")
    expected = req.extractor.lld(load_audio(path), 16000)
    assert np.allclose(new.iloc[0].to_numpy()[::2], expected.values.mean(axis=0), rtol=1e-5, atol=1e-4)


def test_fingerprint_memo_of_an_older_version_is_not_trusted_but_rows_stay_valid(tmp_path):
    path = tone(tmp_path / "a.wav")
    m = manifest_of({"a": path})
    store = tmp_path / "store"
    run_extract(m, store)
    memo = store / "c" / "_fingerprints.json"
    fp = json.loads(memo.read_text())["files"][str(path)][5]
    st = os.stat(path)
    memo.write_text(json.dumps([[str(path), st.st_size, st.st_mtime_ns, "0" * 32]]))  # old format, wrong hash
    warm = run_extract(m, store)
    assert warm.computed == 0 and warm.cache_hits == 1  # re-hashed, same content hash: rows still valid
    assert json.loads(memo.read_text())["files"][str(path)][5] == fp


def test_flushing_by_time_default_bounds_what_a_kill_loses():
    from featurekit.cli import build_parser

    assert FLUSH_SECONDS <= 60
    args = build_parser().parse_args(["extract", "--corpus", "x", "--root", "r", "--store", "s",
                                      "--features", "mfcc"])
    assert args.flush_seconds == FLUSH_SECONDS


def test_killed_run_with_default_flush_every_keeps_time_flushed_parts(tmp_path):
    from featurekit.corpora.synthetic import make_synthetic_corpus

    root = tmp_path / "c"
    m = make_synthetic_corpus(root, n_speakers=3, n_per_class=3, duration=1.0)
    store = tmp_path / "killed"
    # flush_every stays at its default (far more than the corpus): only the clock can flush
    proc = subprocess.Popen([*FEATUREKIT, "extract", "--corpus", "synthetic", "--root", str(root),
                             "--features", "mfcc,egemaps", "--store", str(store), "--quiet", "--jobs", "1",
                             "--flush-seconds", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    pattern = "synthetic/**/part-*.parquet"
    while time.time() < deadline and proc.poll() is None and not list(store.glob(pattern)):
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "extraction finished before it could be killed"
    reqs = parse_features("mfcc,egemaps", functionals=["mean_std"])
    rerun = extract(m, reqs, FeatureStore(store), corpus="synthetic", jobs=1, progress=False)
    assert rerun.cache_hits > 0 and rerun.computed > 0 and not rerun.failures
    from featurekit.store import _writer_token

    assert not list(store.rglob(".tmp-*"))  # the killed writer's temporary files and lock: removed
    assert {p.name for p in store.rglob(".writer-*.lock")} == {f".writer-{_writer_token()}.lock"}


WRITER = textwrap.dedent("""
    import sys, time, uuid
    from featurekit.audio import AudioOptions
    from featurekit.extraction import parse_features
    from featurekit.store import FeatureStore, _writer_lock
    t = FeatureStore(sys.argv[1]).table("c", parse_features("mfcc")[0].extractor, "mean_std", AudioOptions())
    token = _writer_lock(t.directory)
    (t.directory / f".tmp-{token}-{uuid.uuid4().hex}-part-x.parquet").write_bytes(b"half")
    (t.directory / f"part-{time.time_ns():020d}-{token}-0000abcd.parquet.keys.json").write_text("{}")
    print(token, flush=True)
    time.sleep(600)
""")


def test_orphans_of_dead_writers_are_removed_on_the_next_run(tmp_path):
    store = tmp_path / "store"
    path = tone(tmp_path / "a.wav")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store)], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    try:
        dead, live = procs
        tokens = [p.stdout.readline().strip() for p in procs]
        dead.kill()
        dead.wait()
        table = next(store.glob("c/mfcc/mean_std-*"))
        legacy_old = table / f".tmp-{'1' * 32}-part-old.parquet"
        legacy_new = table / f".tmp-{'2' * 32}-part-new.parquet"
        for f in (legacy_old, legacy_new):
            f.write_bytes(b"x")
        os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
        memo_tmp = store / "c" / f".tmp-{'3' * 32}-_fingerprints.json"
        memo_tmp.write_text("[")
        summary = run_extract(manifest_of({"a": path}), store)
        assert not summary.failures and summary.computed == 1
        names = {p.name for p in table.iterdir()}
        assert not any(tokens[0] in n for n in names)  # the dead writer's temp file, index and lock: gone
        assert sum(tokens[1] in n for n in names) == 3  # the live writer's: kept
        assert legacy_new.exists() and not legacy_old.exists() and not memo_tmp.exists()
    finally:
        for p in procs:
            p.kill()
            p.wait()


# -- windows in predict --------------------------------------------------------------------------------------
def test_window_and_hop_have_minimums(tmp_path):
    from featurekit.deploy.windows import check_window

    with pytest.raises(ValueError, match="window .* shorter than one analysis frame; use at least 0.25 s"):
        check_window(1e-4, None)
    with pytest.raises(ValueError, match="hop .* use at least 0.01 s"):
        check_window(1.0, 1e-4)
    assert check_window(0.25, 0.01) == (0.25, 0.01)
    r = subprocess.run([*FEATUREKIT, "predict", str(tmp_path / "no-model"), str(tone(tmp_path / "a.wav")),
                        "--window", "1e-4"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "shorter than one analysis frame" in r.stderr


def test_cap_on_windows_per_file_is_checked_before_decoding(tmp_path, monkeypatch):
    from featurekit.deploy.windows import count_windows, iter_windows

    path = tone(tmp_path / "a.wav", seconds=2.0)
    for window, hop in ((0.25, 0.01), (1.0, 0.3), (0.5, 0.5), (3.0, 1.0)):
        n = len(_quiet(iter_windows(path, 16000, window, hop)))
        assert n == count_windows(32000, int(window * 16000), int(round(hop * 16000)))
    def decoded(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(sf.SoundFile, "blocks", decoded)
    with pytest.raises(AudioError, match="would make 176 windows, more than the cap of 100 per file"):
        next(iter_windows(path, 16000, 0.25, 0.01, max_windows=100))


def _quiet(it):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(it)

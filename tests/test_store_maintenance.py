"""The feature store seen from outside: table folders are plain parquet datasets (older layouts
migrated or read as they are), and ``featurekit store ls | info | gc``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from featurekit.audio import AudioOptions
from featurekit.cli import main
from featurekit.corpora.synthetic import make_synthetic_corpus
from featurekit.extraction import extract, parse_features
from featurekit.store import KEY_FILE, FeatureStore


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> pd.DataFrame:
    return make_synthetic_corpus(tmp_path_factory.mktemp("synth"), n_speakers=2, n_per_class=1, duration=1.0)


def _store(tmp_path: Path, synth: pd.DataFrame, features: str = "mfcc,egemaps.native",
           functionals=("mean_std",), lld: bool = True) -> FeatureStore:
    store = FeatureStore(tmp_path / "store")
    extract(synth, parse_features(features, functionals=list(functionals), lld=lld), store, corpus="s",
            jobs=1, progress=False)
    return store


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    by = ["id", "frame"] if "frame" in df.columns else ["id"]
    return df.sort_values(by).reset_index(drop=True)


def _to_legacy_layout(table_dir: Path) -> None:
    """What stores written before the side files were renamed look like."""
    (table_dir / KEY_FILE).rename(table_dir / "key.json")
    for index in table_dir.glob("_part-*.parquet.keys.json"):
        index.rename(table_dir / index.name[1:])


def test_table_folder_is_a_plain_parquet_dataset(synth, tmp_path):
    store = _store(tmp_path, synth)
    tables = store.tables("s")
    assert {t.kind for t in tables} == {"mean_std", "lld", "native"}
    for t in tables:
        mine = _sorted(t.read())
        assert len(mine) >= len(synth)
        plain = _sorted(pd.read_parquet(t.directory))
        pd.testing.assert_frame_equal(plain[mine.columns], mine)
        assert list(plain.columns) == list(mine.columns)
        assert ds.dataset(t.directory, format="parquet").count_rows() == len(mine)
        assert not [p.name for p in t.directory.iterdir()
                    if not p.name.startswith(("_", ".")) and not p.name.endswith(".parquet")]


def test_older_layout_is_migrated_on_open(synth, tmp_path):
    store = _store(tmp_path, synth, "mfcc", lld=False)
    (table,) = store.tables("s")
    expected = _sorted(table.read())
    _to_legacy_layout(table.directory)
    with pytest.raises(Exception):  # noqa: B017 - what the old layout did to pandas (pyarrow's error)
        pd.read_parquet(table.directory)
    (again,) = FeatureStore(store.root).tables("s")  # opening migrates
    names = sorted(p.name for p in again.directory.iterdir() if not p.name.startswith("."))
    assert KEY_FILE in names and "key.json" not in names
    assert all(n.startswith("_") or n.endswith(".parquet") for n in names)
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(again.directory)), expected)
    warm = extract(synth, parse_features("mfcc", functionals=["mean_std"]), store, corpus="s", jobs=1,
                   progress=False)
    assert warm.computed == 0 and warm.cache_hits == len(synth)


def test_older_layout_is_read_where_it_cannot_be_renamed(synth, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    store = _store(tmp_path, synth, "mfcc", lld=False)
    (table,) = store.tables("s")
    expected = _sorted(table.read())
    _to_legacy_layout(table.directory)

    def read_only(*args, **kwargs):
        raise PermissionError("read-only store")

    with monkeypatch.context() as mp:
        mp.setattr(os, "replace", read_only)
        mp.setattr(Path, "unlink", read_only)
        (old,) = FeatureStore(store.root).tables("s")
        assert (old.directory / "key.json").exists() and not (old.directory / KEY_FILE).exists()
        pd.testing.assert_frame_equal(_sorted(old.read()), expected)
        with monkeypatch.context() as no_parquet:  # the keys come from the old-named indexes
            no_parquet.setattr(pq, "read_table", read_only)
            assert set(old.keys()["id"]) == set(synth["id"]) and old.n_features() == 80


def _fake_table(store: FeatureStore, source: Path, edit) -> Path:
    """A copy of table ``source`` whose key.json ``edit(key)`` changed, under a new folder name."""
    target = source.with_name(f"{source.name.split('-')[0]}-{abs(hash(edit)) % 10**16:016d}")
    shutil.copytree(source, target)
    key = json.loads((target / KEY_FILE).read_text())
    edit(key)
    (target / KEY_FILE).write_text(json.dumps(key))
    return target


def test_store_gc_removes_only_what_no_current_version_can_use(synth, tmp_path, capsys, monkeypatch):
    store = _store(tmp_path, synth, "mfcc", lld=False)
    (current,) = store.tables("s")
    before = _sorted(current.read())

    def old_version(k):
        k["extractor"]["version"] = "0"

    def gone(k):
        k["extractor"]["extractor"] = "retired_extractor"

    def old_numpy(k):
        k["extractor"]["libraries"]["numpy"] = "1.0.0"

    def old_soxr(k):
        k["audio"]["libraries"]["soxr"] = "0.0.1"

    stale = [_fake_table(store, current.directory, f) for f in (old_version, gone, old_numpy, old_soxr)]
    # a paa table of another version is kept where paa cannot run (its version cannot be compared)
    paa = store.root / "s" / "paa" / "mean_std-00000000000000aa"
    shutil.copytree(current.directory, paa)
    key = json.loads((paa / KEY_FILE).read_text())
    key["extractor"].update(extractor="paa", version="0")
    (paa / KEY_FILE).write_text(json.dumps(key))
    import featurekit.extras

    real = featurekit.extras._installed
    monkeypatch.setattr(featurekit.extras, "_installed", lambda m: m != "pyAudioAnalysis" and real(m))
    # orphans: a dead writer's temporary file and a keys index whose part never arrived
    dead = "d" * 16
    orphans = [current.directory / f".tmp-{dead}-{'0' * 32}-part-x.parquet",
               current.directory / f"_part-00000000000000000001-{dead}-0000abcd.parquet.keys.json"]
    for f in orphans:
        f.write_text("{}")

    assert main(["store", "ls", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert current.directory.relative_to(store.root).as_posix() in out
    assert "extractor version 0 (current:" in out and "'retired_extractor' no longer exists" in out
    assert "numpy 1.0.0 ->" in out and "soxr 0.0.1 ->" in out
    assert 'kept, not checked: the paa extractor needs' in out and 'featurekit[paa]' in out
    assert "6 tables" in out

    assert main(["store", "gc", "--dry-run", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert out.count("would remove table") == 4 and out.count("would remove orphan") == 2
    assert all(p.exists() for p in [*stale, *orphans, paa])

    assert main(["store", "gc", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert out.count("removed table") == 4 and "removed 4 tables" in out and "2 orphaned files" in out
    assert not any(p.exists() for p in [*stale, *orphans]) and paa.exists()
    assert not (store.root / "s" / "retired_extractor").exists()
    (kept,) = [t for t in store.tables("s") if t.directory != paa]
    assert kept.directory == current.directory
    pd.testing.assert_frame_equal(_sorted(kept.read()), before)
    warm = extract(synth, parse_features("mfcc", functionals=["mean_std"]), store, corpus="s", jobs=1,
                   progress=False)
    assert warm.computed == 0

    assert main(["store", "gc", "--store", str(store.root)]) == 0
    assert "removed 0 tables (0 B) and 0 orphaned files" in capsys.readouterr().out


def test_store_ls_and_info(synth, tmp_path, capsys):
    store = _store(tmp_path, synth, "mfcc")
    t = next(t for t in store.tables("s") if t.kind == "lld")
    frames = len(t.read())
    assert main(["store", "ls", "--json", "--store", str(store.root)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_kind = {r["kind"]: r for r in rows}
    assert set(by_kind) == {"lld", "mean_std"}
    assert by_kind["lld"]["rows"] == frames and by_kind["lld"]["utterances"] == len(synth)
    assert by_kind["mean_std"]["rows"] == len(synth) and by_kind["mean_std"]["columns"] == 80
    assert by_kind["lld"]["columns"] == 40 and by_kind["lld"]["status"] == "current"
    assert by_kind["mean_std"]["extractor"] == "mfcc" and by_kind["mean_std"]["corpus"] == "s"
    assert by_kind["mean_std"]["params"] == t.key.extractor["params"]
    assert by_kind["lld"]["size"] == sum(p.stat().st_size for p in t.directory.iterdir())

    name = t.directory.relative_to(store.root).as_posix()
    assert main(["store", "info", name, "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert f"table:       {name}" in out and "kind:        lld" in out and f"rows:        {frames}" in out
    assert '"n_mfcc": 40' in out and "mfcc_00" in out and "status:      current" in out

    r = main(["store", "info", "s/mfcc/nothing", "--store", str(store.root)])
    assert r == 2 and "no table of the store" in capsys.readouterr().err


def test_every_current_extractor_key_is_judged_usable(whisper_tiny_dir, tmp_path):
    """gc never removes a table a current extractor version maps to: the key each registered extractor
    writes today is judged usable, for every kind it has (encoders: with a real model directory; their
    ``key_excludes`` parameters are not in the key)."""
    from featurekit.extractors import EXTRACTORS, FUNCTIONALS, make_extractor
    from featurekit.extractors.ssl.common import EncoderExtractor
    from featurekit.store_maintenance import unusable_reason

    store = FeatureStore(tmp_path)
    checked = []
    for name, cls in EXTRACTORS.items():
        if issubclass(cls, EncoderExtractor):
            if name != "whisper_ct2":
                continue  # hf_encoder: tests/test_ssl.py (needs a transformers model directory)
            ext = make_extractor(name, model=str(whisper_tiny_dir))
        else:
            ext = make_extractor(name)
        kinds = [*(["native"] if cls.has_native else []),
                 *(["lld", *FUNCTIONALS.names()] if cls.has_lld else [])]
        for kind in kinds:
            key = store.table("c", ext, kind, AudioOptions()).key
            assert unusable_reason(key) == (None, None), (name, kind)
        checked.append(name)
    assert {"mfcc", "egemaps", "paa", "whisper_ct2"} <= set(checked)

"""Looking after a feature store: what its tables hold, which of them this installation can still use,
and garbage collection (``featurekit store ls | info | gc``).

A table is keyed by everything that determines its values (:mod:`featurekit.store`): the extractor's
name, version, parameters and library versions, the kind of table and the audio options with the
decoder/resampler versions. A table is *unusable* when no extractor of this installation can ask for
its key: the extractor is no longer registered, its version or a library version differs from the
installed ones, its parameter names or the audio options' fields are not today's, or its kind no
longer exists. Garbage collection removes those tables and the orphaned files of dead writers
(:meth:`~featurekit.store.FeatureTable.remove_orphans`); it never removes a table whose key a current
extractor version maps to, nor one whose extractor cannot run here (its optional dependencies are not
installed, so its versions cannot be compared).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurekit.featureset import TableKind
from featurekit.store import (
    AUDIO_LIBRARIES,
    KEY_FILE,
    LEGACY_KEY_FILE,
    FeatureStore,
    FeatureTable,
    TableKey,
    _locked,
)


@dataclass
class TableInfo:
    """What :func:`describe` reports about one table."""

    table: FeatureTable
    name: str  # the table's folder relative to the store: corpus/extractor/kind-hash
    utterances: int
    rows: int
    columns: int
    parts: int
    size: int  # bytes of every file in the table's folder
    unusable: str | None  # why no current extractor version can use it (None: usable)
    unavailable: str | None  # the extractor cannot run here (missing extra): kept, not judged

    @property
    def key(self) -> TableKey:
        return self.table.key

    @property
    def status(self) -> str:
        if self.unavailable:
            return f"kept, not checked: {self.unavailable}"
        return f"unusable: {self.unusable}" if self.unusable else "current"

    def as_dict(self) -> dict[str, Any]:
        ex = self.key.extractor
        return {
            "table": self.name, "path": str(self.table.directory), "corpus": self.key.corpus,
            "extractor": ex.get("extractor"), "version": ex.get("version"), "kind": self.key.kind,
            "hash": self.table.directory.name.rpartition("-")[2], "params": ex.get("params", {}),
            "libraries": ex.get("libraries", {}), "audio": self.key.audio,
            "utterances": self.utterances, "rows": self.rows, "columns": self.columns, "parts": self.parts,
            "size": self.size, "status": self.status,
        }


def _diff(old: dict, new: dict) -> str:
    changed = [f"{k} {old.get(k, 'absent')} -> {new.get(k, 'absent')}"
               for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(changed)


def unusable_reason(key: TableKey) -> tuple[str | None, str | None]:
    """``(unusable, unavailable)``: why no current extractor version can ask for ``key`` (None when
    one can), and why its extractor cannot run here (then ``unusable`` is None: it is not judged)."""
    from featurekit.audio import AudioOptions
    from featurekit.extractors import EXTRACTORS
    from featurekit.extractors.base import library_versions

    ex = key.extractor if isinstance(key.extractor, dict) else {}
    name = ex.get("extractor")
    if name not in EXTRACTORS:
        return f"extractor {name!r} no longer exists", None
    cls = EXTRACTORS.get(name)
    missing = cls.missing_extra()
    if missing:
        return None, missing
    if str(ex.get("version")) != str(cls.version):
        return f"extractor version {ex.get('version')} (current: {cls.version})", None
    libraries = library_versions(cls.libraries)
    if ex.get("libraries") != libraries:
        return f"library versions changed: {_diff(ex.get('libraries') or {}, libraries)}", None
    if set(ex.get("params") or {}) != set(cls.key_param_names()):
        return f"parameters of another version: {sorted(ex.get('params') or {})}", None
    kinds = {k.store_name for k in TableKind
             if k.functional or (cls.has_lld if k is TableKind.LLD else cls.has_native)}
    if key.kind not in kinds:
        return f"kind {key.kind!r} no longer exists for {name}", None
    audio = dict(key.audio)
    audio_libraries = library_versions(AUDIO_LIBRARIES)
    if audio.pop("libraries", None) != audio_libraries:
        changed = _diff(key.audio.get("libraries") or {}, audio_libraries)
        return f"audio library versions changed: {changed}", None
    if set(audio) != set(AudioOptions().as_dict()):
        return f"audio options of another version: {sorted(audio)}", None
    return None, None


def describe(store: FeatureStore, table: FeatureTable) -> TableInfo:
    """Rows, columns, sizes and status of ``table`` (reads the parts' footers and key indexes only)."""
    import pyarrow.parquet as pq

    with _locked(table._lock, exclusive=False):
        parts = table.parts()
        rows = 0
        for part in parts:
            try:
                rows += pq.read_metadata(part).num_rows
            except Exception as err:
                raise OSError(f"{part}: unreadable feature-store part ({err}); delete it to recompute "
                              f"its rows") from err
    size = sum(f.stat().st_size for f in table.directory.iterdir() if f.is_file())
    unusable, unavailable = unusable_reason(table.key)
    return TableInfo(table=table, name=table.directory.relative_to(store.root).as_posix(),
                     utterances=len(table.keys()), rows=rows, columns=table.n_features(), parts=len(parts),
                     size=size, unusable=unusable, unavailable=unavailable)


def column_names(table: FeatureTable) -> list[str]:
    """The table's columns (from its first part's schema; none for an empty table)."""
    import pyarrow.parquet as pq

    parts = table.parts()
    return pq.read_schema(parts[0]).names if parts else []


def find_table(store: FeatureStore, name: str) -> FeatureTable:
    """The table at ``name``: its folder, or its folder relative to the store (as ``store ls`` prints)."""
    wanted = [Path(name), store.root / name]
    for table in store.tables():
        if any(p.exists() and p.resolve() == table.directory.resolve() for p in wanted):
            return table
    raise FileNotFoundError(f"{name}: no table of the store {store.root} (see `featurekit store ls`)")


@dataclass
class Collected:
    """What :func:`collect_garbage` removed (or, in a dry run, would remove)."""

    tables: list[tuple[TableInfo, str]] = field(default_factory=list)  # (table, why)
    orphans: list[Path] = field(default_factory=list)
    freed: int = 0  # bytes


def collect_garbage(store: FeatureStore, *, dry_run: bool = False) -> Collected:
    """Remove the tables no current extractor version can use (:func:`unusable_reason`) and orphaned
    files of dead writers, in every table folder (a folder left without a key and without files by a
    writer that died before its first part is removed too). With ``dry_run`` nothing is removed."""
    out = Collected()
    for table in store.tables():
        info = describe(store, table)
        if info.unusable is None:
            out.orphans += table.remove_orphans(dry_run=dry_run)
            continue
        out.tables.append((info, info.unusable))
        out.freed += info.size
        if not dry_run:
            with _locked(table._lock, exclusive=True):
                shutil.rmtree(table.directory, ignore_errors=True)
            _remove_if_empty(table.directory.parent)
    for folder in sorted(store.root.glob("*/*/*")):
        if not folder.is_dir() or (folder / KEY_FILE).exists() or (folder / LEGACY_KEY_FILE).exists():
            continue
        if any(p.name.startswith("part-") for p in folder.iterdir()):
            continue  # parts without a key: not ours to judge
        out.orphans += FeatureTable(folder, TableKey("", {}, "")).remove_orphans(dry_run=dry_run)
        if not dry_run:
            (folder / ".lock").unlink(missing_ok=True)
            _remove_if_empty(folder)
            _remove_if_empty(folder.parent)
    return out


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (or gone): keep it
        pass


def human_size(n: int) -> str:
    """``1.2 MiB`` style."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def info_text(info: TableInfo) -> str:
    """The multi-line ``featurekit store info`` text of a table."""
    d = info.as_dict()
    cols = column_names(info.table)
    shown = ", ".join(cols[:8]) + (f", ... ({len(cols)} in all)" if len(cols) > 8 else "")
    lines = [f"{k + ':':12s} {json.dumps(d[k], sort_keys=True) if isinstance(d[k], dict) else d[k]}"
             for k in ("table", "path", "corpus", "extractor", "version", "kind", "hash", "params",
                       "libraries", "audio", "utterances", "rows", "columns", "parts")]
    lines += [f"{'size:':12s} {human_size(info.size)}", f"{'parquet:':12s} {shown}",
              f"{'status:':12s} {info.status}"]
    return "\n".join(lines)

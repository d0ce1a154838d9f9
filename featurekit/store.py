"""The feature store: parquet tables of features, keyed by everything that determines them.

Layout::

    STORE/<corpus>/<extractor>/<kind>-<hash>/key.json      what the table holds (see TableKey)
    STORE/<corpus>/<extractor>/<kind>-<hash>/part-*.parquet  rows, appended in chunks
    STORE/<corpus>/<extractor>/<kind>-<hash>/part-*.parquet.keys.json  each part's (id, fingerprint)
                                                            pairs and width, so a warm run needs no parquet
    STORE/<corpus>/_fingerprints.json                       path/size/mtime -> content hash memo

``kind`` is ``native`` (the toolkit's own functionals), an HSF functional name (``mean_std``,
``mean_std_silence``, ``stats``) or ``lld`` (frame level). ``hash`` covers the extractor's name,
version, parameters and library versions, the audio options and the decoder/resampler versions.

Rows carry the utterance ``id`` and the ``fingerprint`` (content hash) of its audio file, so a
changed file no longer matches and is recomputed. Writers only ever add whole part files, written
to a temporary name and renamed into place (atomic on POSIX), so a reader never sees a half-written
table and a killed writer leaves at most an ignored temporary file. Two processes may extract into
one store at once: the worst case is a row computed twice, which reading de-duplicates. Compaction
(merging parts) holds an exclusive lock; readers hold a shared one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurekit.audio import AudioOptions, file_fingerprint
from featurekit.extractors.base import Extractor, library_versions

AUDIO_LIBRARIES = ("soundfile", "soxr", "librosa")
KEY_COLUMNS = ("id", "fingerprint")
LLD_KIND = "lld"
NATIVE_KIND = "native"
COMPACT_AFTER_PARTS = 8


@dataclass(frozen=True)
class TableKey:
    """Identity of one table."""

    corpus: str
    extractor: dict[str, Any]
    kind: str
    audio: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"corpus": self.corpus, "extractor": self.extractor, "kind": self.kind, "audio": self.audio}

    def digest(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, default=str).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


def _atomic_write_parquet(rows, path: Path) -> None:
    """Write a DataFrame or an Arrow table to ``path`` via a temporary name and a rename."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        if isinstance(rows, pd.DataFrame):
            rows.to_parquet(tmp, index=False)
        else:
            import pyarrow.parquet as pq

            pq.write_table(rows, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _sidecar(part: Path) -> Path:
    """The keys index written beside a part (see :meth:`FeatureTable.keys`)."""
    return part.with_name(part.name + ".keys.json")


def _keys_index(ids, fingerprints, names) -> dict:
    """A part's keys index: its distinct (id, fingerprint) pairs and its number of feature columns."""
    pairs = list(dict.fromkeys(zip(map(str, ids), map(str, fingerprints))))  # LLD rows repeat them per frame
    return {
        "ids": [i for i, _ in pairs],
        "fingerprints": [f for _, f in pairs],
        "n_features": len([n for n in names if n not in (*KEY_COLUMNS, "frame", "time")]),
    }


def _rows_index(rows) -> dict:
    """The keys index of rows about to be written (a DataFrame or an Arrow table)."""
    if isinstance(rows, pd.DataFrame):
        return _keys_index(rows["id"], rows["fingerprint"], list(rows.columns))
    return _keys_index(_column(rows, "id"), _column(rows, "fingerprint"), rows.column_names)


def _column(table, name: str) -> list:
    return table.column(name).to_pylist()


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def _locked(path: Path, *, exclusive: bool) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class FeatureTable:
    """One table of the store (see module docstring). Created by :meth:`FeatureStore.table`."""

    def __init__(self, directory: Path, key: TableKey) -> None:
        self.directory = directory
        self.key = key
        self._lock = directory / ".lock"
        self._index: dict[Path, dict] = {}  # part -> its keys index (parts are immutable)

    @property
    def kind(self) -> str:
        return self.key.kind

    def _ensure(self) -> None:
        if not (self.directory / "key.json").exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(
                json.dumps(self.key.as_dict(), indent=2, sort_keys=True, default=str),
                self.directory / "key.json",
            )

    def parts(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("part-*.parquet"))

    def append(self, df) -> Path | None:
        """Add rows (a DataFrame or an Arrow table) as a new part file, atomically.

        Returns the part's path (None for no rows).
        """
        if (df.empty if isinstance(df, pd.DataFrame) else df.num_rows == 0):
            return None
        columns = list(df.columns) if isinstance(df, pd.DataFrame) else df.column_names
        missing = [c for c in KEY_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"rows for {self.directory} lack {missing}")
        self._ensure()
        return self._write_part(df)

    def _write_part(self, df) -> Path:
        # the index goes first: a part is visible only once complete, and by then its index exists
        # (an index whose part never arrived, e.g. after a kill, is ignored and later removed)
        path = self.directory / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        _atomic_write_text(json.dumps(_rows_index(df)), _sidecar(path))
        _atomic_write_parquet(df, path)
        return path

    def _read_parts(self, columns: list[str] | None) -> pd.DataFrame:
        import pyarrow.parquet as pq

        frames = []
        for part in self.parts():
            try:
                frames.append(pq.read_table(part, columns=columns).to_pandas())
            except Exception as err:  # a corrupt part is reported, never silently dropped
                raise OSError(
                    f"{part}: unreadable feature-store part ({err}); delete it to recompute its rows"
                ) from err
        if not frames:
            return pd.DataFrame(columns=columns or list(KEY_COLUMNS))
        return pd.concat(frames, ignore_index=True)

    def _part_keys(self, part: Path) -> dict:
        """A part's keys index: from its index file, else (older stores) from the parquet file."""
        if part not in self._index:
            try:
                info = json.loads(_sidecar(part).read_text())
            except (OSError, ValueError):
                import pyarrow.parquet as pq

                try:
                    keys = pq.read_table(part, columns=list(KEY_COLUMNS))
                    names = pq.read_schema(part).names
                except Exception as err:
                    raise OSError(
                        f"{part}: unreadable feature-store part ({err}); delete it to recompute its rows"
                    ) from err
                info = _keys_index(_column(keys, "id"), _column(keys, "fingerprint"), names)
            self._index[part] = info
        return self._index[part]

    def keys(self) -> pd.DataFrame:
        """The (id, fingerprint) pairs present (cheap: reads the parts' small index files)."""
        with _locked(self._lock, exclusive=False):
            infos = [self._part_keys(p) for p in self.parts()]
        df = pd.DataFrame(
            {
                "id": [i for info in infos for i in info["ids"]],
                "fingerprint": [f for info in infos for f in info["fingerprints"]],
            }
        )
        return df.drop_duplicates(list(KEY_COLUMNS))

    def n_features(self) -> int:
        """Number of feature columns (0 for an empty table)."""
        with _locked(self._lock, exclusive=False):
            parts = self.parts()
            return self._part_keys(parts[0])["n_features"] if parts else 0

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """All rows (de-duplicated on id, fingerprint and, for LLDs, frame)."""
        cols = None if columns is None else list(dict.fromkeys([*KEY_COLUMNS, *columns]))
        with _locked(self._lock, exclusive=False):
            df = self._read_parts(cols)
        subset = [*KEY_COLUMNS, "frame"] if "frame" in df.columns else list(KEY_COLUMNS)
        return df.drop_duplicates(subset, keep="last").reset_index(drop=True)

    def compact(self) -> None:
        """Merge all parts into one (exclusive lock); also removes stale temporary files."""
        with _locked(self._lock, exclusive=True):
            parts = self.parts()
            now = time.time()
            for tmp in self.directory.glob(".tmp-*"):  # left by a killed writer
                if now - tmp.stat().st_mtime > 3600:
                    tmp.unlink(missing_ok=True)
            for index in self.directory.glob("part-*.parquet.keys.json"):  # its part never arrived
                part = index.with_name(index.name.removesuffix(".keys.json"))
                if not part.exists() and now - index.stat().st_mtime > 3600:
                    index.unlink(missing_ok=True)
            if len(parts) < 2:
                return
            df = self._read_parts(None)
            subset = [*KEY_COLUMNS, "frame"] if "frame" in df.columns else list(KEY_COLUMNS)
            self._write_part(df.drop_duplicates(subset, keep="last"))
            for part in parts:
                part.unlink(missing_ok=True)
                _sidecar(part).unlink(missing_ok=True)
                self._index.pop(part, None)


class FeatureStore:
    """A directory of feature tables (see module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def table(self, corpus: str, extractor: Extractor, kind: str, audio: AudioOptions) -> FeatureTable:
        """The table for ``corpus`` x ``extractor`` x ``kind`` under the given audio options."""
        audio_key = {**audio.as_dict(), "libraries": library_versions(AUDIO_LIBRARIES)}
        key = TableKey(corpus=corpus, extractor=extractor.key(), kind=kind, audio=audio_key)
        return FeatureTable(self.root / corpus / extractor.name / f"{kind}-{key.digest()}", key)

    def tables(self, corpus: str | None = None) -> list[FeatureTable]:
        """Every table present (optionally of one corpus)."""
        out = []
        pattern = f"{corpus or '*'}/*/*/key.json"
        for key_file in sorted(self.root.glob(pattern)):
            d = json.loads(key_file.read_text())
            out.append(FeatureTable(key_file.parent, TableKey(**d)))
        return out

    # -- fingerprints ------------------------------------------------------------------------
    def fingerprints(self, corpus: str, paths: list[str]) -> tuple[list[str | None], dict[str, str]]:
        """Content hashes of ``paths``, memoised by (path, size, mtime).

        Returns the fingerprints (None for an unreadable file) and ``{path: reason}`` for those.
        """
        memo_path = self.root / corpus / "_fingerprints.json"
        memo: dict[tuple[str, int, int], str] = {}
        try:
            rows = json.loads(memo_path.read_text())
            memo = {(p, size, mtime): fp for p, size, mtime, fp in rows}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as err:  # a damaged memo only costs re-hashing
            warnings.warn(
                f"{memo_path}: unreadable fingerprint memo ({err}); re-hashing the files", stacklevel=2
            )
        out: list[str | None] = []
        errors: dict[str, str] = {}
        new = 0
        from featurekit.audio import AudioError

        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                out.append(None)
                errors[p] = "file not found"
                continue
            k = (p, st.st_size, st.st_mtime_ns)
            fp = memo.get(k)
            if fp is None:
                try:
                    fp = file_fingerprint(p)
                except AudioError as err:
                    out.append(None)
                    errors[p] = err.problem
                    continue
                memo[k] = fp
                new += 1
            out.append(fp)
        if new:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            rows = [[p, size, mtime, fp] for (p, size, mtime), fp in memo.items()]
            with _locked(memo_path.with_suffix(".lock"), exclusive=True):
                _atomic_write_text(json.dumps(rows), memo_path)
        return out, errors


def align(df: pd.DataFrame, manifest: pd.DataFrame, fingerprints: list[str | None]) -> pd.DataFrame:
    """Rows of a functional table for the manifest's utterances at their current fingerprints,
    indexed by utterance id in manifest order; utterances without a row are absent."""
    want = pd.DataFrame({"id": manifest["id"].to_numpy(), "fingerprint": fingerprints})
    merged = want.merge(df, on=list(KEY_COLUMNS), how="inner", sort=False)
    return merged.drop(columns="fingerprint").set_index("id").rename_axis("id")


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Feature columns of a table (everything but id, fingerprint, frame, time)."""
    return [c for c in df.columns if c not in (*KEY_COLUMNS, "frame", "time")]


def to_sequences(lld: pd.DataFrame, ids: list[str], *, with_times: bool = False):
    """LLD rows (id, frame, ...) -> object array of ``(T_i, F)`` float32 arrays, in ``ids`` order.

    With ``with_times`` also an object array of the frames' times in seconds (the ``time`` column).
    """
    cols = feature_columns(lld)
    groups = {k: g.sort_values("frame") for k, g in lld.groupby("id", sort=False)}
    out = np.empty(len(ids), dtype=object)
    times = np.empty(len(ids), dtype=object)
    for i, k in enumerate(ids):
        out[i] = groups[k][cols].to_numpy(np.float32)
        if with_times:
            times[i] = groups[k]["time"].to_numpy(np.float64)
    return (out, times) if with_times else out


def nearest_frames(values: np.ndarray, times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (frames at ``times``, ascending) nearest in time to each of ``at``.

    Aligns LLD sequences with different frame grids (e.g. openSMILE's and librosa's 10 ms frames,
    or a 20 ms hop against a 10 ms one) before concatenating them frame by frame; ties take the
    earlier frame. Returns ``(len(at), values.shape[1])``.
    """
    times, at = np.asarray(times, np.float64), np.asarray(at, np.float64)
    if len(times) == 0:
        raise ValueError("nearest_frames: no frames to take from")
    if len(times) == 1:
        return np.repeat(values[:1], len(at), axis=0)
    j = np.clip(np.searchsorted(times, at), 1, len(times) - 1)
    j = np.where(np.abs(times[j - 1] - at) <= np.abs(times[j] - at), j - 1, j)
    return values[j]

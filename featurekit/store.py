"""The feature store: parquet tables of features, keyed by everything that determines them.

Layout::

    STORE/<corpus>/<extractor>/<kind>-<hash>/_key.json     what the table holds (see TableKey)
    STORE/<corpus>/<extractor>/<kind>-<hash>/part-*.parquet  rows, appended in chunks
    STORE/<corpus>/<extractor>/<kind>-<hash>/_part-*.parquet.keys.json  each part's (id, fingerprint)
                                                            pairs and width, so a warm run needs no parquet
    STORE/<corpus>/<extractor>/<kind>-aug-<hash>/...         augmented copies (see below)
    STORE/<corpus>/_fingerprints.json                       path -> (stat, content hash) memo

Every file beside the parts starts with ``_`` or ``.``, names that pyarrow's dataset discovery skips,
so a table folder is a plain parquet dataset: ``pd.read_parquet(folder)`` reads its rows (before
de-duplication, see :meth:`FeatureTable.read`). Stores of older versions kept ``key.json`` and
``part-*.parquet.keys.json`` there; a table renames them when opened (:meth:`FeatureTable.migrate`)
and reads both layouts (a store it may not write stays in the old one).

``kind`` is a :class:`~featurekit.featureset.TableKind`'s store name: ``native`` (the extractor's own
functionals), an HSF functional name (``mean_std``, ``mean_std_silence``, ``stats``) or ``lld`` (frame
level). ``hash`` covers the extractor's name,
version, parameters and library versions, the audio options and the decoder/resampler versions.

Rows carry the utterance ``id`` and the ``fingerprint`` (content hash: BLAKE2b-128 of the file's
bytes) of its audio file, so a changed file no longer matches and is recomputed. Hashing every file
on every run would cost a warm run more than everything else, so a file's hash is reused only while
its ``(size, mtime_ns, ctime_ns, inode, device)`` all equal those recorded when it was hashed. The
status-change time ``ctime`` is set by the kernel on every write, rename or ``utime`` and cannot be
set back by a user, so content changed in place, even with the size kept and the modification time
restored, is hashed again; so is a file replaced by another (inode) or a path pointing elsewhere.

Augmented copies (:mod:`featurekit.augmentation`) live in tables of their own, whose key adds
``augmentation`` (the transform chain with every parameter, the seed and the augmentation libraries'
versions); a row is copy ``K`` of utterance ``ID`` under the id ``ID#augK`` and the *source* file's
fingerprint, so a copy is keyed by (source content, chain, seed, copy index). Keys of tables without
augmentation are exactly as before (the field is left out of their key when None).

Writers only ever add whole part files, written to a temporary name and renamed into place (atomic
on POSIX), so a reader never sees a half-written table. Each writing process holds an exclusive
``flock`` on its own ``.writer-<token>.lock`` in the table's directory and puts its token in the
names of its temporary files and parts; the next run (:meth:`FeatureTable.remove_orphans`) removes
the temporary files and keys indexes without a part of every writer whose lock is free, i.e. that
died (files of older versions, without a token, after an hour). Two processes may extract into
one store at once: the worst case is a row computed twice, which reading de-duplicates. Compaction
(merging parts) holds an exclusive lock; readers hold a shared one.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import stat
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
from featurekit.featureset import TableKind

AUDIO_LIBRARIES = ("soundfile", "soxr", "librosa")
KEY_COLUMNS = ("id", "fingerprint")
LLD_KIND = TableKind.LLD
NATIVE_KIND = TableKind.NATIVE
COMPACT_AFTER_PARTS = 8
#: Age after which a temporary file or keys index of an older store version (no writer token) is orphaned.
LEGACY_ORPHAN_AGE_S = 3600
_TOKEN_LEN = 16
_writer: dict[str, Any] = {"pid": None, "token": None, "locks": {}}


def _writer_token() -> str:
    """This process' writer token (a new one after a fork, whose locks are the parent's)."""
    if _writer["pid"] != os.getpid():
        _writer.update(pid=os.getpid(), token=uuid.uuid4().hex[:_TOKEN_LEN], locks={})
    return _writer["token"]


@atexit.register
def _release_writer_locks() -> None:
    """On a normal exit, remove this process' lock files (after a kill, the next run does)."""
    if _writer["pid"] != os.getpid():
        return
    for directory, fd in list(_writer["locks"].items()):
        (directory / f".writer-{_writer['token']}.lock").unlink(missing_ok=True)
        os.close(fd)
    _writer["locks"] = {}


def _writer_lock(directory: Path) -> str:
    """Hold (until this process ends) the lock that marks ``directory``'s files with our token as live."""
    token = _writer_token()
    if directory not in _writer["locks"]:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / f".writer-{token}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _writer["locks"][directory] = fd
    return token


def _token_of(name: str) -> str | None:
    """The writer token in a temporary file's or part's name (None: an older store's file)."""
    if name.startswith(".tmp-"):
        field = name[len(".tmp-"):].split("-", 1)[0]
    elif name.startswith("part-"):
        fields = name.split("-")
        field = fields[2] if len(fields) >= 4 else ""
    else:
        return None
    return field if len(field) == _TOKEN_LEN else None


def _writer_alive(directory: Path, token: str) -> bool:
    """Whether the writer with ``token`` still holds its lock (it is running)."""
    if token == _writer["token"] and _writer["pid"] == os.getpid():
        return True
    try:
        fd = os.open(directory / f".writer-{token}.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:  # e.g. a store we may not write: leave everything as it is
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass(frozen=True)
class TableKey:
    """Identity of one table."""

    corpus: str
    extractor: dict[str, Any]
    kind: str
    audio: dict[str, Any] = field(default_factory=dict)
    augmentation: dict[str, Any] | None = None  # augmented copies (see the module docstring)

    def as_dict(self) -> dict[str, Any]:
        out = {"corpus": self.corpus, "extractor": self.extractor, "kind": self.kind, "audio": self.audio}
        if self.augmentation is not None:  # absent otherwise: the keys of other tables are unchanged
            out["augmentation"] = self.augmentation
        return out

    def digest(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, default=str).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()


def _tmp_name(path: Path) -> Path:
    """A temporary name beside ``path``, marked with this process' writer token (see the module docstring)."""
    return path.with_name(f".tmp-{_writer_lock(path.parent)}-{uuid.uuid4().hex}-{path.name}")


def _atomic_write_parquet(rows, path: Path) -> None:
    """Write a DataFrame or an Arrow table to ``path`` via a temporary name and a rename."""
    tmp = _tmp_name(path)
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


KEY_FILE = "_key.json"
LEGACY_KEY_FILE = "key.json"
_INDEX_SUFFIX = ".keys.json"


def _sidecar(part: Path) -> Path:
    """The keys index written beside a part (see :meth:`FeatureTable.keys`)."""
    return part.with_name(f"_{part.name}{_INDEX_SUFFIX}")


def _legacy_sidecar(part: Path) -> Path:
    """Where older store versions wrote a part's keys index (a name pyarrow does not skip)."""
    return part.with_name(part.name + _INDEX_SUFFIX)


def _part_of_index(index: Path) -> Path:
    """The part a keys index (either layout) belongs to."""
    return index.with_name(index.name.removeprefix("_").removesuffix(_INDEX_SUFFIX))


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


def _atomic_write_text(text: str, path: Path, *, tmp: Path | None = None) -> None:
    tmp = tmp or _tmp_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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

    def migrate(self) -> None:
        """Rename an older store's side files (``key.json``, ``part-*.parquet.keys.json``) to the names
        starting with ``_`` that pyarrow skips. Idempotent; safe under concurrent processes (each
        rename is atomic; a lost race or a store we may not write leaves the old names, which are
        read too)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if name == LEGACY_KEY_FILE:
                new = self.directory / KEY_FILE
            elif name.startswith("part-") and name.endswith(".parquet" + _INDEX_SUFFIX):
                new = _sidecar(_part_of_index(self.directory / name))
            else:
                continue
            try:
                if new.exists():
                    (self.directory / name).unlink()
                else:
                    os.replace(self.directory / name, new)
            except OSError:
                pass

    def _ensure(self) -> None:
        if not (self.directory / KEY_FILE).exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(
                json.dumps(self.key.as_dict(), indent=2, sort_keys=True, default=str),
                self.directory / KEY_FILE,
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
        token = _writer_lock(self.directory)
        path = self.directory / f"part-{time.time_ns():020d}-{token}-{uuid.uuid4().hex[:8]}.parquet"
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
            info = None
            for index in (_sidecar(part), _legacy_sidecar(part)):
                try:
                    info = json.loads(index.read_text())
                    break
                except (OSError, ValueError):
                    continue
            if info is None:
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

    def remove_orphans(self, *, dry_run: bool = False) -> list[Path]:
        """Remove what killed writers left: temporary files, keys indexes whose part never arrived,
        and the writers' lock files. Returns the removed paths (with ``dry_run``: those it would
        remove, leaving them).

        A file is an orphan when its writer token's lock is free (the writer died); files of older
        store versions (no token) when older than :data:`LEGACY_ORPHAN_AGE_S`.
        """
        if not self.directory.is_dir():
            return []
        removed: list[Path] = []
        alive: dict[str, bool] = {}
        now = time.time()

        def orphaned(path: Path, name: str) -> bool:
            token = _token_of(name)
            if token is None:
                try:
                    return now - path.stat().st_mtime > LEGACY_ORPHAN_AGE_S
                except FileNotFoundError:
                    return False
            if token not in alive:
                alive[token] = _writer_alive(self.directory, token)
            return not alive[token]

        def remove(path: Path) -> None:
            if dry_run:
                removed.append(path)
                return
            try:
                path.unlink(missing_ok=True)
                removed.append(path)
            except OSError:  # not ours to remove (permissions): harmless, readers ignore it
                pass

        for tmp in self.directory.glob(".tmp-*"):
            if orphaned(tmp, tmp.name):
                remove(tmp)
        for index in [*self.directory.glob(f"_part-*.parquet{_INDEX_SUFFIX}"),
                      *self.directory.glob(f"part-*.parquet{_INDEX_SUFFIX}")]:
            part = _part_of_index(index)
            if not part.exists() and orphaned(index, part.name) and not part.exists():
                remove(index)
        for lock in self.directory.glob(".writer-*.lock"):
            token = lock.name[len(".writer-"):-len(".lock")]
            if token not in alive:
                alive[token] = _writer_alive(self.directory, token)
            if not alive[token]:
                remove(lock)
        return removed

    def compact(self) -> None:
        """Merge all parts into one (exclusive lock); also removes orphaned files (:meth:`remove_orphans`)."""
        with _locked(self._lock, exclusive=True):
            parts = self.parts()
            self.remove_orphans()
            if len(parts) < 2:
                return
            df = self._read_parts(None)
            subset = [*KEY_COLUMNS, "frame"] if "frame" in df.columns else list(KEY_COLUMNS)
            self._write_part(df.drop_duplicates(subset, keep="last"))
            for part in parts:
                part.unlink(missing_ok=True)
                _sidecar(part).unlink(missing_ok=True)
                _legacy_sidecar(part).unlink(missing_ok=True)
                self._index.pop(part, None)


class FeatureStore:
    """A directory of feature tables (see module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def table(self, corpus: str, extractor: Extractor, kind: TableKind | str, audio: AudioOptions,
              augmentation: dict[str, Any] | None = None) -> FeatureTable:
        """The table for ``corpus`` x ``extractor`` x ``kind`` under the given audio options; with
        ``augmentation`` (:meth:`featurekit.augmentation.WaveformAugmentation.key`), the table of
        augmented copies (``<kind>-aug-<hash>``)."""
        name = TableKind.parse(kind).store_name
        audio_key = {**audio.as_dict(), "libraries": library_versions(AUDIO_LIBRARIES)}
        key = TableKey(corpus=corpus, extractor=extractor.key(), kind=name, audio=audio_key,
                       augmentation=augmentation)
        folder = f"{name}-{key.digest()}" if augmentation is None else f"{name}-aug-{key.digest()}"
        table = FeatureTable(self.root / corpus / extractor.name / folder, key)
        table.migrate()
        return table

    def tables(self, corpus: str | None = None) -> list[FeatureTable]:
        """Every table present (optionally of one corpus), older layouts migrated when writable."""
        out = []
        folders = {f.parent for name in (KEY_FILE, LEGACY_KEY_FILE)
                   for f in self.root.glob(f"{corpus or '*'}/*/*/{name}")}
        for folder in sorted(folders):
            key_file = folder / KEY_FILE
            if not key_file.exists():
                key_file = folder / LEGACY_KEY_FILE
            d = json.loads(key_file.read_text())
            table = FeatureTable(folder, TableKey(**d))
            table.migrate()
            out.append(table)
        return out

    # -- fingerprints ------------------------------------------------------------------------
    def fingerprints(self, corpus: str, paths: list[str]) -> tuple[list[str | None], dict[str, str]]:
        """Content hashes of ``paths``; a file's hash is reused while its stat is unchanged.

        The memo maps each path to ``(size, mtime_ns, ctime_ns, inode, device)`` and the hash; any
        difference (content changed in place even with the mtime restored: ctime moves) hashes the
        file again (see the module docstring). Memos of older versions are ignored (re-hashed once;
        the hashes, and so the stored rows, are the same).

        Returns the fingerprints (None for an unreadable or non-regular file) and ``{path: reason}``
        for those.
        """
        memo_path = self.root / corpus / "_fingerprints.json"
        memo = _read_memo(memo_path)
        out: list[str | None] = []
        errors: dict[str, str] = {}
        new: dict[str, list] = {}
        from featurekit.audio import AudioError, open_regular

        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):  # open_regular names the problem
                try:
                    os.close(open_regular(p))
                    problem = "changed while being checked"
                except AudioError as err:
                    problem = err.problem
                out.append(None)
                errors[p] = problem
                continue
            sig = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
            entry = memo.get(p)
            if entry is not None and entry[:5] == sig:
                out.append(entry[5])
                continue
            try:
                fp = file_fingerprint(p)
            except AudioError as err:
                out.append(None)
                errors[p] = err.problem
                continue
            new[p] = [*sig, fp]
            out.append(fp)
        if new:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(memo_path.with_suffix(".lock"), exclusive=True):
                # under the lock: merge with what other processes wrote meanwhile; any temporary memo
                # file present now was left by a killed writer (writers hold this lock)
                for tmp in memo_path.parent.glob(f".tmp-*-{memo_path.name}"):
                    tmp.unlink(missing_ok=True)
                memo = {**_read_memo(memo_path, warn=False), **new}
                _atomic_write_text(json.dumps({"version": MEMO_VERSION, "files": memo}), memo_path,
                                   tmp=memo_path.with_name(f".tmp-{uuid.uuid4().hex}-{memo_path.name}"))
        return out, errors


MEMO_VERSION = 2


def _read_memo(memo_path: Path, *, warn: bool = True) -> dict[str, list]:
    """``{path: [size, mtime_ns, ctime_ns, inode, device, hash]}`` from the memo file ({} if absent,
    of an older version or damaged: a damaged memo only costs re-hashing, with a warning)."""
    try:
        data = json.loads(memo_path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        if warn:
            warnings.warn(f"{memo_path}: unreadable fingerprint memo ({err}); re-hashing the files",
                          stacklevel=3)
        return {}
    if not isinstance(data, dict) or data.get("version") != MEMO_VERSION:
        return {}  # an older memo (keyed by size and mtime only): not trusted, the files are re-hashed
    files = data.get("files")
    ok = isinstance(files, dict) and all(
        isinstance(v, list) and len(v) == 6 and all(isinstance(x, int) for x in v[:5])
        and isinstance(v[5], str) for v in files.values())
    if not ok:
        if warn:
            warnings.warn(f"{memo_path}: malformed fingerprint memo; re-hashing the files", stacklevel=3)
        return {}
    return files


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

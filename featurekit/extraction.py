"""Corpus -> feature store: plan what is missing, compute it in parallel chunks, flush as we go.

One call, :func:`extract`, handles a manifest and a list of :class:`FeatureRequest`. Each
utterance is decoded once per chunk and run through every extractor that still lacks its row.
Chunks of utterances go to an executor (:mod:`featurekit.executor`: this process, local processes
or a Dask cluster, whose workers read the audio from shared storage; a bounded window of chunks is
in flight) and only the calling process writes the store. Results are flushed to the store once a
table has ``flush_every`` utterances or ``FLUSH_BYTES`` of values buffered, or ``flush_seconds``
(default :data:`FLUSH_SECONDS`) after the last write, so memory stays bounded and a killed run keeps
everything flushed before the kill: it loses at most the rows of the last ``flush_seconds`` plus the
chunks in flight (parts are merged at the end). A file that fails is listed with its reason; it never
stops the others.

Every value an extractor returns is checked: a file whose LLDs, native functionals or HSFs hold
NaN or infinite values fails with the extractor, the table and the columns named (nothing of it is
stored). Undefined quantities that extractors report as finite numbers are stored as they are:
openSMILE reports F0 (and the jitter/shimmer/HNR that depend on it) of unvoiced frames as 0, so
eGeMAPS on unvoiced audio has 0 for its F0 functionals (``tests/test_hostile_input.py``).
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from featurekit.audio import AudioError, AudioOptions, load_audio
from featurekit.augmentation import AUGMENTATION_LIBRARIES, source_of
from featurekit.corpora.base import check_unique_paths, segment_bounds
from featurekit.executor import EnvironmentMismatchError, Executor, SerialExecutor, executor_for
from featurekit.extractors.base import EXTRACTORS, Extractor, library_versions, make_extractor
from featurekit.extractors.functionals import FUNCTIONALS
from featurekit.featureset import TableKind, parse_tables
from featurekit.featurisation import featurise
from featurekit.store import AUDIO_LIBRARIES, LLD_KIND, NATIVE_KIND, FeatureStore, FeatureTable, align

DEFAULT_FUNCTIONALS = ("mean_std",)
DEFAULT_FLUSH_EVERY = 4096
#: Buffered feature values per table (bytes) that trigger a write, whatever the utterance count.
FLUSH_BYTES = 64 * 2**20
#: Seconds after the last write that trigger a write of whatever is buffered (bounds what a kill loses).
FLUSH_SECONDS = 30.0


@dataclass
class FeatureRequest:
    """An extractor and the table kinds wanted from it (``native``, HSF names, ``lld``; given as
    :class:`~featurekit.featureset.TableKind` or their names, kept as ``TableKind``)."""

    extractor: Extractor
    kinds: tuple[TableKind, ...]

    def __post_init__(self) -> None:
        kinds = []
        for kind in self.kinds:
            if kind not in TableKind._value2member_map_:
                raise ValueError(f"unknown functional {kind!r}; known: {FUNCTIONALS.names()}, native, lld")
            kind = TableKind(kind)
            if kind.waveform:
                raise ValueError("the conditioned audio ('waveform') is not extracted or stored")
            if kind is NATIVE_KIND and not self.extractor.has_native:
                raise ValueError(
                    f"extractor {self.extractor.name!r} has no native functionals; "
                    f"use one of {FUNCTIONALS.names()} or lld"
                )
            if kind.needs_lld and not self.extractor.has_lld:
                raise ValueError(f"extractor {self.extractor.name!r} has no frame-level output for "
                                 f"{kind.value!r}")
            kinds.append(kind)
        self.kinds = tuple(kinds)


def parse_features(
    features: str | list[str],
    *,
    functionals: tuple[str, ...] | list[str] = DEFAULT_FUNCTIONALS,
    lld: bool = False,
    params: dict[str, dict] | None = None,
) -> list[FeatureRequest]:
    """Turn ``"egemaps,mfcc.stats"`` style lists into requests.

    An entry ``NAME.KIND`` asks for exactly that table (:func:`featurekit.featureset.parse_tables`).
    A bare ``NAME`` asks for the extractor's native functionals (if it has them) plus every name in
    ``functionals`` (and ``lld`` when ``lld`` is true). ``params`` maps extractor names to keyword
    parameters.
    """
    tables = parse_tables(features)
    if not tables:
        raise ValueError("no features requested")
    for fn in functionals:
        if fn not in FUNCTIONALS and fn != NATIVE_KIND:
            raise ValueError(f"unknown functional {fn!r}; known: {FUNCTIONALS.names()}")
    wanted: dict[str, list[str]] = {}
    for table in tables:
        name, kind = table.extractor, table.kind
        cls = EXTRACTORS.get(name)
        kinds = wanted.setdefault(name, [])
        if kind is not None:
            kinds.append(kind)
        else:
            if cls.has_native:
                kinds.append(NATIVE_KIND)
            if cls.has_lld:
                kinds.extend(fn for fn in functionals if fn != NATIVE_KIND)
                if lld:
                    kinds.append(LLD_KIND)
    params = params or {}
    stray = sorted(set(params) - set(wanted))
    if stray:
        raise ValueError(f"parameters given for {stray[0]!r}, which is not among the requested extractors "
                         f"({', '.join(wanted)})")
    return [
        FeatureRequest(make_extractor(n, **params.get(n, {})), tuple(dict.fromkeys(k)))
        for n, k in wanted.items()
    ]


@dataclass
class ExtractionSummary:
    """What :func:`extract` did."""

    tables: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (rows, columns)
    seconds: float = 0.0
    cache_hits: int = 0  # (utterance, table) pairs already in the store
    computed: int = 0  # (utterance, table) pairs computed now
    failures: dict[str, str] = field(default_factory=dict)  # utterance id -> reason
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{'table':32s} {'rows':>7s} {'columns':>8s}"]
        out += [f"{name:32s} {r:7d} {c:8d}" for name, (r, c) in self.tables.items()]
        out.append(
            f"{self.seconds:.1f} s; {self.cache_hits} cache hits, {self.computed} computed, "
            f"{len(self.failures)} failures"
        )
        out += [f"warning: {w}" for w in self.warnings]
        out += [f"FAILED {uid}: {reason}" for uid, reason in self.failures.items()]
        return out


def _table_name(req: FeatureRequest, kind: str) -> str:
    return f"{req.extractor.name}.{kind}"


def _quiet_warnings(caught: list, path: str) -> list[str]:
    return [str(w.message) if path in str(w.message) else f"{path}: {w.message}" for w in caught]


def _catching():
    ctx = warnings.catch_warnings(record=True)
    caught = ctx.__enter__()
    warnings.simplefilter("always")
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.simplefilter("ignore", category)
    return ctx, caught


def _process_chunk(items: list[tuple], requests: list[FeatureRequest], audio: AudioOptions,
                   augmentation=None) -> dict:
    """Worker: compute the needed tables for a few utterances. Never raises for a bad file.

    Signals are decoded once; each extractor then sees all signals of the chunk that need it
    (so batching extractors can batch). With ``augmentation`` (a
    :class:`~featurekit.augmentation.WaveformAugmentation`) the items are copies (ids ``ID#augK``)
    and each decoded signal is replaced by its augmented copy before any extractor sees it.
    """
    sr = audio.sample_rate
    failures: dict[str, str] = {}
    notes: list[str] = []
    signals: dict[str, np.ndarray] = {}
    for uid, path, _fp, start, end, _needs in items:
        ctx, caught = _catching()
        try:
            signals[uid] = load_audio(path, options=audio, start=start, end=end)
            if augmentation is not None:
                source, k = source_of(uid)
                signals[uid] = augmentation.apply(signals[uid], options=audio, utterance=source, copy=k,
                                                  where=str(path))
        except AudioError as err:
            failures[uid] = str(err)
        except Exception as err:  # a transform failing on one file must not stop the batch
            failures[uid] = f"{path}: augmentation: {type(err).__name__}: {err}"
        finally:
            ctx.__exit__(None, None, None)
        notes.extend(_quiet_warnings(caught, str(path)))

    pending: dict[str, list] = defaultdict(list)  # uid -> [((ri, kind), row)]
    for ri, req in enumerate(requests):
        by_kinds: dict[tuple, list] = defaultdict(list)  # utterances needing the same tables: one batch
        for uid, path, fp, _s, _e, needs in items:
            if uid in signals and ri in dict(needs):
                by_kinds[tuple(dict(needs)[ri])].append((uid, path, fp))
        for kinds, todo in by_kinds.items():
            ctx, caught = _catching()
            try:
                outputs = featurise(req.extractor, kinds, [signals[uid] for uid, _, _ in todo], sr,
                                    where=[str(path) for _, path, _ in todo])
            finally:
                ctx.__exit__(None, None, None)
            notes.extend(str(w.message) for w in caught)
            for (uid, _path, fp), tables in zip(todo, outputs):
                if isinstance(tables, AudioError):
                    failures[uid] = str(tables)
                    continue
                for kind, v in tables.items():
                    row = (uid, fp, v.values, v.names) + ((v.times,) if kind is LLD_KIND else ())
                    pending[uid].append(((ri, kind), row))

    results: dict[tuple[int, str], list] = defaultdict(list)
    for uid, rows in pending.items():
        if uid in failures:  # all or nothing per utterance, so a rerun retries it whole
            continue
        for k, row in rows:
            results[k].append(row)
    return {"results": dict(results), "failures": failures, "notes": notes, "n": len(items)}


def _rows_to_table(kind: str, rows: list):
    """Buffered rows -> one Arrow table (built from the numpy blocks: no per-column pandas work, which
    dominates for wide tables such as ComParE's 6373 columns)."""
    import pyarrow as pa

    if kind == LLD_KIND:
        counts = [len(r[2]) for r in rows]
        keys = {
            "id": np.repeat([r[0] for r in rows], counts),
            "fingerprint": np.repeat([r[1] for r in rows], counts),
            "frame": np.concatenate([np.arange(n, dtype=np.int32) for n in counts]),
            "time": np.concatenate([r[4] for r in rows]).astype(np.float64),
        }
        values = np.vstack([r[2] for r in rows]).astype(np.float32)
    else:
        keys = {"id": [r[0] for r in rows], "fingerprint": [r[1] for r in rows]}
        values = np.vstack([r[2] for r in rows]).astype(np.float32)
    names = list(rows[0][3])
    columns = [pa.array(v, type=pa.string()) if k in ("id", "fingerprint") else pa.array(v)
               for k, v in keys.items()]
    columns += [pa.array(values[:, j]) for j in range(values.shape[1])]
    return pa.Table.from_arrays(columns, names=[*keys, *names])


def extract(
    manifest: pd.DataFrame,
    requests: list[FeatureRequest],
    store: FeatureStore,
    *,
    corpus: str,
    audio: AudioOptions | None = None,
    executor: Executor | None = None,
    jobs: int | None = None,
    chunk_size: int | None = None,
    flush_every: int = DEFAULT_FLUSH_EVERY,
    flush_seconds: float = FLUSH_SECONDS,
    progress: bool = True,
    compact: bool = True,
    augmentation=None,
) -> ExtractionSummary:
    """Compute every requested table for every utterance of ``manifest`` that the store lacks.

    Parameters
    ----------
    manifest
        Corpus manifest (``id``, ``path``, optional ``start``/``end``).
    requests
        What to compute (see :func:`parse_features`).
    store
        Destination.
    corpus
        Corpus name (a store key component).
    audio
        Decoding options (default 16 kHz, natural length).
    executor
        Where chunks are computed (:func:`featurekit.executor.executor_for`); on a cluster, the
        manifest's paths must be readable by the workers. Only this process writes ``store``.
    jobs
        Without ``executor``: local worker processes (default: all cores; 1 runs in this process).
    chunk_size
        Utterances per task (default: about four tasks per worker, at most 8).
    flush_every
        Buffered utterances per table before a part is written (a part is also written once a table
        buffers :data:`FLUSH_BYTES` of values).
    flush_seconds
        Whatever is buffered is written once this many seconds have passed since the last write.
    augmentation
        A :class:`~featurekit.augmentation.WaveformAugmentation`: compute its copies of the manifest's
        utterances instead (ids ``ID#augK``, in the augmented tables of the store), with the same
        extractors and table kinds and the same decoding and conditioning.

    Raises
    ------
    ValueError
        The manifest lists one audio file (or segment) under two ids (nothing is computed).
    EnvironmentMismatchError
        A worker has other extractor or library versions than this process (the store's table keys
        are this process'): the run stops rather than store rows under the wrong key.
    SchedulerError
        The executor's cluster cannot be reached or was lost (rows received until then are stored).

    Notes
    -----
    A chunk whose worker keeps dying (a remote executor's lost worker) is split and its utterances
    retried one by one, so only a file that crashes workers by itself is reported as failed.
    """
    t0 = time.perf_counter()
    audio = audio or AudioOptions()
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
    summary = ExtractionSummary()
    plan = _plan(manifest, requests, store, corpus=corpus, audio=audio, summary=summary,
                 augmentation=augmentation)
    if plan.todo:
        owned = None if executor is not None else executor_for(jobs=jobs)  # closed below: no idle pool left
        try:
            _run(
                plan.todo,
                requests,
                audio,
                plan.tables,
                summary,
                executor=executor or owned,
                chunk_size=chunk_size,
                flush_every=flush_every,
                flush_seconds=flush_seconds,
                progress=progress,
                augmentation=augmentation,
            )
        finally:
            if owned is not None:
                owned.close()
    _finish(plan, requests, summary, compact=compact)
    summary.seconds = time.perf_counter() - t0
    return summary


@dataclass
class _Plan:
    """What :func:`_plan` found: the manifest's ids and fingerprints, the tables, the work to do.

    ``todo`` holds one ``(id, path, fingerprint, start, end, needs)`` tuple per utterance that lacks
    a row in some table, ``needs`` being ``[(request index, kinds), ...]``.
    """

    ids: list[str]
    fps: list[str | None]
    tables: dict[tuple[int, str], FeatureTable]
    todo: list[tuple]


def _plan(
    manifest: pd.DataFrame,
    requests: list[FeatureRequest],
    store: FeatureStore,
    *,
    corpus: str,
    audio: AudioOptions,
    summary: ExtractionSummary,
    augmentation=None,
) -> _Plan:
    """Fingerprint the files and list the (utterance, table) pairs the store lacks.

    Unreadable files go to ``summary.failures``; pairs already stored count as ``summary.cache_hits``.
    With ``augmentation``: the copies of the manifest's utterances, in the augmented tables.
    """
    check_unique_paths(manifest, source=f"manifest of {corpus}")
    aug_key = None
    if augmentation is not None:
        manifest, aug_key = augmentation.copies_manifest(manifest), augmentation.key()
    ids = manifest["id"].astype(str).tolist()
    paths = manifest["path"].astype(str).tolist()
    bounds = segment_bounds(manifest)
    fps, fp_errors = store.fingerprints(corpus, paths)
    for uid, p in zip(ids, paths):
        if p in fp_errors:
            summary.failures[uid] = f"{p}: {fp_errors[p]}"

    tables: dict[tuple[int, str], FeatureTable] = {}
    present: dict[tuple[int, str], set] = {}
    for ri, req in enumerate(requests):
        for kind in req.kinds:
            t = store.table(corpus, req.extractor, kind, audio, augmentation=aug_key)
            t.remove_orphans()  # left by a writer killed earlier
            tables[(ri, kind)] = t
            present[(ri, kind)] = set(zip(*[t.keys()[c] for c in ("id", "fingerprint")]))

    todo = []
    for i, (uid, fp) in enumerate(zip(ids, fps)):
        if fp is None:
            continue
        needs = []
        for ri, req in enumerate(requests):
            kinds = tuple(k for k in req.kinds if (uid, fp) not in present[(ri, k)])
            summary.cache_hits += len(req.kinds) - len(kinds)
            if kinds:
                needs.append((ri, kinds))
        if needs:
            todo.append((uid, paths[i], fp, *bounds[i], needs))
    return _Plan(ids=ids, fps=fps, tables=tables, todo=todo)


def _finish(
    plan: _Plan, requests: list[FeatureRequest], summary: ExtractionSummary, *, compact: bool
) -> None:
    """Compact tables that have several parts; record each table's rows (for the manifest) and columns."""
    for (ri, kind), t in plan.tables.items():
        if compact and len(t.parts()) >= 2:
            t.compact()
        keys = t.keys()
        ok = keys.merge(pd.DataFrame({"id": plan.ids, "fingerprint": plan.fps}), on=["id", "fingerprint"])
        n_cols = t.n_features()
        summary.tables[_table_name(requests[ri], kind)] = (len(ok), n_cols)


#: At most this many utterances to compute: done in this process (starting workers costs more).
IN_PROCESS_MAX = 4


def _default_chunk_size(n_todo: int, workers: int) -> int:
    """Utterances per task: about four tasks per worker, at most 8 utterances, at least one."""
    return max(1, min(8, n_todo // (4 * workers) or 1))


def _longest_first(todo: list) -> list:
    """Work items ordered by audio file size, largest first (longest-processing-time-first): the
    last tasks are then the shortest, so workers finish together instead of one waiting on a long
    tail. Results are stored by id, so the order changes nothing else."""

    def size(item) -> float:
        _uid, path, _fp, start, end, _needs = item
        if end is not None:  # a segment of a longer file: its duration, as 16-bit 16 kHz bytes
            return (end - (start or 0.0)) * 32000
        try:
            return os.stat(path).st_size
        except OSError:
            return 0

    return sorted(todo, key=size, reverse=True)


def _run(todo, requests, audio, tables, summary, *, executor: Executor, chunk_size, flush_every,
         flush_seconds, progress, augmentation=None) -> None:
    if executor.local and len(todo) <= IN_PROCESS_MAX:
        executor = SerialExecutor()
    if chunk_size is None:
        chunk_size = _default_chunk_size(len(todo), executor.workers)
    todo = _longest_first(todo)
    expected = environment(requests, augmentation)

    def task(items: list[tuple], given_up: str | None = None) -> tuple[Hashable, dict]:
        return items[0][0], {"items": items, "requests": requests, "audio": audio, "expected": expected,
                             "given_up": given_up, "augmentation": augmentation}

    def on_lost(_uid, kwargs: dict, err: BaseException) -> list:
        items = kwargs["items"]
        if len(items) > 1:  # find the culprit: retry the utterances one by one
            return [task([item]) for item in items]
        return [task(items, given_up=f"{items[0][1]}: the worker processing it died repeatedly ({err})")]

    tasks = (task(todo[i : i + chunk_size]) for i in range(0, len(todo), chunk_size))
    outputs = (out for _uid, out in executor.map(checked_chunk, tasks, on_lost=on_lost))
    _consume(outputs, tables, summary, total=len(todo), flush_every=flush_every, flush_seconds=flush_seconds,
             progress=progress)


def environment(requests: list[FeatureRequest], augmentation=None) -> tuple[tuple[str, str], ...]:
    """What must match between this process and the workers: extractor code and library versions
    (and the augmentation libraries' when the work is augmented copies)."""
    libraries = sorted({*AUDIO_LIBRARIES, *(lib for r in requests for lib in r.extractor.libraries),
                        *(AUGMENTATION_LIBRARIES if augmentation is not None else ())})
    out = {f"{r.extractor.name} (extractor version)": str(r.extractor.version) for r in requests}
    out.update(_library_versions(tuple(libraries)))
    return tuple(sorted(out.items()))


@functools.lru_cache(maxsize=32)
def _library_versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(library_versions(names).items())


def checked_chunk(items: list[tuple], requests: list[FeatureRequest], audio: AudioOptions,
                  expected: tuple[tuple[str, str], ...], given_up: str | None = None,
                  augmentation=None) -> dict:
    """Worker: the rows of a chunk, once this worker's versions are known to equal the caller's
    ``expected`` (:func:`environment`). ``given_up``: the reason to report the chunk's one utterance
    as failed instead (its worker kept dying)."""
    if given_up is not None:
        return {"results": {}, "failures": {items[0][0]: given_up}, "notes": [], "n": len(items)}
    here = dict(environment(requests, augmentation))
    differ = {k: (v, here.get(k, "missing")) for k, v in expected if here.get(k, "missing") != v}
    if differ:
        import socket

        lines = ", ".join(f"{k}: client {a}, worker {b}" for k, (a, b) in differ.items())
        raise EnvironmentMismatchError(f"worker on {socket.gethostname()} has other versions than the client "
                                       f"({lines}); install the same environment on the workers and the "
                                       f"client, or features would be stored under the wrong key")
    return _process_chunk(items, requests, audio, augmentation)


def _consume(
    outputs,
    tables: dict[tuple[int, str], FeatureTable],
    summary: ExtractionSummary,
    *,
    total: int,
    flush_every: int,
    progress: bool,
    flush_seconds: float = FLUSH_SECONDS,
) -> None:
    """Collect :func:`_process_chunk` outputs (any order) into ``summary``; flush rows to the tables.

    Rows are buffered per table and appended as a part once ``flush_every`` rows or
    :data:`FLUSH_BYTES` are buffered, or ``flush_seconds`` have passed since the last write; whatever
    is buffered is flushed at the end, also when ``outputs`` raises.
    """
    from tqdm.auto import tqdm

    buffers: dict[tuple[int, str], list] = defaultdict(list)
    nbytes: dict[tuple[int, str], int] = defaultdict(int)

    last_write = time.monotonic()

    def flush(force: bool) -> None:
        nonlocal last_write
        due = force or time.monotonic() - last_write >= flush_seconds
        for k, rows in buffers.items():
            if rows and (due or len(rows) >= flush_every or nbytes[k] >= FLUSH_BYTES):
                tables[k].append(_rows_to_table(k[1], rows))
                rows.clear()
                nbytes[k] = 0
        if due:
            last_write = time.monotonic()

    bar = tqdm(total=total, desc="extract", unit="utt", disable=not progress, mininterval=1.0)
    try:
        for out in outputs:
            for k, rows in out["results"].items():
                buffers[k].extend(rows)
                nbytes[k] += sum(r[2].nbytes for r in rows)
                summary.computed += len(rows)
            summary.failures.update(out["failures"])
            summary.warnings.extend(out["notes"])
            flush(False)
            bar.update(out["n"])
    finally:
        flush(True)
        bar.close()


def load_features(
    store: FeatureStore,
    manifest: pd.DataFrame,
    request: FeatureRequest,
    kind: str,
    *,
    corpus: str,
    audio: AudioOptions | None = None,
    missing: str = "raise",
) -> pd.DataFrame:
    """One call: a functional table as a DataFrame indexed by utterance id, in manifest order.

    ``missing="raise"`` names the utterances the store lacks; ``"drop"`` leaves them out.
    For ``kind == "lld"`` the frame is long: one row per (id, frame), with a ``time`` column.
    """
    audio = audio or AudioOptions()
    table = store.table(corpus, request.extractor, kind, audio)
    fps, _ = store.fingerprints(corpus, manifest["path"].astype(str).tolist())
    df = table.read()
    if kind == LLD_KIND:
        want = pd.DataFrame({"id": manifest["id"].to_numpy(), "fingerprint": fps})
        out = want.merge(df, on=["id", "fingerprint"], how="inner", sort=False).drop(columns="fingerprint")
        got = set(out["id"])
    else:
        out = align(df, manifest, fps)
        got = set(out.index)
    lacking = [i for i in manifest["id"] if i not in got]
    if lacking and missing == "raise":
        raise KeyError(
            f"store {store.root} lacks {request.extractor.name}.{kind} for {len(lacking)} "
            f"utterance(s) of {corpus} (e.g. {lacking[:3]}); run featurekit extract first"
        )
    return out

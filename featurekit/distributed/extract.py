"""Feature extraction on a Dask cluster: workers compute, only this process writes the store.

The plan (fingerprints, the (utterance, table) pairs the store lacks) and the per-chunk work are
those of :func:`featurekit.extraction.extract`; only the dispatch differs. Chunks of utterances go
to the cluster through a bounded sliding window of futures, and their rows are flushed to the
store as they arrive, so client memory does not grow with the corpus.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from featurekit.audio import AudioOptions
from featurekit.distributed._dask import (
    DEFAULT_CONNECT_TIMEOUT,
    EnvironmentMismatchError,
    TaskQueue,
    connect,
    lost,
    require_distributed,
    scheduler_alive,
    sliding_window,
    total_threads,
    window_limit,
)
from featurekit.extraction import (
    DEFAULT_FLUSH_EVERY,
    FLUSH_SECONDS,
    ExtractionSummary,
    FeatureRequest,
    _consume,
    _default_chunk_size,
    _finish,
    _plan,
    _process_chunk,
)
from featurekit.extractors.base import library_versions
from featurekit.store import AUDIO_LIBRARIES, FeatureStore


def _environment(requests: list[FeatureRequest]) -> tuple[tuple[str, str], ...]:
    """What must match between client and workers: extractor code versions and library versions."""
    libraries = sorted({*AUDIO_LIBRARIES, *(lib for r in requests for lib in r.extractor.libraries)})
    out = {f"{r.extractor.name} (extractor version)": str(r.extractor.version) for r in requests}
    out.update(_library_versions(tuple(libraries)))
    return tuple(sorted(out.items()))


@functools.lru_cache(maxsize=32)
def _library_versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(library_versions(names).items())


def _checked_chunk(chunk: list[tuple], requests: list[FeatureRequest], audio: AudioOptions,
                   expected: tuple[tuple[str, str], ...]) -> dict:
    """Worker: :func:`_process_chunk`, once this worker's versions are known to equal the client's."""
    here = dict(_environment(requests))
    differ = {k: (v, here.get(k, "missing")) for k, v in expected if here.get(k, "missing") != v}
    if differ:
        import socket

        lines = ", ".join(f"{k}: client {a}, worker {b}" for k, (a, b) in differ.items())
        raise EnvironmentMismatchError(f"worker on {socket.gethostname()} has other versions than the client "
                                       f"({lines}); install the same environment on the workers and the "
                                       f"client, or features would be stored under the wrong key")
    return _process_chunk(chunk, requests, audio)


def extract_distributed(manifest: pd.DataFrame, requests: list[FeatureRequest], store: FeatureStore, *,
                        corpus: str, audio: AudioOptions | None = None, scheduler: Any = None,
                        chunk_size: int | None = None, max_in_flight: int | None = None,
                        flush_every: int = DEFAULT_FLUSH_EVERY, flush_seconds: float = FLUSH_SECONDS,
                        retries: int = 2, progress: bool = True,
                        compact: bool = True,
                        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> ExtractionSummary:
    """:func:`featurekit.extraction.extract`, with the computation on a dask.distributed cluster.

    Workers read the audio files at the manifest's paths (storage shared with this process) and
    send back feature rows; only this process writes ``store``. The result equals a local run's.

    Parameters
    ----------
    manifest
        Corpus manifest (``id``, ``path``, optional ``start``/``end``); paths must be valid on the workers.
    requests
        What to compute (see :func:`featurekit.extraction.parse_features`).
    store
        Destination (written by this process only).
    corpus
        Corpus name (a store key component).
    audio
        Decoding options (default 16 kHz, natural length).
    scheduler
        Scheduler address (``tcp://host:8786``), scheduler file, cluster object or ``Client``;
        None reads ``$FEATUREKIT_SCHEDULER``. Only contacted when something is missing from the store.
    chunk_size
        Utterances per task (default: about four tasks per worker thread, at most 16).
    max_in_flight
        Most tasks submitted and not yet consumed at once (default: twice the cluster's worker
        threads, at least 4, following the cluster as it scales). Bounds the results held anywhere.
    flush_every
        Buffered utterances per table before a part is written.
    flush_seconds
        Buffered rows are written at least this often (seconds).
    retries
        Times dask reruns a task that raised (a lost worker's tasks are rescheduled by dask anyway).
    progress
        Show a progress bar.
    compact
        Merge each table's parts at the end.
    connect_timeout
        Seconds to wait for the scheduler.

    Returns
    -------
    ExtractionSummary
        As :func:`featurekit.extraction.extract`'s.

    Raises
    ------
    DaskNotInstalledError
        dask.distributed is not installed (``pip install featurekit[dask]``).
    SchedulerError
        No scheduler given, the scheduler is unreachable, or the connection to it was lost
        (rows received until then are stored; a rerun computes only the rest).
    EnvironmentMismatchError
        A worker has other extractor or library versions than this process.

    Notes
    -----
    Each task first checks that the worker has the client's extractor and library versions (the
    store's table keys are the client's); if not, the run stops with :class:`EnvironmentMismatchError`.
    A worker that dies has its tasks rescheduled by dask. A chunk whose task keeps killing workers
    (``distributed.scheduler.allowed-failures``) is split and its utterances retried one by one, so
    only a file that crashes workers by itself is reported as failed. Any other exception from the
    cluster (e.g. featurekit not importable on the workers) stops the run after flushing.
    """
    t0 = time.perf_counter()
    require_distributed()
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
    audio = audio or AudioOptions()
    summary = ExtractionSummary()
    plan = _plan(manifest, requests, store, corpus=corpus, audio=audio, summary=summary)
    if plan.todo:
        with connect(scheduler, timeout=connect_timeout) as client:
            size = chunk_size or _default_chunk_size(len(plan.todo), max(1, total_threads(client)))
            chunks = TaskQueue(plan.todo[i:i + size] for i in range(0, len(plan.todo), size))
            outputs = _outputs(client, chunks, requests, audio, retries=retries,
                               limit=window_limit(client, max_in_flight))
            _consume(outputs, plan.tables, summary, total=len(plan.todo), flush_every=flush_every,
                     flush_seconds=flush_seconds, progress=progress)
    _finish(plan, requests, summary, compact=compact)
    summary.seconds = time.perf_counter() - t0
    return summary


def _outputs(client: Any, chunks: TaskQueue[list[tuple]], requests: list[FeatureRequest], audio: AudioOptions,
             *, retries: int, limit: Callable[[], int]) -> Iterator[dict]:
    """:func:`_process_chunk` outputs as the cluster finishes them (see :func:`extract_distributed`)."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker

    expected = _environment(requests)
    resent: dict[int, int] = {}  # id(chunk) -> times sent again after a lost result

    def submit(chunk: list[tuple]):
        return client.submit(_checked_chunk, chunk, requests, audio, expected, retries=retries, pure=False)

    for chunk, fut in sliding_window(client, chunks, submit, limit):
        try:
            out = fut.result()
        except KilledWorker as err:
            if len(chunk) > 1:  # find the culprit: retry the utterances one by one
                chunks.retries.extend([item] for item in chunk)
                continue
            uid, path = chunk[0][0], chunk[0][1]
            reason = f"{path}: the worker processing it died repeatedly ({err})"
            out = {"results": {}, "failures": {uid: reason}, "notes": [], "n": 1}
        except (OSError, CancelledError) as err:  # the result could not be fetched
            if not scheduler_alive(client):
                raise lost(client, err, "the rows received until then are stored; a rerun computes only the "
                                        "rest") from err
            resent[id(chunk)] = resent.get(id(chunk), 0) + 1
            if resent[id(chunk)] > 3:
                raise
            chunks.retries.append(chunk)
            continue
        finally:
            fut.release()
        yield out

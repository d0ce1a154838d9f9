"""The public Python API: files, signals and manifests in, DataFrames out (see README, "Python API").

>>> import featurekit
>>> features = featurekit.Features(["egemaps", "mfcc.mean_std"])
>>> df = features.process_files(["a.wav", "b.wav"])  # doctest: +SKIP

:class:`Features` is a thin layer over :mod:`featurekit.extraction`: every call runs the same
extraction as ``featurekit extract`` (decoding, checks, extractors, functionals, float32 tables) and
reads the result back from a feature store: the one given, or a temporary one deleted after the call.
So a table read here and the same table used by ``featurekit evaluate`` hold the same numbers.

Importing this module is cheap; numpy, pandas and the extractors are imported on first use.
"""

from __future__ import annotations

import enum
import inspect
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

    from featurekit.evaluation.spec import Spec
    from featurekit.executor import Executor
    from featurekit.extraction import FeatureRequest

#: Corpus name under which :meth:`Features.process_files` keeps its rows in a store.
FILES_CORPUS = "files"
_SIGNAL_SUBTYPES = {"float32": "FLOAT", "float64": "DOUBLE", "int16": "PCM_16", "int32": "PCM_32"}


class Errors(str, enum.Enum):
    """What :meth:`Features.process_files` and :meth:`Features.process_manifest` do with files that fail.

    Either way every other file is computed (and stored, when there is a store).
    """

    #: Raise :class:`FeatureExtractionError` listing every failed file (its ``features`` holds the rest).
    RAISE = "raise"
    #: Return the files that succeeded, warn (:class:`FailedFilesWarning`) listing those that failed,
    #: and record them as ``df.attrs["failures"]`` (``{file: reason}``).
    SKIP = "skip"


class FeatureExtractionError(ValueError):
    """Some files could not be turned into features.

    Attributes
    ----------
    failures
        ``{file (or id): reason}``; every reason starts with the audio file's path.
    features
        The features of the files that succeeded (``None`` when none did).
    """

    def __init__(self, failures: dict[str, str], features: pd.DataFrame | None, total: int) -> None:
        self.failures = dict(failures)
        self.features = features
        if total == 1 and len(failures) == 1:
            message = next(iter(failures.values()))
        else:
            listing = "\n".join(f"  {reason}" for reason in failures.values())
            message = f"{len(failures)} of {total} file(s) failed (the others were computed):\n{listing}"
        super().__init__(message)


class FailedFilesWarning(UserWarning):
    """``errors="skip"``: some files failed and are missing from the returned table."""


class _Params:
    """scikit-learn's parameter conventions: ``__init__`` stores its arguments unchanged under their
    names and does nothing else; :meth:`get_params` / :meth:`set_params` read and change them."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters as given to ``__init__`` (``deep`` is accepted for scikit-learn compatibility)."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> _Params:
        """Change parameters; returns ``self``. An unknown name is an error."""
        names = self._param_names()
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameter(s) {unknown}; it takes {names}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class Features(_Params):
    """Acoustic features of files, signals or manifests as DataFrames (like ``opensmile.Smile``).

    Parameters
    ----------
    features
        Feature tables, as in ``featurekit extract --features``: ``"EXTRACTOR.KIND"`` for one table
        (``"mfcc.stats"``, ``"egemaps.native"``, ``"logmel.lld"``), or a bare ``"EXTRACTOR"``: its
        own functionals (``native``) when it has them (``egemaps``: the 88 eGeMAPS functionals),
        otherwise the HSFs named by ``functionals``. A list or a comma-separated string. Several
        utterance-level tables are joined column-wise (their columns are prefixed by the extractor,
        so they never clash; two tables sharing a column, e.g. ``mfcc.mean_std`` and ``mfcc.stats``,
        are an error). An ``lld`` table must be the only table requested.
    functionals
        HSFs for bare extractors that have no native functionals (default ``mean_std``).
    params
        Extractor parameters, ``{"mfcc": {"n_mfcc": 20}}``.
    store
        A feature store directory: rows are read from it when present and computed rows are added
        (``process_files`` keeps them under the corpus name ``files``, keyed by absolute path and
        content hash; ``process_manifest`` under ``df.attrs["corpus"]``, e.g. the tables
        ``featurekit extract`` wrote). ``None``: nothing is kept. ``process_signal`` never uses it.
    jobs
        Worker processes (default: all cores; a call with at most four files runs in this process).
    sample_rate, trim_db, duration
        Audio options (:class:`featurekit.audio.AudioOptions`): target rate, silence trimming (dB
        below peak) and fixed length (seconds, centre crop / zero pad).
    errors
        :class:`Errors` (or its value): ``"raise"`` (default) or ``"skip"``; ``process_file`` always
        raises.
    progress
        Show a progress bar while computing.

    Returns of the ``process_*`` methods: a DataFrame indexed by ``file`` (``process_files``,
    ``process_file``, ``process_signal``) or by ``id`` (``process_manifest``), in input order, one
    float32 column per feature. For an ``lld`` table: one row per frame, indexed by (``file`` or
    ``id``, ``time``), ``time`` being the frame's centre in seconds (extractors' windows differ, so
    no start/end is claimed).
    """

    def __init__(
        self,
        features: str | Sequence[str],
        *,
        functionals: Sequence[str] = ("mean_std",),
        params: dict[str, dict] | None = None,
        store: str | os.PathLike | None = None,
        jobs: int | None = None,
        sample_rate: int = 16000,
        trim_db: float | None = None,
        duration: float | None = None,
        errors: Errors | str = Errors.RAISE,
        progress: bool = False,
    ) -> None:
        self.features = features
        self.functionals = functionals
        self.params = params
        self.store = store
        self.jobs = jobs
        self.sample_rate = sample_rate
        self.trim_db = trim_db
        self.duration = duration
        self.errors = errors
        self.progress = progress

    # -- what is computed ----------------------------------------------------------------------
    def tables(self) -> list[str]:
        """The tables this object returns, as ``EXTRACTOR.KIND`` (checks the parameters)."""
        from featurekit.extractors import EXTRACTORS
        from featurekit.featureset import TableKind, TableRef, parse_tables

        tables: list[TableRef] = []
        for t in parse_tables(self.features):
            if t.kind is not None:
                tables.append(t)
            elif EXTRACTORS.get(t.extractor).has_native:
                tables.append(TableRef(t.extractor, TableKind.NATIVE))
            else:
                tables.extend(TableRef(t.extractor, TableKind.parse(fn)) for fn in self.functionals)
        tables = list(dict.fromkeys(tables))
        out = [t.table for t in tables]
        if not out:
            raise ValueError("Features: no features requested")
        if any(t.frame_level for t in tables) and len(out) > 1:
            raise ValueError(
                f"Features: an lld table is frame-level and must be requested alone; got {out} "
                "(use one Features object per table)"
            )
        return out

    def requests(self) -> list[FeatureRequest]:
        """The extraction requests (:func:`featurekit.extraction.parse_features`) of :meth:`tables`."""
        from featurekit.extraction import parse_features

        return parse_features(self.tables(), params=self.params)

    def audio_options(self):
        """The :class:`~featurekit.audio.AudioOptions` of these parameters."""
        from featurekit.audio import AudioOptions

        return AudioOptions(sample_rate=self.sample_rate, trim_db=self.trim_db, duration=self.duration)

    # -- processing ----------------------------------------------------------------------------
    def process_file(self, file: str | os.PathLike) -> pd.DataFrame:
        """Features of one audio file (one row; frames for ``lld``), indexed by ``file``.

        Raises
        ------
        FeatureExtractionError
            The file failed; the message starts with its path and says why.
        """
        return self.process_files([file], errors=Errors.RAISE)

    def process_files(
        self, files: Sequence[str | os.PathLike], *, errors: Errors | str | None = None
    ) -> pd.DataFrame:
        """Features of audio files, one row each (frames for ``lld``), indexed by ``file`` as given.

        ``errors`` overrides the object's ``errors`` for this call (see :class:`Errors`).
        """
        import pandas as pd

        files = [str(f) for f in ([files] if isinstance(files, (str, os.PathLike)) else files)]
        ids = [os.path.abspath(f) for f in files]
        unique = list(dict.fromkeys(ids))
        manifest = pd.DataFrame({"id": unique, "path": unique})
        table, failures = self._compute(manifest, corpus=FILES_CORPUS, store=self.store)
        label = dict(zip(ids, files))
        table = _relabel(table, ids, files, "file")
        failures = {label[i]: reason for i, reason in failures.items()}
        return self._outcome(table, failures, total=len(unique), errors=errors)

    def process_signal(
        self, signal: np.ndarray, sampling_rate: int, *, file: str = "signal"
    ) -> pd.DataFrame:
        """Features of a signal in memory, indexed by ``file`` (default ``"signal"``).

        ``signal`` is ``(samples,)`` or ``(channels, samples)`` (channels are averaged), float32,
        float64, int16 or int32 (integers as in a PCM file: full scale is 2**15 or 2**31). The signal is
        written losslessly to a temporary WAV file and processed like :meth:`process_file`, so the
        numbers are exactly those of a file holding it. The store is not used.
        """
        import tempfile

        import numpy as np
        import pandas as pd
        import soundfile as sf

        x = np.asarray(signal)
        subtype = _SIGNAL_SUBTYPES.get(x.dtype.name)
        if subtype is None:
            raise TypeError(f"process_signal: {x.dtype} samples; use one of {sorted(_SIGNAL_SUBTYPES)}")
        if x.ndim not in (1, 2) or x.size == 0:
            raise ValueError(f"process_signal: expected (samples,) or (channels, samples), not {x.shape}")
        if not isinstance(sampling_rate, (int, np.integer)) or isinstance(sampling_rate, bool) \
                or sampling_rate <= 0:
            raise ValueError(f"process_signal: sampling_rate must be a positive integer: {sampling_rate!r}")
        with tempfile.TemporaryDirectory(prefix="featurekit-signal-") as tmp:
            path = str(Path(tmp) / "signal.wav")
            sf.write(path, x.T if x.ndim == 2 else x, int(sampling_rate), subtype=subtype, format="WAV")
            manifest = pd.DataFrame({"id": [path], "path": [path]})
            table, failures = self._compute(manifest, corpus="signal", store=None)
        table = _relabel(table, [path], [file], "file")
        failures = {file: failures[path].replace(path, file)} if failures else {}
        return self._outcome(table, failures, total=1, errors=Errors.RAISE)

    def process_manifest(
        self, manifest: pd.DataFrame, *, corpus: str | None = None, errors: Errors | str | None = None
    ) -> pd.DataFrame:
        """Features of a manifest's utterances, indexed by its ``id`` column, in its order.

        ``manifest`` needs a ``path`` column; ``id`` defaults to the path, and ``start``/``end``
        (seconds) select segments. Other columns are ignored (no ``label`` or ``speaker`` needed).
        ``corpus`` names its rows in the store (default ``manifest.attrs["corpus"]``, as set by
        :func:`load_corpus`, else ``files``).
        """
        if "path" not in manifest.columns:
            raise ValueError(f"process_manifest: the manifest has no 'path' column; columns: "
                             f"{list(manifest.columns)}")
        m = manifest.copy()
        m["path"] = m["path"].astype(str)
        m["id"] = m["id"].astype(str) if "id" in m.columns else m["path"]
        dup = m["id"][m["id"].duplicated()]
        if len(dup):
            raise ValueError(f"process_manifest: duplicate id(s) {list(dup.iloc[:5])}")
        m = m.reset_index(drop=True)
        corpus = corpus or manifest.attrs.get("corpus") or FILES_CORPUS
        table, failures = self._compute(m, corpus=corpus, store=self.store)
        return self._outcome(table.rename_axis(["id", *table.index.names[1:]]), failures, total=len(m),
                             errors=errors)

    # -- internals -----------------------------------------------------------------------------
    def _compute(self, manifest: pd.DataFrame, *, corpus: str, store) -> tuple[pd.DataFrame, dict]:
        """Extract into ``store`` (a temporary one for ``None``) and read the tables back.

        Returns the table indexed by id (and time, for lld) and ``{id: reason}`` of the failures.
        """
        import tempfile
        from contextlib import ExitStack

        from featurekit.extraction import extract, load_features
        from featurekit.store import FeatureStore

        requests = self.requests()
        audio = self.audio_options()
        with ExitStack() as stack:
            root = store if store is not None else stack.enter_context(
                tempfile.TemporaryDirectory(prefix="featurekit-features-"))
            fstore = FeatureStore(root)
            summary = extract(manifest, requests, fstore, corpus=corpus, audio=audio, jobs=self.jobs,
                              progress=bool(self.progress))
            for note in summary.warnings:
                warnings.warn(note, UserWarning, stacklevel=4)
            ok = manifest[~manifest["id"].isin(list(summary.failures))]
            if ok.empty:  # every file failed: nothing to read
                return _nothing(any(k.frame_level for r in requests for k in r.kinds)), summary.failures
            tables = [load_features(fstore, ok, req, kind, corpus=corpus, audio=audio)
                      for req in requests for kind in req.kinds]
        return _join(tables, [f"{r.extractor.name}.{k}" for r in requests for k in r.kinds]), summary.failures

    def _outcome(self, table: pd.DataFrame, failures: dict[str, str], *, total: int,
                 errors: Errors | str | None) -> pd.DataFrame:
        mode = Errors(self.errors if errors is None else errors)
        if failures and mode is Errors.RAISE:
            raise FeatureExtractionError(failures, table if len(table) else None, total)
        if failures:
            listing = "; ".join(failures.values())
            warnings.warn(f"{len(failures)} of {total} file(s) failed and are left out: {listing}",
                          FailedFilesWarning, stacklevel=3)
        table.attrs["failures"] = dict(failures)
        return table


def _join(tables: list[pd.DataFrame], names: list[str]) -> pd.DataFrame:
    """Tables from :func:`featurekit.extraction.load_features` as one frame indexed by id (and time)."""
    import pandas as pd

    if len(tables) == 1 and "time" in tables[0].columns:  # lld: long form (id, frame, time, ...)
        return tables[0].drop(columns="frame").set_index(["id", "time"])
    seen: dict[str, str] = {}
    for name, t in zip(names, tables):
        for col in t.columns:
            if col in seen:
                raise ValueError(f"Features: {seen[col]} and {name} share column {col!r}; request one")
            seen[col] = name
    return pd.concat(tables, axis=1) if len(tables) > 1 else tables[0]


def _nothing(lld: bool) -> pd.DataFrame:
    """The empty table (indexed like :func:`_join`'s) returned when every file failed."""
    import pandas as pd

    if lld:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], []], names=["id", "time"]))
    return pd.DataFrame(index=pd.Index([], name="id", dtype=object))


def _relabel(table: pd.DataFrame, ids: list[str], labels: list[str], name: str) -> pd.DataFrame:
    """Rows of ``table`` (indexed by id) in the order of ``ids`` (which may repeat), relabelled; ids
    without rows (failures) are left out."""
    import pandas as pd

    present = set(table.index.get_level_values(0))
    pairs = [(i, lab) for i, lab in zip(ids, labels) if i in present]
    if table.index.nlevels == 1:
        out = table.loc[[i for i, _ in pairs]]
        out.index = pd.Index([lab for _, lab in pairs], name=name)
        return out
    groups = {i: g for i, g in table.groupby(level=0, sort=False)}
    parts = [groups[i].droplevel(0) for i, _ in pairs]
    if not parts:
        return table.iloc[:0].rename_axis([name, *table.index.names[1:]])
    return pd.concat(parts, keys=[lab for _, lab in pairs], names=[name])


# -- corpora, evaluation, results --------------------------------------------------------------------
def load_corpus(name: str, root: str | os.PathLike, /, **options: Any) -> pd.DataFrame:
    """Read corpus ``name`` (see ``featurekit corpora``) at ``root`` into a manifest DataFrame.

    ``options`` are the adapter's, e.g. ``load_corpus("csv", root, csv="list.csv")``. The manifest is
    indexed by utterance id and has ``id``, ``path`` and, where the corpus has them, ``speaker``,
    ``session``, ``label`` and more (see :mod:`featurekit.corpora.base`).
    """
    from featurekit.corpora import load_corpus as _load

    return _load(name, root, **options)


class MissingRootError(ValueError):
    """No corpus root was given and the spec's ``root_env`` variable is not set."""


def resolve_root(spec: Spec, root: str | os.PathLike | None) -> str:
    """The corpus root: ``root`` when given, else the variable named by the spec's ``corpus.root_env``."""
    if root:
        return str(root)
    env = spec.corpus.get("root_env")
    if env and os.environ.get(env):
        return os.environ[env]
    raise MissingRootError(f"{spec.path or spec.name}: no corpus root: pass --root (root=...)"
                           + (f" or set {env}" if env else ""))


def resolve_test_root(spec: Spec, test_root: str | os.PathLike | None) -> str | None:
    """A ``cross_corpus`` protocol's test corpus root: ``test_root``, else its ``root_env`` variable."""
    if test_root is not None or spec.protocol["name"] != "cross_corpus":
        return None if test_root is None else str(test_root)
    env = spec.protocol["test_corpus"].get("root_env")
    return os.environ.get(env) if env else None


def evaluate(
    spec: Spec | str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    out: str | os.PathLike,
    store: str | os.PathLike | None = None,
    jobs: int | None = None,
    test_root: str | os.PathLike | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    manifest: pd.DataFrame | None = None,
    roots: dict[str, str | os.PathLike] | None = None,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Run an experiment spec, as ``featurekit evaluate`` does; return the tidy results.

    Parameters
    ----------
    spec
        A spec file (TOML) or a loaded :class:`~featurekit.evaluation.spec.Spec`.
    root
        Corpus root (default: the variable named by the spec's ``corpus.root_env``).
    out
        Results directory (``results.csv``, ``predictions.csv``, ``params.csv``, ``spec.json``); a
        rerun skips finished cells.
    store
        Feature store (default: ``$FEATUREKIT_STORE`` or ``./store``, as the command line).
    jobs
        Worker processes (default: all cores).
    test_root
        A ``cross_corpus`` protocol's test corpus root (default: its ``root_env`` variable).
    scheduler
        A dask.distributed scheduler address to extract and run the folds on.
    progress
        Show progress bars.
    manifest
        Evaluate on these utterances of the spec's corpus (e.g. some speakers, from
        :func:`load_corpus`) instead of the whole corpus at ``root``.
    roots
        A multi-corpus spec's ``{NAME: root}`` of its ``[corpora.NAME]`` (default: each one's
        ``root_env`` variable); ``root`` is then not used.
    executor
        Where to extract and run the folds (:mod:`featurekit.executor`; closed at the end); default
        :func:`~featurekit.executor.executor_for` of ``jobs`` and ``scheduler``.

    Returns
    -------
    pandas.DataFrame
        ``results.csv`` as :func:`load_results` reads it.
    """
    from featurekit.defaults import default_store
    from featurekit.evaluation import load_spec, run
    from featurekit.evaluation.spec import Spec
    from featurekit.executor import executor_for

    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    if manifest is not None and root is None:
        root = manifest.attrs.get("root", "")
    if not spec.corpora:
        root = root if manifest is not None else resolve_root(spec, root)
    with executor or executor_for(jobs=jobs, scheduler=scheduler) as where:
        run(spec, root, out, store=store if store is not None else default_store(), executor=where,
            progress=progress, manifest=manifest, test_root=resolve_test_root(spec, test_root), roots=roots)
    return load_results(out)


def load_results(directory: str | os.PathLike) -> pd.DataFrame:
    """The tidy results of a results directory (its ``results.csv``).

    Columns: ``feature_set, model, normalisation, protocol, speaker_independent, fold, target,
    metric, value``; ``fold`` is text (a fold name, ``pooled``, ``mean`` or ``std``).
    """
    import pandas as pd

    path = Path(directory) / "results.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no results.csv (not written by featurekit evaluate)")
    return pd.read_csv(path, dtype={"fold": str, "target": str})

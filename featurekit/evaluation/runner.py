"""Run an experiment spec: features -> folds x cells -> predictions -> tidy results.

Output directory::

    results.csv        feature_set, model, normalisation, protocol, speaker_independent, fold,
                       target, metric, value   (fold: a fold name, "pooled", "mean" or "std")
    predictions.csv    one row per utterance, cell and target (y_true, y_pred, class probabilities)
    params.csv         the hyperparameters chosen in every fold
    spec.json          the resolved spec, seeds, library versions, store tables used
    audit.json|.md     the design audit's findings (featurekit.audit), run before anything is fit
    cells/*.json|.parquet  finished cells (resume: a finished cell is not recomputed)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurekit.audio import AudioOptions
from featurekit.audit import AuditError, audit_experiment
from featurekit.audit.checks import missing_training_classes
from featurekit.evaluation import metrics as M
from featurekit.evaluation.models import model_registry
from featurekit.evaluation.normalisation import speaker_zscore, speaker_zscore_sequences
from featurekit.evaluation.pipeline import fit_predict
from featurekit.evaluation.protocols import PROTOCOLS, Fold
from featurekit.evaluation.spec import FeatureSet, Member, Spec, SpecError
from featurekit.executor import Executor, SerialExecutor, executor_for
from featurekit.extraction import FeatureRequest, extract
from featurekit.extractors import make_extractor
from featurekit.extractors.base import library_versions
from featurekit.store import FeatureStore, align, feature_columns, nearest_frames, to_sequences

VERSIONED = (
    "featurekit",
    "numpy",
    "pandas",
    "scikit-learn",
    "xgboost",
    "librosa",
    "opensmile",
    "pyAudioAnalysis",
    "torch",
    "soundfile",
    "soxr",
)


class DataError(ValueError):
    """The corpus or its features are unusable for the spec (names files/columns)."""


@dataclass
class Cell:
    feature_set: FeatureSet
    model: str
    normalisation: str

    @property
    def label(self) -> str:
        return f"{self.feature_set.name} | {self.model} | {self.normalisation}"

    def _model_config(self, spec: Spec) -> dict:
        return _model_config(spec, self.model)

    def digest(self, spec: Spec) -> str:
        blob = json.dumps(
            {
                "fs": self.feature_set.name,
                "model": self.model,
                "norm": self.normalisation,
                # only what changes the cell's numbers: selectors (sets, normalisation lists) stay out
                "models": self._model_config(spec),
                "task": spec.task,
                "protocol": spec.protocol,
                "evaluation": {k: v for k, v in spec.evaluation.items() if k != "normalisation"},
                "seed": spec.seed,
                "extractors": {
                    m.extractor: spec.extractors.get(m.extractor, {}) for m in self.feature_set.members
                },
                "audio": spec.audio,
                "corpus": spec.corpus,
                # stacking: the members' models too (absent for other cells: their digests unchanged)
                **({"stack": {m: _model_config(spec, m) for _, m in self.feature_set.stack}}
                   if self.feature_set.stack else {}),
            },
            sort_keys=True,
            default=str,
        ).encode()
        return hashlib.blake2b(blob, digest_size=10).hexdigest()


def _model_config(spec: Spec, name: str) -> dict:
    cfg = spec.models[name]
    out = {k: cfg[k] for k in ("grid", "params")}
    if cfg["model"] != name:  # a labelled entry: which registered model it configures
        out["registered"] = cfg["model"]
    if "inner_folds" in cfg:
        out["inner_folds"] = cfg["inner_folds"]
    return out


def load_corpus_for(spec: Spec, root: str | os.PathLike) -> pd.DataFrame:
    """The spec's corpus at ``root`` (with the spec's adapter options)."""
    from featurekit.corpora import load_corpus

    return load_corpus(spec.corpus["name"], root, **spec.corpus.get("options", {}))


def prepare_manifest(spec: Spec, manifest: pd.DataFrame) -> pd.DataFrame:
    """Apply the task's mapping/subset and check target columns; raise DataError naming the problem."""
    task = spec.task
    for col in spec.targets:
        if col not in manifest.columns:
            raise DataError(
                f"task: the corpus manifest has no column {col!r}, which the spec's task needs; columns: "
                f"{list(manifest.columns)} (csv adapter: map one, columns={{{col!r}: '<CSV column>'}})"
            )
    if "speaker" not in manifest.columns:  # inner folds and normalisation are grouped by speaker
        raise DataError(
            "the corpus manifest has no 'speaker' column, which evaluation needs (speaker-grouped "
            "folds); for the csv adapter, map one: columns={'speaker': '<CSV column>'}"
        )
    group = spec.protocol.get("group", "speaker")
    if group not in manifest.columns:
        raise DataError(f"protocol.group: the manifest has no column {group!r}")
    m = manifest.copy()
    if spec.task_type == "classification":
        col = spec.targets[0]
        m[col] = m[col].astype(str)
        if task.get("mapping"):
            m[col] = m[col].replace(task["mapping"])
        if task.get("subset"):
            m = m[m[col].isin(task["subset"])]
            missing = set(task["subset"]) - set(m[col])
            if missing:
                raise DataError(f"task.subset: label(s) {sorted(missing)} do not occur in the corpus")
        counts = m[col].value_counts()
        min_n = int(task.get("min_per_class", 2))
        few = counts[counts < min_n]
        if len(few):
            raise DataError(
                f"task: label(s) with fewer than {min_n} samples: {few.to_dict()} "
                f"(drop them with task.subset or merge with task.mapping)"
            )
    else:
        for col in spec.targets:
            v = pd.to_numeric(m[col], errors="coerce")
            if v.isna().any():
                bad = m.index[v.isna()][:5].tolist()
                raise DataError(f"task: target {col!r} has missing or non-numeric values (e.g. {bad})")
            m[col] = v.astype(float)
    if m.empty:
        raise DataError("task: no utterances left after subset/mapping")
    return m


def make_folds(spec: Spec, manifest: pd.DataFrame) -> list[Fold]:
    p = dict(spec.protocol)
    name = p.pop("name")
    y = manifest[spec.targets[0]].to_numpy() if spec.task_type == "classification" else None
    folds = PROTOCOLS.get(name).folds(manifest, seed=spec.seed, y=y, **p)
    if spec.task_type == "classification":
        lacking = missing_training_classes(folds, manifest[spec.targets[0]].to_numpy())
        if lacking:
            fold, classes = lacking[0]
            raise DataError(
                f"fold {fold}: the training fold lacks class(es) {classes}; the model "
                f"could never predict them (drop them with task.subset)"
            )
    return folds


class FeatureData:
    """Feature matrices of the spec's feature sets, aligned with the manifest rows, read from ``store``.

    Constructing one reads nothing; :meth:`load` first extracts what the store lacks (the usual way).
    ``extraction``: that extraction's summary (None when constructed directly).
    """

    def __init__(
        self,
        spec: Spec,
        manifest: pd.DataFrame,
        store: FeatureStore,
        *,
        corpus: str | None = None,
    ) -> None:
        self.spec, self.manifest, self.store = spec, manifest, store
        self.audio = AudioOptions(**spec.audio)
        self.corpus = corpus or spec.corpus["name"]
        self.extraction = None
        self._fingerprints: list[str | None] | None = None
        self._tables: dict[str, pd.DataFrame] = {}
        self._seqs: dict[str, np.ndarray] = {}

    @classmethod
    def load(
        cls,
        spec: Spec,
        manifest: pd.DataFrame,
        store: FeatureStore,
        *,
        executor: Executor | None = None,
        progress: bool = True,
        corpus: str | None = None,
    ) -> FeatureData:
        """The features of ``manifest``, once those the store lacks are extracted by ``executor``
        (default: this process); a :class:`DataError` lists the files that failed."""
        data = cls(spec, manifest, store, corpus=corpus)
        data.extraction = data._extract(executor or SerialExecutor(), progress)
        return data

    @property
    def fingerprints(self) -> list[str | None]:
        """The manifest files' fingerprints in the store (computed on first use)."""
        if self._fingerprints is None:
            paths = self.manifest["path"].astype(str).tolist()
            self._fingerprints, _ = self.store.fingerprints(self.corpus, paths)
        return self._fingerprints

    def _members(self) -> list[Member]:
        seen: dict[str, Member] = {}
        for fs in self.spec.feature_sets:
            for m in fs.members:
                seen.setdefault(m.table, m)
        return list(seen.values())

    def requests(self) -> list[FeatureRequest]:
        kinds: dict[str, list[str]] = {}
        for m in self._members():
            kinds.setdefault(m.extractor, []).append(m.kind)
        return [
            FeatureRequest(make_extractor(n, **self.spec.extractors.get(n, {})), tuple(dict.fromkeys(k)))
            for n, k in kinds.items()
        ]

    def _extract(self, executor: Executor, progress: bool):
        # missing features are computed by the executor's workers (this process writes the store)
        summary = extract(
            self.manifest,
            self.requests(),
            self.store,
            corpus=self.corpus,
            audio=self.audio,
            executor=executor,
            progress=progress,
        )
        if summary.failures:
            lines = "\n".join(f"  {k}: {v}" for k, v in list(summary.failures.items())[:20])
            raise DataError(f"feature extraction failed for {len(summary.failures)} file(s):\n{lines}")
        self._fingerprints = None  # read again: extraction may have stored new files' fingerprints
        return summary

    def _table(self, m: Member) -> pd.DataFrame:
        if m.table not in self._tables:
            ext = make_extractor(m.extractor, **self.spec.extractors.get(m.extractor, {}))
            t = self.store.table(self.corpus, ext, m.kind, self.audio).read()
            if m.kind == "lld":
                self._tables[m.table] = t
            else:
                self._tables[m.table] = align(t, self.manifest, self.fingerprints)
        return self._tables[m.table]

    def matrix(self, fs: FeatureSet) -> tuple[np.ndarray, list[str]]:
        """Vectors ``(n, d)`` float32 for an early-fused feature set, and their column names."""
        blocks, names = [], []
        for m in fs.members:
            t = self._table(m)
            if m.layer is not None:
                t = _select_layers(t, m.layer)
            cols = feature_columns(t.reset_index())
            t = t.reindex(self.manifest["id"])
            x = t[cols].to_numpy(np.float32)
            bad = ~np.isfinite(x).all(axis=1)
            if bad.any():
                rows = self.manifest.iloc[np.flatnonzero(bad)[:5]]
                files = ", ".join(f"{i} ({p})" for i, p in zip(rows["id"], rows["path"]))
                raise DataError(
                    f"{m.table}: NaN/inf or missing features for {int(bad.sum())} utterance(s): {files}"
                )
            blocks.append(x)
            names += cols
        return np.hstack(blocks), names

    def _member_sequences(self, m: Member) -> tuple[np.ndarray, np.ndarray]:
        """One LLD table as sequences and their frame times, in manifest order (cached)."""
        if m.table not in self._seqs:
            t = self._table(m)
            want = pd.DataFrame({"id": self.manifest["id"].to_numpy(), "fingerprint": self.fingerprints})
            t = want.merge(t, on=["id", "fingerprint"], how="inner").drop(columns="fingerprint")
            seqs, times = to_sequences(t, self.manifest["id"].tolist(), with_times=True)
            for i, s in enumerate(seqs):
                if not np.isfinite(s).all():
                    r = self.manifest.iloc[i]
                    raise DataError(f"{m.table}: NaN/inf frames for {r['id']} ({r['path']})")
            self._seqs[m.table] = (seqs, times)
        return self._seqs[m.table]

    def sequences(self, fs: FeatureSet) -> np.ndarray:
        """LLD sequences ``(T_i, F)`` of a feature set. Several LLD members (``a.lld+b.lld``) are
        concatenated frame by frame on the first member's frames: each other member contributes
        its frame nearest in time (their frame grids differ, e.g. openSMILE vs librosa)."""
        first, times = self._member_sequences(fs.members[0])
        if len(fs.members) == 1:
            return first
        others = [self._member_sequences(m) for m in fs.members[1:]]
        out = np.empty(len(first), dtype=object)
        for i in range(len(first)):
            out[i] = np.concatenate(
                [first[i], *(nearest_frames(v[i], t[i], times[i]) for v, t in others)], axis=1
            )
        return out


class StackedData:
    """Several corpora's :class:`FeatureData` as one: rows of each in turn (cross-corpus protocols)."""

    def __init__(self, parts: list[FeatureData], manifest: pd.DataFrame | None = None) -> None:
        self.parts = parts
        # multi-corpus specs pass the combined manifest (ids prefixed by corpus; rows in the same order)
        self.manifest = pd.concat([p.manifest for p in parts], ignore_index=True) if manifest is None \
            else manifest

    def requests(self) -> list[FeatureRequest]:
        return self.parts[0].requests()

    def matrix(self, fs: FeatureSet) -> tuple[np.ndarray, list[str]]:
        blocks = [p.matrix(fs) for p in self.parts]
        names = blocks[0][1]
        for p, (_, other) in zip(self.parts[1:], blocks[1:]):
            if other != names:
                raise DataError(
                    f"{fs.name}: the corpora's feature columns differ ({p.corpus} has {len(other)}, "
                    f"{self.parts[0].corpus} {len(names)}); use the same extractor settings for both"
                )
        return np.vstack([b[0] for b in blocks]), names

    def sequences(self, fs: FeatureSet) -> np.ndarray:
        return np.concatenate([p.sequences(fs) for p in self.parts])


def cross_corpus_manifest(spec: Spec, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Training and test corpora as one manifest with a ``corpus`` column (cross-corpus protocol).

    The test corpus' labels go through ``protocol.test_corpus.mapping`` and then, like the training
    corpus', through the task's mapping and subset. Speakers are prefixed with their corpus so that
    two corpora's speaker codes never merge (per-speaker normalisation stays within one corpus).
    """
    tc = spec.protocol["test_corpus"]
    a_name, b_name = spec.corpus["name"], tc["name"]
    test = test.copy()
    if tc["mapping"] and spec.task_type == "classification":
        col = spec.targets[0]
        test[col] = test[col].astype(str).replace(tc["mapping"])
    a, b = prepare_manifest(spec, train), prepare_manifest(spec, test)
    if spec.task_type == "classification":
        col = spec.targets[0]
        unknown = sorted(set(b[col]) - set(a[col]))
        if unknown:
            raise DataError(
                f"protocol.test_corpus: {b_name} label(s) {unknown} do not occur in {a_name} "
                f"({sorted(set(a[col]))}); map them with protocol.test_corpus.mapping or drop them "
                f"with task.subset"
            )
    parts = []
    for name, m in ((a_name, a), (b_name, b)):
        m = m.assign(corpus=name)
        m["speaker"] = name + ":" + m["speaker"].astype(str)
        parts.append(m)
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update(train_corpus=a_name, test_corpus=b_name)
    return out


def parse_layer(text: str) -> int | list[int] | str:
    """``"-1"`` -> -1, ``"3,4"`` -> [3, 4], ``"mean"`` -> "mean" (the ``@LAYER`` of a feature set)."""
    if text == "mean":
        return text
    try:
        parts = [int(x) for x in text.split(",")]
    except ValueError:
        raise SpecError(f"layer {text!r}: use an index, indices joined by ',' or 'mean'") from None
    return parts[0] if len(parts) == 1 else parts


def _select_layers(table: pd.DataFrame, layer: str) -> pd.DataFrame:
    from featurekit.evaluation.spec import split_weighted_layers
    from featurekit.extractors.ssl.layers import layer_numbers, select_layers

    weighted, selection = split_weighted_layers(layer)
    if weighted and selection is None:  # every layer: their columns side by side, weighted in the model
        layers = sorted({n for v in layer_numbers(table).values() for n in v})
        return select_layers(table, layers)
    return select_layers(table, parse_layer(selection))


def _cell_inputs(data: FeatureData, fs: FeatureSet, norm: str, speakers: np.ndarray):
    """The model input(s) of a cell: one matrix/sequence array, or a list for late fusion."""

    def one(f: FeatureSet):
        x = data.sequences(f) if f.sequences else data.matrix(f)[0]
        if norm == "speaker":
            x = speaker_zscore_sequences(x, speakers) if f.sequences else speaker_zscore(x, speakers)
        return x

    if fs.stack:
        return [one(g) for g, _ in fs.stack]
    return [one(g) for g in fs.late_groups] if fs.late else one(fs)


def check_sequence_lengths(spec: Spec, cell: Cell, inputs) -> None:
    """Before any fit: a model's fixed-length crop (``fixed_len``, in its params or grid) must not be
    longer than every sequence of the cell's feature set (a DataError naming the model and set)."""
    if cell.feature_set.late or not cell.feature_set.sequences:
        return
    cfg = spec.models[cell.model]
    ms = spec.model_spec(cell.model)
    lengths = [len(s) for s in inputs]
    grid = cfg["grid"]
    candidates = [{**cfg["params"], k: v} for k, vals in grid.items() for v in vals] or [cfg["params"]]
    for params in candidates:
        check = getattr(ms.build(spec.seed, None, **params), "check_lengths", None)
        if check is None:
            return
        try:
            check(lengths)
        except ValueError as err:
            raise DataError(f"models.{cell.model} on {cell.feature_set.name}: {err}") from None


def _member_sets(fs: FeatureSet) -> list[FeatureSet]:
    """The feature sets whose models a cell fits: late-fusion groups, stack members, or the set itself."""
    if fs.stack:
        return [g for g, _ in fs.stack]
    return list(fs.late_groups) if fs.late else [fs]


def _layer_steps(data, fs: FeatureSet, seed: int) -> tuple:
    """The learned layer weighting step of a feature set with an ``@wsum`` member (else none)."""
    from featurekit.evaluation.layerfusion import LayerWeightedSum, layer_blocks
    from featurekit.evaluation.spec import split_weighted_layers

    if fs.sequences or not any(m.layer and split_weighted_layers(m.layer)[0] for m in fs.members):
        return ()
    found = layer_blocks(data.matrix(fs)[1])
    if found is None:
        raise SpecError(f"{fs.name}: @wsum needs at least two encoder layers in the stored features")
    return (("layers", LayerWeightedSum(found[0], found[1], seed=seed)),)


def _run_fold(
    cell_key: str,
    fold: Fold,
    inputs,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    spec_models: dict,
    task: str,
    model: str,
    norm: str,
    balancing: str,
    inner_folds: int,
    seed: int,
    sequences: list[bool],
    late: bool,
    corpora: np.ndarray | None = None,
    pre: list[tuple] | None = None,
    stack: list[str] | None = None,
    inner_by_model: dict[str, int] | None = None,
) -> dict:
    t0 = time.perf_counter()
    cfg = spec_models[model]
    ms = model_registry(task).get(cfg["model"])
    members = inputs if (late or stack) else [inputs]
    pre = pre or [()] * len(members)
    if norm == "corpus":  # per-corpus z-score with this fold's statistics (normalisation module)
        from featurekit.evaluation.normalisation import corpus_zscore

        members = [corpus_zscore(x, corpora, fold.train) for x in members]
    if stack:
        return _run_stacked_fold(cell_key, fold, members, y, groups, spec_models=spec_models, task=task,
                                 meta=model, stack=stack, norm=norm, balancing=balancing, seed=seed, pre=pre,
                                 inner_by_model=inner_by_model or {}, inner_folds=inner_folds, t0=t0)
    outs = []
    for x, seq, steps in zip(members, sequences, pre):
        params = dict(cfg["params"])
        outs.append(
            fit_predict(
                ms,
                x[fold.train],
                y[fold.train],
                groups[fold.train],
                x[fold.test],
                task=task,
                normalisation=norm,
                balancing=balancing,
                grid=cfg["grid"],
                params=params,
                inner_folds=inner_folds,
                seed=seed,
                sequences=seq,
                proba=late or task == "classification",
                pre=steps,
            )
        )
    if late:
        proba = np.mean([o["proba"] for o in outs], axis=0)
        pred = proba.argmax(axis=1)
        best = {f"member{i}": o["best_params"] for i, o in enumerate(outs)}
    else:
        pred, proba, best = outs[0]["pred"], outs[0]["proba"], outs[0]["best_params"]
    return {
        "cell": cell_key,
        "fold": fold.name,
        "test": fold.test,
        "pred": pred,
        "proba": proba,
        "best": best,
        "seconds": time.perf_counter() - t0,
        "scopes": fold.scopes,
    }


def _run_stacked_fold(cell_key, fold, members, y, groups, *, spec_models, task, meta, stack, norm, balancing,
                      seed, pre, inner_by_model, inner_folds, t0) -> dict:
    """One outer fold of a stacked system (:mod:`featurekit.evaluation.stacking`)."""
    from featurekit.evaluation.stacking import StackMember, fit_predict_stacked

    def member(name, x, steps):
        cfg = spec_models[name]
        return StackMember(model_registry(task).get(cfg["model"]), cfg["grid"], cfg["params"],
                           inner_by_model[name], None if x is None else x[fold.train],
                           None if x is None else x[fold.test], steps)

    ms = [member(name, x, steps) for name, x, steps in zip(stack, members, pre)]
    r = fit_predict_stacked(ms, member(meta, None, ()), y[fold.train], groups[fold.train],
                            n_classes=int(y.max()) + 1, stack_folds=inner_folds,
                            normalisation="none" if norm == "corpus" else norm, balancing=balancing,
                            seed=seed)
    return {"cell": cell_key, "fold": fold.name, "test": fold.test, "pred": r["pred"], "proba": r["proba"],
            "best": r["best_params"], "seconds": time.perf_counter() - t0, "scopes": fold.scopes}


def experiment_manifest(
    spec: Spec,
    root: str | os.PathLike,
    *,
    manifest: pd.DataFrame | None = None,
    test_root: str | os.PathLike | None = None,
    test_manifest: pd.DataFrame | None = None,
    roots: dict[str, str | os.PathLike] | None = None,
    manifests: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The experiment's prepared manifest: the corpus at ``root`` (or ``manifest``) after the task's
    mapping and subset; for a cross-corpus protocol, both corpora stacked (:func:`cross_corpus_manifest`);
    for a multi-corpus spec, its ``[corpora]`` from ``roots`` / ``manifests`` ({NAME: ...}; a root not
    given comes from ``corpora.NAME.root_env``), combined by
    :func:`featurekit.evaluation.multicorpus.multi_corpus_manifest`."""
    if spec.corpora:
        from featurekit.evaluation.multicorpus import load_corpora, multi_corpus_manifest

        return multi_corpus_manifest(spec, manifests or load_corpora(spec, roots))[0]
    if manifest is None:
        manifest = load_corpus_for(spec, root)
    if spec.protocol["name"] != "cross_corpus":
        return prepare_manifest(spec, manifest)
    if test_manifest is None:
        tc = spec.protocol["test_corpus"]
        if test_root is None:
            raise DataError(
                f"protocol.test_corpus: no root for {tc['name']!r}: give --test-root or set the "
                f"variable named by protocol.test_corpus.root_env"
            )
        from featurekit.corpora import load_corpus

        test_manifest = load_corpus(tc["name"], test_root, **tc["options"])
    return cross_corpus_manifest(spec, manifest, test_manifest)


def plan_cells(spec: Spec) -> list[Cell]:
    """Every (feature set, model, normalisation) cell the spec runs; a SpecError for a feature set
    that no model takes."""
    cells = []
    for fs in spec.feature_sets:
        if fs.stack:  # a stacked system is one cell per normalisation of its meta-learner
            meta = spec.models[fs.meta]
            if spec.task_type != "classification":
                raise SpecError(f"features.stacking: {fs.name}: stacking is for classification tasks")
            for norm in meta.get("normalisation", spec.evaluation["normalisation"]):
                cells.append(Cell(fs, fs.meta, norm))
            continue
        for model, cfg in spec.models.items():
            ms = spec.model_spec(model)
            fits = ms.sequences if fs.sequences else ms.vectors
            if "sets" in cfg:
                if fs.name not in cfg["sets"]:
                    continue
                if not fits:
                    kind = "LLD sequences" if fs.sequences else "vectors"
                    raise SpecError(
                        f"models.{model}.sets: {fs.name!r} is {kind}, which {model!r} does not take"
                    )
            elif not fits:
                continue
            for norm in cfg.get("normalisation", spec.evaluation["normalisation"]):
                cells.append(Cell(fs, model, norm))
    for fs in spec.feature_sets:
        if not any(c.feature_set is fs for c in cells):
            raise SpecError(
                f"features.sets: no model in the spec takes {fs.name!r}"
                f"{' (LLD sequences need lstm, gru, conv1d or torch_mlp)' if fs.sequences else ''}"
            )
    return cells


def run(
    spec: Spec,
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    store: str | os.PathLike,
    executor: Executor | None = None,
    jobs: int | None = None,
    progress: bool = True,
    manifest: pd.DataFrame | None = None,
    scheduler: str | None = None,
    test_root: str | os.PathLike | None = None,
    test_manifest: pd.DataFrame | None = None,
    roots: dict[str, str | os.PathLike] | None = None,
    manifests: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Run ``spec`` on the corpus at ``root``; write the output directory; return results.csv's frame.

    ``executor``: where missing features are extracted and the cells' folds run
    (:mod:`featurekit.executor`); without it, :func:`~featurekit.executor.executor_for` of ``jobs``
    (local processes, default all cores) and ``scheduler`` (a dask.distributed scheduler).
    ``test_root`` / ``test_manifest``: the test corpus of a ``cross_corpus`` protocol.
    ``roots`` / ``manifests``: ``{NAME: root}`` / ``{NAME: manifest}`` of a multi-corpus spec's
    ``[corpora.NAME]`` (``root`` is then unused).
    """
    if executor is None:
        with executor_for(jobs=jobs, scheduler=scheduler) as owned:
            return run(spec, root, out, store=store, executor=owned, progress=progress, manifest=manifest,
                       test_root=test_root, test_manifest=test_manifest, roots=roots, manifests=manifests)
    t0 = time.perf_counter()
    out = Path(out)
    manifest = experiment_manifest(
        spec, root, manifest=manifest, test_root=test_root, test_manifest=test_manifest, roots=roots,
        manifests=manifests,
    )
    cross = spec.protocol["name"] == "cross_corpus"
    folds = make_folds(spec, manifest)
    protocol = PROTOCOLS.get(spec.protocol["name"])
    cells = plan_cells(spec)
    # the design audit, before anything is extracted, fit or written (see featurekit.audit)
    audit = audit_experiment(
        spec, manifest, folds, cells, speaker_independent=protocol.speaker_independent,
        store=FeatureStore(store),
    )
    if audit.blocked:
        raise AuditError(audit.to_text())
    if progress or audit.warnings:
        print(audit.to_text(), file=sys.stderr)
    if spec.corpora:  # each corpus' features under its own name and ids; rows as in the combined manifest
        data = StackedData(
            [
                FeatureData.load(spec, manifest[manifest["corpus"] == name].assign(
                                id=lambda m: m["local_id"]).reset_index(drop=True),
                            FeatureStore(store), executor=executor, progress=progress, corpus=name)
                for name in spec.corpora
            ],
            manifest=manifest,
        )
    elif cross:
        data = StackedData(
            [
                FeatureData.load(
                    spec,
                    manifest[manifest["corpus"] == name].reset_index(drop=True),
                    FeatureStore(store),
                    executor=executor,
                    progress=progress,
                    corpus=name,
                )
                for name in (manifest.attrs["train_corpus"], manifest.attrs["test_corpus"])
            ]
        )
    else:
        data = FeatureData.load(spec, manifest, FeatureStore(store), executor=executor, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cells").mkdir(exist_ok=True)
    audit.write(out)
    speakers = manifest["speaker"].astype(str).to_numpy()
    groups = manifest[spec.protocol.get("group", "speaker")].astype(str).to_numpy()
    if spec.task_type == "classification":
        classes = sorted(manifest[spec.targets[0]].unique())
        ys = {spec.targets[0]: np.searchsorted(classes, manifest[spec.targets[0]].to_numpy())}
    else:
        classes = []
        ys = {t: manifest[t].to_numpy(np.float64) for t in spec.targets}

    todo = [c for c in cells if not (out / "cells" / f"{c.digest(spec)}.json").exists()]
    done_n = len(cells) - len(todo)
    tasks = []
    corpora = manifest["corpus"].astype(str).to_numpy() if "corpus" in manifest else None
    for c in todo:
        if c.normalisation == "corpus" and (corpora is None or c.feature_set.sequences):
            raise SpecError(f"{c.label}: 'corpus' normalisation takes vector features of several corpora")
        inputs = _cell_inputs(data, c.feature_set, c.normalisation, speakers)
        check_sequence_lengths(spec, c, inputs)
        seqs = [g.sequences for g in _member_sets(c.feature_set)]
        pre = [_layer_steps(data, g, spec.seed) for g in _member_sets(c.feature_set)]
        stack = [m for _, m in c.feature_set.stack] or None
        for target, y in ys.items():
            for f in folds:
                tasks.append(
                    (
                        (c.label, target, f.name),
                        dict(
                            cell_key=f"{c.digest(spec)}|{target}",
                            fold=f,
                            inputs=inputs,
                            y=y,
                            groups=groups,
                            spec_models=spec.models,
                            task=spec.task_type,
                            model=c.model,
                            norm=c.normalisation,
                            balancing=spec.evaluation["balancing"],
                            inner_folds=spec.inner_folds(c.model),
                            seed=spec.seed,
                            sequences=seqs,
                            late=c.feature_set.late,
                            corpora=corpora,
                            pre=pre,
                            stack=stack,
                            inner_by_model={m: spec.inner_folds(m) for m in [*stack, c.model]}
                            if stack else None,
                        ),
                    )
                )
    pending: dict[str, list] = {}
    expected = len(ys) * len(folds)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="evaluate", unit="fold", disable=not progress, mininterval=1.0)
    # threads when every model fits in GIL-free native code (see ModelSpec.threads), else processes
    threads = all(spec.model_spec(c.model).threads
                  and all(spec.model_spec(m).threads for _, m in c.feature_set.stack) for c in todo)
    order = {task_id: i for i, (task_id, _) in enumerate(tasks)}
    by_key = {f"{c.digest(spec)}": c for c in todo}
    for task_id, r in executor.map(_run_fold, tasks, releases_gil=threads):
        bar.update(1)
        digest, target = r["cell"].split("|")
        pending.setdefault(digest, []).append((order[task_id], target, r))
        if len(pending[digest]) == expected:  # in task order, whatever order the folds finished in
            parts = [(t, r) for _, t, r in sorted(pending.pop(digest), key=lambda p: p[0])]
            _save_cell(out, spec, by_key[digest], parts, manifest, classes, protocol)
    bar.close()
    results_df = _assemble(out, spec, cells)
    _write_spec(out, spec, data, folds, protocol, seconds=time.perf_counter() - t0, reused=done_n)
    return results_df


def _save_cell(
    out: Path, spec: Spec, cell: Cell, parts: list, manifest: pd.DataFrame, classes: list, protocol
) -> None:
    """Compute a finished cell's metrics and write them atomically (json last = cell done)."""
    rows, preds, params = [], [], []
    base = {
        "feature_set": cell.feature_set.name,
        "model": cell.model,
        "normalisation": cell.normalisation,
        "protocol": _protocol_label(spec, protocol),
        "speaker_independent": protocol.speaker_independent,
    }
    by_target: dict[str, list] = {}
    for target, r in parts:
        by_target.setdefault(target, []).append(r)
    ev = spec.evaluation
    for (target, scope), rs in _scoped(by_target, base["protocol"]).items():
        sbase = {**base, "protocol": scope}
        rs.sort(key=lambda r: r["fold"])
        n = len(manifest)
        pooled_pred = np.empty(n, dtype=object if classes else float)
        for r in rs:
            test = r["test"]
            if classes:
                yt = np.asarray(manifest[target].iloc[test])
                yp = np.asarray(classes, dtype=object)[np.asarray(r["pred"], dtype=int)]
            else:
                yt = manifest[target].to_numpy(float)[test]
                yp = np.asarray(r["pred"], float)
            pooled_pred[test] = yp
            reg = M.CLASSIFICATION_METRICS if classes else M.REGRESSION_METRICS
            for name in ev["metrics"]:
                rows.append(
                    {
                        **sbase,
                        "fold": r["fold"],
                        "target": target,
                        "metric": name,
                        "value": reg.get(name)(yt, yp),
                    }
                )
            params.append(
                {**sbase, "fold": r["fold"], "target": target, "params": json.dumps(r["best"], default=str)}
            )
            p = pd.DataFrame(
                {
                    "id": manifest["id"].iloc[test].to_numpy(),
                    "fold": r["fold"],
                    "target": target,
                    "y_true": yt,
                    "y_pred": yp,
                }
            )
            if scope != base["protocol"]:  # one fit scored as several evaluations (cross-corpus matrix)
                p["protocol"] = scope
            if classes and r["proba"] is not None:
                for k, c in enumerate(classes):
                    p[f"p[{c}]"] = np.asarray(r["proba"])[:, k]
            preds.append(p)
        covered = np.flatnonzero(pd.notna(pooled_pred))
        yt_all = manifest[target].to_numpy()[covered]
        yp_all = pooled_pred[covered]
        if not classes:
            yt_all, yp_all = yt_all.astype(float), yp_all.astype(float)
        reg = M.CLASSIFICATION_METRICS if classes else M.REGRESSION_METRICS
        fold_vals = pd.DataFrame([r for r in rows if r["target"] == target and r["protocol"] == scope])
        for name in ev["metrics"]:
            v = fold_vals[fold_vals.metric == name]["value"]
            rows.append({**sbase, "fold": "mean", "target": target, "metric": name, "value": float(v.mean())})
            rows.append(
                {**sbase, "fold": "std", "target": target, "metric": name, "value": float(v.std(ddof=0))}
            )
            fn = reg.get(name)
            rows.append(
                {**sbase, "fold": "pooled", "target": target, "metric": name, "value": fn(yt_all, yp_all)}
            )
            if ev["bootstrap"]:
                lo, hi = M.bootstrap_ci(
                    fn, np.asarray(yt_all), np.asarray(yp_all), n=int(ev["bootstrap"]), seed=spec.seed
                )
                rows.append(
                    {**sbase, "fold": "pooled", "target": target, "metric": f"{name}_ci95_low", "value": lo}
                )
                rows.append(
                    {**sbase, "fold": "pooled", "target": target, "metric": f"{name}_ci95_high", "value": hi}
                )
        if classes:
            for k, v in M.per_class(np.asarray(yt_all), np.asarray(yp_all), classes).items():
                rows.append({**sbase, "fold": "pooled", "target": target, "metric": k, "value": v})
    digest = cell.digest(spec)
    pred_df = pd.concat(preds, ignore_index=True)
    for k in ("feature_set", "model", "normalisation"):
        pred_df.insert(0, k, base[k])
    pred_df["y_true"] = pred_df["y_true"].astype(str) if classes else pred_df["y_true"]
    pred_df["y_pred"] = pred_df["y_pred"].astype(str) if classes else pred_df["y_pred"].astype(float)
    pred_df.to_parquet(out / "cells" / f"{digest}.parquet", index=False)
    pd.DataFrame(params).to_csv(out / "cells" / f"{digest}.params.csv", index=False)
    tmp = out / "cells" / f".{digest}.json.tmp"
    # compute time: the folds' seconds summed (search, fits and predictions; not the wall time)
    seconds = round(sum(r.get("seconds", 0.0) for _, r in parts), 2)
    tmp.write_text(json.dumps({"cell": cell.label, "rows": rows, "fold_seconds": seconds}, default=float))
    os.replace(tmp, out / "cells" / f"{digest}.json")


def _scoped(by_target: dict[str, list], label: str) -> dict[tuple[str, str], list]:
    """Fold results per ``(target, scope)``: a fold with :attr:`Fold.scopes` is split into its scopes
    (its test rows, predictions and probabilities cut to each); other folds form the one scope ``label``."""
    out: dict[tuple[str, str], list] = {}
    for target, rs in by_target.items():
        for r in rs:
            scopes = r.get("scopes") or ()
            if not scopes:
                out.setdefault((target, label), []).append(r)
                continue
            for scope, positions in scopes:
                keep = np.isin(r["test"], positions)
                proba = None if r["proba"] is None else np.asarray(r["proba"])[keep]
                fold = r["fold"] if len(scopes) == 1 else scope
                out.setdefault((target, scope), []).append(
                    {**r, "fold": fold, "test": r["test"][keep], "pred": np.asarray(r["pred"])[keep],
                     "proba": proba})
    return out


def _protocol_label(spec: Spec, protocol) -> str:
    p = spec.protocol
    if p["name"] == "loso":
        label = f"leave-one-{p.get('group', 'speaker')}-out"
    elif p["name"] == "kfold":
        label = f"{p.get('k', 5)}-fold stratified (speaker-dependent)"
    elif p["name"] == "leave_one_corpus_out":
        label = f"leave-one-corpus-out ({', '.join(spec.corpora)})"
    elif p["name"] == "multi_corpus_loso":
        label = f"leave-one-speaker-out of the pooled corpora ({', '.join(spec.corpora)})"
    else:
        label = p["name"]
    return label


def _assemble(out: Path, spec: Spec, cells: list[Cell]) -> pd.DataFrame:
    rows, preds, params = [], [], []
    for c in cells:
        d = c.digest(spec)
        rows += json.loads((out / "cells" / f"{d}.json").read_text())["rows"]
        preds.append(pd.read_parquet(out / "cells" / f"{d}.parquet"))
        params.append(pd.read_csv(out / "cells" / f"{d}.params.csv"))
    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False, float_format="%.6g")
    pd.concat(preds, ignore_index=True).to_csv(out / "predictions.csv", index=False, float_format="%.6g")
    pd.concat(params, ignore_index=True).to_csv(out / "params.csv", index=False)
    return df


def _write_spec(
    out: Path,
    spec: Spec,
    data: FeatureData | StackedData,
    folds: list[Fold],
    protocol,
    *,
    seconds: float,
    reused: int,
) -> None:
    info = {
        "spec": spec.raw,
        "resolved": {
            "task": spec.task,
            "protocol": spec.protocol,
            "evaluation": spec.evaluation,
            "models": spec.models,
            "feature_sets": [fs.name for fs in spec.feature_sets],
            "extractors": {r.extractor.name: r.extractor.key() for r in data.requests()},
        },
        "seed": spec.seed,
        "spec_path": spec.path,
        "protocol_speaker_independent": protocol.speaker_independent,
        "folds": [{"name": f.name, "n_train": len(f.train), "n_test": len(f.test)} for f in folds],
        "n_utterances": len(data.manifest),
        "library_versions": library_versions(VERSIONED),
        "seconds": round(seconds, 2),
        "cells_reused": reused,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (out / "spec.json").write_text(json.dumps(info, indent=2, default=str))


def evaluate_table(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    *,
    model: str = "svm",
    normalisation: str = "speaker",
    protocol: str = "loso_speaker",
    seed: int = 0,
    grid: dict | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Evaluate one feature table (indexed by utterance id) without a spec or store.

    Returns ``{"uar", "accuracy", "macro_f1", "uar_folds"}`` (classification of ``label``);
    the protocol is ``loso_speaker`` (leave-one-speaker-out) or ``kfold``.
    """
    from featurekit.evaluation.models import CLASSIFIERS

    m = manifest.set_index("id", drop=False).loc[features.index]
    x = features.to_numpy(np.float32)
    speakers = m["speaker"].astype(str).to_numpy()
    if normalisation == "speaker":
        x = speaker_zscore(x, speakers)
    y_lab = m["label"].astype(str).to_numpy()
    classes = sorted(set(y_lab))
    y = np.searchsorted(classes, y_lab)
    pname = "loso" if protocol == "loso_speaker" else protocol
    folds = PROTOCOLS.get(pname).folds(m, group="speaker", seed=seed, y=y_lab)
    grid = grid or CLASSIFIERS.get(model).grid
    tasks = [(i, dict(model=model, x=x, y=y, speakers=speakers, fold=f, normalisation=normalisation,
                      grid=grid, seed=seed)) for i, f in enumerate(folds)]
    preds = dict((executor or executor_for(jobs=jobs)).map(_table_fold, tasks))
    pred = np.empty(len(y), dtype=int)
    per_fold = []
    for i, f in enumerate(folds):
        pred[f.test] = preds[i]
        per_fold.append(M.uar(y[f.test], preds[i]))
    return {
        "uar": M.uar(y, pred),
        "accuracy": M.accuracy(y, pred),
        "macro_f1": M.macro_f1(y, pred),
        "uar_folds": per_fold,
    }


def _table_fold(*, model: str, x: np.ndarray, y: np.ndarray, speakers: np.ndarray, fold: Fold,
                normalisation: str, grid: dict, seed: int) -> np.ndarray:
    """One fold of :func:`evaluate_table`: the test rows' predicted class indices."""
    from featurekit.evaluation.models import CLASSIFIERS

    r = fit_predict(
        CLASSIFIERS.get(model),
        x[fold.train],
        y[fold.train],
        speakers[fold.train],
        x[fold.test],
        task="classification",
        normalisation="global" if normalisation != "none" else "none",
        balancing="class_weight",
        grid=grid,
        params={},
        inner_folds=3,
        seed=seed,
        sequences=False,
        proba=False,
    )
    return r["pred"]

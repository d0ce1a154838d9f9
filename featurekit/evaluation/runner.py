"""Run an experiment spec: features -> folds x cells -> predictions -> tidy results.

Output directory::

    results.csv        feature_set, model, normalisation, protocol, speaker_independent, fold,
                       target, metric, value   (fold: a fold name, "pooled", "mean" or "std")
    predictions.csv    one row per utterance, cell and target (y_true, y_pred, class probabilities)
    params.csv         the hyperparameters chosen in every fold
    spec.json          the resolved spec, seeds, library versions, store tables used
    audit.json|.md     the design audit's findings (featurekit.audit), run before anything is fit
    cells/*.json|.parquet  finished cells (resume: a finished cell is not recomputed)
    cells/*.attribution.npz|.json, attribution.json   per-cell attribution and its index (specs with
                       [attribution]; featurekit.evaluation.attribution)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from featurekit.audio import AudioError, AudioOptions, load_audio
from featurekit.audit import AuditError, audit_experiment
from featurekit.corpora.base import segment_bounds
from featurekit.evaluation import attribution as A
from featurekit.evaluation.cells import VERSIONED, Cell, assemble_results, plan_cells, save_cell, write_spec
from featurekit.evaluation.errors import DataError
from featurekit.evaluation.folds import run_fold as _run_fold
from featurekit.evaluation.manifests import (
    cross_corpus_manifest,
    experiment_manifest,
    load_corpus_for,
    make_folds,
    prepare_manifest,
)
from featurekit.evaluation.normalisation import speaker_zscore, speaker_zscore_sequences
from featurekit.evaluation.protocols import PROTOCOLS
from featurekit.evaluation.spec import FeatureSet, Member, Spec, SpecError
from featurekit.evaluation.table import evaluate_table
from featurekit.executor import Executor, SerialExecutor, executor_for
from featurekit.extraction import FeatureRequest, extract
from featurekit.extractors import make_extractor
from featurekit.featureset import parse_layer_selection
from featurekit.store import FeatureStore, align, feature_columns, nearest_frames, to_sequences

# Re-exported: where callers and tests have always imported them from (the runner's parts moved to
# cells, folds, manifests, table and errors).
__all__ = ["VERSIONED", "Cell", "DataError", "FeatureData", "FeatureStore", "StackedData",
           "check_sequence_lengths", "cross_corpus_manifest", "evaluate_table", "experiment_manifest",
           "load_corpus_for", "make_folds", "plan_cells", "prepare_manifest", "run"]


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
        self.corpus = corpus or spec.corpus_name
        self.extraction = None
        self._fingerprints: list[str | None] | None = None
        self._tables: dict[str, pd.DataFrame] = {}
        self._seqs: dict[str, np.ndarray] = {}
        self._waveforms: np.ndarray | None = None

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
        if any(fs.waveforms for fs in spec.feature_sets):  # every unreadable file named before any fit
            data.waveforms()
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
                if not m.table_kind.waveform:  # the conditioned audio is read, not extracted
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
            t = self._store_table(ext, m.kind).read()
            if m.table_kind.frame_level:
                self._tables[m.table] = t
            else:
                self._tables[m.table] = align(t, self.manifest, self.fingerprints)
        return self._tables[m.table]

    def _store_table(self, ext, kind: str):
        """The store table a member is read from (augmented copies: another table)."""
        return self.store.table(self.corpus, ext, kind, self.audio)

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

    def column_names(self, fs: FeatureSet) -> list[str]:
        """The feature names of a set's columns (vectors) or frame features (sequences)."""
        if not fs.sequences:
            return self.matrix(fs)[1]
        return [c for m in fs.members for c in feature_columns(self._table(m))]

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

    def waveforms(self) -> np.ndarray:
        """The manifest's utterances as the spec's ``[audio]`` conditions them for every extractor
        (:func:`featurekit.audio.load_audio`, segments included): an object array of 1-D float32
        signals in manifest order, read once and kept in memory, never written to the store. A
        :class:`DataError` lists the files that cannot be read."""
        if self._waveforms is None:
            out = np.empty(len(self.manifest), dtype=object)
            failures: dict[str, str] = {}
            bounds = segment_bounds(self.manifest)
            for i, (uid, path) in enumerate(zip(self.manifest["id"], self.manifest["path"])):
                try:
                    out[i] = load_audio(path, options=self.audio, start=bounds[i][0], end=bounds[i][1])
                except AudioError as err:
                    failures[str(uid)] = str(err)
            if failures:
                lines = "\n".join(f"  {k}: {v}" for k, v in list(failures.items())[:20])
                raise DataError(f"reading the audio failed for {len(failures)} file(s):\n{lines}")
            self._waveforms = out
        return self._waveforms


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

    def waveforms(self) -> np.ndarray:
        return np.concatenate([p.waveforms() for p in self.parts])

    def column_names(self, fs: FeatureSet) -> list[str]:
        return self.parts[0].column_names(fs)


def _select_layers(table: pd.DataFrame, layer: str) -> pd.DataFrame:
    from featurekit.extractors.ssl.layers import layer_numbers, select_layers

    selection = parse_layer_selection(layer)
    if selection.weighted and selection.layers is None:  # every layer: side by side, weighted in the model
        layers = sorted({n for v in layer_numbers(table).values() for n in v})
        return select_layers(table, layers)
    return select_layers(table, selection.selection)


def _cell_inputs(data: FeatureData, fs: FeatureSet, norm: str, speakers: np.ndarray):
    """The model input(s) of a cell: one matrix/sequence array, or a list for late fusion."""

    def one(f: FeatureSet):
        if f.waveforms:  # the spec allows raw audio unnormalised only (spec._check_waveform_models)
            return data.waveforms()
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

    if fs.sequences or not any(m.layer and parse_layer_selection(m.layer).weighted for m in fs.members):
        return ()
    found = layer_blocks(data.matrix(fs)[1])
    if found is None:
        raise SpecError(f"{fs.name}: @wsum needs at least two encoder layers in the stored features")
    return (("layers", LayerWeightedSum(found[0], found[1], seed=seed)),)


def _waveform_copies(spec: Spec, data, cells: list[Cell], folds: list, speakers: np.ndarray, *,
                     executor: Executor, progress: bool):
    """``cell -> Copies | None``: the augmented copies of the training utterances for the cells whose
    model has ``[augmentation.waveform]`` (:mod:`featurekit.evaluation.augmentation`)."""
    augmented = [c for c in cells if "waveform_augmentation" in spec.models[c.model]]
    if not augmented:
        return lambda cell: None
    from featurekit.augmentation import WaveformAugmentation
    from featurekit.evaluation.augmentation import AugmentedFeatureData, cell_copies, training_positions

    aug = WaveformAugmentation.from_resolved(spec.models[augmented[0].model]["waveform_augmentation"])
    sets = [g for c in augmented for g in _member_sets(c.feature_set)]
    copies = AugmentedFeatureData.load_copies(data, aug, training_positions(folds), sets, executor=executor,
                                              progress=progress)
    found = {id(c): cell_copies(data, copies, c.feature_set, c.normalisation, speakers,
                                _member_sets(c.feature_set)) for c in augmented}
    return lambda cell: found.get(id(cell))


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
    cross = spec.protocol_name == "cross_corpus"
    folds = make_folds(spec, manifest)
    protocol = PROTOCOLS.get(spec.protocol_name)
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
    groups = manifest[spec.group].astype(str).to_numpy()
    if spec.task_type == "classification":
        classes = sorted(manifest[spec.targets[0]].unique())
        ys = {spec.targets[0]: np.searchsorted(classes, manifest[spec.targets[0]].to_numpy())}
    else:
        classes = []
        ys = {t: manifest[t].to_numpy(np.float64) for t in spec.targets}

    todo = [c for c in cells if not (out / "cells" / f"{c.digest(spec)}.json").exists()]
    done_n = len(cells) - len(todo)
    copies_of = _waveform_copies(spec, data, todo, folds, speakers, executor=executor, progress=progress)
    tasks = []
    attribution_names: dict[str, list[str]] = {}
    corpora = manifest["corpus"].astype(str).to_numpy() if "corpus" in manifest else None
    for c in todo:
        if c.normalisation == "corpus" and (corpora is None or c.feature_set.sequences):
            raise SpecError(f"{c.label}: 'corpus' normalisation takes vector features of several corpora")
        inputs = _cell_inputs(data, c.feature_set, c.normalisation, speakers)
        check_sequence_lengths(spec, c, inputs)
        seqs = [g.sequences for g in _member_sets(c.feature_set)]
        pre = [_layer_steps(data, g, spec.seed) for g in _member_sets(c.feature_set)]
        stack = [m for _, m in c.feature_set.stack] or None
        attribution = A.fold_attribution(spec, c, len(classes))
        if attribution is not None:
            attribution_names[c.digest(spec)] = data.column_names(c.feature_set)
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
                            balancing=spec.balancing,
                            inner_folds=spec.inner_folds(c.model),
                            seed=spec.seed,
                            sequences=seqs,
                            late=c.feature_set.late,
                            corpora=corpora,
                            pre=pre,
                            stack=stack,
                            inner_by_model={m: spec.inner_folds(m) for m in [*stack, c.model]}
                            if stack else None,
                            attribution=attribution,
                            copies=copies_of(c),
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
            if digest in attribution_names:  # before the cell's json, which marks it done
                A.save_cell_attribution(out / "cells", digest, by_key[digest], parts, classes,
                                        attribution_names[digest])
            save_cell(out, spec, by_key[digest], parts, manifest, classes, protocol)
    bar.close()
    results_df = assemble_results(out, spec, cells)
    A.write_attribution_index(out, spec, cells)
    write_spec(out, spec, data, folds, protocol, seconds=time.perf_counter() - t0, reused=done_n)
    return results_df

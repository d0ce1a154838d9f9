"""Cells: their identity (a digest of what changes their numbers), planning them from a spec, and
their persistence in the output directory.

A finished cell is ``cells/<digest>.json`` (its metric rows; written last, atomically: the cell is
done), ``cells/<digest>.parquet`` (its predictions) and ``cells/<digest>.params.csv`` (the chosen
hyperparameters). :func:`assemble_results` joins the cells into ``results.csv``, ``predictions.csv``
and ``params.csv``; :func:`write_spec` writes ``spec.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from featurekit.evaluation import attribution as A
from featurekit.evaluation import metrics as M
from featurekit.evaluation.folds import FOLD_THREADS
from featurekit.evaluation.protocols import Fold
from featurekit.evaluation.spec import FeatureSet, Spec, SpecError
from featurekit.extractors.base import library_versions

if TYPE_CHECKING:  # pragma: no cover
    from featurekit.evaluation.runner import FeatureData, StackedData


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
                # attribution: only when it applies to this cell (other digests unchanged)
                **A.attribution_digest(spec, self),
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
    if "waveform_augmentation" in cfg:  # absent for other models: their digests unchanged
        out["waveform_augmentation"] = cfg["waveform_augmentation"]
    return out


def plan_cells(spec: Spec) -> list[Cell]:
    """Every (feature set, model, normalisation) cell the spec runs; a SpecError for a feature set
    that no model takes."""
    cells = []
    for fs in spec.feature_sets:
        if fs.stack:  # a stacked system is one cell per normalisation of its meta-learner
            meta = spec.models[fs.meta]
            if spec.task_type != "classification":
                raise SpecError(f"features.stacking: {fs.name}: stacking is for classification tasks")
            for norm in meta.get("normalisation", spec.normalisations):
                cells.append(Cell(fs, fs.meta, norm))
            continue
        for model, cfg in spec.models.items():
            ms = spec.model_spec(model)
            fits = ms.waveforms if fs.waveforms else ms.sequences if fs.sequences else ms.vectors
            if "sets" in cfg:
                if fs.name not in cfg["sets"]:
                    continue
                if not fits:
                    kind = "raw audio" if fs.waveforms else "LLD sequences" if fs.sequences else "vectors"
                    raise SpecError(
                        f"models.{model}.sets: {fs.name!r} is {kind}, which {model!r} does not take"
                    )
            elif not fits:
                continue
            for norm in cfg.get("normalisation", spec.normalisations):
                cells.append(Cell(fs, model, norm))
    for fs in spec.feature_sets:
        if not any(c.feature_set is fs for c in cells):
            raise SpecError(
                f"features.sets: no model in the spec takes {fs.name!r}"
                f"{' (LLD sequences need lstm, gru, conv1d or torch_mlp)' if fs.sequences else ''}"
            )
    return cells


def save_cell(
    out: Path, spec: Spec, cell: Cell, parts: list, manifest: pd.DataFrame, classes: list, protocol
) -> None:
    """Compute a finished cell's metrics and write them atomically (json last = cell done)."""
    rows, preds, params = [], [], []
    base = {
        "feature_set": cell.feature_set.name,
        "model": cell.model,
        "normalisation": cell.normalisation,
        "protocol": protocol_label(spec, protocol),
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


def protocol_label(spec: Spec, protocol) -> str:
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


def assemble_results(out: Path, spec: Spec, cells: list[Cell]) -> pd.DataFrame:
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


def write_spec(
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
        "fold_threads": FOLD_THREADS,  # BLAS / OpenMP threads per fold (featurekit.evaluation.folds)
        "seconds": round(seconds, 2),
        "cells_reused": reused,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (out / "spec.json").write_text(json.dumps(info, indent=2, default=str))

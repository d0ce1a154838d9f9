"""Attribution of the evaluated models, computed inside each outer fold on its test utterances.

Opt-in with an ``[attribution]`` spec section (see the README, "Attribution")::

    [attribution]
    methods = ["saliency", "integrated_gradients", "permutation"]
    time_bins = 32      # normalised time axis of the gradient maps
    ig_steps = 32       # integrated-gradients steps
    n_repeats = 5       # permutation repeats
    top_k = 10          # features listed / drawn in the report
    models = ["cnn"]    # optional: only these [models.NAME] entries (default: every applicable one)

Methods
-------
``saliency`` and ``integrated_gradients`` (torch heads, :class:`featurekit.heads.TorchClassifier`)
    Captum's :class:`~captum.attr.Saliency` (``|d logit / d input|``, per standard deviation of each
    input feature, i.e. with respect to the head's z-scored input, so that bands or features of
    different scales compare) and
    :class:`~captum.attr.IntegratedGradients` (baseline: the training mean of every feature, i.e.
    zero after the head's own standardisation; the magnitude ``|IG|`` is kept) with respect to the
    raw input frames ``(T, F)``, e.g. mel band x time. Each test utterance's map is cut to its
    valid frames (padding and frames beyond ``max_len`` / ``fixed_len`` carry no gradient and are
    dropped), resampled to ``time_bins`` bins of a normalised time axis (0 = start, 1 = end), scaled
    to unit total mass (so every utterance and every fold's model weighs the same) and summed per
    class. Only the per-class sums and counts are kept (no per-utterance maps): the cell's map of
    class k is the mean over every test utterance of class k in all folds, with its band profile
    (the mass per feature / band, summed over time).
``permutation`` (any model on vector features, e.g. HSF functionals with svm, logreg, rf, mlp, xgb)
    :func:`sklearn.inspection.permutation_importance` of the fold's fitted pipeline on the fold's
    test data, scored by UAR (balanced accuracy), ``n_repeats`` seeded shuffles per feature: the
    drop in UAR when a feature column is shuffled. The cell keeps every fold's mean drop per feature;
    the report shows their mean and spread across folds.

Which labels are read, and when
-------------------------------
Every method runs after the fold's fit, on the fold's test utterances only, with that fold's fitted
model; nothing here reaches a fit, a search or a model selection. The per-class maps are taken with
respect to each test utterance's TRUE class (the target logit of Captum), and permutation importance
scores UAR against the true labels: that reads test labels at analysis time, after the fit, exactly as
the fold's metrics do, which is legitimate. Attribution with respect to the predicted class would
mix in the model's errors; the true class shows what the model uses for each emotion.

Library choice: Captum (maintained by the PyTorch team) for the torch heads; scikit-learn's
model-agnostic permutation importance for the classical pipelines (no extra dependency, works for
any estimator and scorer) rather than SHAP, which is heavy and slow on kernel SVMs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ATTRIBUTION_INDEX",
    "GRADIENT_METHODS",
    "AttributionMethod",
    "AttributionOptions",
    "attribute_fold",
    "attribution_digest",
    "fold_attribution",
    "gradient_maps",
    "load_cell_attribution",
    "permutation_scores",
    "resample_time",
    "save_cell_attribution",
    "write_attribution_index",
]

#: The run's index of the cells with attribution (in the results directory).
ATTRIBUTION_INDEX = "attribution.json"


class AttributionMethod(str, Enum):
    """An attribution method a spec can name in ``[attribution] methods``."""

    SALIENCY = "saliency"
    INTEGRATED_GRADIENTS = "integrated_gradients"
    PERMUTATION = "permutation"


#: The methods that need a torch head's gradients.
GRADIENT_METHODS = (AttributionMethod.SALIENCY, AttributionMethod.INTEGRATED_GRADIENTS)

#: The spec's method names, in order.
METHOD_NAMES = tuple(m.value for m in AttributionMethod)


@dataclass(frozen=True)
class AttributionOptions:
    """The resolved ``[attribution]`` section (see the module docstring for the keys)."""

    methods: tuple[AttributionMethod, ...]
    time_bins: int = 32
    ig_steps: int = 32
    n_repeats: int = 5
    top_k: int = 10
    models: tuple[str, ...] | None = None

    @classmethod
    def from_section(cls, section: dict | None) -> AttributionOptions | None:
        """Options from the spec's raw ``[attribution]`` table (None when absent)."""
        if not section:
            return None
        models = section.get("models")
        return cls(methods=tuple(AttributionMethod(m) for m in section["methods"]),
                   time_bins=int(section.get("time_bins", 32)), ig_steps=int(section.get("ig_steps", 32)),
                   n_repeats=int(section.get("n_repeats", 5)), top_k=int(section.get("top_k", 10)),
                   models=None if models is None else tuple(models))

    @classmethod
    def from_spec(cls, spec: Any) -> AttributionOptions | None:
        return cls.from_section(spec.raw.get("attribution"))


def _is_torch_head(model_spec: Any) -> bool:
    """Registered torch heads of :mod:`featurekit.heads` (take ``groups=``, need the ``deep`` extra)."""
    return bool(model_spec.groups) and model_spec.extra == "deep"


def applicable_methods(options: AttributionOptions | None, *, model: str, model_spec: Any, sequences: bool,
                       fused: bool) -> tuple[AttributionMethod, ...]:
    """The requested methods that apply to one cell (a model on a feature set).

    Gradient methods need a torch head; permutation needs vector inputs (a column per feature).
    Late-fusion and stacked cells get none (several models per fold).
    """
    if options is None or fused or (options.models is not None and model not in options.models):
        return ()
    out = []
    for m in options.methods:
        if m in GRADIENT_METHODS and _is_torch_head(model_spec):
            out.append(m)
        elif m is AttributionMethod.PERMUTATION and not sequences and model_spec.vectors:
            out.append(m)
    return tuple(out)


def cell_methods(spec: Any, cell: Any) -> tuple[AttributionMethod, ...]:
    """:func:`applicable_methods` of a runner cell under its spec."""
    options = AttributionOptions.from_spec(spec)
    if options is None:  # no [attribution]: nothing is looked up
        return ()
    fs = cell.feature_set
    return applicable_methods(options, model=cell.model,
                              model_spec=spec.model_spec(cell.model), sequences=fs.sequences,
                              fused=bool(fs.late or fs.stack))


def attribution_digest(spec: Any, cell: Any) -> dict:
    """What attribution adds to a cell's digest: nothing when none applies (the digest is unchanged),
    else the methods and the options that change their numbers (``top_k`` is display only)."""
    methods = cell_methods(spec, cell)
    if not methods:
        return {}
    o = AttributionOptions.from_spec(spec)
    part: dict[str, Any] = {"methods": [m.value for m in methods]}
    if any(m in GRADIENT_METHODS for m in methods):
        part["time_bins"] = o.time_bins
    if AttributionMethod.INTEGRATED_GRADIENTS in methods:
        part["ig_steps"] = o.ig_steps
    if AttributionMethod.PERMUTATION in methods:
        part["n_repeats"] = o.n_repeats
    return {"attribution": part}


def fold_attribution(spec: Any, cell: Any, n_classes: int) -> dict | None:
    """The keyword arguments of :func:`attribute_fold` for one cell's folds (picklable), or None."""
    methods = cell_methods(spec, cell)
    if not methods:
        return None
    o = AttributionOptions.from_spec(spec)
    return {"methods": [m.value for m in methods], "time_bins": o.time_bins, "ig_steps": o.ig_steps,
            "n_repeats": o.n_repeats, "n_classes": int(n_classes)}


# -- resampling -----------------------------------------------------------------------------------

def resample_time(values: np.ndarray, *, bins: int) -> np.ndarray:
    """Resample ``(F, T)`` to ``(F, bins)`` on a normalised time axis.

    Frame ``t`` falls into bin ``floor(t * bins / T)``; a bin is the mean of its frames. With fewer
    frames than bins, an empty bin takes the frame under its centre (nearest neighbour).

    Parameters
    ----------
    values
        A map ``(F, T)``, ``T >= 1``.
    bins
        Number of time bins.

    Returns
    -------
    numpy.ndarray
        ``(F, bins)`` float64.
    """
    values = np.asarray(values, dtype=np.float64)
    n_frames = values.shape[1]
    if n_frames < 1 or bins < 1:
        raise ValueError(f"resample_time needs at least one frame and one bin, got {n_frames} and {bins}")
    which = (np.arange(n_frames) * bins) // n_frames
    sums = np.zeros((values.shape[0], bins))
    np.add.at(sums.T, which, values.T)
    counts = np.bincount(which, minlength=bins)
    out = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        out[:, empty] = values[:, np.minimum(((empty + 0.5) * n_frames / bins).astype(int), n_frames - 1)]
    return out


# -- gradient maps (torch heads) ------------------------------------------------------------------

_BATCH_FRAMES = 1 << 12  # padded frames per attribution batch (IG: per step)


def _standardisation(net: Any) -> tuple[Any, Any]:
    """The network's input z-scoring ``(mean, scale)``; a seed ensemble: the average over its members
    (each standardises with the training part of its own early-stopping split)."""
    import torch

    members = list(net.members) if hasattr(net, "members") else [net]
    return tuple(torch.stack([getattr(m, name) for m in members]).mean(0) for name in ("x_mean", "x_scale"))


def gradient_maps(head: Any, X: Any, y: np.ndarray, *, methods: Sequence[str], n_classes: int,
                  time_bins: int = 32, ig_steps: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """Per-class sums of saliency / integrated-gradients maps of a fitted torch classifier.

    Parameters
    ----------
    head
        A fitted :class:`featurekit.heads.TorchClassifier`.
    X
        Its input: frame sequences ``(T_i, F)`` (or vectors ``(n, F)``: one time bin).
    y
        The true class of each item, as in the ``y`` the head was fitted on (the attribution target).
    methods
        ``"saliency"`` and/or ``"integrated_gradients"``.
    n_classes
        Length of the class axis of the sums (``y`` values are class indices ``0 .. n_classes-1``).
    time_bins, ig_steps
        See the module docstring.

    Returns
    -------
    dict
        Per method: ``sum`` ``(n_classes, F, time_bins)`` (the unit-mass maps summed per class),
        ``profile`` ``(n_classes, F)`` (their mass per feature, summed) and ``count`` ``(n_classes,)``.
    """
    import torch

    from featurekit.extras import import_optional
    from featurekit.heads.data import length_chunks
    from featurekit.heads.estimators import _torch_threads

    attr = import_optional("captum.attr", "deep", "saliency / integrated-gradients attribution")
    y = np.asarray(y)
    data = head._validate_X_predict(X)
    target_index = np.searchsorted(head.classes_, y)
    if (target_index >= len(head.classes_)).any() or (head.classes_[np.minimum(
            target_index, len(head.classes_) - 1)] != y).any():
        raise ValueError("attribution: a test label is not among the classes the model was fitted on")
    bins = 1 if data.vectors is not None else int(time_bins)
    n_features = data.n_features
    out = {m: {"sum": np.zeros((n_classes, n_features, bins)), "profile": np.zeros((n_classes, n_features)),
               "count": np.zeros(n_classes, dtype=np.int64)} for m in methods}
    net = head.model_
    device = torch.device(head.device_)
    net.eval()
    mean, scale = (v.to(device).float() for v in _standardisation(net))

    def forward(x, lengths):
        return net(x, lengths)

    explainers = {m: (attr.Saliency(forward) if m == AttributionMethod.SALIENCY.value
                      else attr.IntegratedGradients(forward)) for m in methods}
    cudnn = torch.backends.cudnn.flags(enabled=False)  # cuDNN RNNs have no backward in eval mode
    with cudnn, _torch_threads(head.n_threads):
        for idx in length_chunks(data.lengths, _BATCH_FRAMES):
            x, lengths = data.batch(idx, device)
            x = x.float().requires_grad_(True)
            target = torch.as_tensor(target_index[idx], device=device)
            for m, explainer in explainers.items():
                if m == AttributionMethod.SALIENCY.value:
                    a = explainer.attribute(x, target=target, abs=True, additional_forward_args=(lengths,))
                    a = a * scale  # per standard deviation of each feature (the head's z-scoring)
                else:
                    base = mean.expand_as(x).contiguous()
                    a = explainer.attribute(x, baselines=base, target=target, n_steps=int(ig_steps),
                                            additional_forward_args=(lengths,),
                                            internal_batch_size=len(idx)).abs()
                a = a.detach().cpu().numpy()
                for row, item in enumerate(idx):
                    k = int(y[item])
                    one = resample_time(a[row, :int(data.lengths[item])].T, bins=bins)
                    total = one.sum()
                    if total > 0:
                        one /= total
                    out[m]["sum"][k] += one
                    out[m]["profile"][k] += one.sum(axis=1)
                    out[m]["count"][k] += 1
    return out


# -- permutation importance (any model on vectors) --------------------------------------------------

def permutation_scores(model: Any, X: np.ndarray, y: np.ndarray, *, n_repeats: int = 5,
                       seed: int = 0) -> dict[str, np.ndarray | float]:
    """Permutation importance of a fitted pipeline on one test fold, scored by UAR.

    Returns
    -------
    dict
        ``mean`` and ``std`` ``(F,)``: the UAR drop per feature over the ``n_repeats`` shuffles, and
        ``baseline``: the fold's UAR without shuffling.
    """
    from sklearn.inspection import permutation_importance

    from featurekit.evaluation.pipeline import _scorer

    scorer = _scorer("classification")
    r = permutation_importance(model, X, y, scoring=scorer, n_repeats=int(n_repeats), random_state=seed,
                               n_jobs=1)
    return {"mean": np.asarray(r.importances_mean, dtype=np.float64),
            "std": np.asarray(r.importances_std, dtype=np.float64), "baseline": float(scorer(model, X, y))}


def _torch_classifier(model: Any) -> tuple[Any, Any]:
    """``(head, preprocessing)``: the fitted pipeline's final TorchClassifier and the steps before it
    (None when the pipeline is the head alone); ``(None, None)`` for any other model."""
    from sklearn.pipeline import Pipeline

    final = model[-1] if isinstance(model, Pipeline) else model
    try:
        from featurekit.heads import TorchClassifier
    except ImportError:  # pragma: no cover - no torch: no torch head was fitted either
        return None, None
    if not isinstance(final, TorchClassifier):
        return None, None
    pre = model[:-1] if isinstance(model, Pipeline) and len(model) > 1 else None
    return final, pre


def attribute_fold(model: Any, x_test: Any, y_test: np.ndarray, *, methods: Sequence[str], n_classes: int,
                   time_bins: int = 32, ig_steps: int = 32, n_repeats: int = 5, seed: int = 0) -> dict:
    """Attribution of one fold's fitted ``model`` on the fold's test data (after the fit).

    ``y_test`` holds the test utterances' true class indices (see the module docstring for why
    that is legitimate). Returns one entry per method (see :func:`gradient_maps` and
    :func:`permutation_scores`), and ``skipped``: method -> why it could not run on this model.
    """
    out: dict[str, Any] = {"skipped": {}, "n_test": int(len(y_test))}
    grads = [m for m in methods if m in {g.value for g in GRADIENT_METHODS}]
    if grads:
        head, pre = _torch_classifier(model)
        if head is None:
            out["skipped"].update({m: f"{type(model).__name__} is not a torch classifier" for m in grads})
        else:
            x = x_test if pre is None else pre.transform(x_test)
            out.update(gradient_maps(head, x, y_test, methods=grads, n_classes=n_classes,
                                     time_bins=time_bins, ig_steps=ig_steps))
    if AttributionMethod.PERMUTATION.value in methods:
        out[AttributionMethod.PERMUTATION.value] = permutation_scores(model, x_test, y_test,
                                                                      n_repeats=n_repeats, seed=seed)
    return out


# -- persistence ------------------------------------------------------------------------------------

def save_cell_attribution(cells_dir: Path, digest: str, cell: Any, parts: list, classes: list,
                          feature_names: list[str]) -> Path | None:
    """Aggregate a finished cell's fold attributions and write ``DIGEST.attribution.npz`` and
    ``DIGEST.attribution.json`` beside its other outputs (None: the cell has none).

    ``parts`` are the runner's ``(target, fold result)`` pairs; a fold result's ``attribution``
    holds what :func:`attribute_fold` returned.
    """
    folds = sorted((r for _, r in parts if r.get("attribution")), key=lambda r: str(r["fold"]))
    if not folds:
        return None
    arrays: dict[str, np.ndarray] = {}
    methods: list[str] = []
    skipped: dict[str, list[str]] = {}
    for r in folds:
        for m, why in r["attribution"]["skipped"].items():
            skipped.setdefault(m, []).append(f"{r['fold']}: {why}")
    for m in (g.value for g in GRADIENT_METHODS):
        have = [r["attribution"][m] for r in folds if m in r["attribution"]]
        if not have:
            continue
        methods.append(m)
        count = np.sum([h["count"] for h in have], axis=0)
        denom = np.maximum(count, 1)
        arrays[f"{m}_maps"] = np.sum([h["sum"] for h in have], axis=0) / denom[:, None, None]
        arrays[f"{m}_profile"] = np.sum([h["profile"] for h in have], axis=0) / denom[:, None]
        arrays[f"{m}_count"] = count
    perm = AttributionMethod.PERMUTATION.value
    have_perm = [r for r in folds if perm in r["attribution"]]
    if have_perm:
        methods.append(perm)
        arrays["permutation_folds"] = np.stack([r["attribution"][perm]["mean"] for r in have_perm])
        arrays["permutation_repeat_std"] = np.stack([r["attribution"][perm]["std"] for r in have_perm])
        arrays["permutation_baseline"] = np.array([r["attribution"][perm]["baseline"] for r in have_perm])
    npz = cells_dir / f"{digest}.attribution.npz"
    tmp = cells_dir / f".{digest}.attribution.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, npz)
    meta = {"feature_set": cell.feature_set.name, "model": cell.model, "normalisation": cell.normalisation,
            "methods": methods, "classes": [str(c) for c in classes], "feature_names": list(feature_names),
            "folds": [str(r["fold"]) for r in folds],
            "permutation_folds": [str(r["fold"]) for r in have_perm], "skipped": skipped,
            "n_test": int(sum(r["attribution"]["n_test"] for r in folds))}
    path = cells_dir / f"{digest}.attribution.json"
    path.write_text(json.dumps(meta))
    return path


def write_attribution_index(out: Path, spec: Any, cells: list) -> Path | None:
    """Write ``attribution.json``: the run's cells with attribution (system -> cell files), so the
    report reads this run's cells only. Nothing is written when no cell has attribution."""
    entries = []
    for c in cells:
        digest = c.digest(spec)
        if (out / "cells" / f"{digest}.attribution.json").is_file():
            entries.append({"feature_set": c.feature_set.name, "model": c.model,
                            "normalisation": c.normalisation, "cell": f"cells/{digest}"})
    path = out / ATTRIBUTION_INDEX
    if not entries:
        path.unlink(missing_ok=True)
        return None
    options = AttributionOptions.from_spec(spec)
    path.write_text(json.dumps({"top_k": options.top_k if options else 10, "cells": entries}, indent=2))
    return path


@dataclass
class CellAttribution:
    """One system's stored attribution (see :func:`save_cell_attribution`)."""

    feature_set: str
    model: str
    normalisation: str
    methods: list[str]
    classes: list[str]
    feature_names: list[str]
    arrays: dict[str, np.ndarray]
    folds: list[str]

    def permutation(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Mean and std across folds of the UAR drop per feature (None: not computed)."""
        folds = self.arrays.get("permutation_folds")
        if folds is None:
            return None
        return folds.mean(axis=0), folds.std(axis=0)


def load_cell_attribution(results_dir: str | os.PathLike) -> tuple[list[CellAttribution], int]:
    """The attribution of a results directory's cells (its ``attribution.json``) and its ``top_k``;
    ``([], 10)`` when it has none."""
    results_dir = Path(results_dir)
    index = results_dir / ATTRIBUTION_INDEX
    if not index.is_file():
        return [], 10
    where = index
    try:
        doc = json.loads(index.read_text())
        out = []
        for e in doc["cells"]:
            stem = results_dir / e["cell"]
            where = stem.with_name(stem.name + ".attribution.json")
            meta = json.loads(where.read_text())
            where = stem.with_name(stem.name + ".attribution.npz")
            with np.load(where) as z:
                arrays = {k: z[k] for k in z.files}
            out.append(CellAttribution(meta["feature_set"], meta["model"], meta["normalisation"],
                                       meta["methods"], meta["classes"], meta["feature_names"], arrays,
                                       meta["folds"]))
        return out, int(doc.get("top_k", 10))
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: unreadable attribution ({type(err).__name__}: {err}); rerun the "
                         f"evaluation or delete {index} to report without attribution") from None

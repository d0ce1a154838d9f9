"""Comparison tables from ``featurekit evaluate`` results directories.

A results directory holds ``results.csv`` (tidy metrics), ``predictions.csv`` and ``spec.json``
(see :mod:`featurekit.evaluation.runner`). :func:`load_experiments` reads one or several such
directories, concatenates them and splits the rows into *experiments*: results that share the
corpus (and its options), the task and the protocol are comparable and land in one experiment,
whatever directory they came from; different corpora or tasks (say ``emodb`` and
``emodb_listening``) become separate experiments, each with its own tables.

Feature-set names (``EXTRACTOR[.KIND][@LAYER]``, early fusion ``a+b``, late fusion
``late(a|b)``, stacking ``stack(a:M|b:M)->META``; :mod:`featurekit.featureset`) are parsed by
:func:`parse_feature_set_name` into a *group* (the extractor, or ``fusion``) and a *variant*
(``native``, ``HSF1`` = ``mean_std``, ``HSF2`` = ``mean_std_silence``, ``stats``, ``LLD`` = frame
sequences, ``layer N``), so that the
functionals of the same low-level descriptors sit next to each other in every table.

Tables are :class:`Table` objects: display strings plus a mask of the cells to emphasise (the
best value of each column); :mod:`featurekit.report.formats` renders them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from featurekit.featureset import FeatureSet, FeatureSetError, LateFusion, TableKind, default_kind, parse_name
from featurekit.report.names import EXTRACTOR_NAMES, DisplayNames, declared_systems
from featurekit.report.significance import ALPHA, MIN_FOLDS, compare_to_best

SUMMARY_FOLDS = ("mean", "std", "pooled")
KIND_LABELS = {TableKind.NATIVE: "native", TableKind.MEAN_STD: "HSF1", TableKind.MEAN_STD_SILENCE: "HSF2",
               TableKind.STATS: "stats", TableKind.LLD: "LLD"}
KIND_ORDER = {k: i for i, k in enumerate(KIND_LABELS)}
VARIANT_LEGEND = ("native = the extractor's own functionals; HSF1 = mean_std (mean and std of each LLD); "
                  "HSF2 = mean_std_silence (HSF1 plus pause/silence features); stats = extended "
                  "statistics (extremes, moments, percentiles, slope); LLD = frame-level sequences "
                  "(sequence models); layer N = encoder layer N (negative: counted from the last)")
FUSION = "fusion"
PM = "\u00b1"  # plus-minus sign
DASH = "\u2014"  # em dash: a missing cell
# primary metrics in order of preference, and whether higher is better
PRIMARY = {"classification": (("uar", True), ("macro_f1", True), ("accuracy", True)),
           "regression": (("ccc", True), ("pearson", True), ("mae", False))}
METRIC_LABELS = {"uar": "UAR", "macro_f1": "macro-F1", "accuracy": "accuracy", "ccc": "CCC",
                 "pearson": "Pearson r", "mae": "MAE"}
KEY_COLUMNS = ["feature_set", "model", "normalisation"]
BEST_MARK = "\u2020"  # dagger: the overall best system
SIMILAR_MARK = "\u2021"  # double dagger: not significantly worse than the best
DECLARED_MARK = "\u00a7"  # section sign: a system declared in the spec before its run
MAX_TABLE_COLUMNS = 6  # value columns of one main table (more: split by normalisation, then by models)


class ReportError(ValueError):
    """A results directory is missing or unusable (the message names the file)."""


# -- feature-set names ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSetInfo:
    """How a feature-set name is shown and ordered in the tables.

    Attributes
    ----------
    name
        The feature-set name as in ``results.csv``.
    group
        The extractor (``mfcc``, ``egemaps``, ...) or ``"fusion"`` for early and late fusion and stacking
        (a name that is no feature-set name: the name itself).
    variant
        ``native``, ``HSF1``, ``HSF2``, ``stats``, ``LLD``, ``layer N`` (with the kind's label in
        front when it is not the extractor's default, e.g. ``LLD layer 3``), ``early``, ``late`` or
        ``stack`` (``""`` for a name that is no feature-set name).
    extractor
        The extractor name (``""`` for fusion).
    kind
        The table kind (``native``, ``mean_std``, ...; ``""`` for fusion).
    layer
        The ``@LAYER`` text, or ``None``.
    """

    name: str
    group: str
    variant: str
    extractor: str = ""
    kind: str = ""
    layer: str | None = None

    @property
    def order(self) -> tuple:
        """Sort key inside a group: kinds in KIND_LABELS order, then layers in layer order."""
        if self.group == FUSION:
            return (0 if self.variant == "early" else 1, 0, (), self.name)
        return (0 if self.layer is None else 1, KIND_ORDER.get(self.kind, len(KIND_ORDER)),
                layer_sort_key(self.layer), self.name)


@cache
def _default_kind(extractor: str) -> str:
    """``native`` for extractors with native functionals, ``mean_std`` for the others."""
    try:
        from featurekit.extractors import EXTRACTORS

        return default_kind(EXTRACTORS.get(extractor)).value
    except Exception:  # an unknown extractor (or one whose module is unavailable): the spec's default
        return TableKind.NATIVE.value


def layer_sort_key(layer: str | None) -> tuple:
    """Layers ``0, 1, 2, ...``, then ``-3, -2, -1`` (counted from the last), then ``mean`` and lists."""
    if layer is None:
        return ()
    try:
        n = int(layer)
    except ValueError:
        return (2, 0, layer)
    return (0, n, "") if n >= 0 else (1, n, "")


def parse_feature_set_name(name: str) -> FeatureSetInfo:
    """Group and variant of a feature-set name (see :class:`FeatureSetInfo`).

    Parameters
    ----------
    name
        ``EXTRACTOR[.KIND][@LAYER]``, ``a+b`` (early fusion), ``late(a|b|...)`` (late fusion) or
        ``stack(a:M|b:M)->META`` (stacking), read by :func:`featurekit.featureset.parse_name`; a name
        it does not read is a group of its own.

    Returns
    -------
    FeatureSetInfo
    """
    name = str(name).strip()
    try:
        parsed = parse_name(name)
    except FeatureSetError:  # not a feature-set name (e.g. of another tool): a group of its own
        return FeatureSetInfo(name, name, "")
    if not isinstance(parsed, FeatureSet):
        return FeatureSetInfo(name, FUSION, "late" if isinstance(parsed, LateFusion) else "stack")
    if len(parsed.members) > 1:
        return FeatureSetInfo(name, FUSION, "early")
    table = parsed.members[0]
    extractor, layer = table.extractor, None if table.layer is None else str(table.layer)
    default = _default_kind(extractor)
    kind = default if table.kind is None else table.kind.value
    label = KIND_LABELS.get(kind, kind)
    if layer:
        variant = f"layer {layer}" if kind == default else f"{label} layer {layer}"
    else:
        variant = label
    return FeatureSetInfo(name, extractor, variant, extractor, kind, layer)


# -- loading -------------------------------------------------------------------------------------
@dataclass
class Experiment:
    """Comparable results (same corpus, task and protocol), possibly from several directories.

    Attributes
    ----------
    key
        File-name-safe identifier (used in table and figure names).
    title
        Heading text, e.g. ``"emodb: classification of label (7 classes)"``.
    task_type
        ``classification`` or ``regression``.
    targets
        Target columns (``["label"]`` for classification).
    protocol
        The protocol label from ``results.csv`` (e.g. ``leave-one-speaker-out``).
    speaker_independent
        ``False`` when the protocol lets speakers occur in both training and test folds.
    results
        The tidy rows of ``results.csv`` (all sources), with a ``source`` column.
    predictions
        The rows of ``predictions.csv`` (``None`` when no source has one).
    sources
        The results directories.
    specs
        Their ``spec.json`` documents (``{}`` when absent).
    """

    key: str
    title: str
    task_type: str
    targets: list[str]
    protocol: str
    speaker_independent: bool
    results: pd.DataFrame
    predictions: pd.DataFrame | None
    sources: list[Path] = field(default_factory=list)
    specs: list[dict] = field(default_factory=list)

    @cached_property
    def names(self) -> DisplayNames:
        """Display names (the specs' ``[report] display_names`` over the defaults)."""
        return DisplayNames.from_specs(self.specs)

    @cached_property
    def declared(self) -> list[tuple[str, str, str]]:
        """Systems ``(feature_set, model, normalisation)`` the specs declared (``[report] declared``)."""
        return declared_systems(self.specs)

    @property
    def n_systems(self) -> int:
        """How many systems (feature set x model x normalisation) the experiment compares."""
        return len(self.results[KEY_COLUMNS].drop_duplicates())

    @cached_property
    def significance(self) -> pd.DataFrame:
        """The best system against every other one (see :func:`significance_frame`)."""
        return significance_frame(self)

    @property
    def primary(self) -> tuple[str, bool]:
        """``(metric, higher_is_better)``: UAR for classification, CCC for regression when present."""
        have = set(self.results["metric"])
        for metric, higher in PRIMARY[self.task_type]:
            if metric in have:
                return metric, higher
        raise ReportError(f"{self.title}: results.csv holds none of the metrics "
                          f"{[m for m, _ in PRIMARY[self.task_type]]}")

    @property
    def folds(self) -> list[str]:
        """The fold names (without ``mean``/``std``/``pooled``)."""
        return sorted(set(self.results["fold"].astype(str)) - set(SUMMARY_FOLDS))

    @property
    def classes(self) -> list[str]:
        """Class labels (from the per-class metrics, else the predictions); ``[]`` for regression."""
        if self.task_type != "classification":
            return []
        found = {m[len("recall["):-1] for m in self.results["metric"].astype(str)
                 if m.startswith("recall[") and m.endswith("]")}
        if not found and self.predictions is not None:
            found = set(self.predictions["y_true"].astype(str))
        return sorted(found)

    @property
    def protocol_text(self) -> str:
        """The protocol for captions, with a SPEAKER-DEPENDENT warning where it applies."""
        kind = "speaker-independent" if self.speaker_independent else "speaker-DEPENDENT"
        text = f"Protocol: {self.protocol}" + ("" if kind.lower() in self.protocol.lower() else f" ({kind})")
        if not self.speaker_independent:
            text += f". {speaker_dependent_warning()}"
        return text


def speaker_dependent_warning() -> str:
    """The sentence shown with every table of a speaker-dependent experiment."""
    return ("WARNING: speaker-DEPENDENT protocol: the same speakers occur in training and test folds, "
            "so these scores overestimate performance on unseen speakers")


def _read_dir(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: no such results directory")
    res_path = path / "results.csv"
    if not res_path.is_file():
        raise ReportError(f"{res_path}: not found (is {path} a directory written by `featurekit evaluate`?)")
    results = pd.read_csv(res_path, dtype={"fold": str, "target": str, "feature_set": str, "model": str,
                                           "normalisation": str, "protocol": str})
    missing = {"feature_set", "model", "normalisation", "fold", "target", "metric", "value"} - set(results)
    if missing:
        raise ReportError(f"{res_path}: missing column(s) {sorted(missing)}")
    if "protocol" not in results:
        results["protocol"] = "unknown protocol"
    if "speaker_independent" not in results:
        results["speaker_independent"] = True
    results["speaker_independent"] = results["speaker_independent"].map(_as_bool)
    pred_path = path / "predictions.csv"
    predictions = None
    if pred_path.is_file():
        predictions = pd.read_csv(pred_path, dtype={"y_true": str, "y_pred": str, "fold": str, "target": str,
                                                    "feature_set": str, "model": str, "normalisation": str})
    spec_path = path / "spec.json"
    spec = json.loads(spec_path.read_text()) if spec_path.is_file() else {}
    return results, predictions, spec


def _protocol_parts(results: pd.DataFrame, predictions: pd.DataFrame | None):
    """``(results, predictions, part)`` per protocol of one results directory: a cross-corpus matrix
    run holds one protocol per matrix entry (``matrix A -> B (...)``), each its own experiment (``part``
    names it); other runs are one part (``part`` empty)."""
    protocols = list(dict.fromkeys(results["protocol"].astype(str)))
    if len(protocols) == 1:
        yield results, predictions, ""
        return
    for proto in protocols:
        preds = predictions
        if predictions is not None and "protocol" in predictions:
            preds = predictions[predictions["protocol"].astype(str) == proto].reset_index(drop=True)
        yield results[results["protocol"].astype(str) == proto].reset_index(drop=True), preds, proto


def _as_bool(v) -> bool:
    """``speaker_independent`` as read from CSV (bool or text); missing counts as ``True``."""
    if isinstance(v, str):
        return v.strip().lower() not in ("false", "0", "no", "")
    if isinstance(v, float) and math.isnan(v):
        return True
    return bool(v)


def _task_type(results: pd.DataFrame, spec: dict) -> str:
    t = (spec.get("resolved", {}).get("task", {}).get("type")
         or spec.get("spec", {}).get("task", {}).get("type"))
    if t in PRIMARY:
        return t
    metrics = set(results["metric"])
    return "regression" if metrics & {"ccc", "pearson", "mae"} else "classification"


def _identity(path: Path, results: pd.DataFrame, spec: dict, task_type: str) -> str:
    """What makes results comparable: corpus (+ options), task and protocol."""
    raw = spec.get("spec", {})
    resolved = spec.get("resolved", {})
    corpus = raw.get("corpus", {})
    task = resolved.get("task", raw.get("task", {}))
    ident = {"corpus": corpus.get("name") or f"dir:{path.resolve()}", "options": corpus.get("options", {}),
             "task_type": task_type, "targets": sorted(results["target"].astype(str).unique()),
             "mapping": task.get("mapping"), "subset": task.get("subset"),
             "protocol": sorted(results["protocol"].astype(str).unique())}
    return json.dumps(ident, sort_keys=True, default=str)


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``.``, ``_``, ``-``)."""
    text = str(text).replace("+", "_plus_").replace("@", "_at_").replace("|", "_")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    text = re.sub(r"_+", "_", text).strip("._-")
    return text or "unnamed"


def load_experiments(results_dirs: list[str | Path]) -> list[Experiment]:
    """Read results directories, concatenate them and split them into comparable experiments.

    Parameters
    ----------
    results_dirs
        Directories written by ``featurekit evaluate`` (``results.csv``, ``predictions.csv``,
        ``spec.json``).

    Returns
    -------
    list of Experiment
        In the order in which their first directory was given. A system (feature set, model,
        normalisation) present in two directories of one experiment is taken from the later one.

    Raises
    ------
    ReportError
        When a directory or its ``results.csv`` is missing or malformed.
    """
    if isinstance(results_dirs, (str, Path)):
        results_dirs = [results_dirs]
    if not results_dirs:
        raise ReportError("no results directories given")
    groups: dict[str, dict] = {}
    for d in dict.fromkeys(Path(d) for d in results_dirs):
        path = Path(d)
        all_results, all_predictions, spec = _read_dir(path)
        all_results.insert(0, "source", str(path))
        task_type = _task_type(all_results, spec)
        for results, predictions, part in _protocol_parts(all_results, all_predictions):
            ident = _identity(path, results, spec, task_type)
            g = groups.setdefault(ident, {"results": [], "predictions": [], "sources": [], "specs": [],
                                          "task_type": task_type, "part": part})
            g["results"].append(results)
            if predictions is not None:
                predictions.insert(0, "source", str(path))
                g["predictions"].append(predictions)
            g["sources"].append(path)
            g["specs"].append(spec)
    experiments, used_keys = [], set()
    for g in groups.values():
        results = pd.concat(g["results"], ignore_index=True)
        results = results.drop_duplicates(KEY_COLUMNS + ["fold", "target", "metric"], keep="last")
        preds = None
        if g["predictions"]:
            preds = pd.concat(g["predictions"], ignore_index=True)
            preds = preds.drop_duplicates(KEY_COLUMNS + ["id", "target"], keep="last")
        names = list(dict.fromkeys(s.get("spec", {}).get("name") or p.name
                                   for s, p in zip(g["specs"], g["sources"])))
        corpus = next((s.get("spec", {}).get("corpus", {}).get("name") for s in g["specs"]
                       if s.get("spec", {}).get("corpus", {}).get("name")), None)
        key = safe_name(names[0] if len(names) == 1 else corpus or names[0])
        if g["part"]:
            key = safe_name(f"{key}_{g['part']}")
        while key in used_keys:
            key += "_2"
        used_keys.add(key)
        targets = list(dict.fromkeys(results["target"].astype(str)))
        exp = Experiment(key=key, title="", task_type=g["task_type"], targets=targets,
                         protocol=str(results["protocol"].iloc[0]),
                         speaker_independent=bool(results["speaker_independent"].all()), results=results,
                         predictions=preds, sources=g["sources"], specs=g["specs"])
        what = (f"classification of {targets[0]} ({len(exp.classes)} classes)"
                if exp.task_type == "classification" else f"regression of {', '.join(targets)}")
        where = f" ({corpus})" if corpus and corpus not in names else ""
        exp.title = " + ".join(names) + where + (f", {g['part']}" if g["part"] else "") + f": {what}"
        experiments.append(exp)
    return experiments


# -- tables --------------------------------------------------------------------------------------
@dataclass
class Table:
    """A table ready to render: display strings and the cells to emphasise.

    Attributes
    ----------
    key
        File-name stem (unique within a report).
    title
        Short heading.
    caption
        Caption: what the cells are, the protocol (and the speaker-dependent warning).
    data
        Display strings; the index is ignored.
    best
        Same shape as ``data``: ``True`` where a cell is the best of its column.
    group_column
        Column whose groups the md/html/tex writers separate with rules (``None``: no grouping).
        A value of it, or of the ``variant``/``feature set`` columns after it, that repeats the row
        above (with all columns before it equal too) is left blank there.
    notes
        Extra lines shown under the table.
    warning
        ``True`` for a speaker-dependent experiment (writers highlight the caption).
    numbers
        The table's numbers, tidy (one row per system, ``mean``/``std``/``ci_low``/``ci_high``, ...,
        flags as booleans): what ``tables/KEY.csv`` holds. ``None``: the csv writer writes ``data``.
    """

    key: str
    title: str
    caption: str
    data: pd.DataFrame
    best: pd.DataFrame
    group_column: str | None = "group"
    notes: list[str] = field(default_factory=list)
    warning: bool = False
    numbers: pd.DataFrame | None = None

    @property
    def label_columns(self) -> list[str]:
        """The leading text columns (left-aligned); the others hold numbers."""
        text = {"group", "variant", "feature set", "model", "normalisation", "rank", "system", "marks",
                "vs best"}
        return [c for c in self.data.columns if c in text]


def fmt(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals, or an em dash when missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return DASH
    return f"{x:.{digits}f}"


def mean_std_text(mean: float, std: float, digits: int = 3) -> str:
    """``"0.812 ± 0.034"``; just the mean when there is no std; an em dash when there is no mean."""
    if mean is None or not np.isfinite(mean):
        return DASH
    if std is None or not np.isfinite(std):
        return fmt(mean, digits)
    return f"{mean:.{digits}f} {PM} {std:.{digits}f}"


def ci_text(value: float, low: float, high: float, digits: int = 3) -> str:
    """``"0.812 [0.780, 0.845]"``; just the value when there is no interval."""
    if value is None or not np.isfinite(value):
        return DASH
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return fmt(value, digits)
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def summary_values(exp: Experiment) -> pd.DataFrame:
    """One row per (feature set, model, normalisation, target) and one column per ``fold:metric``.

    Columns are ``"mean:uar"``, ``"std:uar"``, ``"pooled:uar"``, ``"pooled:uar_ci95_low"``, ... (the
    across-fold summaries and pooled values present in ``results.csv``).
    """
    r = exp.results[exp.results["fold"].isin(SUMMARY_FOLDS)]
    wide = r.assign(col=r["fold"] + ":" + r["metric"]).pivot_table(
        index=KEY_COLUMNS + ["target"], columns="col", values="value", aggfunc="last")
    wide.columns.name = None
    return wide.reset_index()


def _systems_order(exp: Experiment) -> list[FeatureSetInfo]:
    """Feature sets grouped by extractor (groups in order of first appearance, fusion last)."""
    names = list(dict.fromkeys(exp.results["feature_set"].astype(str)))
    infos = [parse_feature_set_name(n) for n in names]
    groups = list(dict.fromkeys(i.group for i in infos if i.group != FUSION))
    if any(i.group == FUSION for i in infos):
        groups.append(FUSION)
    rank = {g: k for k, g in enumerate(groups)}
    return sorted(infos, key=lambda i: (rank[i.group], i.order))


def _columns(exp: Experiment) -> tuple[list[tuple[str, str]], dict[tuple[str, str], str]]:
    """Model x normalisation combinations (models in order of appearance) and their headers."""
    r = exp.results
    models = list(dict.fromkeys(r["model"].astype(str)))
    norms = list(dict.fromkeys(r["normalisation"].astype(str)))
    present = set(zip(r["model"].astype(str), r["normalisation"].astype(str)))
    combos = [(m, n) for m in models for n in norms if (m, n) in present]
    one_norm = len(norms) == 1
    return combos, {c: c[0] if one_norm else f"{c[0]} / {c[1]}" for c in combos}


def _norm_note(exp: Experiment) -> str:
    norms = list(dict.fromkeys(exp.results["normalisation"].astype(str)))
    if len(norms) == 1:
        return f"Columns: models (feature normalisation: {norms[0]})."
    about = {"none": "features as stored", "global": "z-score with training-fold statistics",
             "speaker": "z-score per speaker"}
    what = "; ".join(f"{n}: {about[n]}" for n in norms if n in about)
    return f"Columns: model / feature normalisation ({what})." if what else "Columns: model / normalisation."


def _mark_best(values: pd.DataFrame, higher: bool, digits: int = 3) -> pd.DataFrame:
    """``True`` where a value equals its column's best after rounding to ``digits`` (ties all marked)."""
    rounded = values.astype(float).round(digits)
    best = rounded.max() if higher else rounded.min()
    return rounded.eq(best, axis=1) & rounded.notna()


def _grouped_frame(exp: Experiment, cells, values, combos: list[tuple[str, str]] | None = None,
                   headers: dict[tuple[str, str], str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of grouped feature sets (display names): label columns + one column per model/normalisation."""
    all_combos, all_headers = _columns(exp)
    combos = all_combos if combos is None else combos
    headers = all_headers if headers is None else headers
    rows, nums = [], []
    for info in _systems_order(exp):
        if not any(exp_has(exp, info.name, *c) for c in combos):
            continue
        row = {"group": group_label(info.group), "feature set": exp.names.feature_set(info.name)}
        num = {}
        for c in combos:
            row[headers[c]] = cells(info.name, *c)
            num[headers[c]] = values(info.name, *c)
        rows.append(row)
        nums.append(num)
    return pd.DataFrame(rows), pd.DataFrame(nums, columns=[headers[c] for c in combos])


def group_label(group: str) -> str:
    """An extractor group as shown in tables (``MFCC``, ``eGeMAPS``, ``fusion``)."""
    return EXTRACTOR_NAMES.get(group, group)


def exp_has(exp: Experiment, fs: str, model: str, norm: str) -> bool:
    """Whether the experiment has results for the system."""
    return (fs, model, norm) in _present(exp)


def _present(exp: Experiment) -> set[tuple[str, str, str]]:
    r = exp.results
    return set(zip(r["feature_set"].astype(str), r["model"].astype(str), r["normalisation"].astype(str)))


def _lookup(exp: Experiment, target: str | None = None):
    s = summary_values(exp)
    if target is not None:
        s = s[s["target"] == target]
    table = s.set_index(KEY_COLUMNS)

    def get(fs: str, model: str, norm: str, col: str) -> float:
        if col not in table or (fs, model, norm) not in table.index:
            return float("nan")
        v = table.loc[(fs, model, norm), col]
        if isinstance(v, pd.Series):  # several targets (target=None): their mean
            v = v.iloc[-1] if target is not None else v.mean()
        return float(v) if pd.notna(v) else float("nan")

    return get


def _full_mask(data: pd.DataFrame, numeric_best: pd.DataFrame) -> pd.DataFrame:
    mask = pd.DataFrame(False, index=data.index, columns=data.columns)
    for c in numeric_best.columns:
        mask[c] = numeric_best[c].to_numpy()
    return mask


# -- selection: the best of many, significance, declared systems ------------------------------
def significance_frame(exp: Experiment) -> pd.DataFrame:
    """Every system (best first) with the paired tests against the best and its marks.

    Classification: the exact McNemar test on the pooled predictions (same utterances) and, with at
    least :data:`~featurekit.report.significance.MIN_FOLDS` folds, the Wilcoxon signed-rank test of
    the per-fold primary metric; both Holm-corrected over the compared systems. Regression: the
    per-fold test on the primary metric averaged over targets.

    Returns
    -------
    pandas.DataFrame
        :func:`featurekit.report.significance.compare_to_best` columns plus ``score, score_std,
        pooled, pooled_low, pooled_high, overall_best, declared``.
    """
    scores = system_scores(exp)
    if scores.empty:
        return scores.assign(overall_best=[], declared=[], not_worse=[], tested=[])
    metric, higher = exp.primary
    preds = None
    if exp.task_type == "classification" and exp.predictions is not None:
        preds = exp.predictions
        if "target" in preds:
            preds = preds[preds["target"].astype(str) == exp.targets[0]]
    r = exp.results
    per_fold = r[(r["metric"] == metric) & ~r["fold"].isin(SUMMARY_FOLDS)]
    per_fold = per_fold.groupby(KEY_COLUMNS + ["fold"], sort=False, as_index=False)["value"].mean()
    tests = compare_to_best(scores, preds, per_fold, higher=higher)
    out = scores.merge(tests, on=KEY_COLUMNS, how="left", sort=False)
    out["overall_best"] = out.index == 0
    declared = set(exp.declared)
    out["declared"] = [tuple(k) in declared for k in out[KEY_COLUMNS].itertuples(index=False)]
    return out


def system_marks(exp: Experiment, fs: str, model: str, norm: str) -> str:
    """``†`` overall best, ``‡`` not significantly worse than it, ``§`` declared in the spec."""
    sig = exp.significance
    hit = sig[(sig["feature_set"] == fs) & (sig["model"] == model) & (sig["normalisation"] == norm)]
    if hit.empty:
        return DECLARED_MARK if (fs, model, norm) in exp.declared else ""
    r = hit.iloc[0]
    marks = BEST_MARK if r["overall_best"] else (SIMILAR_MARK if bool(r["not_worse"]) else "")
    return marks + (DECLARED_MARK if r["declared"] else "")


def selection_note(exp: Experiment, *, short: bool = False) -> str:
    """How many systems were compared, that the best of them is optimistic, and the marks (``short``:
    a reminder for the tables after the first)."""
    n = exp.n_systems
    sig = exp.significance
    if short:
        return (f"{n} systems compared (the best of them is an optimistic estimate); marks as in the first "
                f"table: {BEST_MARK} overall best, {SIMILAR_MARK} not significantly worse than it, "
                f"{DECLARED_MARK} declared in the spec.")
    text = (f"{n} systems (feature set x model x normalisation) were compared on the same test folds; the "
            f"best of {n} is an optimistic estimate of how that choice performs on new data "
            f"(it was selected on these results).")
    if not sig.empty:
        best = sig.iloc[0]
        label = METRIC_LABELS.get(exp.primary[0], exp.primary[0])
        system = exp.names.system(best["feature_set"], best["model"], best["normalisation"])
        text += f" {BEST_MARK} overall best: {system} ({label} {fmt(best['score'])})."
        tested = int(sig["tested"].iloc[1:].sum())
        if tested:
            similar = int((sig["not_worse"] & ~sig["overall_best"]).sum())
            test = ("exact McNemar test on the same utterances" if sig["p_mcnemar"].notna().any()
                    else f"Wilcoxon signed-rank test over folds (>= {MIN_FOLDS} folds)")
            text += (f" {SIMILAR_MARK} not significantly worse than the best ({test}, Holm-corrected over "
                     f"{tested} comparisons, alpha {ALPHA}): {similar} system(s).")
    if exp.declared:
        text += (f" {DECLARED_MARK} declared in the spec before the run "
                 f"({', '.join(exp.names.system(*d) for d in exp.declared)}): not selected on these results.")
    return text


def _system_numbers(exp: Experiment, systems: list[tuple[str, str, str]], target: str | None) -> pd.DataFrame:
    """Tidy numbers of systems: names, mean/std across folds, pooled value with ci_low/ci_high, flags."""
    metric, _ = exp.primary
    get = _lookup(exp, target)
    sig = exp.significance.set_index(KEY_COLUMNS) if not exp.significance.empty else None
    rows = []
    for fs, model, norm in systems:
        flags = sig.loc[(fs, model, norm)] if sig is not None and (fs, model, norm) in sig.index else None
        rows.append({
            "feature_set": fs, "model": model, "normalisation": norm,
            "feature_set_name": exp.names.feature_set(fs), "model_name": exp.names.model(model),
            "metric": metric, "target": target or "",
            "mean": get(fs, model, norm, f"mean:{metric}"), "std": get(fs, model, norm, f"std:{metric}"),
            "pooled": get(fs, model, norm, f"pooled:{metric}"),
            "ci_low": get(fs, model, norm, f"pooled:{metric}_ci95_low"),
            "ci_high": get(fs, model, norm, f"pooled:{metric}_ci95_high"),
            "overall_best": bool(flags["overall_best"]) if flags is not None else False,
            "not_significantly_worse": bool(flags["not_worse"]) if flags is not None else False,
            "declared": (fs, model, norm) in exp.declared,
        })
    return pd.DataFrame(rows)


def _table_parts(exp: Experiment) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """``(key suffix, title scope, combos)`` per main table: all columns, or split by normalisation, then
    into groups of models."""
    combos, _ = _columns(exp)
    if len(combos) <= MAX_TABLE_COLUMNS:
        return [("", "", combos)]
    norms = list(dict.fromkeys(n for _, n in combos))
    parts = []
    for norm in norms:
        own = [c for c in combos if c[1] == norm]
        k_chunks = -(-len(own) // MAX_TABLE_COLUMNS)  # as few tables as fit, of near-equal widths
        chunks = [list(c) for c in np.array_split(np.arange(len(own)), k_chunks)]
        chunks = [[own[i] for i in c] for c in chunks]
        for k, chunk in enumerate(chunks):
            suffix = ((f"_{safe_name(norm)}" if len(norms) > 1 else "")
                      + (f"_part{k + 1}" if len(chunks) > 1 else ""))
            scope = ", ".join(([exp.names.normalisation(norm)] if len(norms) > 1 else [])
                              + ([f"models {k + 1}/{len(chunks)}"] if len(chunks) > 1 else []))
            parts.append((suffix, f" ({scope})", chunk))
    return parts


def _combo_header(exp: Experiment, combos: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    norms = {n for _, n in combos}
    return {c: exp.names.model(c[0]) if len(norms) == 1 else
            f"{exp.names.model(c[0])} / {exp.names.normalisation(c[1])}" for c in combos}


def _main_tables(exp: Experiment, *, pooled: bool) -> list[Table]:
    metric, higher = exp.primary
    get = _lookup(exp, exp.targets[0])
    label = METRIC_LABELS.get(metric, metric)
    if pooled:
        def value(fs, m, n):
            return get(fs, m, n, f"pooled:{metric}")

        def text(fs, m, n):
            return ci_text(value(fs, m, n), get(fs, m, n, f"pooled:{metric}_ci95_low"),
                           get(fs, m, n, f"pooled:{metric}_ci95_high"))
    else:
        def value(fs, m, n):
            return get(fs, m, n, f"mean:{metric}")

        def text(fs, m, n):
            return mean_std_text(value(fs, m, n), get(fs, m, n, f"std:{metric}"))

    def cell(fs, m, n):
        t = text(fs, m, n)
        return t if t == DASH else t + system_marks(exp, fs, m, n)

    out = []
    for part, (suffix, scope, combos) in enumerate(_table_parts(exp)):
        headers = _combo_header(exp, combos)
        data, nums = _grouped_frame(exp, cell, value, combos, headers)
        best = _mark_best(nums, higher)
        names = _ordered_names(exp, combos)
        col_best = {(fs, m, n): bool(best.at[i, headers[(m, n)]])
                    for i, fs in enumerate(names) for (m, n) in combos}
        present = [(fs, m, n) for fs in names for (m, n) in combos if exp_has(exp, fs, m, n)]
        numbers = _system_numbers(exp, present, exp.targets[0])
        numbers["best_in_column"] = [col_best[k]
                                     for k in numbers[KEY_COLUMNS].itertuples(index=False, name=None)]
        if pooled:
            title = f"Pooled {label} with 95% intervals{scope}"
            caption = (f"Pooled {label} (all folds' predictions together) [95% bootstrap interval over "
                       f"utterances]; the best value of each column in bold. {_norm_note(exp)} "
                       f"{exp.protocol_text}.")
            key = f"{exp.key}_{metric}_pooled{suffix}"
            notes = [selection_note(exp, short=True)]
        else:
            chance = (f" Chance level: {1 / len(exp.classes):.3f} ({len(exp.classes)} classes)."
                      if exp.classes else "")
            title = f"{label} by feature set{scope}"
            caption = (f"{label} (mean {PM} std across {len(exp.folds)} folds), feature sets grouped by "
                       f"extractor; the best value of each column in bold. {_norm_note(exp)}{chance} "
                       f"{exp.protocol_text}.")
            key = f"{exp.key}_{metric}{suffix}"
            notes = [selection_note(exp, short=part > 0), f"Variants: {VARIANT_LEGEND}."]
        out.append(Table(key, title, caption, data, _full_mask(data, best), notes=notes,
                         warning=not exp.speaker_independent, numbers=numbers))
    return out


def _ordered_names(exp: Experiment, combos: list[tuple[str, str]]) -> list[str]:
    """Feature sets in table order that have a result in one of ``combos``."""
    return [i.name for i in _systems_order(exp) if any(exp_has(exp, i.name, *c) for c in combos)]


def classification_tables(exp: Experiment) -> list[Table]:
    """The main table(s): feature sets x (model, normalisation), mean ± std across folds.

    Split by normalisation (and then into groups of models) when there are more than
    :data:`MAX_TABLE_COLUMNS` model/normalisation columns, so that each fits a page.
    """
    return _main_tables(exp, pooled=False)


def classification_table(exp: Experiment) -> Table:
    """The first main table (all of it when it fits a page; see :func:`classification_tables`)."""
    return classification_tables(exp)[0]


def pooled_tables(exp: Experiment) -> list[Table]:
    """Feature sets x (model, normalisation): pooled primary metric [95 % bootstrap interval]."""
    return _main_tables(exp, pooled=True)


def pooled_table(exp: Experiment) -> Table:
    """The first pooled table (all of it when it fits a page)."""
    return pooled_tables(exp)[0]


def system_scores(exp: Experiment) -> pd.DataFrame:
    """Every system with its group/variant and scores, best first.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature_set, model, normalisation, group, variant, score, score_std, pooled,
        pooled_low, pooled_high`` (classification: UAR; regression: the primary metric averaged
        over targets) and, for regression, ``mean:METRIC[TARGET]`` per target.
    """
    metric, higher = exp.primary
    s = summary_values(exp)
    for col in (f"mean:{metric}", f"std:{metric}", f"pooled:{metric}", f"pooled:{metric}_ci95_low",
                f"pooled:{metric}_ci95_high"):
        if col not in s:
            s[col] = np.nan
    agg = s.groupby(KEY_COLUMNS, sort=False).agg(
        score=(f"mean:{metric}", "mean"), score_std=(f"std:{metric}", "mean"),
        pooled=(f"pooled:{metric}", "mean"),
        pooled_low=(f"pooled:{metric}_ci95_low", "mean"), pooled_high=(f"pooled:{metric}_ci95_high", "mean"))
    if exp.task_type == "classification":
        for extra in ("accuracy", "macro_f1"):
            if f"mean:{extra}" in s:
                agg[extra] = s.groupby(KEY_COLUMNS, sort=False)[f"mean:{extra}"].mean()
    else:
        per = s.pivot_table(index=KEY_COLUMNS, columns="target", values=f"mean:{metric}", aggfunc="last")
        for t in exp.targets:
            if t in per:
                agg[f"target:{t}"] = per[t]
    agg = agg.reset_index()
    infos = {i.name: i for i in _systems_order(exp)}
    agg.insert(3, "group", [infos[f].group for f in agg["feature_set"]])
    agg.insert(4, "variant", [infos[f].variant for f in agg["feature_set"]])
    agg = agg[agg["score"].notna()]
    return agg.sort_values("score", ascending=not higher, kind="stable").reset_index(drop=True)


def best_systems(exp: Experiment, top: int = 3) -> pd.DataFrame:
    """The best system of every feature group, the overall ``top`` systems and the declared ones, best first.

    Returns
    -------
    pandas.DataFrame
        Rows of :func:`system_scores` (feature_set, model, normalisation, group, variant, score, ...).
    """
    scores = system_scores(exp)
    if scores.empty:
        return scores
    declared = set(exp.declared)
    is_declared = [tuple(k) in declared for k in scores[KEY_COLUMNS].itertuples(index=False)]
    keep = (set(scores.index[:top]) | set(scores.groupby("group", sort=False).head(1).index)
            | set(scores.index[is_declared]))
    return scores.loc[sorted(keep)].reset_index(drop=True)


def _system_label_columns(exp: Experiment, r) -> dict:
    return {"group": group_label(r["group"]), "feature set": exp.names.feature_set(r["feature_set"]),
            "model": exp.names.model(r["model"]),
            "normalisation": exp.names.normalisation(r["normalisation"])}


def best_systems_table(exp: Experiment, top: int = 3) -> Table:
    """Summary: the best system per feature group, the overall top ``top`` and declared systems, ranked."""
    metric, _ = exp.primary
    label = METRIC_LABELS.get(metric, metric)
    best = best_systems(exp, top)
    ranked = system_scores(exp)[KEY_COLUMNS].itertuples(index=False, name=None)
    ranks = {k: i + 1 for i, k in enumerate(ranked)}
    rows = []
    for _, r in best.iterrows():
        key = (r["feature_set"], r["model"], r["normalisation"])
        row = {"rank": str(ranks[key]), **_system_label_columns(exp, r), "marks": system_marks(exp, *key)}
        if exp.task_type == "classification":
            row[f"{label} (mean {PM} std)"] = mean_std_text(r["score"], r["score_std"])
            row[f"pooled {label} [95% CI]"] = ci_text(r["pooled"], r["pooled_low"], r["pooled_high"])
            for extra in ("accuracy", "macro_f1"):
                if extra in best:
                    row[METRIC_LABELS[extra]] = fmt(r[extra])
        else:
            for t in exp.targets:
                row[f"{label} {t}"] = fmt(r.get(f"target:{t}", np.nan))
            row[f"mean {label}"] = fmt(r["score"])
        rows.append(row)
    data = pd.DataFrame(rows)
    extra = ("accuracy and macro-F1: means across folds" if exp.task_type == "classification"
             else f"per-target {label}: means across folds")
    caption = (f"Best systems: the best of each feature group, the overall top {top} and the systems "
               f"declared in the spec, with their rank among all {exp.n_systems} by mean {label} across "
               f"folds ({extra}). {exp.protocol_text}.")
    numbers = _system_numbers(exp, [tuple(k) for k in best[KEY_COLUMNS].itertuples(index=False, name=None)],
                              exp.targets[0] if exp.task_type == "classification" else None)
    numbers.insert(0, "rank", [ranks[tuple(k)] for k in best[KEY_COLUMNS].itertuples(index=False, name=None)])
    if exp.task_type != "classification":
        numbers["mean"] = best["score"].to_numpy()
        numbers["std"] = best["score_std"].to_numpy()
        numbers["metric"] = f"mean {metric} over targets"
    return Table(f"{exp.key}_best", "Best systems", caption, data,
                 pd.DataFrame(False, index=data.index, columns=data.columns), group_column=None,
                 notes=[selection_note(exp)], warning=not exp.speaker_independent, numbers=numbers)


def per_class_recall_table(exp: Experiment, top: int = 3) -> Table | None:
    """Recall per class of the best systems (pooled predictions; else the pooled ``recall[c]`` metrics)."""
    if exp.task_type != "classification":
        return None
    best = best_systems(exp, top)
    preds = exp.predictions
    if preds is not None and "target" in preds:
        preds = preds[preds["target"].astype(str) == exp.targets[0]]
    classes = exp.classes
    if best.empty or not classes:
        return None
    res = exp.results
    pooled = res[(res["fold"] == "pooled") & (res["target"].astype(str) == exp.targets[0])]
    rows, nums = [], []
    for _, r in best.iterrows():
        key = (r["feature_set"], r["model"], r["normalisation"])
        recall = {}
        sel = None
        if preds is not None:
            sel = preds[(preds["feature_set"] == key[0]) & (preds["model"] == key[1])
                        & (preds["normalisation"] == key[2])]
        if sel is not None and len(sel):
            y_true, y_pred = sel["y_true"].astype(str), sel["y_pred"].astype(str)
            for c in classes:
                n = int((y_true == c).sum())
                recall[c] = float(((y_true == c) & (y_pred == c)).sum() / n) if n else np.nan
        else:
            p = pooled[(pooled["feature_set"] == key[0]) & (pooled["model"] == key[1])
                       & (pooled["normalisation"] == key[2])].set_index("metric")["value"]
            recall = {c: float(p.get(f"recall[{c}]", np.nan)) for c in classes}
        values = np.array([recall[c] for c in classes], float)
        uar = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        rows.append({**_system_label_columns(exp, r), "marks": system_marks(exp, *key),
                     **{c: fmt(recall[c]) for c in classes}, "UAR (pooled)": fmt(uar)})
        nums.append({"feature_set": key[0], "model": key[1], "normalisation": key[2],
                     "feature_set_name": exp.names.feature_set(key[0]), "model_name": exp.names.model(key[1]),
                     **{f"recall[{c}]": recall[c] for c in classes}})
    data = pd.DataFrame(rows)
    numeric = pd.DataFrame([{c: n[f"recall[{c}]"] for c in classes} for n in nums])
    mask = _full_mask(data, _mark_best(numeric, True))
    caption = (f"Recall per class of the best systems (all folds' predictions pooled); the best recall of "
               f"each class in bold. {exp.protocol_text}.")
    return Table(f"{exp.key}_recall", "Recall per class of the best systems", caption, data, mask,
                 group_column=None, warning=not exp.speaker_independent, numbers=pd.DataFrame(nums))


def significance_table(exp: Experiment) -> Table | None:
    """The best system against every other one: paired tests, Holm-corrected (:func:`significance_frame`)."""
    sig = exp.significance
    if len(sig) < 2 or not sig["tested"].iloc[1:].any():
        return None
    metric, _ = exp.primary
    label = METRIC_LABELS.get(metric, metric)
    has_utt = sig["p_mcnemar"].notna().any()
    has_fold = sig["p_fold"].notna().any()

    def p_text(p: float) -> str:
        return DASH if not np.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")

    rows = []
    for i, r in sig.iterrows():
        row = {"rank": str(i + 1), **_system_label_columns(exp, r),
               "marks": system_marks(exp, r["feature_set"], r["model"], r["normalisation"]),
               f"{label} (mean {PM} std)": mean_std_text(r["score"], r["score_std"])}
        if has_utt:
            row["only best / only this"] = (DASH if not np.isfinite(r["only_best"])
                                            else f"{int(r['only_best'])} / {int(r['only_other'])}")
            row["McNemar p (Holm)"] = p_text(r["p_mcnemar_holm"])
        if has_fold:
            row["Wilcoxon p (Holm)"] = p_text(r["p_fold_holm"])
        row["vs best"] = ("best" if r["overall_best"] else "n/a" if not r["tested"]
                          else "not sig. worse" if r["not_worse"] else "worse")
        rows.append(row)
    data = pd.DataFrame(rows)
    n_tested = int(sig["tested"].iloc[1:].sum())
    tests = []
    if has_utt:
        tests.append("the exact McNemar test of per-utterance correctness on the same utterances (pooled "
                     "predictions; 'only best / only this': utterances only one of the two got right)")
    if has_fold:
        tests.append(f"the Wilcoxon signed-rank test of the per-fold {label} (>= {MIN_FOLDS} folds)")
    caption = (f"The overall best system against each of the other {len(sig) - 1} ({n_tested} tested): "
               f"{'; and '.join(tests)}; p-values Holm-corrected over the comparisons. 'not sig. worse': "
               f"no significant difference at alpha {ALPHA} "
               f"({'McNemar decides where predictions exist' if has_utt and has_fold else 'two-sided'}). "
               f"{exp.protocol_text}.")
    numbers = sig.drop(columns=[c for c in ("group", "variant") if c in sig]).copy()
    numbers.insert(3, "feature_set_name", [exp.names.feature_set(f) for f in sig["feature_set"]])
    numbers.insert(4, "model_name", [exp.names.model(m) for m in sig["model"]])
    numbers = numbers.rename(columns={"score": "mean", "score_std": "std", "pooled_low": "ci_low",
                                      "pooled_high": "ci_high", "not_worse": "not_significantly_worse"})
    return Table(f"{exp.key}_significance", "Significance against the best system", caption, data,
                 pd.DataFrame(False, index=data.index, columns=data.columns), group_column=None,
                 notes=[selection_note(exp, short=True)], warning=not exp.speaker_independent,
                 numbers=numbers)


def regression_table(exp: Experiment) -> Table:
    """Systems x targets: CCC (mean ± std across folds) per target and the mean CCC over targets."""
    metric, higher = exp.primary
    label = METRIC_LABELS.get(metric, metric)
    s = summary_values(exp)
    means = s.pivot_table(index=KEY_COLUMNS, columns="target", values=f"mean:{metric}", aggfunc="last")
    stds = (s.pivot_table(index=KEY_COLUMNS, columns="target", values=f"std:{metric}", aggfunc="last")
            if f"std:{metric}" in s else means * np.nan)
    combos, _ = _columns(exp)
    rows, nums = [], []
    for info in _systems_order(exp):
        for model, norm in combos:
            key = (info.name, model, norm)
            if key not in means.index:
                continue
            row = _regression_labels(exp, info.name, model, norm)
            num = {}
            for t in exp.targets:
                m = float(means.at[key, t]) if t in means else np.nan
                sd = float(stds.at[key, t]) if t in stds else np.nan
                row[f"{label} {t}"] = mean_std_text(m, sd)
                num[f"{label} {t}"] = m
            vals = [num[f"{label} {t}"] for t in exp.targets]
            mean_all = float(np.mean(vals)) if all(np.isfinite(vals)) else np.nan
            row[f"mean {label}"] = fmt(mean_all) + (system_marks(exp, *key) if np.isfinite(mean_all) else "")
            num[f"mean {label}"] = mean_all
            rows.append(row)
            nums.append(num)
    data, mask = _regression_frame(rows, nums, higher)
    caption = (f"{label} per target (mean {PM} std across {len(exp.folds)} folds) and the mean {label} over "
               f"the {len(exp.targets)} targets; the best value of each column is marked. "
               f"{exp.protocol_text}.")
    notes = [f"Variants: {VARIANT_LEGEND}."]
    norms = exp.results["normalisation"].unique()
    if len(norms) == 1:
        notes.insert(0, f"Feature normalisation: {norms[0]}.")
    return Table(f"{exp.key}_{metric}", f"{label} by feature set and target", caption, data,
                 mask, notes=[selection_note(exp), *notes], warning=not exp.speaker_independent,
                 numbers=_regression_numbers(exp))


def _regression_labels(exp: Experiment, fs: str, model: str, norm: str) -> dict:
    return {"group": group_label(parse_feature_set_name(fs).group), "feature set": exp.names.feature_set(fs),
            "model": exp.names.model(model), "normalisation": exp.names.normalisation(norm)}


def _regression_numbers(exp: Experiment) -> pd.DataFrame:
    """Tidy regression numbers: one row per system and target (mean, std, pooled, ci_low, ci_high)."""
    metric, _ = exp.primary
    s = summary_values(exp)
    cols = {f"mean:{metric}": "mean", f"std:{metric}": "std", f"pooled:{metric}": "pooled",
            f"pooled:{metric}_ci95_low": "ci_low", f"pooled:{metric}_ci95_high": "ci_high"}
    out = s[KEY_COLUMNS + ["target"]].copy()
    out.insert(3, "feature_set_name", [exp.names.feature_set(f) for f in s["feature_set"]])
    out.insert(4, "model_name", [exp.names.model(m) for m in s["model"]])
    out.insert(5, "metric", metric)
    for src, dst in cols.items():
        out[dst] = s[src].to_numpy(float) if src in s else np.nan
    declared = set(exp.declared)
    out["declared"] = [tuple(k) in declared for k in out[KEY_COLUMNS].itertuples(index=False, name=None)]
    return out.reset_index(drop=True)


def _regression_frame(rows: list[dict], nums: list[dict], higher: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of a regression table and its best-per-column mask (normalisation dropped when constant)."""
    data = pd.DataFrame(rows)
    if len(data) and data["normalisation"].nunique() == 1:
        data = data.drop(columns="normalisation")
    numeric = pd.DataFrame(nums)
    return data, (_full_mask(data, _mark_best(numeric, higher)) if len(numeric) else data.astype(bool))


def pooled_regression_table(exp: Experiment) -> Table:
    """Systems x targets: pooled CCC [95 % bootstrap interval] per target."""
    metric, higher = exp.primary
    label = METRIC_LABELS.get(metric, metric)
    s = summary_values(exp).set_index(KEY_COLUMNS + ["target"])
    combos, _ = _columns(exp)
    rows, nums = [], []

    def val(key, col):
        return float(s.at[key, col]) if col in s and key in s.index and pd.notna(s.at[key, col]) else np.nan

    for info in _systems_order(exp):
        for model, norm in combos:
            if not any((info.name, model, norm, t) in s.index for t in exp.targets):
                continue
            row = _regression_labels(exp, info.name, model, norm)
            num = {}
            for t in exp.targets:
                key = (info.name, model, norm, t)
                v = val(key, f"pooled:{metric}")
                row[f"{label} {t}"] = ci_text(v, val(key, f"pooled:{metric}_ci95_low"),
                                              val(key, f"pooled:{metric}_ci95_high"))
                num[f"{label} {t}"] = v
            rows.append(row)
            nums.append(num)
    data, mask = _regression_frame(rows, nums, higher)
    caption = (f"Pooled {label} per target (all folds' predictions together) [95% bootstrap interval]; the "
               f"best value of each column is marked. {exp.protocol_text}.")
    return Table(f"{exp.key}_{metric}_pooled", f"Pooled {label} with 95% intervals", caption, data,
                 mask, warning=not exp.speaker_independent, numbers=_regression_numbers(exp))


def build_tables(exp: Experiment) -> list[Table]:
    """All tables of one experiment: comparison (split to fit a page), pooled with intervals, best
    systems, recall per class of the best systems, significance against the best."""
    if exp.task_type == "classification":
        tables = [*classification_tables(exp), *pooled_tables(exp), best_systems_table(exp),
                  per_class_recall_table(exp), significance_table(exp)]
    else:
        tables = [regression_table(exp), pooled_regression_table(exp), best_systems_table(exp),
                  significance_table(exp)]
    return [t for t in tables if t is not None]

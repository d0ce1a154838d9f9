"""Loading ``featurekit evaluate`` results directories into comparable experiments.

A results directory holds ``results.csv`` (tidy metrics), ``predictions.csv`` and ``spec.json``
(see :mod:`featurekit.evaluation.runner`). :func:`load_experiments` reads one or several such
directories, concatenates them and splits the rows into *experiments*: results that share the
corpus (and its options), the task and the protocol are comparable and land in one experiment,
whatever directory they came from; different corpora or tasks (say ``emodb`` and
``emodb_listening``) become separate experiments, each with its own tables.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from featurekit.report.names import DisplayNames, declared_systems
from featurekit.report.selection import KEY_COLUMNS, SUMMARY_FOLDS, significance_frame

# primary metrics in order of preference, and whether higher is better
PRIMARY = {"classification": (("uar", True), ("macro_f1", True), ("accuracy", True)),
           "regression": (("ccc", True), ("pearson", True), ("mae", False))}


class ReportError(ValueError):
    """A results directory is missing or unusable (the message names the file)."""


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

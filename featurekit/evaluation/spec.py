"""Experiment specs (TOML), validated up front: every error names the key that is wrong.

See ``pipelines/emodb.toml`` for a complete example. Sections: top-level ``name``, ``seed``;
``[corpus]`` (``name``, ``root_env``, ``options``; the root itself comes from ``--root`` or the
environment variable ``root_env``, never from the file); ``[task]`` (``type`` classification or
regression; ``target`` / ``targets``; ``subset``; ``mapping``); ``[protocol]`` (``name`` and its
options); ``[audio]``; ``[extractors.NAME]`` parameters; ``[features]`` (``sets``,
``late_fusion``); ``[evaluation]`` (``normalisation``, ``balancing``, ``inner_folds``,
``metrics``, ``bootstrap``); ``[models.NAME]`` (``grid``, fixed ``params``, and optionally ``sets`` and
``normalisation`` restricting the model to some feature sets / normalisations; by default a model runs
on every feature set it can take: vector models on vectors, sequence models on ``lld`` sets);
``[audit]`` (``acknowledge``: design-audit checks whose errors the run accepts; ``featurekit.audit``).
NAME is a registered model, or any label with ``model = "REGISTERED"`` naming the model it configures, so one
model can appear twice with different settings (e.g. ``[models.svm_rbf]`` with ``model = "svm"``).
A model's own ``inner_folds`` overrides ``evaluation.inner_folds`` for its search (a number at least
the count of training speakers means leave-one-speaker-out inside the training fold).

Feature-set syntax: ``EXTRACTOR[.KIND][@LAYER]`` joined by ``+`` for early fusion (column
concatenation). ``KIND`` defaults to ``native`` for extractors that have native functionals and
``mean_std`` otherwise; ``lld`` means frame-level sequences (for sequence models; ``a.lld+b.lld``
concatenates frame by frame on ``a``'s frames, taking ``b``'s frame nearest in time). ``@LAYER``
picks encoder layers (an index, ``mean``, or indices joined by ``,``). ``late_fusion`` lists
groups of feature sets whose per-set models' class probabilities are averaged.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from featurekit.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS
from featurekit.evaluation.models import ModelSpec, model_registry
from featurekit.evaluation.normalisation import NORMALISATIONS
from featurekit.evaluation.protocols import PROTOCOLS

BALANCING = ("none", "class_weight", "undersample")
KNOWN_TOP = {
    "name",
    "seed",
    "corpus",
    "task",
    "protocol",
    "audio",
    "extractors",
    "features",
    "evaluation",
    "models",
    "description",
    "store",
    "audit",
}


class SpecError(ValueError):
    """A spec is invalid; the message names the key."""


@dataclass(frozen=True)
class Member:
    """One component of a feature set: extractor, table kind, optional layer selection."""

    extractor: str
    kind: str
    layer: str | None = None

    @property
    def table(self) -> str:
        return f"{self.extractor}.{self.kind}"


@dataclass(frozen=True)
class FeatureSet:
    name: str
    members: tuple[Member, ...]
    late: bool = False  # late fusion: members are separate feature sets (each may be early-fused)
    late_groups: tuple[FeatureSet, ...] = ()

    @property
    def sequences(self) -> bool:
        return any(m.kind == "lld" for m in self.members)


@dataclass
class Spec:
    name: str
    seed: int
    corpus: dict[str, Any]
    task: dict[str, Any]
    protocol: dict[str, Any]
    audio: dict[str, Any]
    extractors: dict[str, dict]
    feature_sets: list[FeatureSet]
    evaluation: dict[str, Any]
    models: dict[str, dict]
    raw: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def task_type(self) -> str:
        return self.task["type"]

    @property
    def targets(self) -> list[str]:
        return self.task["targets"]

    def inner_folds(self, name: str) -> int:
        """Inner search folds of the ``[models.NAME]`` entry (its own, else ``evaluation.inner_folds``)."""
        return self.models[name].get("inner_folds", self.evaluation["inner_folds"])

    def model_spec(self, name: str) -> ModelSpec:
        """The registered model behind the spec's ``[models.NAME]`` entry."""
        return model_registry(self.task_type).get(self.models[name]["model"])


def parse_feature_set(text: str, *, where: str) -> FeatureSet:
    from featurekit.extractors import EXTRACTORS, FUNCTIONALS

    members = []
    for part in text.split("+"):
        part = part.strip()
        body, _, layer = part.partition("@")
        name, _, kind = body.partition(".")
        if name not in EXTRACTORS:
            raise SpecError(
                f"{where}: unknown extractor {name!r} in feature set {text!r}; known: "
                f"{', '.join(EXTRACTORS.names())}"
            )
        cls = EXTRACTORS.get(name)
        kind = kind or ("native" if cls.has_native else "mean_std")
        if kind not in ("native", "lld") and kind not in FUNCTIONALS:
            raise SpecError(
                f"{where}: unknown kind {kind!r} in {text!r}; use native, lld or one of {FUNCTIONALS.names()}"
            )
        if kind == "native" and not cls.has_native:
            raise SpecError(f"{where}: extractor {name!r} has no native functionals ({text!r})")
        members.append(Member(name, kind, layer or None))
    lld = [m.kind == "lld" for m in members]
    if len(members) > 1 and any(lld) and not all(lld):
        raise SpecError(
            f"{where}: {text!r}: LLD sequences can only be concatenated with LLD sequences "
            f"(frame by frame, e.g. egemaps.lld+mfcc.lld), not with vectors"
        )
    return FeatureSet(text.strip(), tuple(members))


def _test_corpus(test: Any, train_name: str) -> dict[str, Any]:
    """Check ``protocol.test_corpus`` of a cross-corpus spec: ``name``, and optionally ``root_env``,
    ``options`` (adapter options) and ``mapping`` (its labels -> the training corpus' labels)."""
    from featurekit.corpora import CORPORA

    where = "protocol.test_corpus"
    if not isinstance(test, dict):
        raise SpecError(f"{where}: missing; cross_corpus needs a table with the test corpus' name")
    test = dict(test)
    bad = set(test) - {"name", "root_env", "options", "mapping"}
    if bad:
        raise SpecError(f"{where}: unknown key(s) {sorted(bad)}; use name, root_env, options, mapping")
    name = _require(test, "name", where)
    if name not in CORPORA:
        raise SpecError(f"{where}.name: unknown corpus {name!r}; known: {', '.join(CORPORA.names())}")
    if name == train_name:
        raise SpecError(f"{where}.name: the test corpus must differ from corpus.name ({train_name!r})")
    for key in ("options", "mapping"):
        if not isinstance(test.setdefault(key, {}), dict):
            raise SpecError(f"{where}.{key}: must be a table")
    return test


def _require(d: dict, key: str, where: str) -> Any:
    if key not in d:
        raise SpecError(f"{where}.{key}: missing")
    return d[key]


def _audit_section(section: Any) -> None:
    """``[audit]``: ``acknowledge`` lists design-audit checks whose errors the run accepts (as warnings)."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise SpecError("audit: must be a table ([audit] with acknowledge = [...])")
    bad = set(section) - {"acknowledge"}
    if bad:
        raise SpecError(f"audit: unknown key(s) {sorted(bad)}; use acknowledge")
    from featurekit.audit import acknowledged_checks

    acknowledged_checks(section.get("acknowledge"))


def validate(raw: dict[str, Any], *, path: str = "") -> Spec:
    """Check a parsed TOML document and resolve defaults; raises :class:`SpecError`."""
    raw = copy.deepcopy(raw)
    unknown = set(raw) - KNOWN_TOP
    if unknown:
        raise SpecError(f"unknown top-level key(s) {sorted(unknown)}; known: {sorted(KNOWN_TOP)}")
    corpus = dict(_require(raw, "corpus", "spec"))
    _require(corpus, "name", "corpus")
    from featurekit.corpora import CORPORA

    if corpus["name"] not in CORPORA:
        raise SpecError(
            f"corpus.name: unknown corpus {corpus['name']!r}; known: {', '.join(CORPORA.names())}"
        )
    task = dict(raw.get("task", {}))
    task.setdefault("type", "classification")
    if task["type"] not in ("classification", "regression"):
        raise SpecError(f"task.type: {task['type']!r} is neither classification nor regression")
    if task["type"] == "classification":
        task["targets"] = [task.get("target", "label")]
    else:
        t = task.get("targets", task.get("target"))
        if not t:
            raise SpecError("task.targets: regression needs one or more numeric target columns")
        task["targets"] = [t] if isinstance(t, str) else list(t)
    protocol = dict(raw.get("protocol", {"name": "loso", "group": "speaker"}))
    if protocol.get("name", "loso") not in PROTOCOLS:
        raise SpecError(
            f"protocol.name: unknown protocol {protocol.get('name')!r}; known: {PROTOCOLS.names()}"
        )
    protocol.setdefault("name", "loso")
    if protocol["name"] == "loso":
        protocol.setdefault("group", "speaker")
    if protocol["name"] == "cross_corpus":
        protocol["test_corpus"] = _test_corpus(protocol.get("test_corpus"), corpus["name"])
    ev = dict(raw.get("evaluation", {}))
    norms = ev.get("normalisation", ["global"])
    norms = [norms] if isinstance(norms, str) else list(norms)
    for n in norms:
        if n not in NORMALISATIONS:
            raise SpecError(f"evaluation.normalisation: unknown {n!r}; use one of {NORMALISATIONS}")
    ev["normalisation"] = norms
    ev.setdefault("balancing", "class_weight")
    if ev["balancing"] not in BALANCING:
        raise SpecError(f"evaluation.balancing: unknown {ev['balancing']!r}; use one of {BALANCING}")
    ev.setdefault("inner_folds", 3)
    ev.setdefault("bootstrap", 1000)
    metric_reg = CLASSIFICATION_METRICS if task["type"] == "classification" else REGRESSION_METRICS
    ev.setdefault("metrics", metric_reg.names())
    for m in ev["metrics"]:
        if m not in metric_reg:
            raise SpecError(
                f"evaluation.metrics: unknown metric {m!r} for {task['type']}; known: {metric_reg.names()}"
            )
    reg = model_registry(task["type"])
    models = dict(_require(raw, "models", "spec"))
    if not models:
        raise SpecError("models: no models given")
    for name, m in models.items():
        m = dict(m or {})
        m.setdefault("model", name)
        if m["model"] not in reg:
            key = f"models.{name}" + (".model" if m["model"] != name else "")
            raise SpecError(
                f"{key}: unknown {task['type']} model {m['model']!r}; known: {', '.join(reg.names())}"
            )
        bad = set(m) - {"model", "grid", "params", "sets", "normalisation", "inner_folds"}
        if bad:
            raise SpecError(
                f"models.{name}: unknown key(s) {sorted(bad)}; use model, grid, params, sets, normalisation, "
                "inner_folds"
            )
        if "inner_folds" in m and (not isinstance(m["inner_folds"], int) or m["inner_folds"] < 2):
            raise SpecError(f"models.{name}.inner_folds: must be an integer >= 2, got {m['inner_folds']!r}")
        m.setdefault("grid", reg.get(m["model"]).grid)
        m.setdefault("params", {})
        for k, v in m["grid"].items():
            if not isinstance(v, list) or not v:
                raise SpecError(f"models.{name}.grid.{k}: must be a non-empty list of values")
        models[name] = m
    feats = dict(_require(raw, "features", "spec"))
    sets = [
        parse_feature_set(s, where=f"features.sets[{i}]")
        for i, s in enumerate(_require(feats, "sets", "features"))
    ]
    for i, group in enumerate(feats.get("late_fusion", [])):
        members = tuple(parse_feature_set(s, where=f"features.late_fusion[{i}]") for s in group)
        if len(members) < 2:
            raise SpecError(f"features.late_fusion[{i}]: needs at least two feature sets")
        sets.append(
            FeatureSet(
                "late(" + "|".join(m.name for m in members) + ")",
                tuple(x for m in members for x in m.members),
                late=True,
                late_groups=members,
            )
        )
    if len({s.name for s in sets}) != len(sets):
        raise SpecError("features.sets: a feature set is listed twice")
    names = {s.name for s in sets}
    for name, m in models.items():
        for key, known in (("sets", names), ("normalisation", set(norms))):
            if key in m:
                m[key] = [m[key]] if isinstance(m[key], str) else list(m[key])
                unknown_vals = [v for v in m[key] if v not in known]
                if unknown_vals:
                    raise SpecError(f"models.{name}.{key}: {unknown_vals} not among {sorted(known)}")
    from featurekit.extractors import EXTRACTORS

    extractors = dict(raw.get("extractors", {}))
    for name, params in extractors.items():
        if name not in EXTRACTORS:
            raise SpecError(f"extractors.{name}: unknown extractor; known: {', '.join(EXTRACTORS.names())}")
        ok = EXTRACTORS.get(name)._param_names()
        bad = set(params) - set(ok)
        if bad:
            raise SpecError(f"extractors.{name}: unknown parameter(s) {sorted(bad)}; it takes {ok}")
        extractors[name] = {k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in params.items()}
    _audit_section(raw.get("audit"))
    return Spec(
        name=raw.get("name", Path(path).stem or "experiment"),
        seed=int(raw.get("seed", 0)),
        corpus=corpus,
        task=task,
        protocol=protocol,
        audio=dict(raw.get("audio", {})),
        extractors=extractors,
        feature_sets=sets,
        evaluation=ev,
        models=models,
        raw=raw,
        path=str(path),
    )


def load_spec(path: str | os.PathLike) -> Spec:
    """Read and validate a TOML spec file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: invalid TOML ({err})") from None
    try:
        return validate(raw, path=str(path))
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None

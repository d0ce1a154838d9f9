"""Experiment specs (TOML), validated up front: every error names the key that is wrong.

The schema of every section is :mod:`featurekit.evaluation.schema` (strict types, no unknown keys);
:func:`check_document` adds the checks against registries and the other sections (names, estimator and
extractor parameters, corpus options) before :func:`validate` resolves defaults.

See ``pipelines/emodb.toml`` for a complete example. Sections: top-level ``name``, ``seed``,
``description``; ``[audit]`` (``acknowledge``); ``[report]`` (``display_names``, ``title``, ``declared``);
``[corpus]`` (``name``, ``root_env``, ``options``; the root itself comes from ``--root`` or the
environment variable ``root_env``, never from the file), or, for several corpora, ``[corpora.NAME]``
(``adapter``, ``root_env``, ``options``, ``mapping`` onto ``task.subset``, ``drop``; multi-corpus
protocols ``cross_corpus_matrix``, ``leave_one_corpus_out``, ``multi_corpus_loso``); ``[task]``
(``type`` classification or regression; ``target`` / ``targets``; ``subset``; ``mapping``);
``[protocol]`` (``name`` and its options); ``[audio]``; ``[extractors.NAME]`` parameters;
``[features]`` (``sets``, ``late_fusion``, ``[[features.stacking]]`` with ``members``
``FEATURE_SET:MODEL`` and ``meta``); ``[evaluation]`` (``normalisation``, ``balancing``,
``inner_folds``, ``metrics``, ``bootstrap``); ``[models.NAME]`` (``grid``, fixed ``params``, and
optionally ``sets`` and
``normalisation`` restricting the model to some feature sets / normalisations; by default a model runs
on every feature set it can take: vector models on vectors, sequence models on ``lld`` sets);
``[audit]`` (``acknowledge``: design-audit checks whose errors the run accepts; ``featurekit.audit``).
``[augmentation]`` (``models``; ``spec_augment`` masks; ``waveform``: ``copies``, ``seed`` and
``[[augmentation.waveform.transforms]]``, see :mod:`featurekit.evaluation.augmentation`).
NAME is a registered model, or any label with ``model = "REGISTERED"`` naming the model it configures, so one
model can appear twice with different settings (e.g. ``[models.svm_rbf]`` with ``model = "svm"``).
A model's own ``inner_folds`` overrides ``evaluation.inner_folds`` for its search (a number at least
the count of training speakers means leave-one-speaker-out inside the training fold).

Feature-set syntax (parsed and written back by :mod:`featurekit.featureset`, which states the grammar):
``EXTRACTOR[.KIND][@LAYER]`` joined by ``+`` for early fusion (column concatenation). ``KIND`` defaults
to ``native`` for extractors that have native functionals and ``mean_std`` otherwise; ``lld`` means
frame-level sequences (for sequence models; ``a.lld+b.lld`` concatenates frame by frame on ``a``'s
frames, taking ``b``'s frame nearest in time). ``@LAYER`` picks encoder layers (an index, ``mean``, or
indices joined by ``,``; ``wsum`` / ``wsum(I,J,...)``: a learned weighted sum of the layers, see
:mod:`featurekit.evaluation.layerfusion`). ``late_fusion`` lists groups of feature sets whose per-set
models' class probabilities are averaged. ``waveform`` is the audio itself as ``[audio]`` conditions it
(never stored), for models that take raw audio only (``finetune``), alone and with normalisation
``none``.
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

from pydantic import ValidationError

from featurekit.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS
from featurekit.evaluation.models import ModelSpec, check_model_params, model_registry
from featurekit.evaluation.protocols import PROTOCOLS
from featurekit.evaluation.schema import (
    BALANCING,
    MULTI_CORPUS_PROTOCOLS,
    PROTOCOL_SCHEMAS,
    SpecDocument,
)
from featurekit.featureset import TableKind
from featurekit.parameters import (
    ParameterError,
    Problem,
    check_parameters,
    declared_parameters,
    describe,
    format_problems,
    pydantic_problems,
    unknown,
)

__all__ = ["BALANCING", "FeatureSet", "Member", "Spec", "SpecError", "check_document", "load_spec",
           "parse_feature_set", "validate"]


class SpecError(ValueError):
    """A spec is invalid; the message names the key. ``problems``: ``(location, message)`` pairs."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


@dataclass(frozen=True)
class Member:
    """One component of a feature set: extractor, table kind, optional layer selection."""

    extractor: str
    kind: str
    layer: str | None = None

    @property
    def table(self) -> str:
        return f"{self.extractor}.{self.kind}"

    @property
    def table_kind(self) -> TableKind:
        return TableKind(self.kind)


@dataclass(frozen=True)
class FeatureSet:
    name: str
    members: tuple[Member, ...]
    late: bool = False  # late fusion: members are separate feature sets (each may be early-fused)
    late_groups: tuple[FeatureSet, ...] = ()
    #: stacking: ``(feature set, [models.NAME])`` members whose out-of-fold scores feed ``meta``
    #: (left out of repr, which stays as before for other sets; the name spells the stack out)
    stack: tuple[tuple[FeatureSet, str], ...] = field(default=(), repr=False)
    meta: str | None = field(default=None, repr=False)

    @property
    def sequences(self) -> bool:
        return any(m.table_kind.frame_level for m in self.members)

    @property
    def waveforms(self) -> bool:
        """The conditioned audio (the feature set ``waveform``): 1-D signals, for raw-audio models."""
        return any(m.table_kind.waveform for m in self.members)


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
    #: ``[corpora.NAME]`` of a multi-corpus spec (adapter, root_env, options, mapping, drop); empty for
    #: a single-corpus spec (``corpus`` is then ``{"name": "A+B", "corpora": ...}``)
    corpora: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The validated document, typed per section (:mod:`featurekit.evaluation.schema`), e.g.
    #: ``spec.sections.audit.acknowledge``, ``spec.sections.report.display_names``.
    sections: SpecDocument | None = None

    @property
    def audit(self) -> dict[str, Any]:
        """``[audit]`` (``acknowledge``: audit checks whose errors the spec accepts)."""
        return dict(self.raw.get("audit", {}))

    @property
    def report(self) -> dict[str, Any]:
        """``[report]`` (``display_names``, ``title``, ``declared``)."""
        return dict(self.raw.get("report", {}))

    @property
    def task_type(self) -> str:
        return self.task["type"]

    # typed accessors of the resolved sections: code reads these, not the dicts' string keys
    @property
    def corpus_name(self) -> str:
        """The corpus name (``A+B`` for a multi-corpus spec)."""
        return self.corpus["name"]

    @property
    def corpus_options(self) -> dict[str, Any]:
        """``[corpus] options``: keyword arguments of the corpus loader."""
        return dict(self.corpus.get("options", {}))

    @property
    def protocol_name(self) -> str:
        """The protocol's registry name (``loso``, ``kfold``, ``cross_corpus``, ...)."""
        return self.protocol["name"]

    @property
    def group(self) -> str:
        """The manifest column whose values are kept out of training when in test (default speaker)."""
        return self.protocol.get("group", "speaker")

    @property
    def test_corpus(self) -> dict[str, Any]:
        """``[protocol.test_corpus]`` of a cross-corpus spec; a SpecError for other protocols."""
        if "test_corpus" not in self.protocol:
            raise SpecError(f"protocol {self.protocol_name!r} has no test_corpus")
        return self.protocol["test_corpus"]

    @property
    def normalisations(self) -> list[str]:
        """``evaluation.normalisation``: the feature normalisations every model is run with by default."""
        return list(self.evaluation["normalisation"])

    @property
    def balancing(self) -> str:
        """``evaluation.balancing`` (``none``, ``class_weight``, ``undersample``)."""
        return self.evaluation["balancing"]

    @property
    def subset(self) -> list[str] | None:
        """``task.subset``: the classes kept (None: all)."""
        return self.task.get("subset")

    @property
    def targets(self) -> list[str]:
        return self.task["targets"]

    def inner_folds(self, name: str) -> int:
        """Inner search folds of the ``[models.NAME]`` entry (its own, else ``evaluation.inner_folds``)."""
        return self.models[name].get("inner_folds", self.evaluation["inner_folds"])

    def model_spec(self, name: str) -> ModelSpec:
        """The registered model behind the spec's ``[models.NAME]`` entry."""
        return model_registry(self.task_type).get(self.models[name]["model"])


def split_weighted_layers(layer: str) -> tuple[bool, str | None]:
    """``@LAYER`` -> (learned weighted sum?, layer selection): ``"wsum"`` -> (True, None: every layer),
    ``"wsum(2,3,4)"`` -> (True, "2,3,4"), ``"3,4"`` -> (False, "3,4") (concatenation)."""
    from featurekit.featureset import FeatureSetError, LayerSelection, parse_layer_selection

    try:
        sel = parse_layer_selection(layer)
    except FeatureSetError as err:
        raise SpecError(str(err)) from None
    if not sel.weighted:
        return False, str(sel)
    return True, None if sel.layers is None else str(LayerSelection(sel.layers))


def parse_feature_set(text: str, *, where: str) -> FeatureSet:
    """A spec's feature set (``features.sets``, a late-fusion group, a stacking member), parsed by
    :func:`featurekit.featureset.parse_feature_set` and resolved against the extractor registry."""
    from featurekit.featureset import FeatureSetError
    from featurekit.featureset import parse_feature_set as parse

    try:
        parsed = parse(text)
    except FeatureSetError as err:
        raise SpecError(f"{where}: {err}") from None
    return _resolved(parsed, where)


def _resolved(parsed: Any, where: str) -> FeatureSet:
    """The evaluation's :class:`FeatureSet` of a parsed name: default kinds made explicit, checked
    against the extractor registry (and its optional dependencies)."""
    from featurekit.extractors import EXTRACTORS
    from featurekit.featureset import FeatureSetError, resolve_feature_set

    text = str(parsed)
    try:
        resolved = resolve_feature_set(parsed)
    except FeatureSetError as err:
        raise SpecError(f"{where}: {err}") from None
    for m in resolved.members:
        if m.kind.waveform:
            continue
        missing = EXTRACTORS.get(m.extractor).missing_extra()
        if missing:
            raise SpecError(f"{where}: {text!r}: {missing}")
    return FeatureSet(text, tuple(Member(m.extractor, m.kind.value, None if m.layer is None else str(m.layer))
                                  for m in resolved.members))


def _corpus_options(name: str, options: dict, where: str) -> list[Problem]:
    """Problems of a corpus adapter's options against its ``read(root, *, ...)`` keyword parameters."""
    from featurekit.corpora import CORPORA

    declared = declared_parameters(CORPORA.get(name).read, skip=("root",))
    return check_parameters(declared, options, where=where)


def _check_corpus(corpus: dict, where: str, problems: list[Problem]) -> bool:
    from featurekit.corpora import CORPORA

    if corpus["name"] not in CORPORA:
        problems.append(unknown(f"{where}.name", corpus["name"], CORPORA.names(), "corpus"))
        return False
    problems += _corpus_options(corpus["name"], corpus.get("options", {}), f"{where}.options")
    return True


def _check_corpora(doc: SpecDocument, raw: dict, problems: list[Problem]) -> None:
    """``[corpora.NAME]``: adapters and options; every mapping target in the common label set."""
    subset = set(doc.task.subset or [])
    if doc.task.type == "classification" and not subset:
        problems.append(("task.subset", "missing: a multi-corpus spec names the common label set "
                                        "(each corpus' labels are mapped onto it by corpora.NAME.mapping)"))
    if doc.task.mapping:
        problems.append(("task.mapping", "not for a multi-corpus spec: give each corpus its own "
                                         "corpora.NAME.mapping"))
    for name, entry in doc.corpora.items():
        where = f"corpora.{name}"
        corpus = {"name": entry.adapter or name, "options": entry.options}
        if _check_corpus(corpus, where, problems) is False and entry.adapter is None:
            problems[-1] = (f"{where}", problems[-1][1] + f" (set corpora.{name}.adapter)")
        for label, common in entry.mapping.items():
            if subset and common not in subset:
                problems.append((f"{where}.mapping.{label}",
                                 f"{common!r} is not in the common label set task.subset {sorted(subset)}"))
        both = sorted(set(entry.mapping) & set(entry.drop))
        if both:
            problems.append((f"{where}.drop", f"label(s) {both} are both mapped and dropped"))


def _check_protocol(raw: dict, corpus_name: str | None, problems: list[Problem]) -> Any:
    """The typed ``[protocol]`` section (its protocol's own schema), or None after adding problems."""
    name = raw.get("name", "loso")
    if not isinstance(name, str) or name not in PROTOCOLS:
        problems.append(unknown("protocol.name", name, PROTOCOLS.names(), "protocol"))
        return None
    if name not in PROTOCOL_SCHEMAS:  # pragma: no cover - a test checks every protocol has a schema
        problems.append(("protocol.name", f"protocol {name!r} declares no options schema"))
        return None
    try:
        section = PROTOCOL_SCHEMAS[name].model_validate(raw)
    except ValidationError as err:
        problems += pydantic_problems(err, "protocol", raw)
        return None
    test = getattr(section, "test_corpus", None)
    if test is not None and _check_corpus(raw["test_corpus"], "protocol.test_corpus", problems) \
            and test.name == corpus_name:
        problems.append(("protocol.test_corpus.name",
                         f"the test corpus must differ from corpus.name ({corpus_name!r})"))
    return section


def _check_extractors(extractors: dict, problems: list[Problem]) -> None:
    from featurekit.extractors import EXTRACTORS

    for name, params in extractors.items():
        if name not in EXTRACTORS:
            problems.append(unknown(f"extractors.{name}", name, EXTRACTORS.names(), "extractor"))
            continue
        expanded = {k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in params.items()}
        try:
            EXTRACTORS.get(name).check_params(expanded, where=f"extractors.{name}")
        except ParameterError as err:
            problems += err.problems


def _check_audio(audio: dict, problems: list[Problem]) -> None:
    from featurekit.audio import AudioOptions

    found = check_parameters(declared_parameters(AudioOptions), audio, where="audio")
    if not found:
        try:
            AudioOptions(**audio)
        except (TypeError, ValueError) as err:
            found = [("audio", str(err))]
    problems += found


def check_document(raw: dict[str, Any]) -> SpecDocument:
    """Check a parsed spec against the schema and the registries; raise :class:`SpecError` naming
    every problem (``section.key: expected ..., got ...``) before anything is computed or written."""
    problems: list[Problem] = []
    if not isinstance(raw.get("models", {}), dict):
        problems.append(("models", f"expected a table of tables, one [models.NAME] section per model, "
                                   f"got {describe(raw['models'])}"))
    if "store" in raw:
        problems.append(("store", "not read from a spec: give the feature store with --store or "
                                  "FEATUREKIT_STORE"))
    if problems:
        raise SpecError(format_problems(problems), problems)
    try:
        doc = SpecDocument.model_validate(raw)
    except ValidationError as err:
        problems = pydantic_problems(err, "", raw)
        raise SpecError(format_problems(problems), problems) from None
    task_type = doc.task.type
    pname = raw.get("protocol", {}).get("name", "loso") if isinstance(raw.get("protocol"), dict) else None
    if doc.corpora is not None:
        _check_corpora(doc, raw, problems)
        if pname not in MULTI_CORPUS_PROTOCOLS:
            problems.append(("protocol.name", f"[corpora] (several corpora) needs a multi-corpus protocol "
                                              f"({', '.join(MULTI_CORPUS_PROTOCOLS)}), got {pname!r}"))
    else:
        _check_corpus(raw["corpus"], "corpus", problems)
        if pname in MULTI_CORPUS_PROTOCOLS:
            problems.append(("protocol.name", f"{pname!r} needs several corpora: [corpora.NAME] tables "
                                              f"instead of [corpus]"))
    corpus_name = doc.corpus.name if doc.corpus is not None else None
    protocol = _check_protocol(raw.get("protocol", {}), corpus_name, problems)
    if "corpus" in (doc.evaluation.normalisation or []) and doc.corpora is None and pname != "cross_corpus":
        problems.append(("evaluation.normalisation", "'corpus' (per-corpus z-score) needs several corpora "
                                                     "([corpora] or the cross_corpus protocol)"))
    _check_audio(raw.get("audio", {}), problems)
    _check_extractors(raw.get("extractors", {}), problems)
    metric_reg = CLASSIFICATION_METRICS if task_type == "classification" else REGRESSION_METRICS
    for i, m in enumerate(doc.evaluation.metrics or []):
        if m not in metric_reg:
            problems.append(unknown(f"evaluation.metrics[{i}]", m, metric_reg.names(), f"{task_type} metric"))
    reg = model_registry(task_type)
    for name, entry in doc.models.items():
        registered = entry.model or name
        if registered not in reg:
            key = f"models.{name}" + (".model" if entry.model is not None else "")
            problems.append(unknown(key, registered, reg.names(), f"{task_type} model"))
            continue
        ms = reg.get(registered)
        missing = ms.missing_extra(registered)
        if missing:
            problems.append((f"models.{name}", missing))
            continue
        problems += check_model_params(ms, entry.params, entry.grid, where=f"models.{name}")
    _check_waveform(raw, doc, pname, problems)
    if problems:
        raise SpecError(format_problems(problems), problems)
    return doc.model_copy(update={"protocol": protocol})


def _check_waveform(raw: dict[str, Any], doc: SpecDocument, protocol: str | None, problems: list) -> None:
    """``[augmentation.waveform]``: every transform and parameter against its declaration
    (:mod:`featurekit.augmentation`), and the protocols it supports."""
    if doc.augmentation is None or doc.augmentation.waveform is None:
        return
    from featurekit.augmentation import WaveformAugmentation
    from featurekit.extras import MissingExtraError
    from featurekit.parameters import ParameterError

    try:
        WaveformAugmentation.from_config(raw["augmentation"]["waveform"])
    except ParameterError as err:
        problems += err.problems
    except MissingExtraError as err:
        problems.append(("augmentation.waveform", str(err)))
    if doc.corpora is not None or protocol == "cross_corpus":
        problems.append(("augmentation.waveform", "waveform augmentation takes one corpus ([corpus]) and "
                                                  "a protocol within it (loso, kfold, split); not yet "
                                                  "several corpora or cross_corpus"))


def _stacked_sets(entries: list[dict], models: dict) -> list[FeatureSet]:
    """``[[features.stacking]]`` entries as feature sets (``stack(FS:MODEL|...)->META``)."""
    from featurekit.featureset import FeatureSet as ParsedFeatureSet
    from featurekit.featureset import FeatureSetError, Stacking, format_feature_set, parse_system

    out = []
    for i, entry in enumerate(entries):
        where = f"features.stacking[{i}]"
        members, names = [], []
        for j, text in enumerate(entry["members"]):
            try:
                parsed, model = parse_system(text)
            except FeatureSetError as err:
                raise SpecError(f"{where}.members[{j}]: {err}") from None
            if not isinstance(parsed, ParsedFeatureSet):
                raise SpecError(f"{where}.members[{j}]: {text!r}: stacking members are feature sets, not "
                                f"late-fusion or stacked systems")
            if model not in models:
                raise SpecError(": ".join(unknown(f"{where}.members[{j}]", model, list(models),
                                                  "[models.NAME] entry")))
            fs = _resolved(parsed, f"{where}.members[{j}]")
            if fs.sequences:
                raise SpecError(f"{where}.members[{j}]: {text!r}: stacking takes vector feature sets")
            members.append((fs, model))
            names.append((parsed, model))
        if entry["meta"] not in models:
            raise SpecError(": ".join(unknown(f"{where}.meta", entry["meta"], list(models),
                                              "[models.NAME] entry")))
        name = format_feature_set(Stacking(tuple(names), entry["meta"]))
        out.append(FeatureSet(name, tuple(x for fs, _ in members for x in fs.members),
                              stack=tuple(members), meta=entry["meta"]))
    return out


def _check_report(doc: SpecDocument, sets: list[FeatureSet]) -> None:
    names = {s.name for s in sets} | {m.name for s in sets for m in s.late_groups} | set(doc.models)
    problems = [unknown(f"report.display_names.{k}", k, names, "feature set or model")
                for k in doc.report.display_names if k not in names]
    problems += _check_declared(doc, sets)
    if problems:
        raise SpecError(format_problems(problems), problems)


def _check_audit_names(section: Any) -> None:
    """``[audit] acknowledge``: the schema checked its shape; every name must be a registered check."""
    if not section:
        return
    from featurekit.audit import acknowledged_checks

    acknowledged_checks(section.get("acknowledge"))


def _check_declared(doc: SpecDocument, sets: list[FeatureSet]) -> list:
    """``[report] declared``: each ``FEATURESET/MODEL/NORMALISATION`` a system of this grid."""
    problems = []
    set_names = [s.name for s in sets]
    for i, entry in enumerate(doc.report.declared):
        where = f"report.declared[{i}]"
        parts = entry.rsplit("/", 2)
        if len(parts) != 3 or not all(parts):
            problems.append((where, f"expected 'FEATURESET/MODEL/NORMALISATION', got {entry!r}"))
            continue
        fs, model, norm = parts
        if model not in doc.models:
            problems.append(unknown(where, model, doc.models, "model", f"in {entry!r}"))
            continue
        entry_model = doc.models[model]
        allowed = entry_model.sets if entry_model.sets is not None else set_names
        if fs not in allowed:
            problems.append(unknown(where, fs, allowed, f"feature set of model {model!r}", f"in {entry!r}"))
        norms = entry_model.normalisation or doc.evaluation.normalisation
        if norm not in norms:
            problems.append(unknown(where, norm, norms, f"normalisation of model {model!r}", f"in {entry!r}"))
    return problems


def _check_sequence_models(models: dict[str, dict], sets: list[FeatureSet], reg: Any) -> None:
    """A model that takes frame sequences only (lstm, gru, conv1d, the spectrogram presets) needs an
    ``.lld`` feature set among those it is given; on vectors alone it would silently never run."""
    for name, m in models.items():
        if reg.get(m["model"]).vectors or reg.get(m["model"]).waveforms:
            continue
        given = [s for s in sets if "sets" not in m or s.name in m["sets"]]
        vectors = [s.name for s in given if not s.sequences]
        if "sets" in m and vectors:
            raise SpecError(f"models.{name}.sets: {vectors} are vector feature sets, but {m['model']!r} "
                            "takes frame sequences only (an .lld set such as logmel.lld or mfcc.lld)")
        if not any(s.sequences for s in given):
            raise SpecError(f"models.{name}: {m['model']!r} takes frame sequences only (an .lld feature set "
                            f"such as logmel.lld or mfcc.lld), but features.sets has none: "
                            f"{[s.name for s in given]}")


def _check_waveform_models(models: dict[str, dict], sets: list[FeatureSet], reg: Any, norms: list[str],
                           audio: dict[str, Any]) -> None:
    """The feature set ``waveform`` (the conditioned audio) and the models that take raw audio
    (``finetune``) go together only with each other, unnormalised, at 16 kHz."""
    from featurekit.audio import AudioOptions
    from featurekit.featureset import WAVEFORM

    fused = [s.name for s in sets if (s.late or s.stack) and s.waveforms]
    if fused:
        raise SpecError(f"features: {fused}: the conditioned audio ({WAVEFORM!r}) takes part in no late "
                        "fusion or stacking")
    takers = []
    for name, m in models.items():
        ms = reg.get(m["model"])
        given = [s for s in sets if not (s.late or s.stack) and ("sets" not in m or s.name in m["sets"])]
        if not ms.waveforms:
            if "sets" in m and WAVEFORM in m["sets"]:
                raise SpecError(f"models.{name}.sets: {WAVEFORM!r} is the raw audio, which {m['model']!r} "
                                "does not take (only models that take raw audio do: finetune)")
            continue
        others = [s.name for s in given if not s.waveforms]
        if "sets" in m and others:
            raise SpecError(f"models.{name}.sets: {others} are features, but {m['model']!r} takes the "
                            f"conditioned audio only ({WAVEFORM!r})")
        if not any(s.waveforms for s in given):
            raise SpecError(f"models.{name}: {m['model']!r} takes the conditioned audio: add {WAVEFORM!r} to "
                            "features.sets")
        bad = [n for n in m.get("normalisation", norms) if n != "none"]
        if bad:
            raise SpecError(f"models.{name}: normalisation {bad} is not defined for raw audio (the encoder's "
                            f"preprocessor normalises each utterance); set models.{name}.normalisation = "
                            '["none"]')
        for section in ("params", "grid"):
            if "audio" in m[section]:
                raise SpecError(f"models.{name}.{section}.audio: the evaluation conditions the audio with "
                                "the spec's [audio] section (as for every extractor); set it there")
        rate = audio.get("sample_rate", AudioOptions().sample_rate)
        if rate != 16000:
            raise SpecError(f"audio.sample_rate = {rate}: {m['model']!r} takes 16 kHz audio")
        takers.append(name)
    if any(s.waveforms for s in sets) and not takers:
        raise SpecError(f"features.sets: {WAVEFORM!r} (the conditioned audio) needs a model that takes raw "
                        "audio ([models.NAME] model = \"finetune\")")


#: The estimator parameters ``[augmentation.spec_augment]`` sets (see featurekit.heads.TorchClassifier).
SPEC_AUGMENT_PARAMS = ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width")


def _augmented_models(section: dict, models: dict[str, dict], reg: Any) -> list[str]:
    """``augmentation.models`` (each a ``[models.NAME]`` entry), by default every torch head that runs
    on frame sequences only."""
    names = section.get("models")
    if names is None:
        names = [n for n, m in models.items() if reg.get(m["model"]).groups
                 and not reg.get(m["model"]).vectors and not reg.get(m["model"]).waveforms]
    for i, name in enumerate(names):
        if name not in models:
            raise SpecError(": ".join(unknown(f"augmentation.models[{i}]", name, models, "model entry")))
        if reg.get(models[name]["model"]).waveforms:
            raise SpecError(f"augmentation.models[{i}]: {name!r} takes raw audio, which [augmentation] "
                            "does not augment (yet)")
    return list(names)


def _apply_augmentation(section: dict | None, models: dict[str, dict], sets: list[FeatureSet], reg: Any
                        ) -> None:
    """Resolve ``[augmentation]`` into the params of the models it applies to (in place), so it enters
    their cell digests; a spec without the section resolves exactly as before."""
    if not section or not section.get("spec_augment"):
        return
    names = _augmented_models(section, models, reg)
    for i, name in enumerate(names):
        ms = reg.get(models[name]["model"])
        if not (ms.sequences and ms.groups):
            raise SpecError(f"augmentation.models[{i}]: {name!r} is not a torch head on frame sequences; "
                            "SpecAugment masks frames of .lld feature sets during training")
        vectors = [s.name for s in sets if not s.sequences and ("sets" not in models[name]
                                                                 or s.name in models[name]["sets"])]
        if ms.vectors and vectors:
            raise SpecError(f"augmentation.models[{i}]: {name!r} also runs on the vector feature sets "
                            f"{vectors}, which SpecAugment cannot mask; restrict it with models.{name}.sets")
        clash = [k for k in SPEC_AUGMENT_PARAMS if k in models[name]["params"] or k in models[name]["grid"]]
        if clash:
            raise SpecError(f"models.{name}: {clash} also set by augmentation.spec_augment; "
                            "give them in one place")
        models[name]["params"] = {**models[name]["params"],
                                  **{k: int(section["spec_augment"].get(k, 0)) for k in SPEC_AUGMENT_PARAMS}}


def _check_attribution(section: dict | None, task_type: str, models: dict[str, dict], sets: list[FeatureSet],
                       reg: Any) -> None:
    """``[attribution]``: a classification task, known model entries, and every method applicable to at
    least one cell (gradient methods: a torch head; permutation: a model on vector features)."""
    if not section:
        return
    from featurekit.evaluation.attribution import AttributionOptions, applicable_methods

    if task_type != "classification":
        raise SpecError(f"attribution: per-class attribution needs a classification task, got {task_type!r}")
    for i, name in enumerate(section.get("models") or []):
        if name not in models:
            raise SpecError(": ".join(unknown(f"attribution.models[{i}]", name, models, "model entry")))
    options = AttributionOptions.from_section(section)
    gradients = [m.value for m in options.methods if m.value != "permutation"]
    if gradients:
        from featurekit.extras import missing_message, missing_modules

        missing = missing_modules("deep", ("captum",))
        if missing:
            raise SpecError(f"attribution.methods: {missing_message('deep', ' / '.join(gradients), missing)}")
    used = set()
    for name, m in models.items():
        for fs in sets:
            if "sets" in m and fs.name not in m["sets"]:
                continue
            used |= set(applicable_methods(options, model=name, model_spec=reg.get(m["model"]),
                                           sequences=fs.sequences, fused=bool(fs.late or fs.stack)))
    for i, method in enumerate(options.methods):
        if method not in used:
            need = ("a model on vector features (not late-fused or stacked)" if method.value == "permutation"
                    else "a torch head (e.g. cnn_spec, lstm, torch_mlp) on a plain feature set")
            raise SpecError(f"attribution.methods[{i}]: {method.value!r} applies to no cell of this spec: it "
                            f"needs {need}" + (" among attribution.models" if section.get("models") else ""))


def _apply_waveform_augmentation(raw: dict[str, Any], models: dict[str, dict], sets: list[FeatureSet],
                                 reg: Any) -> None:
    """Resolve ``[augmentation.waveform]`` into ``models[NAME]["waveform_augmentation"]`` (the chain
    with every parameter, copies, seed) of the models it applies to, so it enters their cell digests
    (:func:`featurekit.evaluation.runner._model_config`); other models and specs without it resolve
    exactly as before. Any model may take copies, vector models (their HSF vectors of the copies) as
    well as sequence models; stacked systems may not (their out-of-fold scores would mix copies)."""
    section = raw.get("augmentation") or {}
    if not section.get("waveform"):
        return
    from featurekit.augmentation import WaveformAugmentation

    names = _augmented_models(section, models, reg)
    if not names:
        raise SpecError("augmentation.models: no model takes the waveform augmentation (by default the "
                        "torch heads on frame sequences); list the [models.NAME] entries it applies to")
    stacked = {m for s in sets for m in ([s.meta] if s.stack else []) + [m for _, m in s.stack]}
    for i, name in enumerate(names):
        if name in stacked:
            raise SpecError(f"augmentation.models[{i}]: {name!r} takes part in a stacked system "
                            "([[features.stacking]]), which waveform augmentation does not support")
    config = dict(section["waveform"])
    config.setdefault("seed", int(raw.get("seed", 0)))
    resolved = WaveformAugmentation.from_config(config).config()
    for name in names:
        models[name]["waveform_augmentation"] = resolved


def validate(raw: dict[str, Any], *, path: str = "") -> Spec:
    """Check a parsed TOML document and resolve defaults; raises :class:`SpecError`."""
    raw = copy.deepcopy(raw)
    doc = check_document(raw)
    # Resolution below is unchanged by the schema: the resolved dicts (and so every cell digest) are
    # the given values plus the same defaults as before.
    corpora: dict[str, dict[str, Any]] = {}
    if "corpora" in raw:
        for name, entry in raw["corpora"].items():
            corpora[name] = {"adapter": entry.get("adapter", name), "root_env": entry.get("root_env"),
                             "options": dict(entry.get("options", {})),
                             "mapping": dict(entry.get("mapping", {})), "drop": list(entry.get("drop", []))}
        corpus = {"name": "+".join(corpora), "corpora": corpora}
    else:
        corpus = dict(raw["corpus"])
    task = dict(raw.get("task", {}))
    task.setdefault("type", "classification")
    if task["type"] == "classification":
        task["targets"] = [task.get("target", "label")]
    else:
        t = task.get("targets", task.get("target"))
        task["targets"] = [t] if isinstance(t, str) else list(t)
    protocol = dict(raw.get("protocol", {"name": "loso", "group": "speaker"}))
    protocol.setdefault("name", "loso")
    if protocol["name"] == "loso":
        protocol.setdefault("group", "speaker")
    if protocol["name"] == "cross_corpus":
        test = dict(protocol["test_corpus"])
        for key in ("options", "mapping"):
            test.setdefault(key, {})
        protocol["test_corpus"] = test
    ev = dict(raw.get("evaluation", {}))
    norms = list(ev.get("normalisation", ["global"]))
    ev["normalisation"] = norms
    ev.setdefault("balancing", "class_weight")
    ev.setdefault("inner_folds", 3)
    ev.setdefault("bootstrap", 1000)
    metric_reg = CLASSIFICATION_METRICS if task["type"] == "classification" else REGRESSION_METRICS
    ev.setdefault("metrics", metric_reg.names())
    reg = model_registry(task["type"])
    models = dict(raw["models"])
    for name, m in models.items():
        m = dict(m)
        m.setdefault("model", name)
        m.setdefault("grid", reg.get(m["model"]).grid)
        m.setdefault("params", {})
        models[name] = m
    from featurekit.featureset import LateFusion, format_feature_set
    from featurekit.featureset import parse_feature_set as parse

    feats = raw["features"]
    sets = [parse_feature_set(s, where=f"features.sets[{i}]") for i, s in enumerate(feats["sets"])]
    for i, group in enumerate(feats.get("late_fusion", [])):
        members = tuple(parse_feature_set(s, where=f"features.late_fusion[{i}]") for s in group)
        sets.append(
            FeatureSet(
                format_feature_set(LateFusion(tuple(parse(m.name) for m in members))),
                tuple(x for m in members for x in m.members),
                late=True,
                late_groups=members,
            )
        )
    sets += _stacked_sets(feats.get("stacking", []), raw["models"])
    if len({s.name for s in sets}) != len(sets):
        raise SpecError("features.sets: a feature set is listed twice")
    names = {s.name for s in sets}
    for name, m in models.items():
        for key, known in (("sets", names), ("normalisation", set(norms))):
            if key in m:
                m[key] = list(m[key])
                unknown_vals = [v for v in m[key] if v not in known]
                if unknown_vals:
                    raise SpecError(f"models.{name}.{key}: {unknown_vals} not among {sorted(known)}")
    _check_report(doc, sets)
    _check_waveform_models(models, sets, reg, norms, dict(raw.get("audio", {})))
    _check_sequence_models(models, sets, reg)
    _apply_augmentation(raw.get("augmentation"), models, sets, reg)
    _check_attribution(raw.get("attribution"), task["type"], models, sets, reg)
    _apply_waveform_augmentation(raw, models, sets, reg)
    extractors = {
        name: {k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in params.items()}
        for name, params in raw.get("extractors", {}).items()
    }
    _check_audit_names(raw.get("audit"))
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
        sections=doc,
        corpora=corpora,
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

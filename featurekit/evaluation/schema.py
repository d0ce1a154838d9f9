"""The typed schema of an experiment spec: one pydantic model per section, strict and closed.

Every section forbids keys it does not declare (an unknown key names ``section.key`` and the closest
valid key) and checks types strictly (``"2"`` and ``2.0`` are not integers, ``true`` is not a number).
What depends on registries or on other sections (corpus, protocol, metric and model names, feature-set
grammar, estimator and extractor parameters) is checked by :func:`featurekit.evaluation.spec.validate`
after this structural pass. The validated document is kept as ``Spec.sections``; the runner reads the
resolved dicts (``Spec.task``, ``Spec.models``, ...), whose contents and digests this schema leaves
exactly as they were.

pydantic was chosen over jsonschema or hand-written checks: the sections are Python classes (typed
attributes for code that reads them), strict mode gives the int/float/bool rules with one switch, and
its errors carry the location of every problem, so the messages can name the key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Len
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from featurekit.evaluation.normalisation import NORMALISATIONS
from featurekit.parameters import closest

BALANCING = ("none", "class_weight", "undersample")

Name = Annotated[str, Len(1)]
NonEmptyNames = Annotated[list[Name], Len(1)]


class Section(BaseModel):
    """A spec table: declared keys only, strict types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bad = [k for k in data if k not in cls.model_fields]
            if bad:
                valid = sorted(cls.model_fields)
                raise PydanticCustomError(
                    "key_error",
                    f"unknown key {bad[0]!r}{closest(bad[0], valid)} (valid: {', '.join(valid)})",
                    {"key": bad[0]},
                )
        return data


def _no_repeats(key: str, values: list | None) -> None:
    if values and len(set(map(str, values))) != len(values):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        raise PydanticCustomError("key_error", f"lists {repeated} more than once", {"key": key})


class CorpusSection(Section):
    """``[corpus]``: the registered adapter, where its root comes from, adapter options."""

    name: Name
    root_env: Name | None = None
    options: dict[str, Any] = {}


class CorporaEntry(Section):
    """``[corpora.NAME]`` of a multi-corpus spec: one corpus, its root and its labels' mapping.

    ``adapter``: the registered corpus adapter (default: NAME, so ``[corpora.emodb]`` reads Emo-DB);
    ``mapping``: corpus label -> common label (a label already in ``task.subset`` maps to itself);
    ``drop``: corpus labels deliberately left out (every other label must be mapped: a label that is
    neither mapped nor dropped is an error, never silently lost).
    """

    adapter: Name | None = None
    root_env: Name | None = None
    options: dict[str, Any] = {}
    mapping: dict[str, Name] = {}
    drop: list[Name] = []


class TaskSection(Section):
    """``[task]``: classification of one label column, or regression of one or more numeric columns."""

    type: Literal["classification", "regression"] = "classification"
    target: Name | None = None
    targets: Name | Annotated[list[Name], Len(1)] | None = None
    subset: Annotated[list[Name], Len(1)] | None = None
    mapping: dict[str, str] | None = None
    min_per_class: Annotated[int, Ge(1)] | None = None

    @model_validator(mode="after")
    def _by_type(self) -> TaskSection:
        if self.type == "classification" and self.targets is not None:
            raise PydanticCustomError(
                "key_error", "classification takes one label column: use task.target", {"key": "targets"})
        if self.type == "regression":
            if self.target is not None and self.targets is not None:
                raise PydanticCustomError("key_error", "give task.target or task.targets, not both",
                                          {"key": "targets"})
            if self.target is None and self.targets is None:
                raise PydanticCustomError("key_error", "missing: regression needs one or more numeric "
                                          "target columns", {"key": "targets"})
            for key in ("subset", "mapping", "min_per_class"):
                if getattr(self, key) is not None:
                    raise PydanticCustomError("key_error", "only for classification tasks", {"key": key})
        if isinstance(self.targets, list):
            _no_repeats("targets", self.targets)
        return self


class TestCorpusSection(Section):
    """``[protocol.test_corpus]`` of ``cross_corpus``: the test corpus and its label mapping."""

    name: Name
    root_env: Name | None = None
    options: dict[str, Any] = {}
    mapping: dict[str, str] = {}


class LosoProtocol(Section):
    """Leave one group (``group``: a manifest column, e.g. speaker or session) out."""

    name: Literal["loso"] = "loso"
    group: Name = "speaker"


class KFoldProtocol(Section):
    """Stratified k-fold (speaker-dependent); ``group`` groups the inner search folds."""

    name: Literal["kfold"]
    k: Annotated[int, Ge(2)] = 5
    group: Name = "speaker"


class SplitProtocol(Section):
    """A fixed split by the values of a manifest ``column``."""

    name: Literal["split"]
    column: Name = "split"
    train: Annotated[list[Name | int], Len(1)] | None = None
    test: Annotated[list[Name | int], Len(1)] | None = None
    group: Name = "speaker"


class CrossCorpusProtocol(Section):
    """Train on ``[corpus]``, test on ``[protocol.test_corpus]``."""

    name: Literal["cross_corpus"]
    test_corpus: TestCorpusSection
    group: Name = "speaker"


class CrossCorpusMatrixProtocol(Section):
    """Every ordered pair of ``[corpora]`` (train on A, test on B; one fit per training corpus) plus
    each corpus' own leave-one-speaker-out on the diagonal."""

    name: Literal["cross_corpus_matrix"]


class LeaveOneCorpusOutProtocol(Section):
    """Train on all ``[corpora]`` but one, test on that one."""

    name: Literal["leave_one_corpus_out"]


class MultiCorpusLosoProtocol(Section):
    """Leave one speaker out of the pooled ``[corpora]`` (speakers prefixed by their corpus)."""

    name: Literal["multi_corpus_loso"]


#: Protocols that need a ``[corpora]`` table (and no ``[corpus]``).
MULTI_CORPUS_PROTOCOLS = ("cross_corpus_matrix", "leave_one_corpus_out", "multi_corpus_loso")

#: Protocol name -> the schema of its options (every registered protocol has one; a test checks).
PROTOCOL_SCHEMAS: dict[str, type[Section]] = {
    "loso": LosoProtocol,
    "kfold": KFoldProtocol,
    "split": SplitProtocol,
    "cross_corpus": CrossCorpusProtocol,
    "cross_corpus_matrix": CrossCorpusMatrixProtocol,
    "leave_one_corpus_out": LeaveOneCorpusOutProtocol,
    "multi_corpus_loso": MultiCorpusLosoProtocol,
}


class StackingEntry(Section):
    """``[[features.stacking]]``: one stacked system. ``members``: ``FEATURE_SET:MODEL`` pairs (MODEL a
    ``[models.NAME]`` entry) whose out-of-fold class scores feed the ``meta`` ``[models.NAME]`` entry."""

    members: Annotated[list[Name], Len(2)]
    meta: Name

    @model_validator(mode="after")
    def _unique(self) -> StackingEntry:
        _no_repeats("members", self.members)
        return self


class FeaturesSection(Section):
    """``[features]``: feature sets (early fusion with ``+``) and late-fusion groups."""

    sets: NonEmptyNames
    late_fusion: list[Annotated[list[Name], Len(2)]] = []
    stacking: list[StackingEntry] = []

    @model_validator(mode="after")
    def _unique(self) -> FeaturesSection:
        _no_repeats("sets", self.sets)
        return self


class EvaluationSection(Section):
    """``[evaluation]``: normalisations, balancing, inner search folds, metrics, bootstrap resamples."""

    normalisation: Annotated[list[Literal[NORMALISATIONS]], Len(1)] = ["global"]  # type: ignore[valid-type]
    balancing: Literal[BALANCING] = "class_weight"  # type: ignore[valid-type]
    inner_folds: Annotated[int, Ge(2)] = 3
    metrics: NonEmptyNames | None = None
    bootstrap: Annotated[int, Ge(0)] = 1000

    @model_validator(mode="after")
    def _unique(self) -> EvaluationSection:
        _no_repeats("normalisation", self.normalisation)
        _no_repeats("metrics", self.metrics)
        return self


class ModelSection(Section):
    """``[models.NAME]``: the registered model (default: NAME), its grid, fixed params and selectors."""

    model: Name | None = None
    grid: dict[str, Annotated[list[Any], Len(1)]] | None = None
    params: dict[str, Any] = {}
    sets: NonEmptyNames | None = None
    normalisation: Annotated[list[Literal[NORMALISATIONS]], Len(1)] | None = None  # type: ignore[valid-type]
    inner_folds: Annotated[int, Ge(2)] | None = None


class SpecAugmentSection(Section):
    """``[augmentation.spec_augment]``: SpecAugment masks per training item and batch (0: none)."""

    time_masks: Annotated[int, Ge(0)] = 0
    time_mask_width: Annotated[int, Ge(0)] = 0
    freq_masks: Annotated[int, Ge(0)] = 0
    freq_mask_width: Annotated[int, Ge(0)] = 0


class WaveformSection(Section):
    """``[augmentation.waveform]``: ``copies`` augmented copies of every training utterance, each made
    by the chain ``[[augmentation.waveform.transforms]]`` (a ``name`` of
    :data:`featurekit.augmentation.WAVEFORM_TRANSFORMS` and its parameters, checked against their
    declarations by :func:`featurekit.evaluation.spec.check_document`), seeded by ``seed``
    (default: the spec's ``seed``) with the utterance and the copy index."""

    transforms: Annotated[list[dict[str, Any]], Len(1)]
    copies: Annotated[int, Ge(1)] = 1
    seed: Annotated[int, Ge(0)] | None = None


class AugmentationSection(Section):
    """``[augmentation]``: training-only augmentation, and the ``[models.NAME]`` entries it applies to
    (default: every torch head that takes frame sequences only)."""

    spec_augment: SpecAugmentSection | None = None
    waveform: WaveformSection | None = None
    models: NonEmptyNames | None = None


class AttributionSection(Section):
    """``[attribution]``: attribution methods computed in every fold on its test utterances
    (:mod:`featurekit.evaluation.attribution`), their options, and the ``[models.NAME]`` entries they
    apply to (default: every entry a method applies to)."""

    methods: Annotated[list[Name], Len(1)]
    models: NonEmptyNames | None = None
    time_bins: Annotated[int, Ge(1)] = 32
    ig_steps: Annotated[int, Ge(2)] = 32
    n_repeats: Annotated[int, Ge(1)] = 5
    top_k: Annotated[int, Ge(1)] = 10

    @model_validator(mode="after")
    def _known_methods(self) -> AttributionSection:
        from featurekit.evaluation.attribution import METHOD_NAMES

        for i, name in enumerate(self.methods):
            if name not in METHOD_NAMES:
                raise PydanticCustomError(
                    "key_error", f"methods[{i}]: unknown attribution method {name!r}"
                    f"{closest(name, METHOD_NAMES)} (known: {', '.join(METHOD_NAMES)})", {"key": "methods"})
        _no_repeats("methods", self.methods)
        _no_repeats("models", self.models)
        return self


class AuditSection(Section):
    """``[audit]``: names of audit checks whose errors the spec accepts (the audit checks the names)."""

    acknowledge: list[Name] = []


class ReportSection(Section):
    """``[report]``: display names of feature sets and models, a title, and the systems declared before
    the run (``"FEATURESET/MODEL/NORMALISATION"``; the report marks their rows)."""

    display_names: dict[str, Name] = {}
    title: Name | None = None
    declared: list[Name] = []

    @model_validator(mode="after")
    def _unique(self) -> ReportSection:
        _no_repeats("declared", self.declared)
        return self


class SpecDocument(Section):
    """A whole spec file."""

    name: Name | None = None
    description: str | None = None
    seed: Annotated[int, Ge(0)] = 0
    corpus: CorpusSection | None = None
    corpora: Annotated[dict[Name, CorporaEntry], Len(2)] | None = None
    task: TaskSection = TaskSection()
    # a table here; after the checks in featurekit.evaluation.spec, the typed PROTOCOL_SCHEMAS[name] section
    protocol: dict[str, Any] | Section = {}
    audio: dict[str, Any] = {}  # checked against featurekit.audio.AudioOptions
    extractors: dict[str, dict[str, Any]] = {}  # checked against each extractor's declared parameters
    features: FeaturesSection
    evaluation: EvaluationSection = EvaluationSection()
    models: Annotated[dict[str, ModelSection], Len(1)]
    augmentation: AugmentationSection | None = None
    attribution: AttributionSection | None = None
    audit: AuditSection = AuditSection()
    report: ReportSection = ReportSection()

    @model_validator(mode="after")
    def _one_corpus_table(self) -> SpecDocument:
        if self.corpus is None and self.corpora is None:
            raise PydanticCustomError("key_error", "missing: give [corpus] (one corpus) or [corpora.NAME] "
                                      "tables (several corpora)", {"key": "corpus"})
        if self.corpus is not None and self.corpora is not None:
            raise PydanticCustomError("key_error", "give [corpus] (one corpus) or [corpora.NAME] tables "
                                      "(several corpora), not both", {"key": "corpora"})
        return self

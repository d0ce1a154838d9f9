"""Display names of feature sets, models and systems in report tables and figure titles, and the
group and variant of a feature set.

Feature-set names (``EXTRACTOR[.KIND][@LAYER]``, early fusion ``a+b``, late fusion
``late(a|b)``, stacking ``stack(a:M|b:M)->META``; :mod:`featurekit.featureset`) are parsed by
:func:`parse_feature_set_name` into a *group* (the extractor, or ``fusion``) and a *variant*
(``native``, ``HSF1`` = ``mean_std``, ``HSF2`` = ``mean_std_silence``, ``stats``, ``LLD`` = frame
sequences, ``layer N``), so that the
functionals of the same low-level descriptors sit next to each other in every table.

A results directory's ``spec.json`` carries the spec's ``[report]`` section: ``display_names`` (feature
set or model -> text) overrides the default names derived here, e.g. ``eGeMAPS (88)`` for
``egemaps``, ``MFCC HSF1`` for ``mfcc.mean_std``, ``Whisper tiny.en L4`` for ``whisper_ct2@4``,
``SVM`` for ``svm``; ``declared`` lists systems ``FEATURESET/MODEL/NORMALISATION`` that the spec
declared before its run (the tables mark them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

from featurekit.featureset import (
    FeatureSet,
    FeatureSetError,
    LateFusion,
    Stacking,
    TableKind,
    default_kind,
    parse_name,
)

#: extractor -> pretty name
EXTRACTOR_NAMES = {"egemaps": "eGeMAPS", "gemaps": "GeMAPS", "compare": "ComParE", "mfcc": "MFCC",
                   "logmel": "log-Mel", "paa": "pAA", "paa_d": "pAA+\u0394", "whisper_ct2": "Whisper",
                   "hf_encoder": "HF encoder"}
#: dimensions of fixed-size native feature sets (openSMILE's functionals)
NATIVE_DIMS = {"egemaps": 88, "gemaps": 62, "compare": 6373}
MODEL_NAMES = {"svm": "SVM", "rf": "RF", "mlp": "MLP", "xgb": "XGBoost", "knn": "kNN", "logreg": "LogReg",
               "svr": "SVR", "ridge": "Ridge", "torch_mlp": "MLP (torch)", "lstm": "LSTM", "gru": "GRU",
               "conv1d": "1-D CNN"}
NORMALISATION_NAMES = {"none": "no norm.", "global": "global z", "speaker": "speaker z"}
_WHISPER_SIZE = re.compile(r"(?:faster-)?whisper-([A-Za-z0-9.\-]+)$")


# -- feature-set groups and variants -------------------------------------------------------------
KIND_LABELS = {TableKind.NATIVE: "native", TableKind.MEAN_STD: "HSF1", TableKind.MEAN_STD_SILENCE: "HSF2",
               TableKind.STATS: "stats", TableKind.LLD: "LLD"}
KIND_ORDER = {k: i for i, k in enumerate(KIND_LABELS)}
VARIANT_LEGEND = ("native = the extractor's own functionals; HSF1 = mean_std (mean and std of each LLD); "
                  "HSF2 = mean_std_silence (HSF1 plus pause/silence features); stats = extended "
                  "statistics (extremes, moments, percentiles, slope); LLD = frame-level sequences "
                  "(sequence models); layer N = encoder layer N (negative: counted from the last)")
FUSION = "fusion"


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


@dataclass
class DisplayNames:
    """Display names for one experiment: spec overrides, else defaults.

    Attributes
    ----------
    overrides
        ``display_names`` of the spec(s)' ``[report]`` section (feature set or model -> text).
    extractor_labels
        Extra words after an extractor's pretty name (``{"whisper_ct2": "tiny.en"}``, read from the
        spec's extractor options).
    """

    overrides: dict[str, str] = field(default_factory=dict)
    extractor_labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_specs(cls, specs: Iterable[dict]) -> DisplayNames:
        """Names from ``spec.json`` documents (later ones win)."""
        overrides, labels = {}, {}
        for doc in specs:
            raw = (doc or {}).get("spec", {}) or {}
            overrides.update((raw.get("report") or {}).get("display_names") or {})
            for name, options in (raw.get("extractors") or {}).items():
                model = str((options or {}).get("model") or "").rstrip("/").rsplit("/", 1)[-1]
                m = _WHISPER_SIZE.match(model)
                if m:
                    labels[name] = m.group(1)
        return cls(overrides, labels)

    def feature_set(self, name: str) -> str:
        """``eGeMAPS (88)``, ``MFCC HSF1``, ``Whisper tiny.en L4``, fusion as ``A + B`` / ``late(A | B)`` /
        ``stack(A:SVM | B:LogReg)->META`` (names read by :func:`featurekit.featureset.parse_name`)."""
        if name in self.overrides:
            return self.overrides[name]
        try:
            parsed = parse_name(name)
        except FeatureSetError:  # not a feature-set name: shown as it is
            return name
        if isinstance(parsed, LateFusion):
            return "late(" + " | ".join(self.feature_set(str(g)) for g in parsed.groups) + ")"
        if isinstance(parsed, Stacking):
            members = " | ".join(f"{self.feature_set(str(fs))}:{self.model(m)}" for fs, m in parsed.members)
            return f"stack({members})->{self.model(parsed.meta)}"
        if len(parsed.members) > 1:
            return " + ".join(self.feature_set(str(m)) for m in parsed.members)
        table = parsed.members[0]
        if parsed.waveform:  # the conditioned audio (fine-tuned encoders)
            return "raw audio"
        extractor, layer = table.extractor, table.layer
        default = _default_kind(extractor)
        kind = default if table.kind is None else table.kind.value
        words = [EXTRACTOR_NAMES.get(extractor, extractor)]
        if extractor in self.extractor_labels:
            words.append(self.extractor_labels[extractor])
        if kind != TableKind.NATIVE:
            words.append(KIND_LABELS.get(kind, kind))
        if layer is not None:
            words.append(f"L{layer}")
        text = " ".join(words)
        if kind == TableKind.NATIVE and layer is None and extractor in NATIVE_DIMS:
            text += f" ({NATIVE_DIMS[extractor]})"
        return text

    def model(self, name: str) -> str:
        """``SVM``, ``LogReg``, ... (a spec's label such as ``svm_rbf`` is kept as it is)."""
        return self.overrides.get(name, MODEL_NAMES.get(name, name))

    def normalisation(self, name: str) -> str:
        """``global z``, ``speaker z``, ``no norm.``."""
        return NORMALISATION_NAMES.get(name, name)

    def system(self, feature_set: str, model: str, normalisation: str) -> str:
        """``eGeMAPS (88) / SVM / speaker z``."""
        return f"{self.feature_set(feature_set)} / {self.model(model)} / {self.normalisation(normalisation)}"


def declared_systems(specs: Iterable[dict]) -> list[tuple[str, str, str]]:
    """``(feature_set, model, normalisation)`` of every ``[report] declared`` entry of the specs."""
    out: list[tuple[str, str, str]] = []
    for doc in specs:
        raw = (doc or {}).get("spec", {}) or {}
        for entry in (raw.get("report") or {}).get("declared") or []:
            parts = split_declared(entry)
            if parts and parts not in out:
                out.append(parts)
    return out


def split_declared(entry: str) -> tuple[str, str, str] | None:
    """``"egemaps+compare/svm/speaker"`` -> ``("egemaps+compare", "svm", "speaker")``; ``None`` if
    malformed."""
    parts = str(entry).rsplit("/", 2)
    if len(parts) != 3 or not all(p.strip() for p in parts):
        return None
    return parts[0].strip(), parts[1].strip(), parts[2].strip()


__all__ = ["EXTRACTOR_NAMES", "FUSION", "KIND_LABELS", "MODEL_NAMES", "NATIVE_DIMS", "VARIANT_LEGEND",
           "DisplayNames", "FeatureSetInfo", "declared_systems", "layer_sort_key", "parse_feature_set_name",
           "split_declared"]

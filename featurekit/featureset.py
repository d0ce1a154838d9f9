"""Feature-set names: one grammar, one parser, one formatter, and the table kinds as an enum.

Grammar (no whitespace anywhere)::

    feature_set := "waveform"                        the conditioned audio itself (no fusion)
                 | table ("+" table)*                early fusion: columns side by side (frame by
                                                     frame, on the first member's frames, for lld)
    table       := EXTRACTOR ["." KIND] ["@" LAYER]
    EXTRACTOR   := [A-Za-z_][A-Za-z0-9_]*             a registered extractor (checked by
                                                     :func:`resolve_feature_set`, not by the parser)
    KIND        := native | lld | mean_std | mean_std_silence | stats        (:class:`TableKind`)
    LAYER       := INT ("," INT)* | mean | wsum | wsum(INT "," INT ("," INT)*)
    INT         := 0 | -?[1-9][0-9]*                  negative: counted from the last layer

A table without ``.KIND`` is the extractor's default table (:func:`default_kind`: ``native`` when it
has its own functionals, else ``mean_std``). ``@LAYER`` picks encoder layers of the stored table: one
layer, several side by side, ``mean`` (their average), ``wsum`` (every layer, weighted by a learned
sum, :mod:`featurekit.evaluation.layerfusion`) or ``wsum(I,J,...)`` (two or more of them). A frame-level
table (``lld``) fuses only with frame-level tables.

``waveform`` (:data:`WAVEFORM`) names no stored table: it is each utterance's audio as the spec's
``[audio]`` conditions it for every extractor (:func:`featurekit.audio.load_audio`), a 1-D float32
signal, read when the evaluation needs it and never written to the feature store; only models that
take raw audio (``finetune``) accept it. Its one member is ``TableRef("waveform", TableKind.WAVEFORM)``.

Two more forms are names the evaluation gives to systems built from a spec's ``[features]``, found in
``results.csv``, ``[models.NAME] sets`` and reports (:func:`parse_name` reads all three)::

    late(feature_set|feature_set|...)                 late fusion (features.late_fusion)
    stack(feature_set:MODEL|feature_set:MODEL|...)->MODEL     stacking (features.stacking)

:func:`format_feature_set` writes every parsed name back exactly: ``format_feature_set(parse_name(s))
== s`` for every name the parser accepts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from featurekit.parameters import unknown

__all__ = ["WAVEFORM", "FeatureSet", "FeatureSetError", "LateFusion", "LayerSelection", "Stacking",
           "TableKind", "TableRef", "default_kind", "format_feature_set", "parse_feature_set",
           "parse_layer_selection", "parse_name", "parse_system", "parse_table", "parse_tables",
           "resolve_feature_set"]


class FeatureSetError(ValueError):
    """A feature-set name does not follow the grammar (the message names the bad part)."""


class TableKind(str, Enum):
    """What a stored feature table holds. The value is the on-disk name (``STORE/.../<value>-<hash>``)."""

    NATIVE = "native"  #: the extractor's own utterance-level functionals (openSMILE's, encoders' mean+std)
    LLD = "lld"  #: frame-level low-level descriptors (sequences)
    MEAN_STD = "mean_std"  #: HSF1: mean and std of every LLD
    MEAN_STD_SILENCE = "mean_std_silence"  #: HSF2: HSF1 plus pause/silence features
    STATS = "stats"  #: extremes, moments, percentiles, slope and intercept of every LLD
    WAVEFORM = "waveform"  #: the conditioned audio itself (the feature set ``waveform``; never stored)

    __str__ = str.__str__  # "lld", not "TableKind.LLD", in f-strings and messages
    __format__ = str.__format__
    __hash__ = str.__hash__  # equal to its value as a dict key or set member, on every Python version

    @property
    def frame_level(self) -> bool:
        """One row per frame (sequences): only ``lld``."""
        return self is TableKind.LLD

    @property
    def utterance_level(self) -> bool:
        """One row (vector) per utterance: ``native`` and the HSF functionals."""
        return not (self.frame_level or self.waveform)

    @property
    def waveform(self) -> bool:
        """The conditioned audio itself, no extractor's output (only the feature set ``waveform``)."""
        return self is TableKind.WAVEFORM

    @property
    def functional(self) -> bool:
        """An HSF functional (:data:`featurekit.extractors.functionals.FUNCTIONALS`) applied to LLDs."""
        return self not in (TableKind.NATIVE, TableKind.LLD, TableKind.WAVEFORM)

    @property
    def needs_lld(self) -> bool:
        """Computed from the extractor's frame-level output (the stored kinds but ``native``)."""
        return self not in (TableKind.NATIVE, TableKind.WAVEFORM)

    @property
    def store_name(self) -> str:
        """The table kind's name in the feature store (the ``<kind>`` of ``<kind>-<hash>``; the value)."""
        return self.value

    @classmethod
    def parse(cls, text: str, *, context: str = "") -> TableKind:
        """The kind named ``text``; a :class:`FeatureSetError` naming it and the valid kinds otherwise."""
        try:
            return cls(text)
        except ValueError:
            raise FeatureSetError(unknown("", text, [k.value for k in cls], "kind", context)[1]) from None

    @classmethod
    def functionals(cls) -> list[TableKind]:
        """The HSF functional kinds."""
        return [k for k in cls if k.functional]


def default_kind(extractor: Any) -> TableKind:
    """The table a bare extractor name means: ``native`` if the extractor class has its own
    functionals, else ``mean_std``."""
    return TableKind.NATIVE if extractor.has_native else TableKind.MEAN_STD


# -- the parts -----------------------------------------------------------------------------------
_INT = r"(?:0|-?[1-9][0-9]*)"
_INTS = re.compile(rf"{_INT}(?:,{_INT})*")
_EXTRACTOR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WSUM = "wsum"
_MEAN = "mean"
#: The feature set of the conditioned audio itself (see the module docstring).
WAVEFORM = "waveform"


@dataclass(frozen=True)
class LayerSelection:
    """An ``@LAYER`` selection: ``layers`` (``None``: every layer, ``wsum`` only), ``mean`` (their
    average) and ``weighted`` (a learned weighted sum of the layers)."""

    layers: tuple[int, ...] | None = None
    mean: bool = False
    weighted: bool = False

    def __str__(self) -> str:
        if self.mean:
            return _MEAN
        listed = ",".join(str(n) for n in self.layers or ())
        if self.weighted:
            return f"{_WSUM}({listed})" if self.layers else _WSUM
        return listed

    @property
    def selection(self) -> int | list[int] | str | None:
        """The argument of :func:`featurekit.extractors.ssl.layers.select_layers`: an int, a list of
        ints, ``"mean"``, or ``None`` (every layer)."""
        if self.mean:
            return _MEAN
        if self.layers is None:
            return None
        return self.layers[0] if len(self.layers) == 1 else list(self.layers)


def parse_layer_selection(text: str) -> LayerSelection:
    """``"-1"``, ``"3,4"``, ``"mean"``, ``"wsum"``, ``"wsum(2,3,4)"`` -> :class:`LayerSelection`."""
    if text == _MEAN:
        return LayerSelection(mean=True)
    if text == _WSUM:
        return LayerSelection(weighted=True)
    if text.startswith(_WSUM):
        inner = text[len(_WSUM):]
        if not (inner.startswith("(") and inner.endswith(")") and "," in inner
                and _INTS.fullmatch(inner[1:-1])):
            raise FeatureSetError(f"layer {text!r}: a learned weighted sum of layers is 'wsum' (every layer) "
                                  f"or 'wsum(I,J,...)' (two or more layers)")
        return LayerSelection(tuple(int(n) for n in inner[1:-1].split(",")), weighted=True)
    if not _INTS.fullmatch(text):
        raise FeatureSetError(f"layer {text!r}: use an index, indices joined by ',' or 'mean' "
                              f"(or 'wsum' / 'wsum(I,J,...)')")
    return LayerSelection(tuple(int(n) for n in text.split(",")))


@dataclass(frozen=True)
class TableRef:
    """One stored table, optionally with encoder layers picked: ``EXTRACTOR[.KIND][@LAYER]``.

    ``kind`` is ``None`` when the name leaves it to the extractor (see :func:`resolve_feature_set`).
    """

    extractor: str
    kind: TableKind | None = None
    layer: LayerSelection | None = None

    def __str__(self) -> str:
        if self.kind is TableKind.WAVEFORM:
            return self.extractor
        return (self.extractor + (f".{self.kind.value}" if self.kind is not None else "")
                + (f"@{self.layer}" if self.layer is not None else ""))

    @property
    def frame_level(self) -> bool:
        """Frame sequences (``lld``); a table with the default kind is utterance-level."""
        return self.kind is not None and self.kind.frame_level

    @property
    def table(self) -> str:
        """``EXTRACTOR.KIND`` (the kind must be known: see :func:`resolve_feature_set`)."""
        if self.kind is None:
            raise ValueError(f"{self}: the table kind is the extractor's default; resolve it first")
        return f"{self.extractor}.{self.kind.store_name}"


@dataclass(frozen=True)
class FeatureSet:
    """One table, or several fused early (``a+b``): their columns side by side."""

    members: tuple[TableRef, ...]

    def __str__(self) -> str:
        return "+".join(str(m) for m in self.members)

    @property
    def frame_level(self) -> bool:
        """Frame sequences (every member ``lld``)."""
        return all(m.frame_level for m in self.members)

    @property
    def waveform(self) -> bool:
        """The conditioned audio (the feature set ``waveform``)."""
        return any(m.kind is not None and m.kind.waveform for m in self.members)

    @property
    def tables(self) -> tuple[TableRef, ...]:
        return self.members


@dataclass(frozen=True)
class LateFusion:
    """``late(a|b|...)``: one model per feature set, their class probabilities averaged."""

    groups: tuple[FeatureSet, ...]

    def __str__(self) -> str:
        return "late(" + "|".join(str(g) for g in self.groups) + ")"

    @property
    def tables(self) -> tuple[TableRef, ...]:
        return tuple(m for g in self.groups for m in g.members)


@dataclass(frozen=True)
class Stacking:
    """``stack(a:MODEL|b:MODEL|...)->META``: the members' out-of-fold scores feed the ``META`` model."""

    members: tuple[tuple[FeatureSet, str], ...]
    meta: str

    def __str__(self) -> str:
        return "stack(" + "|".join(f"{fs}:{model}" for fs, model in self.members) + f")->{self.meta}"

    @property
    def tables(self) -> tuple[TableRef, ...]:
        return tuple(m for fs, _ in self.members for m in fs.members)


Name = FeatureSet | LateFusion | Stacking


# -- parsing -------------------------------------------------------------------------------------
def _table(text: str, whole: str) -> TableRef:
    body, at, layer_text = text.partition("@")
    extractor, dot, kind_text = body.partition(".")
    if not _EXTRACTOR.fullmatch(extractor):
        what = "no extractor" if not extractor else f"extractor name {extractor!r} is not a name"
        raise FeatureSetError(f"feature set {whole!r}: {what} in {text!r} "
                              f"(expected EXTRACTOR[.KIND][@LAYER])")
    kind = None
    if dot:
        if not kind_text:
            raise FeatureSetError(f"feature set {whole!r}: empty kind after '.' in {text!r}")
        kind = TableKind.parse(kind_text, context=f"in {whole!r}")
        if kind.waveform:
            raise FeatureSetError(f"feature set {whole!r}: {kind_text!r} is no extractor's table; the "
                                  f"conditioned audio is the feature set {WAVEFORM!r} on its own")
    layer = None
    if at:
        if not layer_text:
            raise FeatureSetError(f"feature set {whole!r}: empty layer after '@' in {text!r}")
        layer = parse_layer_selection(layer_text)
    return TableRef(extractor, kind, layer)


def parse_feature_set(text: str) -> FeatureSet:
    """Parse ``EXTRACTOR[.KIND][@LAYER]`` joined by ``+`` (see the module docstring).

    Raises
    ------
    FeatureSetError
        Naming the bad part: whitespace, an empty member (``a++b``), a bad extractor name, an unknown
        kind, a bad layer, a frame-level table fused with utterance-level ones, or a generated
        ``late(...)`` / ``stack(...)`` name (use :func:`parse_name` for those).
    """
    if not isinstance(text, str):
        raise FeatureSetError(f"feature set {text!r}: expected a string")
    if not text:
        raise FeatureSetError("empty feature-set name")
    if any(c.isspace() for c in text):
        raise FeatureSetError(f"feature set {text!r}: no spaces in feature-set names "
                              f"(e.g. 'egemaps+compare', 'mfcc.stats', 'whisper_ct2@-1')")
    if text.startswith(("late(", "stack(")):
        raise FeatureSetError(f"feature set {text!r}: late(...) and stack(...) name systems built from "
                              f"[features] late_fusion / [[features.stacking]]; list their members there")
    if text == WAVEFORM:
        return FeatureSet((TableRef(WAVEFORM, TableKind.WAVEFORM),))
    parts = text.split("+")
    if not all(parts):
        raise FeatureSetError(f"feature set {text!r}: empty member (members are joined by a single '+')")
    if any(p.partition("@")[0].partition(".")[0] == WAVEFORM for p in parts):
        raise FeatureSetError(f"feature set {text!r}: {WAVEFORM!r} (the conditioned audio) stands alone: "
                              f"no fusion, kind or layer; models that take raw audio accept it")
    members = tuple(_table(p, text) for p in parts)
    lld = [m.frame_level for m in members]
    if any(lld) and not all(lld):
        raise FeatureSetError(f"{text!r}: LLD sequences can only be concatenated with LLD sequences "
                              f"(frame by frame, e.g. egemaps.lld+mfcc.lld), not with vectors")
    return FeatureSet(members)


def parse_system(text: str, *, example: str = "egemaps:svm") -> tuple[Name, str]:
    """``"FEATURE_SET:MODEL"`` -> (feature set, model name); the feature set is read by
    :func:`parse_name` (a ``late(...)`` or ``stack(...)`` system name is one too)."""
    fs_text, colon, model = str(text).rpartition(":")
    if not colon or not fs_text or not model:
        raise FeatureSetError(f"expected FEATURE_SET:MODEL, e.g. {example}, got {text!r}")
    return parse_name(fs_text), model


_STACK = re.compile(r"stack\((?P<members>.+)\)->(?P<meta>[^()|:]+)")


def parse_name(text: str) -> Name:
    """Any feature-set name: a :class:`FeatureSet`, ``late(...)`` (:class:`LateFusion`) or
    ``stack(...)->META`` (:class:`Stacking`)."""
    if isinstance(text, str) and text.startswith("late(") and text.endswith(")"):
        groups = text[len("late("):-1].split("|")
        if len(groups) < 2:
            raise FeatureSetError(f"{text!r}: late fusion needs two or more feature sets joined by '|'")
        return LateFusion(tuple(parse_feature_set(g) for g in groups))
    if isinstance(text, str) and text.startswith("stack("):
        m = _STACK.fullmatch(text)
        if not m:
            raise FeatureSetError(f"{text!r}: expected stack(FEATURE_SET:MODEL|...)->MODEL")
        members = tuple(parse_system(p) for p in m.group("members").split("|"))
        if len(members) < 2:
            raise FeatureSetError(f"{text!r}: stacking needs two or more members joined by '|'")
        return Stacking(members, m.group("meta"))
    return parse_feature_set(text)


def parse_table(text: str) -> TableRef:
    """One table to compute, ``EXTRACTOR[.KIND]`` (extraction requests: no fusion, no layers)."""
    fs = parse_feature_set(text)
    if len(fs.members) > 1:
        raise FeatureSetError(f"{text!r}: name the tables one by one (EXTRACTOR[.KIND], separated by ','), "
                              f"not a fused feature set")
    table = fs.members[0]
    if fs.waveform:
        raise FeatureSetError(f"{text!r}: the conditioned audio is read when a spec needs it, never stored")
    if table.layer is not None:
        raise FeatureSetError(f"{text!r}: extraction stores every encoder layer; pick layers "
                              f"(@{table.layer}) in a spec's feature sets")
    return table


def parse_tables(features: str | Sequence[str]) -> list[TableRef]:
    """Tables to compute: a comma-separated string or a list of ``EXTRACTOR[.KIND]`` (empty entries and
    the spaces around entries are skipped), each read by :func:`parse_table`."""
    entries = features.split(",") if isinstance(features, str) else list(features)
    return [parse_table(e.strip()) for e in entries if e.strip()]


def format_feature_set(fs: Name | TableRef) -> str:
    """The name of a parsed feature set (the exact text it was parsed from)."""
    return str(fs)


# -- against the extractor registry ----------------------------------------------------------------
def resolve_feature_set(fs: FeatureSet) -> FeatureSet:
    """``fs`` with every default kind made explicit, checked against the extractor registry: the
    extractor exists, ``native`` only for extractors with their own functionals, ``@LAYER`` only for
    encoder extractors."""
    from featurekit.extractors import EXTRACTORS
    from featurekit.extractors.ssl.common import EncoderExtractor

    text = str(fs)
    if fs.waveform:  # the conditioned audio: no extractor behind it
        return fs
    out = []
    for m in fs.members:
        if m.extractor not in EXTRACTORS:
            context = f"in feature set {text!r}" if text != m.extractor else ""
            raise FeatureSetError(unknown("", m.extractor, EXTRACTORS.names(), "extractor", context)[1])
        cls = EXTRACTORS.get(m.extractor)
        kind = m.kind if m.kind is not None else default_kind(cls)
        if kind is TableKind.NATIVE and not cls.has_native:
            raise FeatureSetError(f"extractor {m.extractor!r} has no native functionals ({text!r})")
        if m.layer is not None and not issubclass(cls, EncoderExtractor):
            raise FeatureSetError(f"{str(m)!r}: only encoder extractors have layers to pick with @")
        out.append(replace(m, kind=kind))
    return FeatureSet(tuple(out))

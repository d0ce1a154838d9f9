"""Layer-spec parsing and the registry of layer builders.

A network body is declared as a short spec, Keras style::

    "gru(128, bidirectional) -> attention_pool -> dense(64) -> dropout(0.3)"
    "conv1d(64, 5) -> conv1d(64, 3) -> mean_pool -> dense(64)"
    ["dense(256)", "dropout(0.3)", "dense(128)"]
    "conv2d(32, 3) -> batchnorm2d -> activation(relu) -> maxpool2d(2) -> to_frames -> lstm(64)"
    "parallel(conv2d(8, 11, 3) | conv2d(8, 3, 9)) -> conv2d(32, 3) -> global_avg_pool"

Each layer is ``name`` or ``name(arg, ..., key=value, flag)``: positional arguments bind to the
layer's parameters in order, ``key=value`` by name, and a bare name of a boolean parameter
(``bidirectional``) sets it to true. Values are numbers or names (``relu``, ``true``, ``none``).

Frames ``(T, F)`` enter 2-D layers (``conv2d``, ``maxpool2d``, ``avgpool2d``, ``batchnorm2d``) as a
one-channel feature map ``(1, F, T)`` (frequency x time; kernels and pools are given as ``f, t``);
maps leave through ``to_frames`` (a frame sequence of ``C * F`` features, e.g. for an LSTM) or a
global pooling layer (``global_avg_pool`` / ``global_max_pool``). ``parallel(a -> b | c -> d)`` runs
branches on the same input and concatenates their outputs (channels of maps, features of frames).
Time stays variable-length under masks throughout; a head's ``fixed_len`` crops / pads instead.

Layers are built by functions registered in :data:`LAYER_REGISTRY` (name -> :class:`LayerType`);
:func:`register_layer` adds new ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from featurekit.heads.modules import (
    ACTIVATIONS,
    Activation,
    AttentionPool,
    BatchNorm,
    BatchNorm2d,
    Conv2d,
    Dense,
    Dropout,
    GlobalPool2d,
    HeadNetwork,
    LastPool,
    LayerNorm,
    MapsToFrames,
    MaskedConv1d,
    MaxPool,
    MeanPool,
    Parallel,
    Pool2d,
    Recurrent,
    SelfAttention,
    StatsPool,
)

__all__ = [
    "LAYER_REGISTRY",
    "BuildContext",
    "LayerSpec",
    "LayerType",
    "Param",
    "build_network",
    "format_specs",
    "parse_layers",
    "register_layer",
    "tokenize",
]

_REQUIRED = object()

# Input forms a layer takes: "frames" layers take frames (B, T, C) or vectors, "keep" layers any form
# (maps too), "maps" layers take frames or maps and give maps (B, C, F, T), "flatten" layers turn maps
# into frames, "map_pool" layers turn maps into vectors.
FORMS = ("frames", "keep", "maps", "flatten", "map_pool")

# Stages a layer may run in: "sequence" layers need frames and keep them (rnn, conv), "pool" layers
# turn frames into one vector, "any" layers work on frames (frame-wise) and on vectors.
STAGES = ("sequence", "pool", "any")


@dataclass(frozen=True)
class Param:
    """One parameter of a layer type.

    Parameters
    ----------
    name
        Parameter name (also its keyword in the spec).
    kind
        ``"int"``, ``"float"``, ``"bool"`` or ``"choice"`` (a name out of ``choices``).
    default
        Default value; parameters without one are required.
    minimum, maximum
        Inclusive lower bound / exclusive upper bound for numbers (None: unbounded).
    choices
        Allowed names for ``"choice"`` parameters.
    """

    name: str
    kind: str
    default: Any = _REQUIRED
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class BuildContext:
    """What a builder needs to know about its input."""

    in_features: int  # features of frames / vectors; the height (frequency bins) of feature maps
    stage: str  # "frame" or "vector"
    after_bidirectional_rnn: bool = False
    channels: int = 0  # channels of feature maps; 0: the input is frames or vectors


#: What a builder returns after its module: the output width, or ``(channels, height)`` for maps.
Width = int | tuple[int, int]


Builder = Callable[[dict[str, Any], BuildContext], tuple[nn.Module, Width]]


@dataclass(frozen=True)
class LayerType:
    """A registered layer kind: its parameters, the stage it runs in and its builder."""

    name: str
    params: tuple[Param, ...]
    stage: str
    build: Builder
    check: Callable[[dict[str, Any]], str | None] | None = None
    form: str = "frames"


@dataclass(frozen=True)
class LayerSpec:
    """A parsed layer: kind, bound arguments (defaults filled in) and the source text."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def __str__(self) -> str:
        if self.kind == "parallel":
            return f"parallel({' | '.join(format_specs(b) for b in self.args['branches'])})"
        ltype = LAYER_REGISTRY[self.kind]
        shown = [f"{p.name}={_fmt(self.args[p.name])}" for p in ltype.params
                 if p.required or self.args[p.name] != p.default]
        return f"{self.kind}({', '.join(shown)})" if shown else self.kind


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: Layer name -> :class:`LayerType`.
LAYER_REGISTRY: dict[str, LayerType] = {}


def register_layer(name: str, params: Sequence[Param] = (), stage: str = "any",
                   check: Callable[[dict[str, Any]], str | None] | None = None, form: str = "frames"
                   ) -> Callable[[Builder], Builder]:
    """Decorator registering a layer builder under ``name``.

    The builder gets the bound arguments and a :class:`BuildContext` and returns
    ``(module, out_features)``; the module must follow the ``(x, lengths) -> (x, lengths)``
    protocol of :mod:`featurekit.heads.modules`. ``check`` (optional) gets the bound arguments at
    parse time and returns an error message for combinations that cannot work. ``form`` is the input
    form the layer takes and gives (see :data:`FORMS`); map layers return ``(channels, height)``.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")

    def decorator(build: Builder) -> Builder:
        if name in LAYER_REGISTRY:
            raise ValueError(f"layer {name!r} is registered twice")
        LAYER_REGISTRY[name] = LayerType(name, tuple(params), stage, build, check, form)
        return build

    return decorator


# --------------------------------------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<arrow>->)"
    r"|(?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[(),=|])"
)


@dataclass(frozen=True)
class Token:
    """A lexical token: kind (``arrow``, ``number``, ``name``, ``punct``, ``end``), text, position."""

    kind: str
    text: str
    pos: int


def tokenize(spec: str) -> list[Token]:
    """Split a layer spec into tokens (whitespace dropped, an ``end`` token appended).

    Raises
    ------
    ValueError
        On a character that starts no token, naming it and its position.
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(spec):
        match = _TOKEN_RE.match(spec, pos)
        if match is None:
            raise ValueError(f"layer spec {spec!r}: unexpected character {spec[pos]!r} at position {pos}")
        kind = match.lastgroup
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(spec)))
    return tokens


# --------------------------------------------------------------------------------------------- parsing

class _Parser:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.tokens = tokenize(spec)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, tok: Token, expected: str) -> ValueError:
        shown = "end of spec" if tok.kind == "end" else repr(tok.text)
        return ValueError(f"layer spec {self.spec!r}: unexpected {shown} at position {tok.pos} "
                          f"(expected {expected})")

    def expect(self, kind: str, text: str | None, expected: str) -> Token:
        tok = self.take()
        if tok.kind != kind or (text is not None and tok.text != text):
            raise self.error(tok, expected)
        return tok

    def parse(self) -> list[LayerSpec]:
        if self.peek().kind == "end":
            return []
        layers = self.chain()
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, "'->' or end of spec")
        return layers

    def chain(self) -> list[LayerSpec]:
        layers = [self.layer()]
        while self.peek().kind == "arrow":
            self.take()
            layers.append(self.layer())
        return layers

    def parallel(self, name_tok: Token) -> LayerSpec:
        self.expect("punct", "(", "'(' opening the branches of parallel")
        branches = [self.chain()]
        while self.peek().kind == "punct" and self.peek().text == "|":
            self.take()
            branches.append(self.chain())
        end = self.expect("punct", ")", "'->', '|' or ')'")
        text = self.spec[name_tok.pos:end.pos + 1]
        if len(branches) < 2:
            raise ValueError(f"layer spec {self.spec!r}: {text!r} at position {name_tok.pos}: parallel needs "
                             "at least two branches separated by '|'")
        for branch in branches:
            for spec in branch:
                if LAYER_REGISTRY[spec.kind].stage == "pool":
                    raise ValueError(f"layer spec {self.spec!r}: {text!r}: the pooling layer {spec.text!r} "
                                     "cannot sit in a parallel branch; pool after the branches are joined")
        return LayerSpec("parallel", {"branches": tuple(tuple(b) for b in branches)}, text)

    def layer(self) -> LayerSpec:
        name_tok = self.expect("name", None, "a layer name")
        name = name_tok.text.lower()
        if name not in LAYER_REGISTRY:
            known = ", ".join(sorted(LAYER_REGISTRY))
            raise ValueError(f"layer spec {self.spec!r}: unknown layer {name_tok.text!r} at position "
                             f"{name_tok.pos}; known layers: {known}")
        if name == "parallel":
            return self.parallel(name_tok)
        positional: list[Token] = []
        keywords: dict[str, Token] = {}
        key_toks: dict[str, Token] = {}
        if self.peek().kind == "punct" and self.peek().text == "(":
            self.take()
            if not (self.peek().kind == "punct" and self.peek().text == ")"):
                while True:
                    tok = self.take()
                    if tok.kind not in ("name", "number"):
                        raise self.error(tok, "an argument")
                    nxt = self.peek()
                    if tok.kind == "name" and nxt.kind == "punct" and nxt.text == "=":
                        self.take()
                        value = self.take()
                        if value.kind not in ("name", "number"):
                            raise self.error(value, f"a value for {tok.text!r}")
                        key = tok.text.lower()
                        if key in keywords:
                            raise ValueError(f"layer spec {self.spec!r}: argument {tok.text!r} given twice "
                                             f"at position {tok.pos}")
                        keywords[key] = value
                        key_toks[key] = tok
                    else:
                        if keywords and not self._is_flag(name, tok):
                            raise ValueError(f"layer spec {self.spec!r}: positional argument {tok.text!r} at "
                                             f"position {tok.pos} follows a keyword argument")
                        positional.append(tok)
                    sep = self.take()
                    if sep.kind == "punct" and sep.text == ")":
                        break
                    if not (sep.kind == "punct" and sep.text == ","):
                        raise self.error(sep, "',' or ')'")
            else:
                self.take()
        end = self.tokens[self.i - 1]
        text = self.spec[name_tok.pos:end.pos + len(end.text)]
        args = self._bind(name, positional, keywords, key_toks, text)
        check = LAYER_REGISTRY[name].check
        problem = check(args) if check is not None else None
        if problem:
            raise ValueError(f"layer spec {self.spec!r}: {text!r} at position {name_tok.pos}: {problem}")
        return LayerSpec(name, args, text)

    @staticmethod
    def _is_flag(layer: str, tok: Token) -> bool:
        return tok.kind == "name" and any(
            p.kind == "bool" and p.name == tok.text.lower() for p in LAYER_REGISTRY[layer].params)

    def _bind(self, layer: str, positional: list[Token], keywords: dict[str, Token],
              key_toks: dict[str, Token], text: str) -> dict[str, Any]:
        params = LAYER_REGISTRY[layer].params
        by_name = {p.name: p for p in params}
        bound: dict[str, Any] = {}
        slots = list(params)
        for tok in positional:
            if self._is_flag(layer, tok):
                pname = tok.text.lower()
                if pname in bound:
                    raise ValueError(f"layer spec {self.spec!r}: argument {tok.text!r} given twice "
                                     f"in {text!r}")
                bound[pname] = True
                continue
            slots = [p for p in slots if p.name not in bound]
            if not slots:
                raise ValueError(f"layer spec {self.spec!r}: too many arguments for {layer!r}: unexpected "
                                 f"{tok.text!r} at position {tok.pos}")
            param = slots.pop(0)
            bound[param.name] = self._convert(layer, param, tok)
        for key, tok in keywords.items():
            if key not in by_name:
                known = ", ".join(by_name) or "none"
                bad = key_toks[key]
                raise ValueError(f"layer spec {self.spec!r}: layer {layer!r} has no argument {bad.text!r} "
                                 f"(position {bad.pos}); its arguments: {known}")
            if key in bound:
                raise ValueError(f"layer spec {self.spec!r}: argument {key!r} given twice in {text!r}")
            bound[key] = self._convert(layer, by_name[key], tok)
        for p in params:
            if p.name not in bound:
                if p.required:
                    raise ValueError(f"layer spec {self.spec!r}: layer {text!r} is missing its required "
                                     f"argument {p.name!r}")
                bound[p.name] = p.default
        return bound

    def _convert(self, layer: str, param: Param, tok: Token) -> Any:
        where = f"layer spec {self.spec!r}: {layer}({param.name}=...) at position {tok.pos}"
        text = tok.text
        if param.kind == "bool":
            low = text.lower()
            if low in ("true", "1"):
                return True
            if low in ("false", "0"):
                return False
            raise ValueError(f"{where}: expected true/false, got {text!r}")
        if param.kind == "choice":
            low = text.lower()
            if tok.kind != "name" or low not in param.choices:
                raise ValueError(f"{where}: expected one of {', '.join(param.choices)}, got {text!r}")
            return low
        if tok.kind != "number":
            raise ValueError(f"{where}: expected a number, got {text!r}")
        if param.kind == "int":
            try:
                value: float = int(text)
            except ValueError:
                raise ValueError(f"{where}: expected an integer, got {text!r}") from None
        else:
            value = float(text)
        if param.minimum is not None and value < param.minimum:
            raise ValueError(f"{where}: {param.name} must be >= {param.minimum}, got {text!r}")
        if param.maximum is not None and value >= param.maximum:
            raise ValueError(f"{where}: {param.name} must be < {param.maximum}, got {text!r}")
        return value


def parse_layers(layers: str | Sequence[str] | None) -> list[LayerSpec]:
    """Parse a layer spec string (layers joined by ``->``) or a list of such strings.

    Parameters
    ----------
    layers
        ``"dense(256) -> dropout(0.3)"``, ``["dense(256)", "dropout(0.3)"]``, or ``""`` / ``None`` /
        ``[]`` for an empty body (a linear model on pooled inputs).

    Returns
    -------
    list of LayerSpec

    Raises
    ------
    ValueError
        On a syntax error, unknown layer, bad argument or a layer order that cannot work (a
        sequence layer after pooling, two pooling layers); the message names the offending token.
    """
    if layers is None:
        return []
    if isinstance(layers, str):
        specs = _Parser(layers).parse()
    elif isinstance(layers, Sequence):
        specs = []
        for item in layers:
            if not isinstance(item, str):
                raise ValueError(f"layers: list items must be spec strings, got {item!r}")
            specs.extend(_Parser(item).parse())
    else:
        raise ValueError(f"layers must be a spec string or a list of spec strings, got {layers!r}")
    pooled_at: str | None = None
    for spec in specs:
        stage = LAYER_REGISTRY[spec.kind].stage
        if pooled_at is not None and stage in ("sequence", "pool"):
            raise ValueError(f"layers: {spec.text!r} cannot follow the pooling layer {pooled_at!r} "
                             "(after pooling there is no time axis left)")
        if stage == "pool":
            pooled_at = spec.text
    _form_after(specs, "frames")
    return specs


def _form_after(specs: Sequence[LayerSpec], form: str) -> str:
    """The input form (``frames``, ``maps`` or ``vector``) after ``specs`` run on ``form``; a ValueError
    for a layer that cannot take the form it gets (a frame layer on feature maps and vice versa)."""
    for spec in specs:
        if spec.kind == "parallel":
            outs = [_form_after(b, form) for b in spec.args["branches"]]
            if len(set(outs)) > 1:
                raise ValueError(f"layers: the branches of {spec.text!r} end in different forms "
                                 f"({', '.join(outs)}); they must all give feature maps or all frames")
            form = outs[0]
            continue
        ltype = LAYER_REGISTRY[spec.kind]
        if ltype.form == "frames" and form == "maps":
            raise ValueError(f"layers: {spec.text!r} takes frames or vectors but gets 2-D feature maps; put "
                             "to_frames (a frame sequence) or global_avg_pool / global_max_pool before it")
        if ltype.form in ("flatten", "map_pool") and form != "maps":
            raise ValueError(f"layers: {spec.text!r} takes 2-D feature maps (after conv2d, maxpool2d, ...), "
                             f"but gets {form}")
        if ltype.form == "maps":
            form = "maps"
        elif ltype.form == "flatten":
            form = "frames"
        elif ltype.stage == "pool":
            form = "vector"
    return form


def _with_pooling(specs: list[LayerSpec]) -> tuple[list[LayerSpec], int]:
    """Insert a default pooling layer when the body has none; return specs and the pool index.

    The pool goes right after the last sequence layer (``last_pool`` after an RNN, ``mean_pool``
    after a conv) or first when there is none (a dense body then sees the mean frame, which for
    2-D input, i.e. length-1 sequences, is the input vector itself).
    """
    for i, spec in enumerate(specs):
        if LAYER_REGISTRY[spec.kind].stage == "pool":
            return specs, i
    last_seq = max((i for i, s in enumerate(specs) if LAYER_REGISTRY[s.kind].stage == "sequence"), default=-1)
    if last_seq >= 0 and specs[last_seq].kind in ("lstm", "gru"):
        pool = LayerSpec("last_pool", {}, "last_pool")
    elif _form_after(specs[:last_seq + 1], "frames") == "maps":
        pool = LayerSpec("global_avg_pool", {}, "global_avg_pool")
    else:
        pool = LayerSpec("mean_pool", {}, "mean_pool")
    return specs[:last_seq + 1] + [pool] + specs[last_seq + 1:], last_seq + 1


def format_specs(specs: Sequence[LayerSpec]) -> str:
    """Canonical spec string of parsed layers (defaults that were not changed are left out)."""
    return " -> ".join(str(s) for s in specs)


def build_network(layers: str | Sequence[str] | list[LayerSpec] | None, in_features: int,
                  n_outputs: int, *, fixed_len: int | None = None, augment: nn.Module | None = None,
                  crop: str = "start") -> tuple[HeadNetwork, list[LayerSpec]]:
    """Build the :class:`~featurekit.heads.modules.HeadNetwork` for a spec.

    Parameters
    ----------
    layers
        Spec string / list of strings, or already parsed :class:`LayerSpec` objects.
    in_features
        Input feature width.
    n_outputs
        Width of the automatically added linear output layer.
    fixed_len
        Crop / zero-pad every input to this many frames (None: variable length under masks).
    augment
        A module applied to the standardised frames in training mode only (e.g.
        :class:`~featurekit.heads.modules.SpecAugment`).
    crop
        With ``fixed_len``: ``"start"`` (the first ``fixed_len`` frames) or ``"random"`` (a random
        window in training, outputs averaged over covering windows in eval mode); see
        :class:`~featurekit.heads.modules.HeadNetwork`.

    Returns
    -------
    network, specs
        The network and the layer specs it was built from (including an inserted pooling layer).
    """
    if isinstance(layers, list) and all(isinstance(s, LayerSpec) for s in layers) and layers:
        specs = list(layers)
    else:
        specs = parse_layers(layers)
    specs, pool_index = _with_pooling(specs)
    modules, ctx = _build_chain(specs, BuildContext(in_features=in_features, stage="frame"), pool_index)
    return HeadNetwork(modules, pool_index, in_features, ctx.in_features, n_outputs, fixed_len=fixed_len,
                       augment=augment, crop=crop), specs


def _build_chain(specs: Sequence[LayerSpec], ctx: BuildContext, pool_index: int
                 ) -> tuple[list[nn.Module], BuildContext]:
    """Build ``specs`` in order from ``ctx``; return the modules and the context after the last one."""
    modules: list[nn.Module] = []
    for i, spec in enumerate(specs):
        ltype = LAYER_REGISTRY[spec.kind]
        module, out = ltype.build(dict(spec.args), ctx)
        modules.append(module)
        if ltype.stage == "sequence":
            after_bidir = spec.kind in ("lstm", "gru") and bool(spec.args["bidirectional"])
        else:  # channel-wise layers keep the [forward | backward] halves apart
            after_bidir = ctx.after_bidirectional_rnn and spec.kind in ("dropout", "batchnorm")
        channels, width = (out if isinstance(out, tuple) else (0, out))
        if channels and width < 1:
            raise ValueError(f"layers: {spec.text!r} leaves no frequency bins (the input has too few "
                             "features for the pools and strides before it)")
        ctx = BuildContext(in_features=width, stage="vector" if i >= pool_index else "frame",
                           after_bidirectional_rnn=after_bidir, channels=channels)
    return modules, ctx


# --------------------------------------------------------------------------------------------- builders

_ACT = Param("activation", "choice", "relu", choices=tuple(ACTIVATIONS))


@register_layer("dense", [Param("units", "int", minimum=1), _ACT])
def _build_dense(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return Dense(ctx.in_features, args["units"], args["activation"]), args["units"]


@register_layer("dropout", [Param("p", "float", minimum=0.0, maximum=1.0)], form="keep")
def _build_dropout(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return Dropout(args["p"]), ctx.in_features


@register_layer("batchnorm")
def _build_batchnorm(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return BatchNorm(ctx.in_features), ctx.in_features


@register_layer("layernorm")
def _build_layernorm(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return LayerNorm(ctx.in_features), ctx.in_features


_RNN_PARAMS = [
    Param("hidden", "int", minimum=1),
    Param("layers", "int", 1, minimum=1),
    Param("bidirectional", "bool", False),
    Param("dropout", "float", 0.0, minimum=0.0, maximum=1.0),
]


def _check_rnn(args: dict[str, Any]) -> str | None:
    if args["dropout"] > 0 and args["layers"] == 1:
        return ("dropout acts between stacked RNN layers and needs layers > 1; "
                "use a dropout layer after the RNN instead")
    return None


def _build_rnn(cell: str) -> Builder:
    def build(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
        module = Recurrent(cell, ctx.in_features, args["hidden"], args["layers"], args["bidirectional"],
                           args["dropout"])
        return module, args["hidden"] * (2 if args["bidirectional"] else 1)
    return build


register_layer("lstm", _RNN_PARAMS, stage="sequence", check=_check_rnn)(_build_rnn("lstm"))
register_layer("gru", _RNN_PARAMS, stage="sequence", check=_check_rnn)(_build_rnn("gru"))


@register_layer("conv1d", [Param("channels", "int", minimum=1), Param("kernel", "int", minimum=1),
                           Param("stride", "int", 1, minimum=1), Param("dilation", "int", 1, minimum=1),
                           _ACT], stage="sequence")
def _build_conv1d(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    module = MaskedConv1d(ctx.in_features, args["channels"], args["kernel"], args["stride"], args["dilation"],
                          args["activation"])
    return module, args["channels"]


@register_layer("last_pool", stage="pool")
def _build_last_pool(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return LastPool(split_directions=ctx.after_bidirectional_rnn), ctx.in_features


@register_layer("mean_pool", stage="pool")
def _build_mean_pool(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return MeanPool(), ctx.in_features


@register_layer("stats_pool", stage="pool")
def _build_stats_pool(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return StatsPool(), 2 * ctx.in_features


@register_layer("max_pool", stage="pool")
def _build_max_pool(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return MaxPool(), ctx.in_features


@register_layer("attention_pool", [Param("hidden", "int", 0, minimum=0)], stage="pool")
def _build_attention_pool(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return AttentionPool(ctx.in_features, args["hidden"]), ctx.in_features


# --------------------------------------------------------------------------------------------- 2-D layers

def _map_input(ctx: BuildContext) -> tuple[int, int]:
    """(channels, height) of the input as a feature map (frames are one channel of F bins)."""
    return (ctx.channels or 1), ctx.in_features


@register_layer("activation", [Param("function", "choice", choices=tuple(ACTIVATIONS))], form="keep")
def _build_activation(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, Width]:
    width: Width = (ctx.channels, ctx.in_features) if ctx.channels else ctx.in_features
    return Activation(args["function"]), width


@register_layer("conv2d", [Param("channels", "int", minimum=1), Param("kernel_f", "int", minimum=1),
                           Param("kernel_t", "int", 0, minimum=0), Param("stride", "int", 1, minimum=1),
                           Param("activation", "choice", "linear", choices=tuple(ACTIVATIONS))],
                stage="sequence", form="maps")
def _build_conv2d(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, Width]:
    """``conv2d(channels, kernel_f, kernel_t)``: kernel ``kernel_f`` bins x ``kernel_t`` frames
    (``kernel_t`` 0: square); no activation unless given (conv -> batchnorm2d -> activation)."""
    in_ch, height = _map_input(ctx)
    kt = args["kernel_t"] or args["kernel_f"]
    module = Conv2d(in_ch, args["channels"], args["kernel_f"], kt, args["stride"], args["activation"])
    return module, (args["channels"], (height - 1) // args["stride"] + 1)


def _build_pool2d(mode: str) -> Builder:
    def build(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, Width]:
        channels, height = _map_input(ctx)
        pt = args["pool_t"] or args["pool_f"]
        return Pool2d(mode, args["pool_f"], pt), (channels, height // args["pool_f"])
    return build


_POOL2D = [Param("pool_f", "int", minimum=1), Param("pool_t", "int", 0, minimum=0)]
register_layer("maxpool2d", _POOL2D, stage="sequence", form="maps")(_build_pool2d("max"))
register_layer("avgpool2d", _POOL2D, stage="sequence", form="maps")(_build_pool2d("avg"))


@register_layer("batchnorm2d", stage="sequence", form="maps")
def _build_batchnorm2d(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, Width]:
    channels, height = _map_input(ctx)
    return BatchNorm2d(channels), (channels, height)


@register_layer("global_avg_pool", stage="pool", form="map_pool")
def _build_global_avg_pool(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, Width]:
    return GlobalPool2d("avg"), ctx.channels


@register_layer("global_max_pool", stage="pool", form="map_pool")
def _build_global_max_pool(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, Width]:
    return GlobalPool2d("max"), ctx.channels


@register_layer("to_frames", stage="sequence", form="flatten")
def _build_to_frames(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, Width]:
    return MapsToFrames(), ctx.channels * ctx.in_features


@register_layer("self_attention", [Param("dim", "int", minimum=1), Param("heads", "int", 1, minimum=1),
                                   Param("fusion", "choice", "concat", choices=("concat", "mean"))],
                stage="sequence")
def _build_self_attention(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, Width]:
    module = SelfAttention(ctx.in_features, args["dim"], args["heads"], args["fusion"])
    return module, args["dim"] * (args["heads"] if args["fusion"] == "concat" else 1)


@register_layer("parallel", stage="sequence", form="keep")
def _build_parallel(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, Width]:
    branches, outs = [], []
    for branch in args["branches"]:
        modules, end = _build_chain(branch, ctx, pool_index=len(branch))
        branches.append(modules)
        outs.append(end)
    if outs[0].channels:
        heights = {o.in_features for o in outs}
        if len(heights) > 1 or not all(o.channels for o in outs):
            raise ValueError(f"layers: parallel branches give feature maps of different heights "
                             f"{sorted(heights)}; give them the same frequency pools and strides")
        return Parallel(branches), (sum(o.channels for o in outs), outs[0].in_features)
    return Parallel(branches), sum(o.in_features for o in outs)

"""Layer-spec parsing and the registry of layer builders.

A network body is declared as a short spec, Keras style::

    "gru(128, bidirectional) -> attention_pool -> dense(64) -> dropout(0.3)"
    "conv1d(64, 5) -> conv1d(64, 3) -> mean_pool -> dense(64)"
    ["dense(256)", "dropout(0.3)", "dense(128)"]

Each layer is ``name`` or ``name(arg, ..., key=value, flag)``: positional arguments bind to the
layer's parameters in order, ``key=value`` by name, and a bare name of a boolean parameter
(``bidirectional``) sets it to true. Values are numbers or names (``relu``, ``true``, ``none``).

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
    AttentionPool,
    BatchNorm,
    Dense,
    Dropout,
    HeadNetwork,
    LastPool,
    LayerNorm,
    MaskedConv1d,
    MaxPool,
    MeanPool,
    Recurrent,
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

    in_features: int
    stage: str  # "frame" or "vector"
    after_bidirectional_rnn: bool = False


Builder = Callable[[dict[str, Any], BuildContext], tuple[nn.Module, int]]


@dataclass(frozen=True)
class LayerType:
    """A registered layer kind: its parameters, the stage it runs in and its builder."""

    name: str
    params: tuple[Param, ...]
    stage: str
    build: Builder
    check: Callable[[dict[str, Any]], str | None] | None = None


@dataclass(frozen=True)
class LayerSpec:
    """A parsed layer: kind, bound arguments (defaults filled in) and the source text."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def __str__(self) -> str:
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
                   check: Callable[[dict[str, Any]], str | None] | None = None
                   ) -> Callable[[Builder], Builder]:
    """Decorator registering a layer builder under ``name``.

    The builder gets the bound arguments and a :class:`BuildContext` and returns
    ``(module, out_features)``; the module must follow the ``(x, lengths) -> (x, lengths)``
    protocol of :mod:`featurekit.heads.modules`. ``check`` (optional) gets the bound arguments at
    parse time and returns an error message for combinations that cannot work.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")

    def decorator(build: Builder) -> Builder:
        if name in LAYER_REGISTRY:
            raise ValueError(f"layer {name!r} is registered twice")
        LAYER_REGISTRY[name] = LayerType(name, tuple(params), stage, build, check)
        return build

    return decorator


# --------------------------------------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<arrow>->)"
    r"|(?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[(),=])"
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
        layers = [self.layer()]
        while self.peek().kind == "arrow":
            self.take()
            layers.append(self.layer())
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, "'->' or end of spec")
        return layers

    def layer(self) -> LayerSpec:
        name_tok = self.expect("name", None, "a layer name")
        name = name_tok.text.lower()
        if name not in LAYER_REGISTRY:
            known = ", ".join(sorted(LAYER_REGISTRY))
            raise ValueError(f"layer spec {self.spec!r}: unknown layer {name_tok.text!r} at position "
                             f"{name_tok.pos}; known layers: {known}")
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
    return specs


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
    else:
        pool = LayerSpec("mean_pool", {}, "mean_pool")
    return specs[:last_seq + 1] + [pool] + specs[last_seq + 1:], last_seq + 1


def format_specs(specs: Sequence[LayerSpec]) -> str:
    """Canonical spec string of parsed layers (defaults that were not changed are left out)."""
    return " -> ".join(str(s) for s in specs)


def build_network(layers: str | Sequence[str] | list[LayerSpec] | None, in_features: int,
                  n_outputs: int) -> tuple[HeadNetwork, list[LayerSpec]]:
    """Build the :class:`~featurekit.heads.modules.HeadNetwork` for a spec.

    Parameters
    ----------
    layers
        Spec string / list of strings, or already parsed :class:`LayerSpec` objects.
    in_features
        Input feature width.
    n_outputs
        Width of the automatically added linear output layer.

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
    modules: list[nn.Module] = []
    ctx = BuildContext(in_features=in_features, stage="frame")
    for i, spec in enumerate(specs):
        ltype = LAYER_REGISTRY[spec.kind]
        module, out_features = ltype.build(dict(spec.args), ctx)
        modules.append(module)
        if ltype.stage == "sequence":
            after_bidir = spec.kind in ("lstm", "gru") and bool(spec.args["bidirectional"])
        else:  # channel-wise layers keep the [forward | backward] halves apart
            after_bidir = ctx.after_bidirectional_rnn and spec.kind in ("dropout", "batchnorm")
        ctx = BuildContext(in_features=out_features, stage="vector" if i >= pool_index else "frame",
                           after_bidirectional_rnn=after_bidir)
    return HeadNetwork(modules, pool_index, in_features, ctx.in_features, n_outputs), specs


# --------------------------------------------------------------------------------------------- builders

_ACT = Param("activation", "choice", "relu", choices=tuple(ACTIVATIONS))


@register_layer("dense", [Param("units", "int", minimum=1), _ACT])
def _build_dense(args: dict[str, Any], ctx: BuildContext) -> tuple[nn.Module, int]:
    return Dense(ctx.in_features, args["units"], args["activation"]), args["units"]


@register_layer("dropout", [Param("p", "float", minimum=0.0, maximum=1.0)])
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

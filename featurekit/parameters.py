"""Keyword parameters checked against what a callable declares: names, annotated types and ranges.

One mechanism for every table of user parameters that meets code: ``[extractors.NAME]`` and
``extract --param`` (an extractor's ``__init__``), ``[audio]`` (:class:`~featurekit.audio.AudioOptions`),
corpus adapter options, and estimators that declare no parameter constraints of their own. Types come
from the annotations, ranges from ``typing.Annotated`` metadata (``annotated_types.Ge`` etc.), and both
are checked strictly by pydantic: ``"2"`` is not an int, ``1.0`` is not an int, ``True`` is not a
number. Problems are ``(location, message)`` pairs; the location names the key (``extractors.mfcc.n_mfcc``)
and the message the expected type and the value given; an unknown key names the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Problem = tuple[str, str]


class ParameterError(ValueError):
    """Parameters that do not fit their declaration; ``problems`` lists ``(location, message)``."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))


def format_problems(problems: list[Problem]) -> str:
    """One line for one problem; a count and one indented line per problem for several."""
    lines = [f"{loc}: {msg}" if loc else msg for loc, msg in problems]
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems:\n" + "\n".join(f"  {line}" for line in lines)


def closest(name: str, options: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``options`` (difflib), else ``""``."""
    match = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def unknown(where: str, key: str, options: Iterable[str], what: str = "key", context: str = "") -> Problem:
    """The problem of an unknown key/name (``context``: where it was found, e.g. ``in 'a+b'``): names the
    closest valid one and lists them all (the first 15)."""
    options = sorted(str(o) for o in options)
    shown = ", ".join(options[:15]) + (f", ... ({len(options)} in all)" if len(options) > 15 else "")
    context = f" {context}" if context else ""
    return where, f"unknown {what} {key!r}{context}{closest(key, options)} (valid: {shown or 'none'})"


def join(where: str, key: Any) -> str:
    """``where`` + ``.key`` (``[i]`` for list positions)."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list",
               tuple: "a list", dict: "a table", type(None): "nothing"}


def describe(value: Any) -> str:
    """``'forty' (a string)``: a value and its TOML-ish type, for messages."""
    kind = next((name for t, name in _TYPE_NAMES.items() if type(value) is t), type(value).__name__)
    text = repr(value)
    return f"{text[:80]}{'...' if len(text) > 80 else ''} ({kind})"


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "string_type": "a string", "bool_type": "true or false", "list_type": "a list", "tuple_type": "a list",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
    "is_instance_of": "a {class}", "none_required": "nothing",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _expectation(error: dict) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind].format(**ctx) if "{" in _EXPECTED[kind] else _EXPECTED[kind]
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        return f"a value {_BOUNDS[kind]} {bound}"
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    if kind in ("too_short", "string_too_short"):
        n = ctx.get("min_length", 1)
        return "a non-empty string" if kind == "string_too_short" else f"at least {n} item{'s' * (n != 1)}"
    if kind in ("too_long", "string_too_long"):
        return f"at most {ctx.get('max_length')} item(s)"
    return error["msg"][0].lower() + error["msg"][1:]


def pydantic_problems(err: Any, where: str, data: Any) -> list[Problem]:
    """Problems of a pydantic ``ValidationError`` raised on ``data``, located under ``where``.

    A location is cut where it leaves ``data`` (pydantic appends union member names such as
    ``float`` to it), so the errors of one union field merge into one "expected A or B" problem.
    Custom errors of type ``key_error`` name a key in ``ctx["key"]`` and carry their own message.
    """
    merged: dict[str, tuple[list[str], list[str], Any]] = {}
    for e in err.errors(include_url=False):
        loc, value = where, data
        parts = list(e["loc"])
        if e["type"] == "key_error":
            parts.append(e["ctx"]["key"])
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, (list, tuple)) and isinstance(part, int) and 0 <= part < len(value):
                value = value[part]
            elif not (e["type"] in ("missing", "key_error") and last):
                break
            loc = join(loc, part)
        expected, literal, _ = merged.setdefault(loc, ([], [], value))
        if e["type"] == "missing":
            msg, into = "missing (required)", literal
        elif e["type"] == "key_error":
            msg, into = e["msg"], literal
        elif e["type"] in ("value_error", "assertion_error"):
            msg, into = str((e.get("ctx") or {}).get("error", e["msg"])), literal
        else:
            msg, into = _expectation(e), expected
        if msg not in into:
            into.append(msg)
    out = []
    for loc, (expected, literal, value) in merged.items():
        msgs = literal + ([f"expected {' or '.join(expected)}, got {describe(value)}"] if expected else [])
        out.append((loc, "; ".join(msgs)))
    return out


# -- declared parameters of a callable ------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Declared:
    """A parameter as declared: name, annotation (``Any`` when it has none) and default."""

    name: str
    annotation: Any
    default: Any

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@functools.cache
def declared_parameters(target: Callable, *, keyword_only: bool = False, skip: tuple[str, ...] = ()
                        ) -> dict[str, Declared]:
    """The parameters a class (its ``__init__``) or function takes by keyword, with resolved annotations."""
    func = target.__init__ if inspect.isclass(target) else target
    try:
        source = target if dataclasses.is_dataclass(target) else func
        hints = typing.get_type_hints(source, include_extras=True)
    except Exception:  # an annotation that does not resolve: check names only
        hints = {}
    kinds = (inspect.Parameter.KEYWORD_ONLY,) if keyword_only else (
        inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    out = {}
    for p in inspect.signature(func).parameters.values():
        if p.name in ("self", *skip) or p.kind not in kinds:
            continue
        out[p.name] = Declared(p.name, hints.get(p.name, Any), p.default)
    return out


@functools.cache
def _adapter(annotation: Any):
    from pydantic import ConfigDict, TypeAdapter

    try:
        return TypeAdapter(annotation, config=ConfigDict(strict=True, arbitrary_types_allowed=True))
    except Exception:  # a type pydantic cannot check (e.g. a callback class): names only
        return None


def check_value(annotation: Any, value: Any, where: str) -> list[Problem]:
    """Problems of ``value`` against ``annotation`` (strict pydantic), located at ``where``."""
    if annotation is Any:
        return []
    from pydantic import ValidationError

    try:
        adapter = _adapter(annotation)
    except TypeError:  # unhashable annotation
        adapter = None
    if adapter is None:
        return []
    try:
        adapter.validate_python(value)
    except ValidationError as err:
        return pydantic_problems(err, where, value)
    return []


def check_parameters(
    declared: Mapping[str, Declared],
    values: Mapping[str, Any],
    *,
    where: str,
    require: bool = True,
    checks: Mapping[str, Callable[[Any], Any]] | None = None,
) -> list[Problem]:
    """Problems of ``values`` against ``declared``: unknown names (with the closest valid one), missing
    required ones (when ``require``), annotated types and ranges, then ``checks[name](value)`` (raises
    ``ValueError`` for a value of the right type that is still wrong)."""
    if not isinstance(values, Mapping):
        return [(where, f"expected a table, got {describe(values)}")]
    problems = [unknown(join(where, k), k, declared, "parameter") for k in values if k not in declared]
    if require:
        problems += [(join(where, k), "missing (required)") for k, d in declared.items()
                     if d.required and k not in values]
    for k, v in values.items():
        if k not in declared:
            continue
        found = check_value(declared[k].annotation, v, join(where, k))
        if not found and checks and k in checks:
            try:
                checks[k](v)
            except (ValueError, TypeError) as err:
                found = [(join(where, k), f"{err}")]
        problems += found
    return problems

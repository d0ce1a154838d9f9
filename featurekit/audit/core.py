"""The design audit's building blocks: findings, the registry of checks, the report.

A *check* is a function ``(AuditContext) -> list[Finding]`` registered in :data:`CHECKS` under a
name (the name a spec's ``[audit] acknowledge`` list uses). Every check returns at least one
finding: problems as ``error`` or ``warning``, or one ``ok`` finding that gives the numbers it
looked at, so that a clean audit still says what it measured.

An unacknowledged ``error`` stops ``featurekit evaluate`` before anything is fit; a spec that lists
the check in ``[audit] acknowledge`` turns its errors into warnings (recorded as acknowledged).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd

from featurekit.registry import Registry

AUDIT_FILE = "audit.json"
AUDIT_MARKDOWN = "audit.md"
FORMAT_VERSION = 1


class Severity(str, Enum):
    """How much a finding matters: ``error`` stops a run (unless acknowledged), ``warning`` is
    reported, ``ok`` records what a check measured when it found nothing wrong."""

    ERROR = "error"
    WARNING = "warning"
    OK = "ok"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "ok": 2}[self.value]


class AuditError(ValueError):
    """The design audit found errors that the spec does not acknowledge (the message lists them)."""


class FoldLike(Protocol):
    name: str
    train: np.ndarray
    test: np.ndarray


class CellPlan(NamedTuple):
    """What the audit needs to know of one evaluation cell."""

    feature_set: str
    sequences: bool  # frame-level LLD sequences (per-speaker statistics are taken over frames)
    normalisation: str


@dataclass(frozen=True)
class Finding:
    """One result of one check.

    Attributes
    ----------
    check
        The registered check's name.
    severity
        :class:`Severity`.
    message
        One or a few sentences for a person: what was found, with the numbers, and what to do.
    details
        JSON-serialisable numbers and lists behind the message.
    acknowledged
        An error the spec acknowledges (``[audit] acknowledge``): reported as a warning.
    """

    check: str
    severity: Severity
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    acknowledged: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity.value,
            "message": self.message,
            "details": _jsonable(self.details),
            "acknowledged": self.acknowledged,
        }

    @property
    def label(self) -> str:
        """``error``, ``warning``, ``ok`` or ``warning (acknowledged error)``."""
        return "warning (acknowledged error)" if self.acknowledged else self.severity.value


@dataclass
class AuditContext:
    """Everything the checks look at; built before any feature is extracted or model fit.

    Attributes
    ----------
    manifest
        The experiment's prepared manifest (after the task's mapping and subset), one row per utterance.
    folds
        The protocol's folds (``name``, integer positions ``train`` and ``test``).
    task
        ``classification`` or ``regression``.
    targets
        Target columns (classification: one label column).
    group
        The manifest column the protocol groups by (``speaker`` or ``session``).
    speaker_independent
        Whether the protocol claims speaker independence.
    cells
        Feature set x normalisation of every cell the spec will run.
    fingerprints
        Content hashes of the audio files, aligned with ``manifest`` (``None`` for an unreadable
        file); ``None`` when unavailable (the duplicate check then says it did not run).
    """

    manifest: pd.DataFrame
    folds: Sequence[FoldLike]
    task: str = "classification"
    targets: list[str] = field(default_factory=lambda: ["label"])
    group: str = "speaker"
    speaker_independent: bool = True
    cells: list[CellPlan] = field(default_factory=list)
    fingerprints: list[str | None] | None = None
    _codes: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    @property
    def labels(self) -> np.ndarray:
        return self.manifest[self.targets[0]].astype(str).to_numpy()

    @property
    def speakers(self) -> np.ndarray:
        return self.manifest["speaker"].astype(str).to_numpy()

    @property
    def ids(self) -> np.ndarray:
        return self.manifest["id"].astype(str).to_numpy()

    def codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """A manifest column as integer codes and its sorted distinct values (as text; cached), so
        that per-fold counts are one ``np.bincount`` each."""
        if column not in self._codes:
            levels, codes = np.unique(self.manifest[column].astype(str).to_numpy(), return_inverse=True)
            self._codes[column] = (codes.astype(np.int64), levels)
        return self._codes[column]

    def normalisations(self) -> set[str]:
        return {c.normalisation for c in self.cells}

    def per_speaker_cells(self) -> list[CellPlan]:
        return [c for c in self.cells if c.normalisation == "speaker"]


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    run: Callable[[AuditContext], list[Finding]]


CHECKS: Registry[Check] = Registry("audit check")


def register_check(name: str, description: str):
    """Decorator: register ``func(context) -> list[Finding]`` as the audit check ``name``."""

    def decorator(func: Callable[[AuditContext], list[Finding]]):
        CHECKS.add(name, Check(name, description, func))
        return func

    return decorator


def acknowledged_checks(names: Any) -> list[str]:
    """Validate a spec's ``[audit] acknowledge`` list: every entry must be a registered check.

    Raises
    ------
    featurekit.evaluation.spec.SpecError
        Naming ``audit.acknowledge`` and, for an unknown name, the closest registered one.
    """
    from featurekit.evaluation.spec import SpecError  # same layer; imported late (spec imports us)

    if names is None:
        return []
    if isinstance(names, str) or not isinstance(names, list | tuple):
        raise SpecError(f"audit.acknowledge: must be a list of check names, got {names!r}")
    known = CHECKS.names()
    for n in names:
        if not isinstance(n, str) or n not in CHECKS:
            close = difflib.get_close_matches(str(n), known, n=1, cutoff=0.0)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SpecError(f"audit.acknowledge: unknown check {n!r}{hint} (checks: {', '.join(known)})")
    return list(dict.fromkeys(names))


def run_checks(
    context: AuditContext, *, acknowledge: Iterable[str] = (), only: Iterable[str] | None = None
) -> AuditReport:
    """Run every registered check (or those in ``only``) on ``context``.

    Errors of a check named in ``acknowledge`` become warnings marked ``acknowledged``.
    """
    acknowledge = set(acknowledge)
    names = CHECKS.names() if only is None else list(only)
    findings: list[Finding] = []
    for name in names:
        for f in CHECKS.get(name).run(context):
            if f.severity is Severity.ERROR and name in acknowledge:
                f = Finding(f.check, Severity.WARNING, f.message, f.details, acknowledged=True)
            findings.append(f)
    return AuditReport(findings, checks=names, acknowledged=sorted(acknowledge))


@dataclass
class AuditReport:
    """The findings of one audit, as written to ``audit.json`` and shown on top of reports."""

    findings: list[Finding]
    checks: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    def by_severity(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity is severity]

    @property
    def errors(self) -> list[Finding]:
        return self.by_severity(Severity.ERROR)

    @property
    def warnings(self) -> list[Finding]:
        return self.by_severity(Severity.WARNING)

    @property
    def passed(self) -> list[Finding]:
        return self.by_severity(Severity.OK)

    @property
    def blocked(self) -> bool:
        """True when an unacknowledged error stops the run."""
        return bool(self.errors)

    def summary(self) -> str:
        e, w = len(self.errors), len(self.warnings)
        if not e and not w:
            return f"clean ({len(self.checks)} checks passed)"
        parts = [f"{e} error{'s' * (e != 1)}"] if e else []
        parts += [f"{w} warning{'s' * (w != 1)}"] if w else []
        return ", ".join(parts)

    def ordered(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: f.severity.rank)

    # -- serialisation -----------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "created": self.created,
                "summary": self.summary(),
                "blocked": self.blocked,
                "checks": self.checks,
                "acknowledged": self.acknowledged,
                "findings": [f.as_dict() for f in self.findings],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "audit.json") -> AuditReport:
        """Parse :meth:`to_json` output; ``ValueError`` naming ``source`` when it is malformed."""
        try:
            d = json.loads(text)
            findings = [
                Finding(
                    str(f["check"]),
                    Severity(f["severity"]),
                    str(f["message"]),
                    dict(f.get("details") or {}),
                    bool(f.get("acknowledged", False)),
                )
                for f in d["findings"]
            ]
            return cls(
                findings,
                checks=[str(c) for c in d.get("checks", [])],
                acknowledged=[str(c) for c in d.get("acknowledged", [])],
                created=str(d.get("created", "")),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{source}: not a featurekit audit file ({type(err).__name__}: {err})") from None

    @classmethod
    def read(cls, path: str | Path) -> AuditReport:
        path = Path(path)
        return cls.from_json(path.read_text(encoding="utf-8"), source=str(path))

    def write(self, directory: str | Path) -> list[Path]:
        """Write ``audit.json`` and ``audit.md`` into ``directory`` (atomically, each)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        for name, text in ((AUDIT_FILE, self.to_json()), (AUDIT_MARKDOWN, self.to_markdown() + "\n")):
            path = directory / name
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
            out.append(path)
        return out

    # -- text ----------------------------------------------------------------------------------
    def to_text(self) -> str:
        """Plain text for the terminal: one line per finding, errors first."""
        lines = [f"design audit: {self.summary()}"]
        for f in self.ordered():
            tag = {"error": "ERROR", "warning": "warning", "ok": "ok"}[f.severity.value]
            if f.acknowledged:
                tag = "warning (acknowledged)"
            lines.append(f"  {tag:8s} {f.check}: {f.message}")
        if self.errors:
            names = sorted({f.check for f in self.errors})
            lines.append(
                "  the run stops here; fix the design, or accept it in the spec with "
                f"[audit] acknowledge = {json.dumps(names)}"
            )
        return "\n".join(lines)

    def to_markdown(self, *, heading: str = "## Design audit") -> str:
        """A markdown section: problems in a table (errors first), then the checks that passed."""
        lines = [
            heading,
            "",
            f"**{self.summary()}**"
            + (f"; acknowledged: {', '.join(self.acknowledged)}" if self.acknowledged else "")
            + ".",
        ]
        problems = [f for f in self.ordered() if f.severity is not Severity.OK]
        if problems:
            lines += ["", "| check | severity | finding |", "|:---|:---|:---|"]
            for f in problems:
                sev = f"**{f.label}**" if f.severity is Severity.ERROR else f.label
                lines.append(f"| {f.check} | {sev} | {_md_cell(f.message)} |")
        if self.passed:
            lines += ["", "Passed:", ""]
            lines += [f"- {f.check}: {_md_cell(f.message)}" for f in self.passed]
        return "\n".join(lines)


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _jsonable(obj: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars and arrays converted, NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | np.ndarray):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, 6)
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    return str(obj)

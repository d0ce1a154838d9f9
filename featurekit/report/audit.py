"""The design audit (``audit.json`` of a results directory, see :mod:`featurekit.audit`) at the top
of a report. A results directory written before the audit existed has no such file and shows none."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from featurekit.audit import AUDIT_FILE, AuditReport, Severity
from featurekit.report.experiments import ReportError


@dataclass(frozen=True)
class SourceAudit:
    """The audit of one results directory."""

    source: Path
    report: AuditReport


def load_audits(results_dirs: Sequence[str | Path]) -> list[SourceAudit]:
    """The audits of the directories that have one; :class:`ReportError` naming a malformed file."""
    out = []
    for d in dict.fromkeys(Path(d) for d in results_dirs):
        path = d / AUDIT_FILE
        if not path.is_file():
            continue
        try:
            out.append(SourceAudit(d, AuditReport.read(path)))
        except (OSError, ValueError) as err:
            raise ReportError(str(err)) from None
    return out


def _title(audit: SourceAudit, several: bool) -> str:
    return f"Design audit of {audit.source}" if several else "Design audit"


def audit_markdown(audits: Sequence[SourceAudit]) -> list[str]:
    """Markdown lines (a ``## Design audit`` section per results directory); none without audits."""
    lines: list[str] = []
    for a in audits:
        lines += ["", a.report.to_markdown(heading=f"## {_title(a, len(audits) > 1)}")]
    return lines


def audit_html(audits: Sequence[SourceAudit]) -> str:
    """One ``<section>`` per results directory: problems (errors first) in a table, then the checks passed."""
    e = html.escape
    parts = []
    for i, a in enumerate(audits):
        r = a.report
        cls = "warning" if r.errors or r.warnings else "protocol"
        ack = f"; acknowledged: {', '.join(r.acknowledged)}" if r.acknowledged else ""
        anchor = "audit" if i == 0 else f"audit-{i}"
        parts.append(f'<section id="{anchor}"><h2>{e(_title(a, len(audits) > 1))}</h2>'
                     f'<p class="{cls}">{e(r.summary())}{e(ack)}.</p>')
        problems = [f for f in r.ordered() if f.severity is not Severity.OK]
        if problems:
            rows = "".join(f"<tr><td>{e(f.check)}</td><td>{e(f.label)}</td>"
                           f'<td style="white-space: normal">{e(f.message)}</td></tr>' for f in problems)
            parts.append("<table><thead><tr><th>check</th><th>severity</th><th>finding</th></tr></thead>"
                         f"<tbody>{rows}</tbody></table>")
        if r.passed:
            items = "".join(f"<li><strong>{e(f.check)}</strong>: {e(f.message)}</li>" for f in r.passed)
            parts.append(f'<p class="note">Passed:</p><ul class="note">{items}</ul>')
        parts.append("</section>")
    return "\n".join(parts)


def audit_latex(audits: Sequence[SourceAudit], escape) -> list[str]:
    """LaTeX lines: a ``\\subsection*`` per results directory with an itemised list of findings."""
    lines = []
    for a in audits:
        r = a.report
        lines += [rf"\subsection*{{{escape(_title(a, len(audits) > 1))}}}", escape(r.summary()) + ".",
                  r"\begin{itemize}"]
        for f in r.ordered():
            label = rf"\textbf{{{escape(f.label)}}}" if f.severity is not Severity.OK else escape(f.label)
            lines.append(rf"\item {label} {escape(f.check)}: {escape(f.message)}")
        lines += [r"\end{itemize}", ""]
    return lines

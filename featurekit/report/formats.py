"""Report writers: a registry ``name -> writer(report, out_dir) -> list[Path]``.

=====  ===========================================================================================
md     ``report.md``: every experiment's tables (best value of a column in bold) and its figures.
csv    ``tables/KEY.csv``: one file per table, numbers only (``mean``, ``std``, ``ci_low``, ``ci_high``, ...;
       flags such as ``best_in_column``, ``overall_best``, ``declared`` as booleans).
tex    ``tables/KEY.tex`` (a booktabs ``table`` to ``\\input``; best in ``\\textbf``) and
       ``report.tex``, a standalone document including them and the figures.
html   ``index.html``: one self-contained page (inline CSS, figures embedded as ``data:`` URIs, no
       external resources); each figure links to its vector (PDF) version.
=====  ===========================================================================================

Add a format with ``@FORMATS.register("name")`` on a function ``(Report, Path) -> list[Path]``.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from featurekit.registry import Registry
from featurekit.report.attribution import ATTRIBUTION_KINDS
from featurekit.report.audit import SourceAudit, audit_html, audit_latex, audit_markdown
from featurekit.report.figures import Figure
from featurekit.report.tables import BEST_MARK, DASH, DECLARED_MARK, PM, SIMILAR_MARK, Experiment, Table

TABLES_DIR = "tables"
WIDE_TEX_COLUMNS = 8  # LaTeX tables with more columns are scaled to the line width (graphicx)


@dataclass
class Section:
    """One experiment's part of the report."""

    experiment: Experiment
    tables: list[Table]
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    """Everything the writers render.

    Attributes
    ----------
    sections
        One per experiment.
    sources
        The results directories, as given.
    results_csv
        Path of the copied ``results.csv`` relative to the report directory (``None``: not written).
    created
        Timestamp (UTC, ISO 8601).
    audits
        The design audits of the results directories that have one (shown at the top).
    """

    sections: list[Section]
    sources: list[Path]
    results_csv: str | None = "results.csv"
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    audits: list[SourceAudit] = field(default_factory=list)


Writer = Callable[[Report, Path], list[Path]]
FORMATS: Registry[Writer] = Registry("report format")


def _display_rows(table: Table) -> list[tuple[list[str], list[bool], bool]]:
    """``(cells, best flags, starts_group)`` per row.

    Values of the group column and of the ``variant`` and ``feature set`` columns are left blank
    where they repeat the row above (hierarchically: a column is blanked only when it and every
    such column before it repeat).
    """
    cols = list(table.data.columns)
    if table.group_column not in cols:
        return [([str(v) for v in table.data.iloc[i].tolist()],
                 [bool(v) for v in table.best.iloc[i].tolist()], False) for i in range(len(table.data))]
    hier = [cols.index(c) for c in (table.group_column, "variant", "feature set") if c in cols]
    gi = hier[0]
    rows, prev = [], None
    for i in range(len(table.data)):
        raw = [str(v) for v in table.data.iloc[i].tolist()]
        cells = list(raw)
        for k, ci in enumerate(hier):
            if prev is None or any(raw[c] != prev[c] for c in hier[:k + 1]):
                break
            cells[ci] = ""
        starts = prev is not None and raw[gi] != prev[gi]
        rows.append((cells, [bool(v) for v in table.best.iloc[i].tolist()], starts))
        prev = raw
    return rows


def _provenance(exp: Experiment) -> list[str]:
    """One line per source directory: spec name, seed, utterances, folds, key library versions."""
    lines = []
    for path, spec in zip(exp.sources, exp.specs):
        parts = [f"{path}"]
        if spec:
            if spec.get("spec", {}).get("name"):
                parts.append(f"spec {spec['spec']['name']}")
            if "seed" in spec:
                parts.append(f"seed {spec['seed']}")
            if spec.get("n_utterances"):
                parts.append(f"{spec['n_utterances']} utterances")
            if spec.get("folds"):
                parts.append(f"{len(spec['folds'])} folds")
            versions = spec.get("library_versions", {})
            libs = [f"{k} {versions[k]}" for k in ("featurekit", "scikit-learn", "opensmile", "torch")
                    if versions.get(k)]
            if libs:
                parts.append(", ".join(libs))
        lines.append("; ".join(parts))
    return lines


def _descriptions(exp: Experiment) -> list[str]:
    """The specs' ``description`` texts (each once), shown under the experiment's heading."""
    texts: list[str] = []
    for spec in exp.specs:
        text = " ".join(str(spec.get("spec", {}).get("description") or "").split())
        if text and text not in texts:
            texts.append(text)
    return texts


def _figure_groups(sec: Section) -> list[tuple[str, list[Figure]]]:
    """The section's figures under their headings: "Figures", then "Attribution" (saliency maps and
    importance of :mod:`featurekit.report.attribution`); a heading without figures is left out."""
    plain = [f for f in sec.figures if f.kind not in ATTRIBUTION_KINDS]
    attribution = [f for f in sec.figures if f.kind in ATTRIBUTION_KINDS]
    return [(h, fs) for h, fs in (("Figures", plain), ("Attribution", attribution)) if fs]


# -- markdown ------------------------------------------------------------------------------------
def md_escape(text: str) -> str:
    """Escape the characters that break a GitHub-flavoured markdown table cell or add emphasis."""
    return re.sub(r"([\\|*`])", r"\\\1", str(text)).replace("<", "&lt;")


def markdown_table(table: Table) -> str:
    """The table as a GitHub-flavoured markdown table (best cells in bold)."""
    cols = list(table.data.columns)
    numeric = set(cols) - set(table.label_columns)
    lines = ["| " + " | ".join(md_escape(c) for c in cols) + " |",
             "|" + "|".join("---:" if c in numeric else ":---" for c in cols) + "|"]
    for cells, best, _ in _display_rows(table):
        out = []
        for c, b in zip(cells, best):
            c = md_escape(c)
            out.append(f"**{c}**" if b and c and c != DASH else c)
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


@FORMATS.register("md")
def write_markdown(report: Report, out_dir: Path) -> list[Path]:
    """``report.md``."""
    lines = ["# featurekit report", "",
             f"Generated {report.created} from {', '.join(f'`{p}`' for p in report.sources)}."]
    if report.results_csv:
        lines.append(f"All metrics: [{report.results_csv}]({report.results_csv}).")
    lines += audit_markdown(report.audits)
    for sec in report.sections:
        exp = sec.experiment
        lines += ["", f"## {md_escape(exp.title)}"]
        lines += [line for text in _descriptions(exp) for line in ("", md_escape(text))]
        lines += ["", f"{md_escape(exp.protocol_text)}."]
        if not exp.speaker_independent:
            lines[-1] = f"> **{lines[-1]}**"
        for t in sec.tables:
            lines += ["", f"### {md_escape(t.title)}", "", f"*{md_escape(t.caption)}*", "", markdown_table(t)]
            if t.notes:
                lines += ["", *(md_escape(n) for n in t.notes)]
        for heading, figures in _figure_groups(sec):
            lines += ["", f"### {heading}"]
            for f in figures:
                lines += ["", f"![{md_escape(f.caption)}]({f.path})", "", f"*{md_escape(f.caption)}*"]
        lines += ["", "Sources: " + " | ".join(md_escape(x) for x in _provenance(exp))]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [path]


# -- csv -----------------------------------------------------------------------------------------
@FORMATS.register("csv")
def write_csv(report: Report, out_dir: Path) -> list[Path]:
    """``tables/KEY.csv`` per table: the table's tidy numbers (:attr:`Table.numbers`), not display strings."""
    d = out_dir / TABLES_DIR
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for sec in report.sections:
        for t in sec.tables:
            df = t.numbers if t.numbers is not None else t.data
            path = d / f"{t.key}.csv"
            df.to_csv(path, index=False, encoding="utf-8", float_format="%.6g")
            paths.append(path)
    return paths


# -- LaTeX ---------------------------------------------------------------------------------------
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "|": r"\textbar{}",
        "<": r"\textless{}", ">": r"\textgreater{}", PM: r"$\pm$", DASH: "---", "\u2013": "--",
        BEST_MARK: r"\textsuperscript{\dag}", SIMILAR_MARK: r"\textsuperscript{\ddag}",
        DECLARED_MARK: r"\textsuperscript{\S}", "\u0394": r"$\Delta$"}
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX))


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters (``\\ & % $ # _ { } ~ ^ | < >``) and write ± as ``$\\pm$``."""
    return _TEX_RE.sub(lambda m: _TEX[m.group(0)], str(text))


def latex_table(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (best cells in ``\\textbf``)."""
    cols = list(table.data.columns)
    labels = set(table.label_columns)
    spec = "".join("l" if c in labels else "r" for c in cols)
    body = [r"\toprule", " & ".join(tex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for cells, best, starts in _display_rows(table):
        if starts:
            body.append(r"\midrule")
        out = []
        for c, b in zip(cells, best):
            e = tex_escape(c)
            if e.startswith("["):
                e = "{[}" + e[1:]  # a row must not start with [: \\ would read it as its argument
            out.append(rf"\textbf{{{e}}}" if b and c and c != DASH else e)
        body.append(" & ".join(out) + r" \\")
    body.append(r"\bottomrule")
    tabular = "\n".join([rf"\begin{{tabular}}{{{spec}}}", *body, r"\end{tabular}"])
    if len(cols) > WIDE_TEX_COLUMNS:  # e.g. 5 models x 2 normalisations: shrink to the text width
        tabular = r"\resizebox{\linewidth}{!}{%" + "\n" + tabular + "}"
    caption = tex_escape(table.caption)
    if table.warning:
        caption = caption.replace("WARNING", r"\textbf{WARNING}")
    notes = "".join(rf"\par\smallskip{{\footnotesize {tex_escape(n)}}}" + "\n" for n in table.notes)
    size = r"\small" if len(cols) <= 7 else r"\footnotesize"
    return "\n".join([r"% featurekit report table; needs \usepackage{booktabs} (and graphicx when resized)",
                      r"\begin{table}[htbp]", r"\centering", size, r"\setlength{\tabcolsep}{4pt}",
                      rf"\caption{{{tex_escape(table.title)}. {caption}}}", rf"\label{{tab:{table.key}}}",
                      tabular, notes.rstrip("\n"), r"\end{table}", ""])


@FORMATS.register("tex")
def write_latex(report: Report, out_dir: Path) -> list[Path]:
    """``tables/KEY.tex`` fragments and ``report.tex`` (standalone: ``pdflatex report.tex``)."""
    d = out_dir / TABLES_DIR
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    doc = [r"\documentclass[a4paper,10pt]{article}", r"\usepackage[T1]{fontenc}",
           r"\usepackage[utf8]{inputenc}", r"\usepackage[margin=1.8cm]{geometry}", r"\usepackage{booktabs}",
           r"\usepackage{graphicx}",
           r"\begin{document}", r"\section*{featurekit report}",
           f"Generated {tex_escape(report.created)}.", ""]
    doc += audit_latex(report.audits, tex_escape)
    for sec in report.sections:
        exp = sec.experiment
        doc += [rf"\subsection*{{{tex_escape(exp.title)}}}",
                *(tex_escape(text) + "\n" for text in _descriptions(exp)),
                tex_escape(exp.protocol_text) + ".", ""]
        for t in sec.tables:
            path = d / f"{t.key}.tex"
            path.write_text(latex_table(t), encoding="utf-8")
            paths.append(path)
            doc.append(rf"\input{{{TABLES_DIR}/{t.key}}}")
        for f in sec.figures:
            doc += [r"\begin{figure}[htbp]", r"\centering",
                    rf"\includegraphics[width=0.6\linewidth]{{{f.vector or f.path}}}",
                    rf"\caption{{{tex_escape(f.caption)}}}", r"\end{figure}"]
        doc.append(r"\clearpage")
    doc.append(r"\end{document}")
    path = out_dir / "report.tex"
    path.write_text("\n".join(doc) + "\n", encoding="utf-8")
    return [*paths, path]


# -- HTML ----------------------------------------------------------------------------------------
CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #333; padding-bottom: .3rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #bbb; padding-bottom: .2rem; }
h3 { margin-top: 1.8rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .6rem 0 .4rem; font-size: .9rem; }
caption { caption-side: top; text-align: left; color: #444; font-size: .85rem; padding-bottom: .4rem;
          max-width: 1100px; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e3e3e3; white-space: nowrap; }
thead th { border-bottom: 2px solid #444; background: #f4f4f4; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.group-start td { border-top: 2px solid #999; }
td.group { font-weight: 600; }
td.best { background: #e3f4e3; }
tbody tr:hover td { background: #f7f7ff; }
.warning { background: #fff0f0; border-left: 5px solid #c00; padding: .5rem .8rem; color: #900;
           font-weight: 600; }
.protocol { color: #333; }
.note { color: #555; font-size: .8rem; max-width: 1100px; }
.figures { display: flex; flex-wrap: wrap; gap: 1.2rem; }
figure { margin: 0; max-width: 520px; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .8rem; color: #444; }
nav ul { columns: 2; }
footer, .sources { color: #666; font-size: .8rem; }
"""


def html_table(table: Table) -> str:
    """The table as HTML (best cells in ``<strong>``, group rows separated by a rule)."""
    e = html.escape
    cols = list(table.data.columns)
    labels = set(table.label_columns)
    head = "".join(f"<th>{e(c)}</th>" if c in labels else f'<th class="num">{e(c)}</th>' for c in cols)
    body = []
    for cells, best, starts in _display_rows(table):
        tds = []
        for col, c, b in zip(cols, cells, best):
            cls = ["group"] if col == table.group_column else []
            if col not in labels:
                cls.append("num")
            text = e(c)
            if b and c and c != DASH:
                cls.append("best")
                text = f"<strong>{text}</strong>"
            tds.append(f'<td class="{" ".join(cls)}">{text}</td>' if cls else f"<td>{text}</td>")
        row_attr = ' class="group-start"' if starts else ""
        body.append(f"<tr{row_attr}>{''.join(tds)}</tr>")
    cap = e(table.caption)
    if table.warning:
        cap = cap.replace("WARNING", '<strong class="warn">WARNING</strong>')
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in table.notes)
    return (f'<div class="scroll"><table id="{e(table.key)}"><caption>{cap}</caption><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table></div>{notes}")


def embedded_image(path: Path) -> str:
    """A ``data:`` URI of a PNG/SVG/JPEG file, so that the page needs no other file to show it."""
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
    try:
        kind = mime[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path}: cannot embed a {path.suffix or 'suffix-less'} file in index.html"
                         ) from None
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


@FORMATS.register("html")
def write_html(report: Report, out_dir: Path) -> list[Path]:
    """``index.html``: all tables and figures on one self-contained page."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>featurekit report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>featurekit report</h1>",
             f"<p>Generated {e(report.created)} from "
             f"{', '.join(f'<code>{e(str(p))}</code>' for p in report.sources)}."
             + (f' All metrics: <a href="{e(report.results_csv)}">{e(report.results_csv)}</a>.'
                if report.results_csv else "") + "</p>"]
    toc = []
    for sec in report.sections:
        k = sec.experiment.key
        items = "".join(f'<li><a href="#{e(t.key)}">{e(t.title)}</a></li>' for t in sec.tables)
        fig = "".join(f'<li><a href="#{e(k)}_{h.lower()}">{h}</a></li>' for h, _ in _figure_groups(sec))
        toc.append(f'<li><a href="#{e(k)}">{e(sec.experiment.title)}</a><ul>{items}{fig}</ul></li>')
    parts.append(audit_html(report.audits))
    parts.append(f"<nav><ul>{''.join(toc)}</ul></nav>")
    for sec in report.sections:
        exp = sec.experiment
        parts.append(f'<section><h2 id="{e(exp.key)}">{e(exp.title)}</h2>')
        parts += [f'<p class="description">{e(text)}</p>' for text in _descriptions(exp)]
        cls = "warning" if not exp.speaker_independent else "protocol"
        parts.append(f'<p class="{cls}">{e(exp.protocol_text)}.</p>')
        for t in sec.tables:
            parts.append(f"<h3>{e(t.title)}</h3>{html_table(t)}")
        for heading, figures in _figure_groups(sec):
            parts.append(f'<h3 id="{e(exp.key)}_{heading.lower()}">{heading}</h3><div class="figures">')
            for f in figures:
                vector = (f' <a href="{e(f.vector)}">{e(Path(f.vector).suffix[1:].upper())}</a>'
                          if f.vector else "")
                parts.append(f'<figure><img src="{embedded_image(out_dir / f.path)}" alt="{e(f.caption)}">'
                             f"<figcaption>{e(f.caption)}{vector}</figcaption></figure>")
            parts.append("</div>")
        parts.append('<p class="sources">Sources: ' + "<br>".join(e(x) for x in _provenance(exp)) + "</p>")
        parts.append("</section>")
    parts.append(f"<footer><p>featurekit report, {e(report.created)}. Values: mean {PM} std across folds "
                 f"unless marked pooled; the best value of each column in bold.</p></footer></body></html>")
    path = out_dir / "index.html"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return [path]


def writer(name: str) -> Writer:
    """The writer registered as ``name`` (``md``, ``csv``, ``tex``, ``html``)."""
    return FORMATS.get(name)


__all__ = ["CSS", "FORMATS", "Report", "Section", "Writer", "html_table", "latex_table", "markdown_table",
           "embedded_image", "md_escape", "tex_escape", "writer"]

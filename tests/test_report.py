"""featurekit.report: tables, writers and figures from hand-written results directories.

The results directories are built here as pandas frames (results.csv, predictions.csv,
spec.json) in the layout of :mod:`featurekit.evaluation.runner`, with known values, so the tests
run in seconds and can check which cell is the best of its column.
"""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurekit.report import ReportError, load_experiments, parse_feature_set_name, write_report
from featurekit.report.experiments import safe_name
from featurekit.report.formats import FORMATS, md_escape, tex_escape
from featurekit.report.selection import best_systems
from featurekit.report.tables import classification_table, pooled_table, regression_table

CLASSES = ["angry", "happy", "neutral", "sad"]
FOLDS = ["speaker=01", "speaker=02", "speaker=03"]
JITTER = (-0.02, 0.0, 0.02)  # per-fold offsets: the fold mean is the base value
ODD = "ext_a%b&c#d"  # an (unknown) extractor name full of LaTeX specials
CLS_SETS = ["egemaps", "mfcc.mean_std", "mfcc.mean_std_silence", "mfcc.stats", "mfcc.lld",
            "egemaps+mfcc.mean_std", "late(egemaps|mfcc.mean_std)", "hf_encoder@0", "hf_encoder@1",
            "hf_encoder@-1", ODD]
MODELS = ["svm", "rf"]
NORMS = ["global", "speaker"]


def cls_uar(fs: str, model: str, norm: str) -> float:
    """Mean UAR of a system: a base per feature set plus a model/normalisation offset, with overrides."""
    base = {"egemaps": 0.70, "mfcc.mean_std": 0.60, "mfcc.mean_std_silence": 0.62, "mfcc.stats": 0.64,
            "mfcc.lld": 0.50, "egemaps+mfcc.mean_std": 0.72, "late(egemaps|mfcc.mean_std)": 0.71,
            "hf_encoder@0": 0.55, "hf_encoder@1": 0.66, "hf_encoder@-1": 0.63, ODD: 0.40}[fs]
    override = {("mfcc.stats", "rf", "speaker"): 0.90,  # the best of column rf / speaker
                ("egemaps", "svm", "speaker"): 0.75,  # ties with egemaps+mfcc in svm / speaker
                ("egemaps+mfcc.mean_std", "svm", "speaker"): 0.75}
    off = {("svm", "global"): 0.0, ("svm", "speaker"): 0.02, ("rf", "global"): -0.05, ("rf", "speaker"): 0.01}
    return override.get((fs, model, norm), base + off[(model, norm)])


def _rows(base: dict, target: str, metric: str, fold_values: list[float], pooled: float,
          ci: tuple[float, float] | None) -> list[dict]:
    def row(fold: str, m: str, v: float) -> dict:
        return {**base, "fold": fold, "target": target, "metric": m, "value": v}

    rows = [row(f, metric, v) for f, v in zip(FOLDS, fold_values)]
    rows += [row("mean", metric, float(np.mean(fold_values))), row("std", metric, float(np.std(fold_values))),
             row("pooled", metric, pooled)]
    if ci:
        rows += [row("pooled", f"{metric}_ci95_low", ci[0]), row("pooled", f"{metric}_ci95_high", ci[1])]
    return rows


def _predictions(fs: str, model: str, norm: str, uar: float, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for f in FOLDS:
        for c in CLASSES:
            for k in range(5):
                wrong = rng.random() > uar
                pred = CLASSES[(CLASSES.index(c) + 1) % 4] if wrong else c
                row = {"normalisation": norm, "model": model, "feature_set": fs, "id": f"{f}_{c}_{k}",
                       "fold": f, "target": "label", "y_true": c, "y_pred": pred}
                row.update({f"p[{x}]": float(x == pred) for x in CLASSES})
                rows.append(row)
    return pd.DataFrame(rows)


def write_spec(d: Path, name: str, task: dict, *, corpus: str = "toy") -> None:
    (d / "spec.json").write_text(json.dumps({
        "spec": {"name": name, "corpus": {"name": corpus}, "task": task},
        "resolved": {"task": task}, "seed": 0, "n_utterances": 60,
        "folds": [{"name": f, "n_train": 40, "n_test": 20} for f in FOLDS],
        "library_versions": {"featurekit": "0.1.0"}}))


def make_classification_dir(root: Path, name: str = "emodb", *, sets: list[str] = CLS_SETS,
                            protocol: str = "leave-one-speaker-out", speaker_independent: bool = True,
                            corpus: str = "toy") -> Path:
    """A classification results directory with the UARs of :func:`cls_uar`."""
    d = root / name
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, preds = [], []
    for fs in sets:
        for model in MODELS:
            for norm in NORMS:
                if fs == "mfcc.lld" and model == "svm":
                    continue  # a sequence feature set only with one model: missing cells
                u = cls_uar(fs, model, norm)
                base = {"feature_set": fs, "model": model, "normalisation": norm, "protocol": protocol,
                        "speaker_independent": speaker_independent}
                rows += _rows(base, "label", "uar", [u + j for j in JITTER], u + 0.001, (u - 0.05, u + 0.04))
                rows += _rows(base, "label", "accuracy", [u] * 3, u, (u - 0.05, u + 0.05))
                rows += [{**base, "fold": "pooled", "target": "label", "metric": f"recall[{c}]", "value": u}
                         for c in CLASSES]
                preds.append(_predictions(fs, model, norm, u, rng))
    pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
    pd.concat(preds).to_csv(d / "predictions.csv", index=False)
    write_spec(d, name, {"type": "classification", "target": "label", "targets": ["label"]}, corpus=corpus)
    return d


REG_CCC = {("egemaps", "svr"): {"valence": 0.40, "arousal": 0.70},
           ("egemaps", "ridge"): {"valence": 0.45, "arousal": 0.60},
           ("mfcc.mean_std", "svr"): {"valence": 0.30, "arousal": 0.75},
           ("mfcc.stats", "svr"): {"valence": 0.35, "arousal": 0.72}}


def make_regression_dir(root: Path, name: str = "emodb_listening") -> Path:
    d = root / name
    d.mkdir(parents=True)
    rows = []
    for (fs, model), per in REG_CCC.items():
        base = {"feature_set": fs, "model": model, "normalisation": "speaker",
                "protocol": "leave-one-speaker-out", "speaker_independent": True}
        for target, v in per.items():
            rows += _rows(base, target, "ccc", [v + j for j in JITTER], v, (v - 0.1, v + 0.1))
            rows += _rows(base, target, "mae", [0.3] * 3, 0.3, None)
    pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
    write_spec(d, name, {"type": "regression", "targets": ["valence", "arousal"]})
    return d


@pytest.fixture()
def cls_dir(tmp_path: Path) -> Path:
    return make_classification_dir(tmp_path / "results")


# -- feature-set names ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, group, variant", [
    ("egemaps", "egemaps", "native"),
    ("egemaps.native", "egemaps", "native"),
    ("mfcc", "mfcc", "HSF1"),  # mfcc has no native functionals: bare name = mean_std
    ("mfcc.mean_std", "mfcc", "HSF1"),
    ("mfcc.mean_std_silence", "mfcc", "HSF2"),
    ("mfcc.stats", "mfcc", "stats"),
    ("mfcc.lld", "mfcc", "LLD"),
    ("whisper_ct2.native@-1", "whisper_ct2", "layer -1"),
    ("hf_encoder@3", "hf_encoder", "layer 3"),
    ("hf_encoder.lld@mean", "hf_encoder", "LLD layer mean"),
    ("egemaps+compare", "fusion", "early"),
    ("late(a|b|c)", "fusion", "late"),
])
def test_parse_feature_set_name(name: str, group: str, variant: str) -> None:
    info = parse_feature_set_name(name)
    assert (info.group, info.variant) == (group, variant)


# -- tables --------------------------------------------------------------------------------------
def test_classification_table_rows_columns_and_grouping(cls_dir: Path) -> None:
    [exp] = load_experiments([cls_dir])
    t = classification_table(exp)
    assert list(t.data.columns) == ["group", "feature set", "SVM / global z", "SVM / speaker z",
                                    "RF / global z", "RF / speaker z"]
    assert list(t.data["feature set"]) == [
        "eGeMAPS (88)", "MFCC HSF1", "MFCC HSF2", "MFCC stats", "MFCC LLD",
        "HF encoder L0", "HF encoder L1", "HF encoder L-1", ODD, "eGeMAPS (88) + MFCC HSF1",
        "late(eGeMAPS (88) | MFCC HSF1)"]
    # the HSF variants of the MFCC LLDs sit together, in the order HSF1, HSF2, stats, LLD
    mfcc = t.data[t.data["group"] == "MFCC"]
    assert list(mfcc["feature set"]) == ["MFCC HSF1", "MFCC HSF2", "MFCC stats", "MFCC LLD"]
    assert np.ptp(mfcc.index.to_numpy()) == len(mfcc) - 1
    row = t.data.set_index("feature set").loc["MFCC stats"]
    assert row["SVM / global z"] == "0.640 \u00b1 0.016"  # mean ± population std of (-0.02, 0, 0.02)
    assert row["RF / speaker z"] == "0.900 \u00b1 0.016\u2020"  # the overall best, marked
    assert t.data.set_index("feature set").loc["MFCC LLD", "SVM / global z"] == "\u2014"
    assert "leave-one-speaker-out" in t.caption and "WARNING" not in t.caption


def test_best_per_column_marked(cls_dir: Path) -> None:
    [exp] = load_experiments([cls_dir])
    t = classification_table(exp)
    best = {c: sorted(t.data.loc[t.best[c], "feature set"]) for c in t.data.columns}
    early = "eGeMAPS (88) + MFCC HSF1"
    assert best["SVM / global z"] == [early]
    assert best["SVM / speaker z"] == sorted(["eGeMAPS (88)", early])  # a tie: both marked
    assert best["RF / global z"] == [early]
    assert best["RF / speaker z"] == ["MFCC stats"]
    assert best["group"] == best["feature set"] == []
    pooled = pooled_table(exp)
    cell = pooled.data.set_index("feature set").loc["MFCC stats", "RF / speaker z"]
    assert cell == "0.901 [0.850, 0.940]\u2020"
    assert sorted(pooled.data.loc[pooled.best["RF / speaker z"], "feature set"]) == ["MFCC stats"]


def test_best_systems_cover_each_group_and_top3(cls_dir: Path) -> None:
    [exp] = load_experiments([cls_dir])
    best = best_systems(exp, top=3)
    assert tuple(best.iloc[0][["feature_set", "model", "normalisation"]]) == ("mfcc.stats", "rf", "speaker")
    assert set(best["group"]) == {"egemaps", "mfcc", "hf_encoder", ODD, "fusion"}
    assert list(best["score"]) == sorted(best["score"], reverse=True)


def test_regression_table_mean_ccc(tmp_path: Path) -> None:
    [exp] = load_experiments([make_regression_dir(tmp_path)])
    assert exp.task_type == "regression" and exp.targets == ["valence", "arousal"]
    t = regression_table(exp)
    assert list(t.data.columns) == ["group", "feature set", "model", "CCC valence", "CCC arousal", "mean CCC"]
    by = t.data.set_index(["feature set", "model"])
    for (fs, model), per in REG_CCC.items():
        text = by.loc[(exp.names.feature_set(fs), exp.names.model(model)), "mean CCC"]
        assert text.rstrip("\u2020\u2021") == f"{np.mean(list(per.values())):.3f}"
    assert by.loc[("eGeMAPS (88)", "SVR"), "CCC valence"] == "0.400 \u00b1 0.016"
    marked = {c: list(t.data.loc[t.best[c], "feature set"] + "/" + t.data.loc[t.best[c], "model"])
              for c in ("CCC valence", "CCC arousal", "mean CCC")}
    assert marked == {"CCC valence": ["eGeMAPS (88)/Ridge"], "CCC arousal": ["MFCC HSF1/SVR"],
                      "mean CCC": ["eGeMAPS (88)/SVR"]}  # 0.550 vs 0.525, 0.525, 0.535


def test_speaker_dependent_protocol_flagged(tmp_path: Path) -> None:
    d = make_classification_dir(tmp_path, "kfold", sets=["egemaps", "mfcc.mean_std"],
                                protocol="5-fold stratified (speaker-dependent)", speaker_independent=False)
    [exp] = load_experiments([d])
    assert not exp.speaker_independent
    t = classification_table(exp)
    assert "speaker-DEPENDENT" in t.caption and "WARNING" in t.caption and t.warning
    out = tmp_path / "report"
    write_report([d], out, formats=["md", "html", "tex"])
    md = (out / "report.md").read_text()
    assert md.count("speaker-DEPENDENT") >= 4  # the section heading and every table caption
    assert 'class="warning"' in (out / "index.html").read_text()
    assert r"\textbf{WARNING}" in (out / "tables" / "kfold_uar.tex").read_text()


# -- writers and figures -------------------------------------------------------------------------
class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.src: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "img":
            self.src.append(a["src"])
        for k in ("src", "href"):
            if a.get(k, "").startswith(("http:", "https:", "//")):
                self.external.append(a[k])


def test_write_report_all_formats(cls_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    paths = write_report([cls_dir], out)
    assert all(p.is_file() for p in paths)
    for name in ("results.csv", "report.md", "report.tex", "index.html", "tables/emodb_uar.csv",
                 "tables/emodb_uar_pooled.csv", "tables/emodb_best.csv", "tables/emodb_uar.tex"):
        assert (out / name) in paths, name
    assert (out / "results.csv").read_bytes() == (cls_dir / "results.csv").read_bytes()

    # html: self-contained: every image embedded (a data: URI of the PNG written beside it), nothing external
    parser = _Images()
    parser.feed((out / "index.html").read_text())
    assert parser.src and not parser.external
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in parser.src}
    assert all(src.startswith("data:image/png;base64,") for src in parser.src)
    assert embedded == {p.read_bytes() for p in (out / "figures").glob("*.png")}
    # the results figure, confusion matrices of the best of each group (5 groups), one layer plot for
    # hf_encoder; each as PNG and PDF
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert sum(n.startswith("cm_") for n in figures) == 5
    assert [n for n in figures if n.startswith("layers_")] == ["layers_emodb_hf_encoder_native.png"]
    assert [n for n in figures if n.startswith("results_")] == ["results_emodb.png"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+\.png", n) for n in figures)
    assert all((out / "figures" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in figures)
    pdfs = sorted(p.name for p in (out / "figures").glob("*.pdf"))
    assert pdfs == sorted(n[:-4] + ".pdf" for n in figures)
    assert all((out / "figures" / n).read_bytes()[:5] == b"%PDF-" for n in pdfs)

    # csv: numbers, not display strings; the best of a column and the overall best as flags
    csv = pd.read_csv(out / "tables" / "emodb_uar.csv").set_index(["feature_set", "model", "normalisation"])
    assert {"mean", "std", "ci_low", "ci_high", "pooled", "best_in_column", "overall_best",
            "not_significantly_worse", "declared", "feature_set_name", "model_name"} <= set(csv.columns)
    for c in ("mean", "std", "ci_low", "ci_high", "pooled"):
        assert pd.api.types.is_float_dtype(csv[c]), c
    r = csv.loc[("mfcc.stats", "rf", "speaker")]
    assert (r["mean"], r["ci_low"], r["ci_high"]) == pytest.approx((0.90, 0.85, 0.94))
    assert r["std"] == pytest.approx(np.std([0.88, 0.90, 0.92]), rel=1e-5)
    assert r["best_in_column"] and r["overall_best"] and r["feature_set_name"] == "MFCC stats"
    assert csv["overall_best"].sum() == 1
    assert not csv.loc[("egemaps", "rf", "speaker"), "best_in_column"]
    assert csv.loc[("egemaps", "svm", "speaker"), "best_in_column"]
    assert csv.loc[("egemaps+mfcc.mean_std", "svm", "speaker"), "best_in_column"]
    for path in (out / "tables").glob("*.csv"):
        text = path.read_text()
        assert "\u00b1" not in text and "[0." not in text, path

    # md: bold best, pipes of late-fusion names escaped, HSF variants without repeated group label
    md = (out / "report.md").read_text()
    assert "| **0.900 \u00b1 0.016\u2020** |" in md
    assert r"late(eGeMAPS (88) \| MFCC HSF1)" in md
    assert "|  | MFCC HSF2 |" in md
    assert "Protocol: leave-one-speaker-out" in md

    # tex: booktabs, escaped names, bold best
    tex = (out / "tables" / "emodb_uar.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"late(eGeMAPS (88) \textbar{} MFCC HSF1)" in tex
    assert r"ext\_a\%b\&c\#d" in tex
    assert r"\textbf{0.900 $\pm$ 0.016\textsuperscript{\dag}}" in tex
    assert r"\input{tables/emodb_uar}" in (out / "report.tex").read_text()


def test_latex_and_markdown_escaping() -> None:
    assert tex_escape("a_b%c&d#e$f{g}~^\\") == (r"a\_b\%c\&d\#e\$f\{g\}\textasciitilde{}\textasciicircum{}"
                                                r"\textbackslash{}")
    assert tex_escape("0.5 \u00b1 0.1") == r"0.5 $\pm$ 0.1"
    assert md_escape("late(a|b)*") == r"late(a\|b)\*"
    assert safe_name("late(egemaps|mfcc.mean_std)+x@-1") == "late_egemaps_mfcc.mean_std_plus_x_at_-1"


def test_several_results_dirs(tmp_path: Path) -> None:
    res = tmp_path / "results"
    a = make_classification_dir(res, "emodb_a", sets=["egemaps", "mfcc.mean_std"])
    b = make_classification_dir(res, "emodb_b", sets=["mfcc.stats", "hf_encoder@0"])  # same corpus/task
    c = make_regression_dir(res)
    d = make_classification_dir(res, "other", sets=["egemaps"], corpus="ravdess")
    exps = load_experiments([a, b, c, d])
    assert [e.task_type for e in exps] == ["classification", "regression", "classification"]
    assert sorted(exps[0].results["feature_set"].unique()) == ["egemaps", "hf_encoder@0", "mfcc.mean_std",
                                                               "mfcc.stats"]
    out = tmp_path / "report"
    write_report([a, b, c, d], out, formats=("md", "csv"))
    merged = pd.read_csv(out / "results.csv")
    assert merged["source"].nunique() == 4
    assert len(merged) == sum(len(pd.read_csv(x / "results.csv")) for x in (a, b, c, d))
    md = (out / "report.md").read_text()
    assert md.count("\n## ") == 3 and "regression of valence, arousal" in md
    assert (out / "tables" / "emodb_listening_ccc.csv").is_file()
    assert len({p.name for p in (out / "tables").glob("*_best.csv")}) == 3


def test_errors(tmp_path: Path, cls_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown report format"):
        write_report([cls_dir], tmp_path / "r", formats=["pdf"])
    with pytest.raises(ReportError, match="results.csv"):
        (tmp_path / "empty").mkdir()
        write_report([tmp_path / "empty"], tmp_path / "r")
    assert set(FORMATS.names()) >= {"md", "csv", "tex", "html"}


def test_spec_description_under_the_heading(cls_dir: Path, tmp_path: Path) -> None:
    """A spec's ``description`` (e.g. a caveat such as an English-only encoder) appears in every format."""
    info = json.loads((cls_dir / "spec.json").read_text())
    info["spec"]["description"] = "Toy corpus.\n  Whisper is English-only: 100% caveat & *care*."
    (cls_dir / "spec.json").write_text(json.dumps(info))
    out = tmp_path / "report"
    write_report([cls_dir], out)
    md = (out / "report.md").read_text()
    text = "Toy corpus. Whisper is English-only: 100% caveat & *care*."
    assert f"classification of label (4 classes)\n\n{md_escape(text)}\n\nProtocol:" in md
    assert tex_escape(text) in (out / "report.tex").read_text()
    assert '<p class="description">Toy corpus. Whisper is English-only: 100% caveat &amp; *care*.</p>' in (
        out / "index.html").read_text()
    # no description: nothing added
    info["spec"].pop("description")
    (cls_dir / "spec.json").write_text(json.dumps(info))
    write_report([cls_dir], out)
    assert 'class="description"' not in (out / "index.html").read_text()

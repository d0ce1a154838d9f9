"""Reports to paste into a paper: display names, numeric CSV tables, a main table that fits a page,
per-class recall, the results figure, significance against the best, declared systems, and the
rendering of ``index.html`` in a real browser (headless Chromium).

Results directories are written by hand (see tests/test_report.py) with known predictions, so that
the tests know which systems differ significantly; the statistics are checked against statsmodels
and scipy on fixed inputs.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from featurekit.evaluation import validate
from featurekit.evaluation.spec import SpecError
from featurekit.report import load_experiments, write_report
from featurekit.report.names import DisplayNames
from featurekit.report.selection import BEST_MARK, DECLARED_MARK, SIMILAR_MARK, best_systems
from featurekit.report.significance import compare_to_best, fold_test, holm, mcnemar_exact
from featurekit.report.tables import (
    MAX_TABLE_COLUMNS,
    build_tables,
    classification_tables,
    per_class_recall_table,
    significance_table,
)

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["angry", "happy", "neutral", "sad"]


# -- hand-made results directories with known predictions ----------------------------------------
def write_results(d: Path, systems: dict[tuple[str, str, str], np.ndarray], *, n_folds: int,
                  per_fold: int, report: dict | None = None, labels: np.ndarray | None = None) -> Path:
    """A results directory whose predictions are ``systems[key]`` (predicted class indices).

    Utterance ``i`` belongs to fold ``i % n_folds`` and has class ``labels[i]`` (default ``i % 4``).
    results.csv holds the per-fold, mean, std and pooled UAR computed from those predictions.
    """
    d.mkdir(parents=True)
    n = n_folds * per_fold
    y = np.arange(n) % 4 if labels is None else labels
    fold = np.array([f"speaker={k:02d}" for k in np.arange(n) % n_folds])
    rows, preds = [], []
    for (fs, model, norm), pred in systems.items():
        base = {"feature_set": fs, "model": model, "normalisation": norm, "protocol": "leave-one-speaker-out",
                "speaker_independent": True, "target": "label"}
        per = []
        for f in sorted(set(fold)):
            m = fold == f
            per.append(_uar(y[m], pred[m]))
            rows.append({**base, "fold": f, "metric": "uar", "value": per[-1]})
        pooled = _uar(y, pred)
        rows += [{**base, "fold": "mean", "metric": "uar", "value": float(np.mean(per))},
                 {**base, "fold": "std", "metric": "uar", "value": float(np.std(per))},
                 {**base, "fold": "pooled", "metric": "uar", "value": pooled},
                 {**base, "fold": "pooled", "metric": "uar_ci95_low", "value": pooled - 0.05},
                 {**base, "fold": "pooled", "metric": "uar_ci95_high", "value": pooled + 0.04}]
        preds.append(pd.DataFrame({"normalisation": norm, "model": model, "feature_set": fs,
                                   "id": [f"u{i:04d}" for i in range(n)], "fold": fold, "target": "label",
                                   "y_true": [CLASSES[k] for k in y], "y_pred": [CLASSES[k] for k in pred]}))
    pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
    pd.concat(preds).to_csv(d / "predictions.csv", index=False)
    spec = {"name": d.name, "corpus": {"name": "toy"}, "task": {"type": "classification", "target": "label"}}
    if report:
        spec["report"] = report
    (d / "spec.json").write_text(json.dumps({"spec": spec, "resolved": {"task": spec["task"]}, "seed": 0}))
    return d


def _uar(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def corrupt(y: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """``y`` with a fraction ``rate`` of the utterances (chosen at random) predicted as the next class."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(y)) < rate
    return np.where(wrong, (y + 1) % 4, y)


@pytest.fixture()
def grid(tmp_path: Path) -> Path:
    """Six folds, 240 utterances: a strong system, one close to it, clearly worse ones; a declared one."""
    n = 240
    y = np.arange(n) % 4
    best = corrupt(y, 0.10, 1)
    close = best.copy()
    flip = np.flatnonzero(best == y)[:3]
    close[flip] = (y[flip] + 1) % 4  # 3 more errors than the best on the same utterances: not significant
    systems = {("egemaps", "svm", "speaker"): best,
               ("egemaps", "svm", "global"): close,
               ("mfcc.mean_std", "svm", "speaker"): corrupt(y, 0.45, 2),
               ("mfcc.mean_std", "logreg", "speaker"): corrupt(y, 0.50, 3),
               ("whisper_ct2@4", "svm", "speaker"): corrupt(y, 0.40, 4),
               ("compare", "logreg", "global"): corrupt(y, 0.60, 5)}
    report = {"display_names": {"mfcc.mean_std": "MFCC HSF1 (80)", "logreg": "Logistic regression"},
              "declared": ["compare/logreg/global"]}
    return write_results(tmp_path / "results" / "grid", systems, n_folds=6, per_fold=40, report=report)


# -- display names -------------------------------------------------------------------------------
def test_default_display_names() -> None:
    names = DisplayNames()
    assert names.feature_set("egemaps") == "eGeMAPS (88)"
    assert names.feature_set("compare") == "ComParE (6373)"
    assert names.feature_set("mfcc.mean_std") == "MFCC HSF1"
    assert names.feature_set("mfcc.mean_std_silence") == "MFCC HSF2"
    assert names.feature_set("egemaps.lld") == "eGeMAPS LLD"
    assert names.feature_set("egemaps+compare") == "eGeMAPS (88) + ComParE (6373)"
    assert names.feature_set("late(egemaps|mfcc.stats)") == "late(eGeMAPS (88) | MFCC stats)"
    assert names.model("logreg") == "LogReg" and names.model("svm_rbf") == "svm_rbf"
    # the model size from the spec's extractor options
    spec = {"spec": {"extractors": {"whisper_ct2": {"model": "/models/faster-whisper-tiny.en"}}}}
    assert DisplayNames.from_specs([spec]).feature_set("whisper_ct2@4") == "Whisper tiny.en L4"
    assert DisplayNames().feature_set("whisper_ct2@-1") == "Whisper L-1"


def test_spec_display_names_in_every_table_and_figure(grid: Path, tmp_path: Path) -> None:
    [exp] = load_experiments([grid])
    for t in build_tables(exp):
        text = t.data.to_string()
        assert "mfcc.mean_std" not in text and "logreg" not in text, t.key
        assert "MFCC HSF1 (80)" in text, t.key
    out = tmp_path / "report"
    write_report([grid], out)
    md = (out / "report.md").read_text()
    assert "Logistic regression" in md and "Whisper L4" in md
    figures = re.findall(r"!\[([^\]]*)\]\((figures/[^)]+\.png)\)", md)
    assert figures and all("mfcc.mean_std" not in cap for cap, _ in figures)
    assert any("eGeMAPS (88) / SVM / speaker z" in cap for cap, _ in figures)


# -- main table ----------------------------------------------------------------------------------
def test_main_table_split_to_fit_a_page(tmp_path: Path) -> None:
    n = 48
    y = np.arange(n) % 4
    systems = {(fs, m, norm): corrupt(y, 0.3, k)
               for k, (fs, m, norm) in enumerate((fs, m, norm) for fs in ("egemaps", "mfcc.stats")
                                                 for m in ("svm", "rf", "mlp", "logreg")
                                                 for norm in ("global", "speaker"))}
    d = write_results(tmp_path / "wide", systems, n_folds=3, per_fold=16)
    [exp] = load_experiments([d])
    tables = classification_tables(exp)
    assert [t.key for t in tables] == ["wide_uar_global", "wide_uar_speaker"]
    for t in tables:
        values = [c for c in t.data.columns if c not in t.label_columns]
        assert len(values) <= MAX_TABLE_COLUMNS and values == ["SVM", "RF", "MLP", "LogReg"]
    # the overall best is singled out once, in the table of its normalisation
    scores = {k: _uar(y, p) for k, p in systems.items()}
    fs, model, norm = max(scores, key=scores.get)
    cells = [c for t in tables for c in t.data.to_numpy().ravel() if str(c).endswith(BEST_MARK)]
    assert len(cells) == 1
    table = next(t for t in tables if t.key.endswith(norm))
    row = table.data.set_index("feature set").loc[DisplayNames().feature_set(fs)]
    assert row[DisplayNames().model(model)].endswith(BEST_MARK)
    # the numbers of every split table: one row per system shown, all systems across the tables
    numbers = pd.concat([t.numbers for t in tables])
    assert len(numbers) == len(systems) and numbers["overall_best"].sum() == 1


def test_many_models_split_into_tables_of_near_equal_width(tmp_path: Path) -> None:
    y = np.arange(24) % 4
    models = ["svm", "rf", "mlp", "logreg", "knn", "xgb", "ridge"]
    d = write_results(tmp_path / "seven", {("egemaps", m, "speaker"): corrupt(y, 0.3, k)
                                           for k, m in enumerate(models)}, n_folds=3, per_fold=8)
    [exp] = load_experiments([d])
    tables = classification_tables(exp)
    assert [t.key for t in tables] == ["seven_uar_part1", "seven_uar_part2"]
    widths = [len([c for c in t.data.columns if c not in t.label_columns]) for t in tables]
    assert widths == [4, 3]
    assert "models 2/2" in tables[1].title


# -- significance --------------------------------------------------------------------------------
def test_mcnemar_holm_and_wilcoxon_match_statsmodels_and_scipy() -> None:
    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(7)
    for _ in range(20):
        a = rng.random(120) < 0.8
        b = rng.random(120) < rng.uniform(0.55, 0.85)
        n_b, n_c, p = mcnemar_exact(a, b)
        table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
        assert (n_b, n_c) == (table[0][1], table[1][0])
        assert p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9)
    assert mcnemar_exact([True, False], [True, False])[2] == 1.0  # no discordant pairs
    for p in ([0.01, 0.04, 0.03, 0.2, 0.5], rng.random(13), [0.001, 0.001, 0.9]):
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    with_nan = holm([0.01, np.nan, 0.04])
    assert np.isnan(with_nan[1])
    assert with_nan[[0, 2]] == pytest.approx(multipletests([0.01, 0.04], method="holm")[1])
    x, z = rng.random(10), rng.random(10)
    assert fold_test(x, z) == pytest.approx(wilcoxon(x, z).pvalue)
    assert fold_test(x, x) == 1.0


def test_best_against_each_other_marked_and_counted(grid: Path, tmp_path: Path) -> None:
    [exp] = load_experiments([grid])
    sig = exp.significance
    assert tuple(sig.iloc[0][["feature_set", "model", "normalisation"]]) == ("egemaps", "svm", "speaker")
    by = sig.set_index(["feature_set", "model", "normalisation"])
    close = by.loc[("egemaps", "svm", "global")]
    assert (close["only_best"], close["only_other"]) == (3, 0)
    assert close["not_worse"] and close["p_mcnemar_holm"] >= 0.05
    assert not by.loc[("mfcc.mean_std", "svm", "speaker"), "not_worse"]
    # Holm over the 5 comparisons, as statsmodels computes it
    from statsmodels.stats.multitest import multipletests

    others = sig.iloc[1:]
    assert others["p_mcnemar_holm"].to_numpy() == pytest.approx(
        multipletests(others["p_mcnemar"].to_numpy(), method="holm")[1])
    # 6 folds: the per-fold Wilcoxon test is there too
    assert (others["n_folds"] == 6).all() and others["p_fold"].notna().all()

    t = classification_tables(exp)[0]
    cells = t.data.set_index("feature set")
    assert cells.loc["eGeMAPS (88)", "SVM / speaker z"].endswith(BEST_MARK)
    assert cells.loc["eGeMAPS (88)", "SVM / global z"].endswith(SIMILAR_MARK)
    assert not cells.loc["MFCC HSF1 (80)", "SVM / speaker z"].endswith((SIMILAR_MARK, BEST_MARK))
    note = " ".join(t.notes)
    assert "6 systems" in note and "optimistic" in note and "Holm-corrected over 5 comparisons" in note

    st = significance_table(exp)
    assert list(st.data["vs best"]) == ["best"] + ["not sig. worse" if x else "worse"
                                                   for x in sig["not_worse"].iloc[1:]]
    assert "McNemar p (Holm)" in st.data and "Wilcoxon p (Holm)" in st.data
    out = tmp_path / "report"
    write_report([grid], out, formats=["csv"])
    csv = pd.read_csv(out / "tables" / "grid_significance.csv")
    assert csv["p_mcnemar_holm"].iloc[1:].to_numpy() == pytest.approx(others["p_mcnemar_holm"].to_numpy())


def test_fold_test_needs_six_folds(tmp_path: Path) -> None:
    y = np.arange(60) % 4
    systems = {("egemaps", "svm", "speaker"): corrupt(y, 0.1, 1),
               ("mfcc", "svm", "speaker"): corrupt(y, 0.5, 2)}
    d = write_results(tmp_path / "five", systems, n_folds=5, per_fold=12)
    [exp] = load_experiments([d])
    assert exp.significance["p_fold"].isna().all() and exp.significance["p_mcnemar"].notna().sum() == 1
    assert "Wilcoxon p (Holm)" not in significance_table(exp).data


def test_compare_to_best_without_predictions_uses_folds() -> None:
    systems = pd.DataFrame({"feature_set": ["a", "b"], "model": ["m", "m"], "normalisation": ["n", "n"]})
    folds = pd.DataFrame({"feature_set": ["a"] * 8 + ["b"] * 8, "model": "m", "normalisation": "n",
                          "fold": [str(k) for k in range(8)] * 2,
                          "value": [0.8 + 0.01 * k for k in range(8)] + [0.5 + 0.02 * k for k in range(8)]})
    out = compare_to_best(systems, None, folds)
    assert out["p_fold"].iloc[1] == pytest.approx(wilcoxon(folds["value"][:8], folds["value"][8:]).pvalue)
    assert not out["not_worse"].iloc[1] and out["not_worse"].iloc[0]


# -- per-class recall and the results figure -------------------------------------------------------
def test_per_class_recall_of_the_best_systems(grid: Path) -> None:
    [exp] = load_experiments([grid])
    t = per_class_recall_table(exp)
    preds = pd.read_csv(grid / "predictions.csv")
    best = best_systems(exp)
    assert len(t.data) == len(best)
    for (_, r), (_, num) in zip(best.iterrows(), t.numbers.iterrows()):
        p = preds[(preds.feature_set == r.feature_set) & (preds.model == r.model)
                  & (preds.normalisation == r.normalisation)]
        for c in CLASSES:
            sel = p[p.y_true == c]
            assert num[f"recall[{c}]"] == pytest.approx(np.mean(sel.y_pred == c))
    assert list(t.data.columns[-5:]) == [*CLASSES, "UAR (pooled)"]


def test_results_figure_with_intervals_png_and_pdf(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    paths = write_report([grid], out, formats=["md"])
    assert out / "figures" / "results_grid.png" in paths and out / "figures" / "results_grid.pdf" in paths
    assert (out / "figures" / "results_grid.pdf").read_bytes()[:5] == b"%PDF-"
    md = (out / "report.md").read_text()
    assert "pooled UAR with 95% bootstrap interval per system" in md


# -- declared systems (issue 16) -------------------------------------------------------------------
SPEC = {"name": "t", "corpus": {"name": "synthetic"}, "task": {"type": "classification", "target": "label"},
        "protocol": {"name": "loso", "group": "speaker"}, "features": {"sets": ["egemaps", "mfcc.mean_std"]},
        "evaluation": {"normalisation": ["global", "speaker"]},
        "models": {"svm": {}, "logreg": {"sets": ["egemaps"], "normalisation": ["speaker"]}}}


def _spec(declared) -> dict:
    return {**SPEC, "report": {"declared": declared}}


def test_declared_validated_in_the_spec() -> None:
    spec = validate(_spec(["egemaps/svm/speaker", "egemaps/logreg/speaker"]))
    assert spec.sections.report.declared == ["egemaps/svm/speaker", "egemaps/logreg/speaker"]
    assert validate(SPEC).sections.report.declared == []
    for declared, where, text in (
            (["egemaps-svm-speaker"], "report.declared[0]", "FEATURESET/MODEL/NORMALISATION"),
            (["egemap/svm/speaker"], "report.declared[0]", "did you mean 'egemaps'"),
            (["egemaps/svn/speaker"], "report.declared[0]", "did you mean 'svm'"),
            (["egemaps/svm/speakr"], "report.declared[0]", "did you mean 'speaker'"),
            (["mfcc.mean_std/logreg/speaker"], "report.declared[0]", "feature set of model 'logreg'"),
            (["egemaps/logreg/global"], "report.declared[0]", "normalisation of model 'logreg'"),
            (["egemaps/svm/speaker", "egemaps/svm/speaker"], "report.declared", "more than once"),
            ("egemaps/svm/speaker", "report.declared", "list")):
        with pytest.raises(SpecError) as err:
            validate(_spec(declared))
        assert where in str(err.value) and text in str(err.value), str(err.value)


def test_declared_row_marked(grid: Path, tmp_path: Path) -> None:
    [exp] = load_experiments([grid])
    assert exp.declared == [("compare", "logreg", "global")]
    best = best_systems(exp, top=1)  # the declared system is the worst, yet listed
    assert ("compare", "logreg", "global") in set(best[["feature_set", "model", "normalisation"]]
                                                  .itertuples(index=False, name=None))
    out = tmp_path / "report"
    write_report([grid], out, formats=["md", "csv", "html"])
    table = pd.read_csv(out / "tables" / "grid_best.csv")
    row = table[table.declared]
    assert list(zip(row.feature_set, row.model, row.normalisation)) == [("compare", "logreg", "global")]
    assert row["rank"].iloc[0] == 6
    md = (out / "report.md").read_text()
    assert re.search(rf"\| ComParE \(6373\) \| Logistic regression \| global z \| {DECLARED_MARK} \|", md)
    assert "declared in the spec before the run (ComParE (6373) / Logistic regression / global z)" in md
    main = pd.read_csv(out / "tables" / "grid_uar.csv")
    assert main["declared"].sum() == 1


# -- a real browser ------------------------------------------------------------------------------
PROBE = """<!DOCTYPE html><html><body><iframe id="f" style="width:1200px;height:20000px" src="SRC"></iframe>
<script>
async function check() {
  const out = {images: 0, loaded: 0, missing: [], tables: 0, error: null};
  try {
    const d = document.getElementById("f").contentDocument;
    const imgs = Array.from(d.images);
    imgs.forEach(i => { i.loading = "eager"; });
    await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
      i.addEventListener("load", r); i.addEventListener("error", r); })));
    out.images = imgs.length;
    out.tables = d.querySelectorAll("table").length;
    for (const i of imgs) {
      if (i.complete && i.naturalWidth > 0) out.loaded += 1;
      else out.missing.push((i.getAttribute("src") || "").slice(0, 120));
    }
  } catch (e) { out.error = String(e); }
  const pre = document.createElement("pre");
  pre.id = "fk-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}
window.addEventListener("load", check);
</script></body></html>
"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no chromium on PATH (.ci/run installs Debian's chromium package)")
        pytest.skip("headless Chromium not installed (apt-get install chromium; .ci/run installs it)")
    return exe


def render_images(page: Path, tmp_path: Path) -> dict:
    """Load ``page`` in headless Chromium (in an iframe) and count its images that loaded."""
    probe = tmp_path / f"probe_{abs(hash(str(page)))}.html"
    probe.write_text(PROBE.replace("SRC", page.resolve().as_uri()))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--allow-file-access-from-files", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="fk-result">(.*?)</pre>', run.stdout, re.S)
    assert m, f"chromium printed no result (exit {run.returncode}): {run.stderr[-2000:]}"
    result = json.loads(html.unescape(m.group(1)))
    assert result["error"] is None, result["error"]
    return result


def test_index_html_self_contained_in_chromium(grid: Path, tmp_path: Path) -> None:
    _chromium()
    out = tmp_path / "report"
    write_report([grid], out, formats=["html"])
    alone = tmp_path / "alone"  # the page alone, away from figures/: it must still show every figure
    alone.mkdir()
    shutil.copyfile(out / "index.html", alone / "index.html")
    result = render_images(alone / "index.html", tmp_path)
    n_png = len(list((out / "figures").glob("*.png")))
    assert result["images"] == n_png >= 3 and result["loaded"] == n_png and result["missing"] == []
    assert result["tables"] >= 5


def test_chromium_check_catches_a_missing_image(tmp_path: Path) -> None:
    _chromium()
    page = tmp_path / "page.html"
    page.write_text('<html><body><img src="figures/nothing_here.png"><img src="data:image/png;base64,AAAA">'
                    "</body></html>")
    result = render_images(page, tmp_path)
    assert result["images"] == 2 and result["loaded"] == 0 and len(result["missing"]) == 2


COMMITTED = sorted((REPO / "reports").glob("*/index.html"))


@pytest.mark.parametrize("page", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_committed_reports_render_every_image(page: Path, tmp_path: Path) -> None:
    result = render_images(page, tmp_path)
    assert result["tables"] > 0, result  # the page itself loaded
    assert result["missing"] == [] and result["loaded"] == result["images"], result

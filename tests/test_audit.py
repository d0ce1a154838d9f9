"""The design audit: each check on a small corpus built to trigger it (and one that does not), the
acknowledgement key, the evaluate hook (stops before any fit), the CLI and the report section."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from featurekit.audit import (
    AUDIT_FILE,
    CHECKS,
    AuditContext,
    AuditError,
    AuditReport,
    CellPlan,
    Finding,
    Severity,
    audit_spec,
    content_fingerprints,
    run_checks,
)
from featurekit.audit import checks as C
from featurekit.cli import main
from featurekit.corpora.synthetic import make_synthetic_corpus
from featurekit.evaluation import SpecError, run, validate
from featurekit.evaluation import runner as R
from featurekit.evaluation.protocols import PROTOCOLS, Fold

GLOBAL = [CellPlan("egemaps", False, "global")]
SPEAKER = [CellPlan("egemaps", False, "speaker")]


def manifest(rows: list[tuple[str, str]], **extra) -> pd.DataFrame:
    """A manifest from (speaker, label) pairs; ``extra`` columns aligned with the rows."""
    m = pd.DataFrame(rows, columns=["speaker", "label"])
    m.insert(0, "id", [f"u{i:03d}" for i in range(len(m))])
    m["path"] = [f"/nonexistent/{i}.wav" for i in m["id"]]
    m["session"] = m["speaker"]
    for k, v in extra.items():
        m[k] = v
    return m


def loso(m: pd.DataFrame, group: str = "speaker") -> list[Fold]:
    return PROTOCOLS.get("loso").folds(m, group=group)


def context(m: pd.DataFrame, *, cells=GLOBAL, group="speaker", folds=None, **kw) -> AuditContext:
    return AuditContext(manifest=m, folds=folds if folds is not None else loso(m, group), group=group,
                        cells=cells, **kw)


def only(ctx: AuditContext, check: str) -> list[Finding]:
    return CHECKS.get(check).run(ctx)


def severities(findings: list[Finding]) -> list[str]:
    return [f.severity.value for f in findings]


def balanced(n_speakers=4, labels=("a", "b", "c"), per=4) -> pd.DataFrame:
    return manifest([(f"s{s}", lab) for s in range(n_speakers) for lab in labels for _ in range(per)])


def one_label_each(n_speakers=6, labels=("a", "b", "c"), per=12) -> pd.DataFrame:
    return manifest([(f"s{s}", labels[s % len(labels)]) for s in range(n_speakers) for _ in range(per)])


# -- the registry -------------------------------------------------------------------------------
def test_every_documented_check_is_registered():
    assert set(CHECKS.names()) == {"speaker_label_confound", "speaker_data", "duplicate_audio",
                                   "sentence_confound", "fold_health", "group_integrity"}
    # every check reports something (at least an ok finding with its numbers) on a healthy corpus
    report = run_checks(context(balanced(), fingerprints=[f"fp{i}" for i in range(48)]))
    assert not report.errors and not report.warnings
    assert {f.check for f in report.passed} == set(CHECKS.names())


# -- speaker x label ----------------------------------------------------------------------------
def test_speaker_label_confound_with_per_speaker_normalisation_is_an_error():
    m = one_label_each()
    [f] = only(context(m, cells=SPEAKER), "speaker_label_confound")
    assert f.severity is Severity.ERROR
    assert f.details["single_label_share"] == 1.0 and f.details["mean_within_speaker_entropy_bits"] == 0.0
    assert f.details["label_information_share_of_speaker"] == pytest.approx(1.0)
    assert "6 of 6 speakers (100%) carry a single label" in f.message and "global normalisation" in f.message
    # with global normalisation the same corpus is a warning, and the run goes on
    [g] = only(context(m, cells=GLOBAL), "speaker_label_confound")
    assert g.severity is Severity.WARNING and "confounded" in g.message


def test_speaker_label_confound_thresholds():
    # 2 of 8 speakers with one label (25%): a warning even with per-speaker normalisation; 1 of 8: ok
    rows = [(f"s{s}", lab) for s in range(6) for lab in "abc" for _ in range(4)]
    two = manifest(rows + [("s6", "a")] * 12 + [("s7", "b")] * 12)
    [f] = only(context(two, cells=SPEAKER), "speaker_label_confound")
    assert f.severity is Severity.WARNING and f.details["single_label_share"] == 0.25
    one = manifest(rows + [("s6", "a")] * 12 + [("s7", lab) for lab in "abc" for _ in range(4)])
    [g] = only(context(one, cells=SPEAKER), "speaker_label_confound")
    assert g.severity is Severity.OK and g.details["single_label_speakers"] == 1
    [h] = only(context(balanced(), cells=SPEAKER), "speaker_label_confound")
    assert h.severity is Severity.OK and h.details["normalised_within_speaker_entropy"] == pytest.approx(1.0)


def test_speaker_target_confound_in_regression():
    rng = np.random.default_rng(0)
    m = manifest([(f"s{s}", "x") for s in range(6) for _ in range(10)])
    m["arousal"] = np.repeat(np.arange(6.0), 10) + 0.01 * rng.standard_normal(60)  # speaker mean = target
    ctx = context(m, cells=SPEAKER, task="regression", targets=["arousal"])
    [f] = only(ctx, "speaker_label_confound")
    assert f.severity is Severity.ERROR and f.details["eta_squared"] > 0.99
    m["arousal"] = rng.standard_normal(60)
    [g] = only(context(m, cells=SPEAKER, task="regression", targets=["arousal"]), "speaker_label_confound")
    assert g.severity is Severity.OK


# -- data per speaker ---------------------------------------------------------------------------
def test_speaker_data():
    m = manifest([(f"s{s}", lab) for s in range(3) for lab in "ab" for _ in range(6)] + [("s3", "a")])
    [f] = only(context(m, cells=SPEAKER, folds=[]), "speaker_data")
    assert f.severity is Severity.ERROR and f.details["too_few"] == {"s3": 1} and "s3: 1" in f.message
    # LLD sequences take their statistics over frames: one utterance is not an error, still thin
    [g] = only(context(m, cells=[CellPlan("mfcc.lld", True, "speaker")], folds=[]), "speaker_data")
    assert g.severity is Severity.WARNING
    thin = manifest([(f"s{s}", lab) for s in range(3) for lab in "ab" for _ in range(3)])
    [h] = only(context(thin, cells=SPEAKER, folds=[]), "speaker_data")
    assert h.severity is Severity.WARNING and len(h.details["below_minimum"]) == 3
    [ok] = only(context(balanced(), cells=SPEAKER, folds=[]), "speaker_data")
    assert ok.severity is Severity.OK
    [na] = only(context(m, cells=GLOBAL, folds=[]), "speaker_data")  # no per-speaker normalisation
    assert na.severity is Severity.OK and "no cell uses per-speaker normalisation" in na.message


# -- duplicates ---------------------------------------------------------------------------------
def test_duplicate_audio_across_folds_is_a_leak():
    m = balanced()
    fps = [f"fp{i}" for i in range(len(m))]
    fps[5] = fps[30]  # u005 (speaker s0) and u030 (speaker s2): identical content
    [f] = only(context(m, fingerprints=fps), "duplicate_audio")
    assert f.severity is Severity.ERROR
    pairs = {(x["test_id"], x["train_id"], x["fold"]) for x in f.details["leaks"]}
    assert pairs == {("u005", "u030", "speaker=s0"), ("u030", "u005", "speaker=s2")}
    assert f.details["groups"] == [{"ids": ["u005", "u030"], "speakers": ["s0", "s2"],
                                    "test_folds": [["speaker=s0"], ["speaker=s2"]]}]
    assert "u005 (speaker s0, tested in speaker=s0) = u030 (speaker s2" in f.message


def test_duplicate_audio_within_a_fold_segments_and_clean():
    m = balanced()
    fps = [f"fp{i}" for i in range(len(m))]
    fps[0] = fps[1]  # same speaker: always in the same fold
    [f] = only(context(m, fingerprints=fps), "duplicate_audio")
    assert f.severity is Severity.WARNING and "no leak" in f.message
    # segments of one long file share its fingerprint but are different audio
    seg = m.assign(start=np.arange(len(m)) * 2.0, end=np.arange(len(m)) * 2.0 + 1.5)
    [g] = only(context(seg, fingerprints=["one-file"] * len(m)), "duplicate_audio")
    assert g.severity is Severity.OK
    [h] = only(context(m, fingerprints=[f"fp{i}" for i in range(len(m))]), "duplicate_audio")
    assert h.severity is Severity.OK and h.details["compared"] == len(m)
    [n] = only(context(m, fingerprints=None), "duplicate_audio")
    assert n.severity is Severity.WARNING and "not checked" in n.message


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_synthetic_corpus(root, n_speakers=4, n_per_class=3, duration=0.8)


def test_two_identical_files_under_two_ids_and_speakers(synthetic, tmp_path):
    root, m = synthetic
    copy_path = tmp_path / "copy_of_first.wav"
    shutil.copyfile(m["path"].iloc[0], copy_path)  # speaker s00's file, now also under speaker s01
    rows = m[["id", "path", "label", "speaker"]].copy()
    extra = pd.DataFrame({"id": ["dup"], "path": [str(copy_path)], "label": [m["label"].iloc[0]],
                          "speaker": ["s01"]})
    pd.concat([rows, extra]).to_csv(tmp_path / "list.csv", index=False)
    spec = validate({**BASE, "corpus": {"name": "csv", "options": {"csv": "list.csv"}}})
    for store in (None, tmp_path / "store"):  # hashing the files, or the store's fingerprint memo
        report = audit_spec(spec, tmp_path, store=store)
        assert report.blocked
        [f] = [f for f in report.errors if f.check == "duplicate_audio"]
        first = m["id"].iloc[0]
        assert {(x["test_id"], x["train_id"]) for x in f.details["leaks"]} == {(first, "dup"), ("dup", first)}
        assert {x["fold"] for x in f.details["leaks"]} == {"speaker=s00", "speaker=s01"}
    fps = content_fingerprints(pd.DataFrame({"path": [m["path"].iloc[0], str(copy_path)]}), ["c", "c"])
    assert fps[0] == fps[1] is not None


# -- sentence -----------------------------------------------------------------------------------
def test_sentence_confound():
    rows = [(f"s{s}", lab) for s in range(4) for lab in "abc" for _ in range(4)]
    tied = manifest(rows, sentence=[r[1].upper() * 3 for r in rows])  # the sentence names the label
    [f] = only(context(tied), "sentence_confound")
    assert f.severity is Severity.WARNING
    assert f.details["label_from_sentence_uar"] == 1.0 and f.details["cramers_v"] == pytest.approx(1.0)
    assert f.details["chance_uar"] == pytest.approx(1 / 3) and "text-only baseline" in f.message
    # every sentence spoken in every emotion (as in Emo-DB): nothing to learn from the words
    crossed = manifest(rows, sentence=[f"t{i % 4}" for i in range(len(rows))])
    [g] = only(context(crossed), "sentence_confound")
    assert g.severity is Severity.OK and g.details["label_from_sentence_uar"] <= 1 / 3 + C.SENTENCE_UAR_MARGIN
    assert g.details["cramers_v"] < 0.2
    [n] = only(context(balanced()), "sentence_confound")
    assert n.severity is Severity.OK and "not applicable" in n.message


# -- folds --------------------------------------------------------------------------------------
def test_fold_health_single_class_test_folds_and_small_folds():
    m = one_label_each(per=6)
    findings = only(context(m), "fold_health")
    single = [f for f in findings if "single class" in f.message]
    assert len(single) == 1 and single[0].severity is Severity.WARNING
    assert "equals the recall of that one class" in single[0].message
    assert single[0].details["single_class_test_folds"]["speaker=s0"] == "a"
    assert any("fewer than 10 utterances" in f.message for f in findings)


def test_fold_health_training_fold_lacking_a_class_and_imbalance():
    m = manifest([(f"s{s}", lab) for s in range(3) for lab in "ab" for _ in range(30)] + [("s0", "c")] * 2
                 + [("s1", "c")] * 3)  # 90 a, 90 b, 5 c
    kfold = PROTOCOLS.get("kfold").folds(m, k=3, y=m["label"].to_numpy())
    findings = only(context(m, folds=kfold), "fold_health")
    assert severities(findings) == ["warning"] and "largest / smallest class 18.0:1" in findings[0].message
    m2 = manifest([(f"s{s}", lab) for s in range(3) for lab in "ab" for _ in range(12)] + [("s2", "c")] * 12)
    errs = [f for f in only(context(m2), "fold_health") if f.severity is Severity.ERROR]
    assert len(errs) == 1 and errs[0].details["training_folds_lacking_classes"] == {"speaker=s2": ["c"]}
    assert C.missing_training_classes(loso(m2), m2["label"].to_numpy()) == [("speaker=s2", ["c"])]
    [ok] = only(context(balanced()), "fold_health")
    assert ok.severity is Severity.OK and "every training fold holds all 3 classes" in ok.message


# -- groups -------------------------------------------------------------------------------------
def test_group_integrity_speakers_across_sessions():
    m = balanced()
    m["session"] = [f"S{i % 2}" for i in range(len(m))]  # every speaker in both sessions
    [f] = only(context(m, group="session"), "group_integrity")
    assert f.severity is Severity.ERROR and "speaker-independent" in f.message
    assert set(f.details["folds_sharing_speakers"]["session=S0"]) == {"s0", "s1", "s2", "s3"}
    assert "appear in more than one session" in f.message
    # speaker-dependent k-fold says so without an error
    kf = PROTOCOLS.get("kfold").folds(m, k=3, y=m["label"].to_numpy())
    [g] = only(context(m, folds=kf, speaker_independent=False), "group_integrity")
    assert g.severity is Severity.OK and "speaker-dependent protocol" in g.message


def test_group_integrity_sessions_split_by_speaker_groups():
    m = balanced()
    m["session"] = ["A" if s in ("s0", "s1") else "B" for s in m["speaker"]]  # two speakers per session
    [f] = only(context(m), "group_integrity")
    assert f.severity is Severity.WARNING and "sessions in both training and test" in f.message
    [g] = only(context(m, group="session"), "group_integrity")  # leave-one-session-out: clean
    assert g.severity is Severity.OK
    [h] = only(context(balanced()), "group_integrity")
    assert h.severity is Severity.OK


# -- the report object --------------------------------------------------------------------------
def test_acknowledged_errors_become_warnings_and_json_round_trip(tmp_path):
    ctx = context(one_label_each(), cells=SPEAKER, fingerprints=[f"f{i}" for i in range(72)])
    blocked = run_checks(ctx)
    assert blocked.blocked and [f.check for f in blocked.errors] == ["speaker_label_confound"]
    assert "acknowledge = [\"speaker_label_confound\"]" in blocked.to_text()
    ok = run_checks(ctx, acknowledge=["speaker_label_confound"])
    assert not ok.blocked
    [f] = [f for f in ok.warnings if f.check == "speaker_label_confound"]
    assert f.acknowledged and f.label == "warning (acknowledged error)"
    ok.write(tmp_path)
    back = AuditReport.read(tmp_path / AUDIT_FILE)
    assert back.to_json() == ok.to_json().replace(ok.created, back.created)
    assert "| speaker_label_confound | warning (acknowledged error) |" in (tmp_path / "audit.md").read_text()
    (tmp_path / AUDIT_FILE).write_text('{"findings": [{"check": "x", "severity": "fatal"}]}')
    with pytest.raises(ValueError, match="not a featurekit audit file"):
        AuditReport.read(tmp_path / AUDIT_FILE)


BASE = {
    "name": "t",
    "seed": 0,
    "corpus": {"name": "synthetic"},
    "task": {"type": "classification", "target": "label"},
    "protocol": {"name": "loso", "group": "speaker"},
    "features": {"sets": ["mfcc.mean_std"]},
    "evaluation": {"normalisation": ["global"], "bootstrap": 20},
    "models": {"logreg": {"grid": {"C": [1.0]}}},
}


def spec(**changes):
    d = copy.deepcopy(BASE)
    d.update(changes)
    return validate(d)


def test_acknowledge_key_is_validated():
    s = spec(audit={"acknowledge": ["speaker_label_confound"]})
    assert s.raw["audit"]["acknowledge"] == ["speaker_label_confound"]
    with pytest.raises(SpecError, match=r"audit.acknowledge: unknown check 'speaker_label_confund'; did you "
                                        r"mean 'speaker_label_confound'\?"):
        spec(audit={"acknowledge": ["speaker_label_confund"]})
    with pytest.raises(SpecError, match="audit.acknowledge: expected a list"):
        spec(audit={"acknowledge": "fold_health"})
    with pytest.raises(SpecError, match=r"audit.ignore: unknown key 'ignore'"):
        spec(audit={"ignore": ["fold_health"]})


# -- evaluate, the CLI and the report -----------------------------------------------------------
def confounded(m: pd.DataFrame) -> pd.DataFrame:
    """Synthetic speakers s00/s01 keep only 'angry', s02/s03 only 'sad'."""
    keep = {"s00": "angry", "s01": "angry", "s02": "sad", "s03": "sad"}
    return m[m["label"] == m["speaker"].map(keep)]


def test_evaluate_stops_before_any_fit_and_runs_with_global_normalisation(synthetic, tmp_path, monkeypatch):
    root, m = synthetic
    cm = confounded(m)

    def never(*a, **k):
        raise AssertionError("reached extraction or fitting")

    with monkeypatch.context() as mp:
        mp.setattr(R, "FeatureData", never)
        mp.setattr(R, "_run_fold", never)
        with pytest.raises(AuditError, match="speaker_label_confound: per-speaker normalisation"):
            run(spec(evaluation={"normalisation": ["speaker"]}), root, tmp_path / "out", store=tmp_path / "s",
                jobs=1, progress=False, manifest=cm)
    assert not (tmp_path / "out").exists()
    assert not [p for p in (tmp_path / "s").rglob("*.parquet")]
    # acknowledged, or with global normalisation: it runs and writes the audit beside the results
    from featurekit.report import write_report

    for name, s in (("ack", spec(evaluation={"normalisation": ["speaker"]},
                                 audit={"acknowledge": ["speaker_label_confound"]})),
                    ("global", spec())):
        run(s, root, tmp_path / name, store=tmp_path / "s", jobs=1, progress=False, manifest=cm)
        audit = AuditReport.read(tmp_path / name / AUDIT_FILE)
        assert not audit.blocked and any(f.check == "speaker_label_confound" for f in audit.warnings)
    write_report(tmp_path / "global", tmp_path / "report", formats=["md", "html", "tex"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert md.index("## Design audit") < md.index("## t (synthetic)")
    assert "speaker and label are confounded" in md and "test folds hold a single class" in md
    html = (tmp_path / "report" / "index.html").read_text()
    assert html.index("Design audit") < html.index("<nav>") and "speaker and label are confounded" in html
    assert "Design audit" in (tmp_path / "report" / "report.tex").read_text()


def test_report_without_audit_file_and_with_a_broken_one(synthetic, tmp_path):
    from featurekit.report import ReportError, write_report

    root, _ = synthetic
    run(spec(), root, tmp_path / "r", store=tmp_path / "s", jobs=1, progress=False)
    assert AuditReport.read(tmp_path / "r" / AUDIT_FILE).summary().startswith("clean")
    write_report(tmp_path / "r", tmp_path / "rep1", formats=["md"])
    assert "## Design audit\n\n**clean (6 checks passed)**" in (tmp_path / "rep1" / "report.md").read_text()
    (tmp_path / "r" / AUDIT_FILE).unlink()  # results from before the audit existed
    (tmp_path / "r" / "audit.md").unlink()
    write_report(tmp_path / "r", tmp_path / "rep2", formats=["md", "html"])
    assert "Design audit" not in (tmp_path / "rep2" / "report.md").read_text()
    assert "Design audit" not in (tmp_path / "rep2" / "index.html").read_text()
    (tmp_path / "r" / AUDIT_FILE).write_text("{not json")
    with pytest.raises(ReportError, match="audit.json: not a featurekit audit file"):
        write_report(tmp_path / "r", tmp_path / "rep3", formats=["md"])


def test_audit_command_exit_codes(synthetic, tmp_path, capsys):
    root, m = synthetic
    (tmp_path / "ok.toml").write_text(_toml(BASE))
    assert main(["audit", str(tmp_path / "ok.toml"), "--root", str(root)]) == 0
    assert "design audit: clean" in capsys.readouterr().out
    confounded(m)[["path", "label", "speaker"]].to_csv(tmp_path / "list.csv", index=False)
    bad = {**BASE, "corpus": {"name": "csv", "options": {"csv": "list.csv"}},
           "evaluation": {"normalisation": ["speaker"]}}
    (tmp_path / "bad.toml").write_text(_toml(bad))
    argv = ["audit", str(tmp_path / "bad.toml"), "--root", str(tmp_path), "--out", str(tmp_path / "a")]
    assert main(argv) == 2
    out = capsys.readouterr().out
    assert "ERROR    speaker_label_confound" in out and (tmp_path / "a" / AUDIT_FILE).is_file()


def _toml(d: dict) -> str:
    """A flat TOML writer for the test specs (tables of scalars, lists and inline tables)."""

    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += [f"[{k}]", *(f"{kk} = {value(vv)}" for kk, vv in v.items())]
    return "\n".join(lines) + "\n"


# -- the acceptance corpus: Emo-DB with one emotion per speaker ---------------------------------
EMOTION_OF = {"03": "W", "09": "W", "08": "N", "15": "N", "11": "A", "12": "A", "13": "F", "16": "F",
              "10": "L", "14": "L"}


def test_emodb_one_emotion_per_speaker(emodb_root, tmp_path, capsys):
    rows = []
    for spk, code in EMOTION_OF.items():
        files = sorted((emodb_root / "wav").glob(f"{spk}???{code}?.wav"))[:6]
        assert len(files) == 6
        rows += [{"path": str(p), "label": code, "speaker": spk} for p in files]
    pd.DataFrame(rows).to_csv(tmp_path / "one_emotion.csv", index=False)
    d = {**BASE, "corpus": {"name": "csv", "options": {"csv": "one_emotion.csv"}},
         "models": {"svm": {"grid": {"C": [1.0]}}}}
    for norm in ("speaker", "global"):
        d["evaluation"] = {"normalisation": [norm], "bootstrap": 20}
        (tmp_path / f"{norm}.toml").write_text(_toml(d))
    args = ["--root", str(tmp_path), "--store", str(tmp_path / "store"), "--jobs", "1", "--quiet"]
    assert main(["evaluate", str(tmp_path / "speaker.toml"), "--out", str(tmp_path / "rs"), *args]) == 2
    err = capsys.readouterr().err
    assert "speaker_label_confound: per-speaker normalisation on a speaker-label confounded corpus" in err
    assert "10 of 10 speakers (100%) carry a single label" in err
    assert not (tmp_path / "rs").exists() and not list((tmp_path / "store").rglob("*.parquet"))  # nothing fit
    assert main(["evaluate", str(tmp_path / "global.toml"), "--out", str(tmp_path / "rg"), *args]) == 0
    assert "speaker and label are confounded" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "rg"), "--format", "md,html", "-o", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.index("## Design audit") < md.index("### ")
    assert "speaker_label_confound | warning |" in md and "10 of 10 test folds hold a single class" in md

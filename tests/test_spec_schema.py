"""Specs checked to the last key before anything is computed or written (issue 12, part 2).

Every broken spec below goes through the CLI entry (``featurekit.cli.main``, what ``python -m featurekit``
runs): exit status 2, a short error naming the key, no traceback, and neither ``--out`` nor ``--store``
is created. Positive side: every committed pipeline validates, and ``pipelines/emodb.toml`` resolves to
the same spec (and cell digests) as before the schema existed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from featurekit.cli import main
from featurekit.evaluation import SpecError, load_spec, validate
from featurekit.evaluation.protocols import PROTOCOLS
from featurekit.evaluation.schema import PROTOCOL_SCHEMAS
from featurekit.extractors import EXTRACTORS, make_extractor
from featurekit.parameters import ParameterError, declared_parameters

REPO = Path(__file__).resolve().parents[1]
PIPELINES = sorted((REPO / "pipelines").glob("*.toml"))

BASE = {
    "name": "t",
    "seed": 0,
    "corpus": {"name": "synthetic"},
    "task": {"type": "classification", "target": "label"},
    "protocol": {"name": "loso", "group": "speaker"},
    "features": {"sets": ["egemaps", "mfcc.mean_std"]},
    "evaluation": {"normalisation": ["global"], "inner_folds": 3, "bootstrap": 50, "metrics": ["uar"]},
    "models": {"logreg": {"grid": {"C": [0.1, 1.0]}}, "svm": {}},
}


# -- a minimal TOML writer (the test writes real files; tomllib only reads) -------------------------
def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(doc: dict) -> str:
    lines = [f"{k} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for section, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{json.dumps(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


DELETE = object()


def changed(changes: dict) -> dict:
    """BASE with ``{"a.b.c": value}`` set (``DELETE`` removes the key)."""
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return doc


# (id, changes, text the error must contain: the key, and for some also the expected type / value)
BROKEN = [
    # typos inside a table: named with the closest valid key
    ("normalization", {"evaluation.normalization": ["speaker"], "evaluation.normalisation": DELETE},
     ["evaluation.normalization", "did you mean 'normalisation'"]),
    ("task-targt", {"task.targt": "label"}, ["task.targt", "did you mean 'target'"]),
    ("protocol-gruop", {"protocol.gruop": "speaker"}, ["protocol.gruop", "did you mean 'group'"]),
    ("top-level-typo", {"sed": 1}, ["sed: unknown key", "did you mean 'seed'"]),
    ("model-key-typo", {"models.logreg.gird": {"C": [1.0]}}, ["models.logreg.gird", "did you mean 'grid'"]),
    ("audio-typo", {"audio": {"sampl_rate": 16000}}, ["audio.sampl_rate", "did you mean 'sample_rate'"]),
    # wrong types and ranges: the key, the expected type and the value
    ("inner-folds-str", {"evaluation.inner_folds": "2"},
     ["evaluation.inner_folds", "expected an integer", "'2' (a string)"]),
    ("inner-folds-1", {"evaluation.inner_folds": 1}, ["evaluation.inner_folds", ">= 2", "got 1"]),
    ("inner-folds-float", {"evaluation.inner_folds": 3.0}, ["evaluation.inner_folds", "expected an integer"]),
    ("inner-folds-bool", {"evaluation.inner_folds": True}, ["evaluation.inner_folds", "True (a boolean)"]),
    ("bootstrap-negative", {"evaluation.bootstrap": -5}, ["evaluation.bootstrap", ">= 0", "got -5"]),
    ("seed-str", {"seed": "zero"}, ["seed", "expected an integer", "'zero'"]),
    ("metrics-bare-string", {"evaluation.metrics": "uar"},
     ["evaluation.metrics", "expected a list", "'uar'"]),
    ("metric-unknown", {"evaluation.metrics": ["uarr"]}, ["evaluation.metrics[0]", "did you mean 'uar'"]),
    ("sets-empty", {"features.sets": []}, ["features.sets", "at least 1 item"]),
    ("normalisation-empty", {"evaluation.normalisation": []},
     ["evaluation.normalisation", "at least 1 item"]),
    ("normalisation-unknown", {"evaluation.normalisation": ["speakr"]}, ["evaluation.normalisation[0]",
                                                                          "'speaker'"]),
    ("balancing-unknown", {"evaluation.balancing": "weights"}, ["evaluation.balancing", "'class_weight'"]),
    ("models-list", {"models": ["svm"]}, ["models: expected a table of tables", "[models.NAME]"]),
    ("models-empty", {"models": {}}, ["models", "at least 1 item"]),
    # model params and grid against the estimator
    ("param-unknown", {"models.svm.params": {"Cc": 1.0}}, ["models.svm.params.Cc", "did you mean 'C'"]),
    ("param-max-iter", {"models.mlp": {"params": {"max_iter": "many"}}},
     ["models.mlp.params.max_iter", "'many'"]),
    ("grid-unknown", {"models.logreg.grid": {"CC": [1.0]}}, ["models.logreg.grid.CC", "did you mean 'C'"]),
    ("grid-not-list", {"models.logreg.grid": {"C": 1.0}}, ["models.logreg.grid.C", "expected a list"]),
    ("grid-bad-value", {"models.svm.grid": {"kernel": ["lineer"]}},
     ["models.svm.grid.kernel[0]", "'lineer'"]),
    ("grid-bool-for-number", {"models.logreg.grid": {"C": [True]}}, ["models.logreg.grid.C[0]", "True"]),
    ("xgb-typed-param", {"models.xgb": {"params": {"n_estimators": 2.5}}},
     ["models.xgb.params.n_estimators", "expected an integer", "2.5"]),
    ("param-hidden-by-default-grid", {"models.logreg.params": {"C": 2.0}, "models.logreg.grid": DELETE},
     ["models.logreg.params.C", "default grid"]),
    ("param-set-by-featurekit", {"models.svm.params": {"random_state": 1}},
     ["models.svm.params.random_state", "seed"]),
    ("model-unknown", {"models.svn": {}}, ["models.svn", "did you mean 'svm'"]),
    ("torch-layers-grammar", {"models.torch_mlp": {"params": {"layers": "dens(64)"}}},
     ["models.torch_mlp.params.layers", "unknown layer 'dens'"]),
    ("torch-layers-order", {"models.torch_mlp": {"params": {"layers": "mean_pool -> conv1d(8, 3)"}}},
     ["models.torch_mlp.params.layers", "cannot follow the pooling layer"]),
    ("torch-epochs-bool", {"models.torch_mlp": {"params": {"max_epochs": True}}},
     ["models.torch_mlp.params.max_epochs"]),
    ("model-sets-unknown", {"models.svm.sets": ["egemapz"]}, ["models.svm.sets", "egemapz"]),
    ("model-sets-string", {"models.svm.sets": "egemaps"}, ["models.svm.sets", "expected a list"]),
    # extractors: the extractor's declared parameters
    ("extractor-param-type", {"extractors": {"mfcc": {"n_mfcc": "forty"}}},
     ["extractors.mfcc.n_mfcc", "expected an integer", "'forty'"]),
    ("extractor-param-range", {"extractors": {"mfcc": {"n_mfcc": 0}}}, ["extractors.mfcc.n_mfcc", ">= 1"]),
    ("extractor-param-unknown", {"extractors": {"mfcc": {"n_mfc": 20}}},
     ["extractors.mfcc.n_mfc", "did you mean 'n_mfcc'"]),
    ("extractor-unknown", {"extractors": {"mfc": {}}}, ["extractors.mfc", "did you mean 'mfcc'"]),
    ("whisper-pad-to", {"extractors": {"whisper_ct2": {"pad_to": 45}}}, ["extractors.whisper_ct2.pad_to",
                                                                         "(0, 30]"]),
    # feature-set grammar
    ("feature-set-extractor", {"features.sets": ["egemapz"]}, ["features.sets[0]", "did you mean 'egemaps'"]),
    ("feature-set-kind", {"features.sets": ["mfcc.mean_sd"]}, ["features.sets[0]", "'mean_sd'"]),
    ("feature-set-layer", {"features.sets": ["mfcc@3"]}, ["features.sets[0]", "layers"]),
    ("late-fusion-single", {"features.late_fusion": [["egemaps"]]}, ["features.late_fusion[0]"]),
    # task, protocol, corpus
    ("task-type", {"task.type": "clustering"}, ["task.type", "'classification'"]),
    ("task-targets-for-classification", {"task.targets": ["a", "b"]}, ["task.targets", "task.target"]),
    ("protocol-unknown", {"protocol": {"name": "holdout"}}, ["protocol.name", "unknown protocol 'holdout'"]),
    ("kfold-k", {"protocol": {"name": "kfold", "k": 1}}, ["protocol.k", ">= 2"]),
    ("kfold-foreign-key", {"protocol": {"name": "kfold", "column": "split"}},
     ["protocol.column", "unknown key"]),
    ("cross-corpus-no-test", {"protocol": {"name": "cross_corpus"}}, ["protocol.test_corpus", "missing"]),
    ("cross-corpus-test-typo", {"protocol": {"name": "cross_corpus", "test_corpus": {"nam": "csv"}}},
     ["protocol.test_corpus.nam", "did you mean 'name'"]),
    ("corpus-unknown", {"corpus.name": "emdb"}, ["corpus.name", "did you mean 'emodb'"]),
    ("corpus-option", {"corpus": {"name": "emodb", "options": {"listening": False}}},
     ["corpus.options.listening", "did you mean 'listening_test'"]),
    ("store-in-spec", {"store": "store"}, ["store", "--store"]),
    # the new sections
    ("audit-not-list", {"audit": {"acknowledge": "leakage"}}, ["audit.acknowledge", "expected a list"]),
    ("audit-empty-name", {"audit": {"acknowledge": [""]}}, ["audit.acknowledge[0]", "non-empty"]),
    ("audit-typo", {"audit": {"acknowledged": ["x"]}}, ["audit.acknowledged", "did you mean 'acknowledge'"]),
    ("report-display-unknown", {"report": {"display_names": {"egemap": "eGeMAPS"}}},
     ["report.display_names.egemap", "did you mean 'egemaps'"]),
    ("report-title-type", {"report": {"title": 3}}, ["report.title", "expected a string"]),
]


def _run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("changes, expected", [(c, e) for _, c, e in BROKEN], ids=[i for i, _, _ in BROKEN])
def test_broken_spec_exits_2_naming_the_key_and_writes_nothing(tmp_path, capsys, changes, expected):
    spec = tmp_path / "spec.toml"
    spec.write_text(to_toml(changed(changes)))
    out, store = tmp_path / "out", tmp_path / "store"
    code, err = _run_cli(["evaluate", str(spec), "--root", str(tmp_path), "--out", str(out),
                          "--store", str(store), "--jobs", "1", "--quiet"], capsys)
    assert code == 2
    assert err.startswith(f"featurekit evaluate: error: {spec}: ")
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err and len(err.splitlines()) <= 4
    assert not out.exists() and not store.exists()
    with pytest.raises(SpecError) as info:  # the same problem from the library entry
        validate(changed(changes))
    assert expected[0] in str(info.value)


def test_at_least_25_broken_specs_cover_the_issue():
    assert len(BROKEN) >= 25
    issue_cases = {"normalization", "task-targt", "protocol-gruop", "inner-folds-str", "inner-folds-1",
                   "bootstrap-negative", "param-unknown", "param-max-iter", "seed-str", "metrics-bare-string",
                   "sets-empty", "normalisation-empty", "models-list", "extractor-param-type"}
    assert issue_cases <= {i for i, _, _ in BROKEN}


def test_base_spec_passes_validation_then_fails_on_the_root(tmp_path, capsys):
    """The control: BASE itself is valid, so the failures above are the changes' own."""
    spec = tmp_path / "spec.toml"
    spec.write_text(to_toml(BASE))
    validate(BASE)
    code, err = _run_cli(["evaluate", str(spec), "--root", str(tmp_path / "absent"), "--out",
                          str(tmp_path / "out"), "--store", str(tmp_path / "store"), "--quiet"], capsys)
    assert code == 2 and "not a directory" in err and "spec.toml:" not in err
    assert not (tmp_path / "out").exists()


def test_several_problems_are_reported_together():
    with pytest.raises(SpecError) as info:
        validate(changed({"evaluation.inner_folds": "2", "evaluation.bootstrap": -1, "seed": "x"}))
    locations = [loc for loc, _ in info.value.problems]
    assert {"evaluation.inner_folds", "evaluation.bootstrap", "seed"} <= set(locations)
    assert str(info.value).startswith("3 problems:")


@pytest.mark.parametrize("changes, key", [
    ({"evaluation.inner_folds": "2"}, "evaluation.inner_folds"),
    ({"models.svm.params": {"Cc": 1.0}}, "models.svm.params.Cc"),
    ({"models": ["svm"]}, "models"),
])
def test_train_refuses_broken_specs_before_writing(tmp_path, capsys, changes, key):
    spec = tmp_path / "spec.toml"
    spec.write_text(to_toml(changed(changes)))
    code, err = _run_cli(["train", str(spec), "--system", "egemaps:svm", "--root", str(tmp_path), "-o",
                          str(tmp_path / "model"), "--store", str(tmp_path / "store"), "--quiet"], capsys)
    assert code == 2 and f"{key}:" in err and "Traceback" not in err
    assert not (tmp_path / "model").exists() and not (tmp_path / "store").exists()


def test_command_line_process_exits_2_without_traceback(tmp_path):
    """The real ``python -m featurekit`` process (interpreter, argument parsing, exit status)."""
    spec = tmp_path / "spec.toml"
    spec.write_text(to_toml(changed({"evaluation.normalization": ["speaker"]})))
    proc = subprocess.run([sys.executable, "-m", "featurekit", "evaluate", str(spec), "--root", str(tmp_path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "evaluation.normalization: unknown key" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


# -- the committed pipelines -------------------------------------------------------------------------
@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_committed_pipelines_validate(path, monkeypatch):
    monkeypatch.setenv("FEATUREKIT_MODELS", "/models")
    spec = load_spec(path)
    assert spec.sections is not None and spec.feature_sets and spec.models


def test_emodb_pipeline_resolves_as_before(monkeypatch):
    """``pipelines/emodb.toml`` resolves to the spec (values and Python types) and cell digests it had before
    the schema; the committed reports stay reproducible and cached cells stay valid. The figures were
    computed with the pre-schema loader (commit cae83ca)."""
    from featurekit.evaluation.runner import Cell

    monkeypatch.setenv("FEATUREKIT_MODELS", "/models")
    spec = load_spec(REPO / "pipelines" / "emodb.toml")
    keys = ("name", "seed", "corpus", "task", "protocol", "audio", "extractors", "evaluation", "models")
    resolved = {k: getattr(spec, k) for k in keys}
    resolved["feature_sets"] = [repr(f) for f in spec.feature_sets]
    digests = [Cell(fs, model, norm).digest(spec) for fs in spec.feature_sets
               for model, cfg in spec.models.items()
               for norm in cfg.get("normalisation", spec.evaluation["normalisation"])]
    fingerprint = hashlib.sha256(repr(resolved).encode()).hexdigest()[:16]
    cells = hashlib.sha256(",".join(digests).encode()).hexdigest()[:16]
    assert (len(digests), fingerprint, cells) == (247, FINGERPRINT, CELLS)


FINGERPRINT = "b2dfe94a8de0108d"
CELLS = "eaff5bffa8947bd5"


# -- declared schemas ---------------------------------------------------------------------------------
def test_every_protocol_has_an_options_schema():
    assert set(PROTOCOLS.names()) == set(PROTOCOL_SCHEMAS)


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_every_extractor_declares_typed_parameters(name):
    cls = EXTRACTORS.get(name)
    declared = declared_parameters(cls, keyword_only=True)
    assert list(declared) == cls._param_names()
    assert all(d.annotation is not object for d in declared.values())
    cls.check_params({k: d.default for k, d in declared.items()})  # the defaults fit the declaration


def test_make_extractor_checks_cli_params():
    with pytest.raises(ParameterError, match=r"extractors.mfcc.n_mfcc: expected an integer, got 'forty'"):
        make_extractor("mfcc", n_mfcc="forty")
    with pytest.raises(ParameterError, match=r"extractors.paa.window: expected a value > 0"):
        make_extractor("paa", window=0.0)
    assert make_extractor("mfcc", n_mfcc=20, fmax=8000).n_mfcc == 20  # int accepted where a float is declared


def test_extract_cli_refuses_bad_params_before_reading_the_corpus(tmp_path, capsys):
    for param, text in (("mfcc.n_mfcc=forty", "extractors.mfcc.n_mfcc"), ("mfc.n_mfcc=20", "mfc")):
        code, err = _run_cli(["extract", "--corpus", "synthetic", "--root", str(tmp_path / "absent"),
                              "--features", "mfcc", "--param", param, "--store", str(tmp_path / "store"),
                              "--quiet"], capsys)
        assert code == 2 and text in err, err
        assert not (tmp_path / "store").exists()


def test_new_sections_are_typed_and_optional():
    report = {"display_names": {"egemaps": "eGeMAPS", "svm": "SVM"}, "title": "T"}
    spec = validate(changed({"audit": {"acknowledge": ["speaker_label_confound"]}, "report": report}))
    assert spec.sections.audit.acknowledge == ["speaker_label_confound"]
    assert spec.sections.report.display_names["egemaps"] == "eGeMAPS" and spec.report["title"] == "T"
    plain = validate(BASE)
    assert plain.sections.audit.acknowledge == [] and plain.audit == {} and plain.report == {}

"""Feature-set names (:mod:`featurekit.featureset`): one grammar, one parser, one formatter.

The parser round-trips every name the committed pipelines, the README and the tests use; its errors
name the bad part; the spec, the report, extraction and deployment all read names through it (one bad
name gives one message everywhere).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from featurekit.extractors import EXTRACTORS, FUNCTIONALS
from featurekit.featureset import (
    FeatureSet,
    FeatureSetError,
    LateFusion,
    LayerSelection,
    Stacking,
    TableKind,
    TableRef,
    format_feature_set,
    parse_feature_set,
    parse_layer_selection,
    parse_name,
    parse_system,
    parse_table,
    resolve_feature_set,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PIPELINES = sorted((REPO / "pipelines").glob("*.toml"))


def pipeline_names(path: Path) -> list[str]:
    """Every feature-set name a spec file holds: sets, late-fusion groups, stacking members, the
    models' ``sets`` selectors (which name late/stack systems too), display names and declared systems."""
    raw = tomllib.loads(path.read_text())
    feats = raw.get("features", {})
    names = list(feats.get("sets", []))
    names += [s for group in feats.get("late_fusion", []) for s in group]
    names += [m.rpartition(":")[0] for entry in feats.get("stacking", []) for m in entry["members"]]
    names += [s for m in raw.get("models", {}).values() for s in m.get("sets", [])]
    report = raw.get("report", {})
    names += [k for k in report.get("display_names", {}) if k not in raw.get("models", {})]
    names += [d.rsplit("/", 2)[0] for d in report.get("declared", [])]
    return names


ALL_PIPELINE_NAMES = sorted({n for p in PIPELINES for n in pipeline_names(p)})

#: names used in README.md and in the tests' specs and report fixtures
EXAMPLES = [
    "egemaps", "gemaps", "compare", "mfcc", "mfcc.mean_std", "mfcc.mean_std_silence", "mfcc.stats",
    "mfcc.lld", "logmel.lld", "egemaps.native", "egemaps.lld", "egemaps+compare", "egemaps.lld+mfcc.lld",
    "whisper_ct2@-1", "whisper_ct2@4", "whisper_ct2.native@-1", "hf_encoder@0", "hf_encoder@3",
    "hf_encoder.lld@mean", "hf_encoder@2,3", "hf_encoder@wsum", "hf_encoder@wsum(2,3,4)", "paa_d.mean_std",
    "late(egemaps|compare|mfcc.stats)", "late(a|b|c)", "late(egemaps|mfcc.stats)",
    "stack(egemaps:logreg|mfcc.mean_std:lr2)->meta",
    "stack(egemaps:logreg|paa.mean_std:logreg|whisper_ct2@-1:svm)->stack_meta",
]


def readme_names() -> list[str]:
    """Code spans of README.md that are feature-set names (start with a registered extractor)."""
    text = (REPO / "README.md").read_text()
    spans = re.findall(r"`([^`\s]+)`", text) + re.findall(r'"([^"\s]+)"', text)
    start = re.compile(rf"^(late\(|stack\()?({'|'.join(EXTRACTORS.names())})([.@+|:]|$)")
    out = []
    for s in spans:
        s = s.rpartition(":")[0] if re.fullmatch(r"[^()]+:[a-z_0-9]+", s) else s  # FEATURE_SET:MODEL
        if start.match(s) and not s.endswith(("=", ".")) and "=" not in s and "/" not in s:
            out.append(s)
    return sorted(set(out))


def spec_names_in_tests() -> list[str]:
    """Feature sets the tests' specs list (``sets = [...]``, ``"sets": [...]``, ``members = [...]``), less
    those written to be refused (the error tests) and other lists that match the pattern."""
    out = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for body in re.findall(r'(?:sets|late_fusion|members)["\']?\s*[:=]\s*\[([^\]]*)\]', path.read_text()):
            out += [s.rpartition(":")[0] if ":" in s and not s.startswith("stack(") else s
                    for s in re.findall(r'"([^"]+)"', body)]
    return sorted(n for n in set(out) if _parses(n))


def _parses(name: str) -> bool:
    try:
        parse_name(name)
    except FeatureSetError:
        return False
    return True


def test_the_pipelines_have_names_to_check():
    assert len(PIPELINES) >= 8 and len(ALL_PIPELINE_NAMES) >= 20
    assert "egemaps.lld+mfcc.lld" in ALL_PIPELINE_NAMES
    assert any(n.startswith("stack(") for n in ALL_PIPELINE_NAMES)
    assert {"egemaps+compare", "whisper_ct2@-1", "logmel.lld", "hf_encoder@wsum(2,3,4)"} <= set(
        readme_names())
    assert {"egemaps.lld+mfcc.lld", "hf_encoder@0", "stack(egemaps:logreg|mfcc.mean_std:lr2)->meta"} <= set(
        spec_names_in_tests())


@pytest.mark.parametrize("name", sorted({*ALL_PIPELINE_NAMES, *EXAMPLES, *readme_names(),
                                         *spec_names_in_tests()}))
def test_round_trip(name):
    parsed = parse_name(name)
    assert format_feature_set(parsed) == name
    assert parse_name(format_feature_set(parsed)) == parsed


def test_parsed_structure():
    assert parse_feature_set("egemaps") == FeatureSet((TableRef("egemaps"),))
    fs = parse_feature_set("egemaps.lld+mfcc.lld")
    assert fs.members == (TableRef("egemaps", TableKind.LLD), TableRef("mfcc", TableKind.LLD))
    assert fs.frame_level and not parse_feature_set("mfcc.stats").frame_level
    assert parse_feature_set("whisper_ct2.native@-1").members[0] == TableRef(
        "whisper_ct2", TableKind.NATIVE, LayerSelection((-1,)))
    late = parse_name("late(egemaps|compare+mfcc.stats)")
    assert isinstance(late, LateFusion) and late.groups[1] == parse_feature_set("compare+mfcc.stats")
    stack = parse_name("stack(egemaps:logreg|whisper_ct2@-1:svm)->meta")
    assert isinstance(stack, Stacking) and stack.meta == "meta"
    assert stack.members[1] == (parse_feature_set("whisper_ct2@-1"), "svm")
    assert [str(t) for t in stack.tables] == ["egemaps", "whisper_ct2@-1"]
    assert parse_system("egemaps+compare:svm_rbf") == (parse_feature_set("egemaps+compare"), "svm_rbf")
    assert parse_table("mfcc.stats") == TableRef("mfcc", TableKind.STATS)


@pytest.mark.parametrize("text, selection, weighted", [
    ("-1", -1, False), ("0", 0, False), ("12", 12, False), ("2,3,4", [2, 3, 4], False),
    ("mean", "mean", False), ("wsum", None, True), ("wsum(2,3,4)", [2, 3, 4], True),
    ("wsum(-2,-1)", [-2, -1], True),
])
def test_layer_selections(text, selection, weighted):
    sel = parse_layer_selection(text)
    assert (sel.selection, sel.weighted, str(sel)) == (selection, weighted, text)


@pytest.mark.parametrize("text, message", [
    ("", "empty feature-set name"),
    ("a++b", r"feature set 'a\+\+b': empty member"),
    ("+egemaps", "empty member"),
    ("egemaps+", "empty member"),
    ("egemaps + compare", "no spaces"),
    (" egemaps", "no spaces"),
    ("mfcc.median", r"unknown kind 'median' in 'mfcc.median'.*valid: lld, mean_std, mean_std_silence"),
    ("mfcc.", r"empty kind after '\.' in 'mfcc\.'"),
    ("mfcc.stats.lld", "unknown kind 'stats.lld'"),
    (".lld", "no extractor in '.lld'"),
    ("whisper-ct2@1", "extractor name 'whisper-ct2' is not a name"),
    ("whisper_ct2@", "empty layer after '@'"),
    ("whisper_ct2@x", "layer 'x': use an index"),
    ("whisper_ct2@03", "layer '03': use an index"),
    ("whisper_ct2@1,,2", "layer '1,,2'"),
    ("whisper_ct2@-1.native", r"layer '-1\.native'"),
    ("whisper_ct2@wsum(2)", "learned weighted sum"),
    ("whisper_ct2@wsum()", "learned weighted sum"),
    ("whisper_ct2@wsum2,3", "learned weighted sum"),
    ("egemaps+mfcc.lld", "LLD sequences can only be concatenated with LLD sequences"),
    ("mfcc.lld+egemaps.native", "LLD sequences can only be concatenated"),
    ("late(a|b)", r"late\(\.\.\.\) and stack\(\.\.\.\) name systems"),
])
def test_parse_errors_name_the_bad_part(text, message):
    with pytest.raises(FeatureSetError, match=message):
        parse_feature_set(text)


@pytest.mark.parametrize("text, message", [
    ("late(egemaps)", "two or more feature sets"),
    ("late(egemaps||compare)", "empty feature-set name"),
    ("stack(egemaps:svm)->meta", "two or more members"),
    ("stack(egemaps|compare:svm)->meta", "expected FEATURE_SET:MODEL"),
    ("stack(egemaps:svm|compare:svm)", r"expected stack\(FEATURE_SET:MODEL\|\.\.\.\)->MODEL"),
])
def test_generated_name_errors(text, message):
    with pytest.raises(FeatureSetError, match=message):
        parse_name(text)


def test_extraction_tables_take_no_fusion_or_layers():
    with pytest.raises(FeatureSetError, match="name the tables one by one"):
        parse_table("egemaps+compare")
    with pytest.raises(FeatureSetError, match="extraction stores every encoder layer"):
        parse_table("whisper_ct2@-1")


def test_resolve_against_the_registry():
    assert str(resolve_feature_set(parse_feature_set("egemaps+mfcc"))) == "egemaps.native+mfcc.mean_std"
    assert str(resolve_feature_set(parse_feature_set("whisper_ct2@-1"))) == "whisper_ct2.native@-1"
    for text, message in [("egemapz", "unknown extractor 'egemapz'; did you mean 'egemaps'"),
                          ("mfcc.native", "extractor 'mfcc' has no native functionals"),
                          ("egemaps@wsum", "only encoder extractors have layers")]:
        with pytest.raises(FeatureSetError, match=message):
            resolve_feature_set(parse_feature_set(text))


# -- table kinds ---------------------------------------------------------------------------------
def test_table_kinds_are_the_store_names_and_the_functionals():
    assert [k.value for k in TableKind] == ["native", "lld", "mean_std", "mean_std_silence", "stats",
                                            "waveform"]
    # every registered HSF functional is a kind, and nothing else is one
    assert sorted(k.value for k in TableKind.functionals()) == FUNCTIONALS.names()
    for kind in TableKind:
        assert kind.store_name == kind.value == str(kind) == f"{kind}" and kind == kind.value
        assert json.dumps(kind) == json.dumps(kind.value)
        assert hash(kind) == hash(kind.value) and {kind.value: 1}[kind] == 1 == {kind: 1}[kind.value]
        assert kind.frame_level is (kind is TableKind.LLD) and kind.waveform is (kind is TableKind.WAVEFORM)
        assert kind.utterance_level is not (kind.frame_level or kind.waveform)
        assert kind.needs_lld is (kind not in (TableKind.NATIVE, TableKind.WAVEFORM))
    with pytest.raises(FeatureSetError, match="unknown kind 'median'"):
        TableKind.parse("median")


def test_waveform_is_the_conditioned_audio_alone():
    fs = parse_feature_set("waveform")
    assert fs.waveform and not fs.frame_level and str(fs) == "waveform" == format_feature_set(fs)
    assert resolve_feature_set(fs) == fs and str(parse_name("waveform")) == "waveform"
    for text, message in [("waveform+egemaps", "stands alone"), ("egemaps+waveform", "stands alone"),
                          ("waveform@-1", "stands alone"), ("waveform.lld", "stands alone"),
                          ("mfcc.waveform", "is no extractor's table")]:
        with pytest.raises(FeatureSetError, match=message):
            parse_feature_set(text)
    with pytest.raises(FeatureSetError, match="never stored"):
        parse_table("waveform")


def test_store_directories_keep_their_names(tmp_path):
    """A table's directory is ``<kind>-<hash>``, as before the enum (stores stay valid)."""
    from featurekit.audio import AudioOptions
    from featurekit.extractors import make_extractor
    from featurekit.store import FeatureStore

    store = FeatureStore(tmp_path)
    ext = make_extractor("mfcc")
    for kind in TableKind:
        by_enum = store.table("c", ext, kind, AudioOptions())
        by_text = store.table("c", ext, kind.value, AudioOptions())
        assert by_enum.directory == by_text.directory
        assert by_enum.directory.name.startswith(f"{kind.value}-")
        assert type(by_enum.key.kind) is str


# -- one parser everywhere ---------------------------------------------------------------------------
BAD = "egemaps++compare"


def parser_message(text: str) -> str:
    with pytest.raises(FeatureSetError) as info:
        parse_feature_set(text)
    return str(info.value)


SPEC = """
name = "featureset-check"
seed = 0
[corpus]
name = "synthetic"
[features]
sets = ["mfcc.mean_std"]
[evaluation]
normalisation = ["global"]
inner_folds = 2
[models.logreg]
grid = {C = [1.0]}
"""


def test_spec_report_and_extraction_use_the_parser():
    from featurekit.evaluation import SpecError, validate
    from featurekit.extraction import parse_features
    from featurekit.report import parse_feature_set_name
    from featurekit.report.names import DisplayNames

    message = parser_message(BAD)
    raw = tomllib.loads(SPEC)
    raw["features"]["sets"] = [BAD]
    with pytest.raises(SpecError) as info:
        validate(raw)
    assert str(info.value) == f"features.sets[0]: {message}"
    raw["features"]["sets"] = ["mfcc.mean_std"]
    raw["features"]["late_fusion"] = [["mfcc.mean_std", BAD]]
    with pytest.raises(SpecError, match=re.escape(message)):
        validate(raw)
    with pytest.raises(FeatureSetError, match=re.escape(message)):
        parse_features(BAD)
    # the report reads a good name as the parser does, and a bad one as an opaque group
    info = parse_feature_set_name("hf_encoder.lld@mean")
    assert (info.extractor, info.kind, info.layer) == ("hf_encoder", "lld", "mean")
    assert parse_feature_set_name(BAD).group == BAD
    stack = "stack(egemaps:logreg|paa.mean_std:logreg|whisper_ct2@-1:svm)->stack_meta"
    assert (parse_feature_set_name(stack).group, parse_feature_set_name(stack).variant) == ("fusion", "stack")
    assert DisplayNames().feature_set(stack) == (
        "stack(eGeMAPS (88):LogReg | pAA HSF1:LogReg | Whisper L-1:SVM)->stack_meta")
    assert DisplayNames().feature_set(BAD) == BAD


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from featurekit.corpora.synthetic import make_synthetic_corpus
    from featurekit.deploy import train

    base = tmp_path_factory.mktemp("fs-model")
    manifest = make_synthetic_corpus(base / "corpus", n_speakers=3, n_per_class=2, duration=1.0, seed=0)
    spec = base / "spec.toml"
    spec.write_text(SPEC)
    out = train(spec, "mfcc.mean_std:logreg", out_dir=base / "model", store=base / "store",
                manifest=manifest, jobs=1)
    return base, manifest, spec, out


def test_train_and_predict_use_the_parser(small_model, tmp_path, capsys):
    import shutil

    from featurekit.cli import main
    from featurekit.deploy import ModelLoadError, load_model, train
    from featurekit.deploy.bundle import META_NAME, metadata_checksum
    from featurekit.evaluation import SpecError

    base, manifest, spec, model = small_model
    message = parser_message(BAD)
    with pytest.raises(SpecError) as info:
        train(spec, f"{BAD}:logreg", out_dir=tmp_path / "m", store=base / "store", manifest=manifest)
    assert str(info.value) == f"system '{BAD}:logreg': {message}"
    rc = main(["train", str(spec), "--system", f"{BAD}:logreg", "--root", str(base / "corpus"),
               "-o", str(tmp_path / "m"), "--store", str(base / "store")])
    assert rc == 2 and message in capsys.readouterr().err
    # the canonical name of a system is found whatever spelling the spec's set has (here the same)
    assert load_model(model).meta["feature_set"]["name"] == "mfcc.mean_std"

    def edited(change) -> Path:
        d = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(model, d)
        meta = json.loads((d / META_NAME).read_text())
        change(meta)
        meta["metadata_sha256"] = metadata_checksum(meta)
        (d / META_NAME).write_text(json.dumps(meta, indent=2))
        return d

    bad_name = edited(lambda m: m["feature_set"].update(name=BAD))
    with pytest.raises(ModelLoadError) as info:
        load_model(bad_name)
    assert str(info.value).endswith(f"feature_set: {message}")
    rc = main(["predict", str(bad_name), str(manifest["path"].iloc[0])])
    assert rc == 2 and message in capsys.readouterr().err

    def other_kind(meta):
        meta["feature_set"]["members"][0]["kind"] = "stats"

    with pytest.raises(ModelLoadError, match=r"members \[mfcc\.stats\] do not match its name"):
        load_model(edited(other_kind))

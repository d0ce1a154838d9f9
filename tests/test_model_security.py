"""A model directory from elsewhere never runs code nor touches a file outside itself (issue 12, part 1).

Every test builds its own hostile model directory from a real trained one, the way an attacker who
controls every file would: the payload is planted, then ``model.json``'s hashes and checksum are
rewritten to match (:func:`_seal`). Each directory is refused with a message naming the entry or path,
by :func:`featurekit.deploy.load_model` and by ``featurekit predict`` (exit 2, one line, no traceback),
and a canary file beside the model directory proves that nothing ran: its bytes and modification time
are unchanged and no file appeared or changed outside the model directory (:class:`Victim`).
``test_payloads_are_live_without_the_allow_list`` shows that the payloads are real: loaded without
featurekit's checks (plain skops with the types it reports, torch without ``weights_only``), they
truncate, create or delete files.

The allow-list is derived from what the trainer writes: ``test_every_model_the_trainer_builds_loads``
saves every registered model (and its variants) and requires that the union of the types they need
*equals* :data:`featurekit.deploy.trust.ALLOWED_SKOPS_NODES` (neither too small nor too large).
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from featurekit.cli import main
from featurekit.deploy import ModelLoadError, load_model, train
from featurekit.deploy.bundle import META_NAME, metadata_checksum, sha256_file, write_model_dir
from featurekit.deploy.trust import (
    ALLOWED_KEY_TYPES,
    ALLOWED_SKOPS_NODES,
    SKOPS_PROTOCOLS,
    load_skops,
    skops_problems,
)

SPEC = """
name = "security"
seed = 0
[corpus]
name = "synthetic"
[features]
sets = ["mfcc.mean_std"]
[evaluation]
normalisation = ["global"]
[models.svm]
grid = {kernel = ["linear"], C = [1.0]}
[models.torch_mlp]
params = {max_epochs = 3, layers = "dense(8)", validation_fraction = 0}
"""
CANARY_BYTES = b"precious: must never change\n"
CANARY_MTIME_NS = 1_000_000_000 * 1_600_000_000


# -- fixtures: real models, hostile copies, the canary ------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A linear-SVM model (with the StandardScaler of global normalisation) and a torch-head model."""
    from featurekit.corpora.synthetic import make_synthetic_corpus

    base = tmp_path_factory.mktemp("security")
    manifest = make_synthetic_corpus(base / "corpus", n_speakers=3, n_per_class=2, duration=1.0, seed=0)
    spec = base / "spec.toml"
    spec.write_text(SPEC)
    common = {"store": base / "store", "manifest": manifest, "jobs": 1}
    svm = train(spec, "mfcc.mean_std:svm", out_dir=base / "svm", **common)
    head = train(spec, "mfcc.mean_std:torch_mlp", out_dir=base / "head", **common)
    return {"svm": svm, "head": head, "audio": manifest["path"].iloc[0]}


@dataclass
class Victim:
    """A directory holding a canary file and a (to be made hostile) copy of a model directory."""

    parent: Path
    model: Path
    canary: Path
    audio: str
    before: dict | None = None

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        """Every file outside the model directory (anywhere under ``parent``): bytes and mtime."""
        out = {}
        for p in sorted(self.parent.rglob("*")):
            if p == self.model or self.model in p.parents or not (p.is_file() or p.is_symlink()):
                continue
            out[str(p.relative_to(self.parent))] = (p.read_bytes() if p.exists() else b"<dangling>",
                                                    p.lstat().st_mtime_ns)
        return out

    def arm(self) -> None:
        """Take the snapshot, once the hostile directory is complete."""
        self.before = self.snapshot()

    def assert_untouched(self) -> None:
        assert self.canary.read_bytes() == CANARY_BYTES, "the canary was changed"
        assert self.canary.stat().st_mtime_ns == CANARY_MTIME_NS, "the canary was written"
        assert self.snapshot() == self.before, "a file outside the model directory was created or changed"


def _victim(tmp_path: Path, model: Path, audio: str) -> Victim:
    parent = tmp_path / "victim"
    parent.mkdir()
    canary = parent / "canary.txt"
    canary.write_bytes(CANARY_BYTES)
    os.utime(canary, ns=(CANARY_MTIME_NS, CANARY_MTIME_NS))
    d = parent / "model"
    shutil.copytree(model, d)
    return Victim(parent, d, canary, audio)


@pytest.fixture
def svm_victim(trained, tmp_path) -> Victim:
    return _victim(tmp_path, trained["svm"], trained["audio"])


@pytest.fixture
def head_victim(trained, tmp_path) -> Victim:
    return _victim(tmp_path, trained["head"], trained["audio"])


def _seal(d: Path, change=None, *, add: tuple[str, ...] = ()) -> None:
    """Edit model.json and rewrite every hash and the checksum, as the attacker can."""
    meta = json.loads((d / META_NAME).read_text())
    if change is not None:
        change(meta)
    listed = list(dict.fromkeys([*meta["files"], *add]))
    meta["files"] = {rel: sha256_file(d / rel) for rel in listed}
    meta["metadata_sha256"] = metadata_checksum(meta)
    (d / META_NAME).write_text(json.dumps(meta, indent=2))


def _refused(v: Victim, match: str, capsys=None) -> None:
    """``load_model`` and ``featurekit predict`` refuse ``v.model`` (``match``); nothing outside changed."""
    v.arm()
    with pytest.raises(ModelLoadError, match=match):
        load_model(v.model)
    v.assert_untouched()
    if capsys is not None:
        capsys.readouterr()
        assert main(["predict", str(v.model), v.audio]) == 2
        err = capsys.readouterr().err
        assert err.startswith("featurekit predict: error: ") and "Traceback" not in err
        assert re.search(match, err), err
        v.assert_untouched()


# -- forging skops files -------------------------------------------------------------------------------------
def js(value) -> dict:
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}


def tup(*items) -> dict:
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": list(items)}


def entry(loader: str, module: str, cls: str, **fields) -> dict:
    return {"__class__": cls, "__module__": module, "__loader__": loader, **fields}


STR_KEY = entry("TypeNode", "builtins", "str")


def memmap_call(module: str, target: Path) -> dict:
    """``numpy.memmap(target, uint8, "w+", 0, (4,))`` under the module path ``module``: creates/truncates."""
    return entry("ConstructorFromReduceNode", module, "memmap",
                 content=tup(js(str(target)), js("uint8"), js("w+"), js(0), tup(js(4))))


def _npy(array: np.ndarray, zf: zipfile.ZipFile, name: str) -> dict:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    zf.writestr(name, buf.getvalue())
    return {"type": "numpy", "file": name}


def forge(skops_file: Path, mutate) -> None:
    """Rewrite ``skops_file``'s schema.json with ``mutate(schema, extra_zip)`` (other members kept)."""
    src = zipfile.ZipFile(io.BytesIO(skops_file.read_bytes()))
    schema = json.loads(src.read("schema.json"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in src.namelist():
            if name != "schema.json":
                zf.writestr(name, src.read(name))
        mutate(schema, zf)
        zf.writestr("schema.json", json.dumps(schema))
    skops_file.write_bytes(out.getvalue())


def add_attribute(schema: dict, name: str, node: dict, key_type: dict = STR_KEY) -> None:
    """Give the root Pipeline one more attribute ``name`` (its dictionary key rebuilt with ``key_type``)."""
    attrs = schema["content"]
    attrs["content"][name] = node
    attrs["key_types"]["content"].append(key_type)


def plant(v: Victim, node_for, key_type: dict = STR_KEY) -> Path:
    """Plant ``node_for(zf)`` as a Pipeline attribute in ``v``'s skops file and re-seal the directory."""
    skops_file = v.model / "pipeline-label.skops"
    forge(skops_file, lambda schema, zf: add_attribute(schema, "payload_", node_for(zf), key_type))
    _seal(v.model)
    return skops_file


# -- the allow-list is exactly what the trainer writes -------------------------------------------------------
def _trainer_variants():
    """(registry, name, task, params) of every registered model the trainer can save, with its variants."""
    from featurekit.evaluation.models import CLASSIFIERS, REGRESSORS

    small = {"rf": {"n_estimators": 3}, "xgb": {"n_estimators": 3}, "mlp": {"max_iter": 5}}
    variants = {
        "svm": [{"multiclass": m, "kernel": k} for m in ("ovo", "ovr") for k in ("linear", "rbf")],
        "mlp": [{"solver": s, "early_stopping": e} for s in ("adam", "sgd", "lbfgs") for e in (False, True)],
        "knn": [{"algorithm": a, "n_neighbors": 3} for a in ("auto", "ball_tree", "kd_tree", "brute")],
    }
    for registry, task in ((CLASSIFIERS, "classification"), (REGRESSORS, "regression")):
        for name in registry.names():
            for params in variants.get(name, [{}]):
                yield registry.get(name), name, task, {**small.get(name, {}), **params}


def test_every_model_the_trainer_builds_loads_and_the_allow_list_is_exactly_their_types(tmp_path):
    """Every registered model (and variant), as ``featurekit train`` fits and saves it, passes the checks
    and predicts the same after loading; the union of the types they need equals the allow-list."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    from featurekit.evaluation.normalisation import SpeakerNormaliser
    from featurekit.evaluation.pipeline import fit_searched, model_steps, with_speaker_step

    rng = np.random.default_rng(0)
    used: set[tuple[str, str]] = set()
    seen = set()
    for ms, name, task, params in _trainer_variants():
        seen.add((task, name))
        for norm, balancing, n_classes, dtype in (("global", "class_weight", 3, np.float32),
                                                  ("none", "none", 2, np.float64),
                                                  ("speaker", "none", 3, np.float32)):
            x = rng.standard_normal((36, 6)).astype(dtype)
            y = np.arange(36) % n_classes if task == "classification" else rng.standard_normal(36)
            groups = np.repeat(np.arange(4), 9)
            if ms.groups:  # a torch head: its pipeline is saved with the head replaced by "passthrough"
                from sklearn.preprocessing import StandardScaler

                steps = [("scale", StandardScaler().fit(x))] if norm == "global" else []
                pipe = Pipeline([*steps, ("model", "passthrough")])
                if norm == "speaker":
                    pipe = with_speaker_step(pipe, SpeakerNormaliser().fit(x, speakers=groups))
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pipe, _, _ = fit_searched(ms, x, y, groups, task=task, normalisation=norm,
                                              balancing=balancing, grid={}, params=params, inner_folds=2,
                                              seed=0, sequences=False)
                    if norm == "speaker":  # as featurekit train saves it
                        pipe = with_speaker_step(pipe, SpeakerNormaliser().fit(x, speakers=groups))
            data = sio.dumps(pipe)
            problems, found = skops_problems(data)
            assert not problems, f"{task}:{name} {params} {norm}: {problems}"
            used |= found
            loaded = load_skops(data, f"{task}:{name}")
            if not ms.groups:
                np.testing.assert_array_equal(model_steps(loaded).predict(x), model_steps(pipe).predict(x))
    from featurekit.evaluation.models import CLASSIFIERS, REGRESSORS

    assert seen == {("classification", n) for n in CLASSIFIERS.names()} | {("regression", n)
                                                                           for n in REGRESSORS.names()}
    allowed = {(loader, t) for loader, types in ALLOWED_SKOPS_NODES.items() for t in types}
    allowed |= {("TypeNode", t) for t in ALLOWED_KEY_TYPES}
    assert used - allowed == set(), "the trainer writes types the allow-list lacks"
    assert allowed - used == set(), "the allow-list holds types no featurekit model contains"


def test_allow_list_has_no_file_io_network_or_callable_types():
    import functools
    import pathlib
    import socket

    bad_bases = (np.memmap, io.IOBase, socket.socket, pathlib.PurePath, subprocess.Popen, functools.partial,
                 type, zipfile.ZipFile)
    for loader, names in ALLOWED_SKOPS_NODES.items():
        assert loader not in ("FunctionNode", "MethodNode", "PartialNode", "TypeNode", "OperatorFuncNode",
                              "ConstructorFromReduceNode", "DefaultDictNode")
        for name in names:
            module, _, cls = name.rpartition(".")
            obj = getattr(importlib.import_module(module), cls)
            assert inspect.isclass(obj), name
            assert not issubclass(obj, bad_bases), f"{name} is file-backed, I/O, network or callable-building"
            assert module.split(".")[0] in ("builtins", "numpy", "sklearn", "xgboost", "featurekit"), name
            if module == "builtins":
                assert cls in ("dict", "list", "tuple", "str", "bytearray"), name
    assert ALLOWED_KEY_TYPES == {"builtins.str"}
    import skops.io as sio

    written = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps([1]))).read("schema.json"))["protocol"]
    assert written in SKOPS_PROTOCOLS  # the installed skops writes a reviewed protocol


def test_a_model_with_a_type_outside_the_list_is_not_saved(tmp_path):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipe = Pipeline([("model", FunctionTransformer(func=np.log1p).fit(np.ones((3, 2))))])
    with pytest.raises(ValueError, match=r"(?s)cannot save the model of 'label'.*FunctionTransformer"):
        write_model_dir(tmp_path / "m", {"format": "x"}, {"label": pipe})
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".tmp-*"))


# -- types under alias module paths, constructor calls -------------------------------------------------------
@pytest.mark.parametrize("module", ["numpy._core.memmap", "numpy.core.memmap", "numpy", "numpy._core",
                                    "numpy.lib.format"])
@pytest.mark.parametrize("target", ["canary", "new file"])
def test_memmap_constructor_under_any_module_path_is_refused(svm_victim, module, target, capsys):
    v = svm_victim
    path = v.canary if target == "canary" else v.parent / "created-by-payload.bin"
    plant(v, lambda zf: memmap_call(module, path))
    _refused(v, rf"payload_: {module}\.memmap is built by ConstructorFromReduceNode",
             capsys if module == "numpy._core.memmap" else None)
    assert not (v.parent / "created-by-payload.bin").exists()


@pytest.mark.parametrize("module", ["numpy._core.memmap", "numpy", "numpy.core.memmap"])
def test_array_entry_naming_memmap_is_refused(svm_victim, module):
    v = svm_victim
    plant(v, lambda zf: entry("NdArrayNode", module, "memmap", **_npy(np.zeros(4, np.uint8), zf, "evil.npy")))
    _refused(v, rf"payload_: {module}\.memmap \(NdArrayNode\) is not a type a featurekit model contains")


@pytest.mark.parametrize("name", ["io.FileIO", "_io.FileIO", "_io.TextIOWrapper", "pathlib.PosixPath",
                                  "pathlib._local.PosixPath", "socket.socket", "subprocess.Popen",
                                  "tempfile.SpooledTemporaryFile", "numpy.lib._datasource.DataSource",
                                  "sklearn.preprocessing._function_transformer.FunctionTransformer",
                                  "sklearn.utils._testing.TempMemmap", "os.PathLike", "builtins.object"])
def test_object_of_a_type_outside_the_list_is_refused(svm_victim, name):
    v = svm_victim
    module, _, cls = name.rpartition(".")
    plant(v, lambda zf: entry("ObjectNode", module, cls, content=js({})))
    _refused(v, rf"payload_: {name} \(ObjectNode\) is not a type a featurekit model contains")


def test_allowed_type_under_another_loader_is_refused(svm_victim):
    """A name is allowed only with its loader (a Pipeline is never built by a constructor call)."""
    v = svm_victim
    plant(v, lambda zf: entry("ConstructorFromReduceNode", "sklearn.pipeline", "Pipeline", content=tup()))
    _refused(v, r"sklearn\.pipeline\.Pipeline is built by ConstructorFromReduceNode")


# -- entries that build callables ----------------------------------------------------------------------------
FUNCTION_BUILDERS = {
    "function": (lambda c: entry("FunctionNode", "posix", "remove"),
                 r"posix\.remove is built by FunctionNode"),
    "builtin open": (lambda c: entry("FunctionNode", "builtins", "open"),
                     r"builtins\.open is built by FunctionNode"),
    "partial": (lambda c: entry("PartialNode", "functools", "partial", content={
        "func": entry("FunctionNode", "builtins", "open"), "args": tup(js(str(c)), js("w")),
        "kwds": js({}), "namespace": js(None)}), r"functools\.partial is built by PartialNode"),
    "method": (lambda c: entry("MethodNode", "pathlib", "PosixPath", content={
        "func": "unlink", "obj": entry("ObjectNode", "pathlib", "PosixPath")}),
        r"pathlib\.PosixPath is built by MethodNode"),
    "methodcaller": (lambda c: entry("OperatorFuncNode", "operator", "methodcaller",
                                     attrs=tup(js("unlink"))),
                     r"operator\.methodcaller is built by OperatorFuncNode"),
    "type reference": (lambda c: entry("TypeNode", "posix", "system"), r"posix\.system is built by TypeNode"),
    "numpy function": (lambda c: entry("FunctionNode", "numpy", "save"),
                       r"numpy\.save is built by FunctionNode"),
    "defaultdict": (lambda c: entry("DefaultDictNode", "collections", "defaultdict", content={
        "main": {**entry("DictNode", "builtins", "dict"), "content": {}, "key_types": tup()},
        "default_factory": entry("FunctionNode", "builtins", "open")}),
        r"collections\.defaultdict is built by DefaultDictNode"),
    "cached reference": (lambda c: entry("CachedNode", "builtins", "str", __id__=1),
                         r"builtins\.str is built by CachedNode"),
}


@pytest.mark.parametrize("kind", sorted(FUNCTION_BUILDERS))
def test_entries_that_build_callables_are_refused(svm_victim, kind):
    v = svm_victim
    build, match = FUNCTION_BUILDERS[kind]
    plant(v, lambda zf: build(v.canary))
    _refused(v, rf"payload_: {match}")


def test_dictionary_key_type_that_deletes_a_file_is_refused(svm_victim, capsys):
    """skops rebuilds every dictionary key with its stored type: ``posix.remove(canary)`` as a key."""
    v = svm_victim
    forge(v.model / "pipeline-label.skops", lambda schema, zf: (
        schema["content"]["content"].__setitem__(str(v.canary), js(0)),
        schema["content"]["key_types"]["content"].append(entry("TypeNode", "posix", "remove"))))
    _seal(v.model)
    _refused(v, r"the top level: a dictionary whose keys are rebuilt with posix\.remove, which is not one of "
                r"the allowed key types", capsys)


def test_old_protocol_and_other_root_types_are_refused(svm_victim):
    v = svm_victim
    skops_file = v.model / "pipeline-label.skops"
    original = skops_file.read_bytes()
    forge(skops_file, lambda schema, zf: schema.__setitem__("protocol", 0))
    _seal(v.model)
    _refused(v, r"skops protocol 0 \(featurekit reads protocol 2")
    skops_file.write_bytes(original)
    forge(skops_file, lambda schema, zf: schema.update(__class__="SVC", __module__="sklearn.svm._classes"))
    _seal(v.model)
    _refused(v, r"holds a sklearn\.svm\._classes\.SVC, not a sklearn\.pipeline\.Pipeline")


def test_malformed_skops_files_are_refused(svm_victim):
    v = svm_victim
    skops_file = v.model / "pipeline-label.skops"
    skops_file.write_bytes(b"not a zip archive")
    _seal(v.model)
    _refused(v, r"(?s)pipeline-label\.skops: .*not a readable skops file \(BadZipFile")
    head = json.dumps({"protocol": SKOPS_PROTOCOLS[0], **entry("ObjectNode", "sklearn.pipeline", "Pipeline")})
    deep = head[:-1] + ', "content": ' + "[" * 100_000 + "]" * 100_000 + "}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", deep)
    skops_file.write_bytes(buf.getvalue())
    _seal(v.model)
    _refused(v, r"nested deeper than any featurekit model|not readable JSON \(RecursionError")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("schema.json", json.dumps({"protocol": SKOPS_PROTOCOLS[0]}))
            zf.writestr("schema.json", json.dumps({"protocol": SKOPS_PROTOCOLS[0]}))
    skops_file.write_bytes(buf.getvalue())
    _seal(v.model)
    _refused(v, r"two members of one name")


# -- paths named by model.json -------------------------------------------------------------------------------
def _must_not_read_components(monkeypatch):
    """Fail the test if any component is hashed or loaded: path checks must come first."""
    import featurekit.deploy.bundle as bundle

    def boom(*args, **kwargs):
        raise AssertionError("a component was read before its path was checked")

    monkeypatch.setattr(bundle, "sha256_file", boom)
    monkeypatch.setattr(bundle, "load_skops", boom)


def _outside_copy(v: Victim, name: str = "outside.skops") -> Path:
    out = v.parent / name
    shutil.copy(v.model / "pipeline-label.skops", out)
    return out


def test_absolute_pipeline_path_is_refused(svm_victim, monkeypatch, capsys):
    v = svm_victim
    outside = _outside_copy(v)
    _seal(v.model, lambda m: m["estimators"][0].update(pipeline=str(outside)))
    _must_not_read_components(monkeypatch)
    _refused(v, rf"pipeline '{outside}' is an absolute path", capsys)


def test_dotdot_pipeline_path_is_refused_listed_or_not(svm_victim, monkeypatch):
    v = svm_victim
    _outside_copy(v)
    _seal(v.model, lambda m: m["estimators"][0].update(pipeline="../outside.skops"))
    _must_not_read_components(monkeypatch)
    _refused(v, r"pipeline '\.\./outside\.skops' contains '\.\.'")
    _seal(v.model, add=("../outside.skops",))  # listed in the manifest, with its hash: still refused
    _refused(v, r"manifest entry '\.\./outside\.skops' contains '\.\.'")


@pytest.mark.parametrize("rel", ["./pipeline-label.skops", "sub//pipeline-label.skops",
                                 "pipeline-label.skops/", "..\\outside.skops", "C:\\outside.skops",
                                 "\\\\server\\share\\x.skops", ""])
def test_pipeline_paths_not_in_normal_relative_form_are_refused(svm_victim, monkeypatch, rel):
    v = svm_victim
    _seal(v.model, lambda m: m["estimators"][0].update(pipeline=rel))
    _must_not_read_components(monkeypatch)
    _refused(v, r"pipeline '.*' (is not in normal form|contains a backslash|is an absolute path|"
                r"is not a path)")


def test_file_not_in_the_manifest_is_refused(svm_victim, monkeypatch, capsys):
    v = svm_victim
    shutil.copy(v.model / "pipeline-label.skops", v.model / "unlisted.skops")
    _seal(v.model, lambda m: m["estimators"][0].update(pipeline="unlisted.skops"))
    _must_not_read_components(monkeypatch)
    _refused(v, r"pipeline 'unlisted\.skops' is not in the hashed file manifest", capsys)


def test_symlink_leaving_the_directory_is_refused(svm_victim, monkeypatch, capsys):
    v = svm_victim
    outside = _outside_copy(v)
    (v.model / "pipeline-label.skops").unlink()
    (v.model / "pipeline-label.skops").symlink_to(outside)
    _seal(v.model)  # the hash of the link's target: consistent
    _must_not_read_components(monkeypatch)
    _refused(v, r"'pipeline-label\.skops' resolves to .*outside\.skops, outside the model directory", capsys)


def test_symlink_inside_the_directory_is_accepted(svm_victim):
    v = svm_victim
    (v.model / "sub").mkdir()
    os.replace(v.model / "pipeline-label.skops", v.model / "sub" / "real.skops")
    (v.model / "pipeline-label.skops").symlink_to(Path("sub") / "real.skops")
    _seal(v.model)
    v.arm()
    assert load_model(v.model).pipelines["label"] is not None
    v.assert_untouched()


def test_model_json_symlink_leaving_the_directory_is_refused(svm_victim):
    v = svm_victim
    os.replace(v.model / META_NAME, v.parent / "model.json")
    (v.model / META_NAME).symlink_to(v.parent / "model.json")
    _refused(v, r"the model description 'model\.json' resolves to .*, outside the model directory")


def test_head_paths_are_confined(head_victim, monkeypatch):
    v = head_victim
    shutil.copytree(v.model / "head-label", v.parent / "head-outside")
    _seal(v.model, lambda m: m["estimators"][0].update(head=str(v.parent / "head-outside")))
    _must_not_read_components(monkeypatch)
    _refused(v, r"torch head directory '/.*head-outside' is an absolute path")
    _seal(v.model, lambda m: m["estimators"][0].update(head="../head-outside"))
    _refused(v, r"torch head directory '\.\./head-outside' contains '\.\.'")
    _seal(v.model, lambda m: m["estimators"][0].update(head="head-unlisted"))
    shutil.copytree(v.parent / "head-outside", v.model / "head-unlisted")
    _refused(v, r"torch head directory 'head-unlisted' has no file in the hashed file manifest")
    monkeypatch.undo()
    shutil.rmtree(v.model / "head-label")
    (v.model / "head-label").symlink_to(v.parent / "head-outside", target_is_directory=True)
    _seal(v.model, lambda m: m["estimators"][0].update(head="head-label"))
    _refused(v, r"'head-label(/[a-z.]+)?' resolves to .*head-outside(/[a-z.]+)?, outside the model "
                r"directory")


# -- torch state dicts carrying a pickle payload -------------------------------------------------------------
class Truncate:
    """Unpickled, truncates ``path`` (what an attacker would put in a state dict)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.truncate, (self.path, 0)


class Create:
    """Unpickled, creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _payload_state(v: Victim, payload) -> dict:
    import torch

    state = torch.load(v.model / "head-label" / "weights.pt", weights_only=True)
    return {**state, "evil": payload}


@pytest.mark.parametrize("payload", ["truncate", "create"])
def test_torch_state_dict_with_a_pickle_payload_is_refused(head_victim, payload, capsys):
    import torch

    v = head_victim
    created = v.parent / "created-by-payload.txt"
    evil = Truncate(v.canary) if payload == "truncate" else Create(created)
    torch.save(_payload_state(v, evil), v.model / "head-label" / "weights.pt")
    _seal(v.model)
    _refused(v, r"head-label/weights\.pt: refused: not a plain state dict of tensors .*nothing in it was run",
             capsys)
    assert not created.exists()


def test_torch_weights_that_are_not_a_state_dict_are_refused(head_victim):
    import torch

    v = head_victim
    torch.save([torch.zeros(2)], v.model / "head-label" / "weights.pt")
    _seal(v.model)
    _refused(v, r"weights\.pt: not a state dict")


# -- the payloads are real ----------------------------------------------------------------------------------
def test_payloads_are_live_without_the_allow_list(trained, tmp_path):
    """Loaded without featurekit's checks, the payloads above do write, create and delete files."""
    import skops.io as sio
    import torch

    v = _victim(tmp_path, trained["svm"], trained["audio"])
    plant(v, lambda zf: memmap_call("numpy._core.memmap", v.canary))
    data = (v.model / "pipeline-label.skops").read_bytes()
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))  # plain skops, trusting what it reports
    assert v.canary.read_bytes() == b"\0" * 4  # truncated and overwritten

    victim = tmp_path / "delete-me.txt"
    victim.write_text("x")
    forge(v.model / "pipeline-label.skops", lambda schema, zf: (
        schema["content"]["content"].__setitem__(str(victim), js(0)),
        schema["content"]["key_types"]["content"].append(entry("TypeNode", "posix", "remove"))))
    data = (v.model / "pipeline-label.skops").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sio.loads(data, trusted=sio.get_untrusted_types(data=data))
        except Exception:  # the payload ran while the dictionary was built; what follows may fail
            pass
    assert not victim.exists()

    (tmp_path / "h").mkdir()
    h = _victim(tmp_path / "h", trained["head"], trained["audio"])
    created = h.parent / "created.txt"
    buf = io.BytesIO()
    torch.save(_payload_state(h, [Truncate(h.canary), Create(created)]), buf)
    torch.load(io.BytesIO(buf.getvalue()), weights_only=False)  # what a plain torch.load would do
    assert h.canary.read_bytes() == b"" and created.exists()


def test_cli_exits_non_zero_with_the_message_and_no_traceback(svm_victim):
    v = svm_victim
    plant(v, lambda zf: memmap_call("numpy._core.memmap", v.canary))
    v.arm()
    code = "import sys; from featurekit.cli import main; sys.exit(main())"
    r = subprocess.run([sys.executable, "-c", code, "predict", str(v.model), v.audio], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert "featurekit predict: error: " in r.stderr and "numpy._core.memmap.memmap" in r.stderr
    v.assert_untouched()


def test_untouched_models_still_load(trained):
    for kind in ("svm", "head"):
        model = load_model(trained[kind])
        assert list(model.pipelines) == ["label"]

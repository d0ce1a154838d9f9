"""What a model directory may contain: the security boundary of loading a model from elsewhere.

Trust model. Whoever gives you a model directory controls every byte in it, ``model.json`` included,
so the SHA-256 hashes of :mod:`featurekit.deploy.bundle` are no defence against an attacker: they
catch accidents (a truncated copy, a corrupted disk) and the tampering of a single file, nothing more.
The security boundary is here, in two checks that run before any component is read or any object is
built:

* **Type allow-list** (:func:`check_skops`). The raw ``schema.json`` inside a ``.skops`` file is
  walked entry by entry; every entry's loader and ``module.Class`` must be one of the exact pairs in
  :data:`ALLOWED_SKOPS_NODES`, the types that a model written by ``featurekit train`` contains (every
  registered classical model and the preprocessing steps; ``tests/test_model_security.py`` proves the
  list is neither too small nor too large). Everything else is refused, whatever module path names it
  (``numpy._core.memmap.memmap`` is not ``numpy.ndarray``), and so is every entry that builds a callable
  or calls a constructor with arguments: functions, bound methods, ``functools.partial``,
  ``operator`` getters, ``defaultdict`` factories, constructor calls, and type references other than
  the ``str`` type of dictionary keys. Only then is skops asked for the types it would trust
  (``skops.io.get_untrusted_types``), which must be a subset of the list, and only then is
  ``skops.io.loads`` called with exactly those.
* **Path confinement** (:func:`confined_path`). Every path that ``model.json`` names (the file
  manifest, each pipeline, each torch head) must be relative (no drive, no leading ``/``, no ``..``,
  in normal form), must resolve after symbolic links inside the model directory, and, for a file that
  is read, must be listed in the hashed file manifest. A model that breaks any of this is refused
  with a message naming the path.

Torch heads are state dicts read with ``torch.load(..., weights_only=True)`` (see
:mod:`featurekit.heads.persistence`), whose restricted unpickler refuses any object that is not a
tensor or a plain container, so a pickle payload cannot run.

What remains outside the boundary: the native code of the allowed classes (libsvm, the tree and
neighbour structures of scikit-learn, XGBoost's booster parser, numpy's ``.npy`` reader) parses arrays
and bytes from the file; a malformed file can make them fail, but it cannot name code to run or a file
to touch.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any

__all__ = ["ALLOWED_KEY_TYPES", "ALLOWED_SKOPS_NODES", "ModelLoadError", "ROOT_TYPE", "SKOPS_PROTOCOLS",
           "check_skops", "confined_path", "load_skops", "skops_problems"]


class ModelLoadError(ValueError):
    """A model directory cannot be used; the message names the directory or file and the problem."""


#: skops persistence protocols whose node semantics were reviewed for :data:`ALLOWED_SKOPS_NODES`.
#: (Older protocols use other node classes; a newer skops may change what a node does.)
SKOPS_PROTOCOLS = (2,)

#: The type of the object a skops file of a model directory holds.
ROOT_TYPE = "sklearn.pipeline.Pipeline"

#: skops loader -> the exact ``module.Class`` names it may build. Derived from what ``featurekit
#: train`` writes for every registered classical model (with its variants: SVM one-vs-one/one-vs-rest
#: and linear/RBF kernels, MLP solvers and early stopping, k-NN search structures) with and without
#: the ``StandardScaler`` of global normalisation and the ``SpeakerNormaliser`` step of per-speaker
#: normalisation (arrays and integers only); torch heads add nothing (their pipeline holds the
#: scaler and ``"passthrough"``). ``ObjectNode`` builds an instance without calling ``__init__`` and
#: sets its state; ``TreeNode`` always builds ``sklearn.tree._tree.Tree`` from three integers/arrays;
#: ``NdArrayNode`` reads a ``.npy`` member with ``allow_pickle=False``.
ALLOWED_SKOPS_NODES: Mapping[str, frozenset[str]] = MappingProxyType({
    "ObjectNode": frozenset({
        "featurekit.evaluation.normalisation.SpeakerNormaliser",
        "featurekit.evaluation.svm.SVMClassifier",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.RandomForestRegressor",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._ridge.Ridge",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.multiclass.OneVsRestClassifier",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neighbors._classification.KNeighborsClassifier",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
        "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._label.LabelBinarizer",
        "sklearn.svm._classes.LinearSVC",
        "sklearn.svm._classes.SVC",
        "sklearn.svm._classes.SVR",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
    }),
    "TreeNode": frozenset({"sklearn.tree._tree.Tree"}),
    "NdArrayNode": frozenset({"numpy.ndarray", "numpy.float32", "numpy.float64", "numpy.int64"}),
    "RandomStateNode": frozenset({"numpy.random.mtrand.RandomState"}),
    "BytearrayNode": frozenset({"builtins.bytearray"}),
    "DictNode": frozenset({"builtins.dict"}),
    "ListNode": frozenset({"builtins.list"}),
    "TupleNode": frozenset({"builtins.tuple"}),
    "JsonNode": frozenset({"builtins.str"}),
})

#: Types a dictionary's keys may be rebuilt with (skops stores them as type references, ``TypeNode``,
#: in the dictionary's ``key_types``; the only place a type reference is allowed).
ALLOWED_KEY_TYPES = frozenset({"builtins.str"})

#: Why an entry of a loader outside the allow-list is refused (the message names the entry).
_REFUSED_LOADERS = {
    "FunctionNode": "a function reference",
    "MethodNode": "a bound method",
    "PartialNode": "a functools.partial (a callable with bound arguments)",
    "TypeNode": "a type reference (allowed only as the str type of dictionary keys)",
    "OperatorFuncNode": "an operator.attrgetter/itemgetter/methodcaller (a callable)",
    "ConstructorFromReduceNode": "a constructor called with arguments from the file",
    "DefaultDictNode": "a defaultdict (its default_factory is a callable)",
    "RandomGeneratorNode": "a numpy Generator (its bit generator is named by a string in the file)",
    "CachedNode": "a reference to another entry (not written by featurekit)",
}
#: Largest ``schema.json`` read (a featurekit model's is well under a megabyte per 100 trees).
MAX_SCHEMA_BYTES = 256 << 20


def _entry_name(node: dict[str, Any]) -> str:
    return f"{node.get('__module__')}.{node.get('__class__')}"


def _key_types_problem(node: Any, used: set[tuple[str, str]]) -> str | None:
    """``None`` when a dictionary's ``key_types`` is a list of allowed type references only."""
    fields = {"__class__", "__module__", "__loader__", "content", "__id__"}
    if not (isinstance(node, dict) and node.get("__loader__") == "ListNode"
            and _entry_name(node) == "builtins.list" and isinstance(node.get("content"), list)
            and set(node) <= fields):
        return "key_types is not a list of key types"
    for item in node["content"]:
        if not (isinstance(item, dict) and item.get("__loader__") == "TypeNode"
                and set(item) <= {"__class__", "__module__", "__loader__", "__id__"}):
            return "key_types holds something other than a type reference"
        if _entry_name(item) not in ALLOWED_KEY_TYPES:
            return (f"keys are rebuilt with {_entry_name(item)}, which is not one of the allowed key "
                    f"types {sorted(ALLOWED_KEY_TYPES)} (a type reference is a callable)")
        used.add(("TypeNode", _entry_name(item)))
    used.add(("ListNode", "builtins.list"))
    return None


def _walk(node: Any, where: str, problems: list[str], used: set[tuple[str, str]]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, f"{where}[{i}]", problems, used)
        return
    if not isinstance(node, dict):
        return
    is_entry = "__loader__" in node  # an entry skops builds an object from; else a mapping of names
    loader = node["__loader__"] if is_entry else None
    if is_entry:
        here = where or "the top level"
        name = _entry_name(node)
        if not (isinstance(loader, str) and isinstance(node.get("__module__"), str)
                and isinstance(node.get("__class__"), str)):
            problems.append(f"{here}: a malformed entry (loader {loader!r}, type {name!r})")
            return
        allowed = ALLOWED_SKOPS_NODES.get(loader)
        if allowed is None:
            why = _REFUSED_LOADERS.get(loader, "an entry kind featurekit models never contain")
            problems.append(f"{here}: {name} is built by {loader}, {why}")
        elif name not in allowed:
            problems.append(f"{here}: {name} ({loader}) is not a type a featurekit model contains")
        else:
            used.add((loader, name))
        if loader == "NdArrayNode" and node.get("type") != "numpy":
            problems.append(f"{here}: an array stored as {node.get('type')!r} (featurekit models hold only "
                            f"numeric .npy arrays)")
        if loader == "DictNode":
            problem = _key_types_problem(node.get("key_types"), used)
            if problem:
                problems.append(f"{here}: a dictionary whose {problem}")
    for key, value in node.items():
        if loader == "DictNode" and key == "key_types":
            continue  # checked above
        if not is_entry:  # a mapping of names (a dictionary's content): name the key
            _walk(value, f"{where}.{key}" if where else str(key), problems, used)
        elif key == "content":
            _walk(value, where, problems, used)
        else:
            _walk(value, f"{where}<{key}>", problems, used)


def skops_problems(data: bytes) -> tuple[list[str], set[tuple[str, str]]]:
    """Check a skops file's raw schema against the allow-list, without building anything.

    Parameters
    ----------
    data
        The bytes of a ``.skops`` file.

    Returns
    -------
    problems, used
        One line per refused entry (its location in the object and why), and the (loader,
        ``module.Class``) pairs of the allowed entries found.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            if len(names) != len(set(names)):
                return ["the archive holds two members of one name"], set()
            if "schema.json" not in names:
                return ["not a skops file (no schema.json)"], set()
            if zf.getinfo("schema.json").file_size > MAX_SCHEMA_BYTES:
                return [f"schema.json is larger than {MAX_SCHEMA_BYTES >> 20} MiB"], set()
            raw = zf.read("schema.json")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as err:
        return [f"not a readable skops file ({type(err).__name__}: {err})"], set()
    try:
        schema = json.loads(raw)
    except (ValueError, RecursionError) as err:
        return [f"schema.json is not readable JSON ({type(err).__name__}: {err})"], set()
    if not isinstance(schema, dict):
        return ["schema.json is not a JSON object"], set()
    protocol = schema.get("protocol")
    if isinstance(protocol, bool) or protocol not in SKOPS_PROTOCOLS:
        readable = ", ".join(map(str, SKOPS_PROTOCOLS))
        return [f"skops protocol {protocol!r} (featurekit reads protocol {readable}; retrain the model with "
                f"this featurekit)"], set()
    problems: list[str] = []
    if schema.get("__loader__") != "ObjectNode" or _entry_name(schema) != ROOT_TYPE:
        problems.append(f"the file holds a {_entry_name(schema)}, not a {ROOT_TYPE}")
    used: set[tuple[str, str]] = set()
    try:
        _walk({k: v for k, v in schema.items() if k != "protocol"}, "", problems, used)
    except RecursionError:
        return ["schema.json is nested deeper than any featurekit model"], set()
    return problems, used


def check_skops(data: bytes, where: str) -> list[str]:
    """The types to pass to ``skops.io.loads`` as ``trusted``, after every check of the module docstring.

    Raises
    ------
    ModelLoadError
        Naming ``where`` and every refused entry; nothing has been built or imported.
    """
    import skops.io as sio

    problems, used = skops_problems(data)
    if problems:
        raise ModelLoadError(f"{where}: refusing to load the model (nothing was loaded or run):\n  "
                             + "\n  ".join(problems))
    allowed = {name for _, name in used}
    try:
        needed = sio.get_untrusted_types(data=data)
    except Exception as err:
        raise ModelLoadError(f"{where}: not a readable skops file ({type(err).__name__}: {err})") from None
    outside = sorted(set(needed) - allowed)
    if outside:  # skops sees a type the schema walk did not: refuse rather than trust it
        raise ModelLoadError(f"{where}: refusing to load type(s) {outside}: not in featurekit's model-type "
                             f"allow-list (nothing was loaded)")
    return list(needed)


def load_skops(data: bytes, where: str) -> Any:
    """Load the bytes of a skops file that pass :func:`check_skops`."""
    import skops.io as sio

    trusted = check_skops(data, where)
    try:
        return sio.loads(data, trusted=trusted)
    except Exception as err:
        raise ModelLoadError(f"{where}: cannot load the skops file ({type(err).__name__}: {err})") from None


def confined_path(root: Path, rel: Any, *, what: str, where: str,
                  listed: Collection[str] | None = None) -> Path:
    """The resolved path of ``rel`` inside the model directory ``root``, or a refusal naming it.

    Parameters
    ----------
    root
        The model directory, already resolved (``Path.resolve()``).
    rel
        A path read from ``model.json``.
    what
        What the path is, for the message (e.g. ``"pipeline"``).
    where
        The file the path was read from (``model.json``), for the message.
    listed
        The hashed file manifest the path must be in (None: do not check, e.g. for a directory).

    Raises
    ------
    ModelLoadError
        ``rel`` is not a string, is absolute, has a ``..`` component or is not in normal form, is not
        listed, or resolves (after symbolic links) outside ``root``.
    """
    def refuse(problem: str) -> ModelLoadError:
        return ModelLoadError(f"{where}: {what} {rel!r} {problem}; refusing the model (a model directory may "
                              f"only name files inside itself that its manifest lists)")

    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise refuse("is not a path")
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or rel.startswith(("/", "\\")):
        raise refuse("is an absolute path")
    if "\\" in rel:
        raise refuse("contains a backslash (model paths are relative POSIX paths)")
    if ".." in posix.parts:
        raise refuse("contains '..' (it points outside the model directory)")
    if posix.as_posix() != rel:
        raise refuse(f"is not in normal form (expected {posix.as_posix()!r})")
    if listed is not None and rel not in listed:
        raise refuse("is not in the hashed file manifest ('files'), so nothing vouches for its content")
    resolved = (root / posix).resolve()
    if not resolved.is_relative_to(root):
        raise refuse(f"resolves to {resolved}, outside the model directory (a symbolic link leaving it)")
    return resolved

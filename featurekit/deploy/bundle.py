"""The saved-model directory: writing it, verifying it and loading it safely.

A model directory holds::

    model.json                 what the model is (see below) and the SHA-256 of every other file
    pipeline-<target>.skops    the fitted scikit-learn Pipeline of one target (skops format)
    head-<target>/weights.pt   (torch heads only) the head's state dict, see featurekit.heads
    head-<target>/head.json    (torch heads only) the head's parameters and fitted attributes
    head-<target>/network.safetensors, finetune.json   (fine-tuned encoders, ``head_format = "finetune"``)
                               the network's state dict and its config (featurekit.heads.finetune_io)

``model.json`` records the format version, the featurekit version, the feature set (extractor
names, parameters, versions, table kinds, layer selections and the exact column names), the audio
options, the classes in order (classification) or the regression targets, the normalisation (with
the training corpus' pooled feature statistics for the per-speaker fallback), the model and its
chosen hyperparameters, library versions, a summary of the training corpus, the manifest of file
hashes (``files``) and the SHA-256 of its own canonical content (``metadata_sha256``).

Loading (:func:`load_model`) refuses, with a message naming the file and the problem:

* a path that is not a directory or lacks ``model.json``; a ``model.json`` that is not JSON or not
  a featurekit model;
* an incompatible ``format_version`` or featurekit version (see :func:`check_versions`);
* any path in ``model.json`` (the manifest, a pipeline, a head) that is absolute, has a ``..``
  component, resolves after symbolic links outside the directory, or (for a file that is read) is
  not in the manifest; this is checked before any component is read
  (:func:`featurekit.deploy.trust.confined_path`);
* a ``model.json`` edited after saving (its checksum differs), a file listed in the manifest that is
  missing, or a file whose SHA-256 differs from the manifest (changed, corrupted or tampered with);
  the bytes that are loaded are the bytes whose hash was checked;
* a skops file holding any entry outside the exact type allow-list of
  :mod:`featurekit.deploy.trust` (checked on the raw schema before anything is built); torch heads
  are state dicts loaded with ``weights_only=True``. No pickle of arbitrary objects is read anywhere.

The hashes detect accidental changes and the tampering of a single file; they are not a signature
(whoever can write the directory can rewrite ``model.json`` too). The guarantee that a model from an
untrusted source never runs code nor touches a file outside its directory comes from the type
allow-list and the path confinement of :mod:`featurekit.deploy.trust`, not from the hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.deploy.trust import ModelLoadError, confined_path, load_skops, skops_problems

FORMAT = "featurekit-model"
FORMAT_VERSION = 1
META_NAME = "model.json"
#: Distributions whose versions are recorded (and compared, with a warning, when loading).
LIBRARIES = ("featurekit", "numpy", "scipy", "pandas", "scikit-learn", "xgboost", "skops", "torch",
             "opensmile", "librosa", "soundfile", "soxr")


def featurekit_version() -> str:
    """The featurekit version (``featurekit.__version__``, which the package metadata is built from)."""
    from featurekit._version import __version__

    return __version__


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def metadata_checksum(meta: dict[str, Any]) -> str:
    """SHA-256 of ``meta``'s canonical JSON, without its own ``metadata_sha256`` entry."""
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def check_versions(meta: dict[str, Any], where: str) -> None:
    """Refuse a ``model.json`` whose format or featurekit version this featurekit cannot read.

    Rules: ``format`` must be ``featurekit-model`` and ``format_version`` exactly
    :data:`FORMAT_VERSION`; the model's featurekit version must not be newer than the installed one
    and must share its major version (and, before 1.0, its minor version: 0.x releases may change
    features or the format).
    """
    if meta.get("format") != FORMAT:
        raise ModelLoadError(f"{where}: not a featurekit model (format is {meta.get('format')!r}, expected "
                             f"{FORMAT!r})")
    fv = meta.get("format_version")
    if fv != FORMAT_VERSION:
        wrote = meta.get("featurekit_version", "unknown")
        raise ModelLoadError(f"{where}: model format version {fv!r} is not supported by this featurekit "
                             f"(which reads version {FORMAT_VERSION}); retrain the model or use the "
                             f"featurekit version that wrote it ({wrote})")
    saved, here = str(meta.get("featurekit_version", "")), featurekit_version()
    a, b = _version_tuple(saved), _version_tuple(here)
    if not a:
        raise ModelLoadError(f"{where}: featurekit_version {saved!r} is missing or unreadable")
    if not b:  # pragma: no cover - unknown local version: cannot compare, allow
        return
    compatible = a[0] == b[0] and (a[0] > 0 or a[:2] == b[:2]) and a <= b
    if not compatible:
        raise ModelLoadError(f"{where}: the model was saved by featurekit {saved}, which is incompatible "
                             f"with the installed featurekit {here} (same major version, and before 1.0 the "
                             f"same minor version, not newer); retrain it or install featurekit {saved}")


# -- writing --------------------------------------------------------------------------------------------
def write_model_dir(out_dir: str | os.PathLike, meta: dict[str, Any], pipelines: dict[str, Any], *,
                    overwrite: bool = False) -> Path:
    """Write pipelines (one per target) and ``model.json`` into ``out_dir``, atomically.

    Everything is written into a temporary sibling directory that is renamed into place at the end,
    so a failed save leaves no half-written model. A torch head (the pipeline's last step is a
    :class:`featurekit.heads.TorchClassifier` / ``TorchRegressor``) is saved with
    :func:`featurekit.heads.save_head`; the rest of its pipeline goes to the skops file with the
    head replaced by ``"passthrough"``.

    Parameters
    ----------
    out_dir
        Model directory to create.
    meta
        ``model.json`` content without ``files``/``estimators``/``metadata_sha256`` (added here).
    pipelines
        Target name -> fitted :class:`sklearn.pipeline.Pipeline`.
    overwrite
        Replace an existing model directory (one holding ``model.json``).
    """
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out}: exists and is not a directory")
        if any(out.iterdir()):
            if not (out / META_NAME).exists():
                raise FileExistsError(f"{out}: exists, is not empty and is not a model directory; choose "
                                      f"another output directory")
            if not overwrite:
                raise FileExistsError(f"{out}: a model directory already exists "
                                      f"(pass overwrite=True / --force)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        estimators = []
        for target, pipe in pipelines.items():
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", target)
            entry: dict[str, Any] = {"target": target, "pipeline": f"pipeline-{safe}.skops", "head": None}
            last = pipe.steps[-1][1]
            if _is_finetuned(last):  # network.safetensors + finetune.json (featurekit.heads.finetune_io)
                from featurekit.heads.finetune_io import finetuned_files

                entry.update(head=f"head-{safe}", head_format="finetune")
                (tmp / entry["head"]).mkdir()
                for name, blob in finetuned_files(last).items():
                    (tmp / entry["head"] / name).write_bytes(blob)
                pipe = Pipeline([*pipe.steps[:-1], (pipe.steps[-1][0], "passthrough")])
            elif _is_head(last):
                from featurekit.heads import save_head

                entry["head"] = f"head-{safe}"
                save_head(last, tmp / entry["head"])
                pipe = Pipeline([*pipe.steps[:-1], (pipe.steps[-1][0], "passthrough")])
            sio.dump(pipe, tmp / entry["pipeline"])
            _check_loadable(tmp / entry["pipeline"], target)
            estimators.append(entry)
        meta = dict(meta, estimators=estimators)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        meta["files"] = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files}
        meta["metadata_sha256"] = metadata_checksum(meta)
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _check_loadable(path: Path, target: str) -> None:
    """Refuse to write a pipeline that :func:`load_model` would refuse (a type outside the allow-list)."""
    problems, _ = skops_problems(path.read_bytes())
    if problems:
        raise ValueError(f"cannot save the model of {target!r}: its pipeline holds entries outside "
                         f"featurekit's model-type allow-list (featurekit.deploy.trust.ALLOWED_SKOPS_NODES), "
                         f"so it could not be loaded:\n  " + "\n  ".join(problems))


def _is_finetuned(obj: Any) -> bool:
    return type(obj).__name__ in ("FineTuneClassifier", "FineTuneRegressor") and \
        type(obj).__module__ == "featurekit.heads.finetune"


def _is_head(obj: Any) -> bool:
    return type(obj).__name__ in ("TorchClassifier", "TorchRegressor") and \
        type(obj).__module__.startswith("featurekit.heads")


# -- loading --------------------------------------------------------------------------------------------
@dataclass
class SavedModel:
    """A verified, loaded model directory (see :func:`load_model`)."""

    directory: Path
    meta: dict[str, Any]
    pipelines: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.meta["task"]["type"]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["task"].get("classes") or [])

    @property
    def targets(self) -> list[str]:
        return list(self.meta["task"]["targets"])

    @property
    def sample_rate(self) -> int:
        return int(self.meta["audio"]["sample_rate"])

    @property
    def normalisation(self) -> str:
        return self.meta["normalisation"]["name"]

    def __repr__(self) -> str:
        return (f"SavedModel({str(self.directory)!r}, system={self.meta['system']!r}, task={self.task!r}, "
                f"normalisation={self.normalisation!r})")


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and verify ``model.json`` and the file manifest of a model directory (loads no model).

    Every path ``model.json`` names is checked (:func:`_check_paths`) before any file it names is
    read; then every listed file's SHA-256 is compared with the manifest.

    Raises
    ------
    ModelLoadError
        See the module docstring; every problem found is listed in one message.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ModelLoadError(f"{d}: not a model directory (it does not exist or is not a directory)")
    meta_path = d / META_NAME
    if not meta_path.is_file():
        raise ModelLoadError(f"{d}: not a featurekit model directory: {META_NAME} is missing")
    confined_path(d.resolve(), META_NAME, what="the model description", where=str(d))
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{meta_path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{meta_path}: not a featurekit model description (not a JSON object)")
    check_versions(meta, str(meta_path))
    _check_paths(d, meta)
    problems = []
    if meta.get("metadata_sha256") != metadata_checksum(meta):
        problems.append(f"{meta_path}: its content was changed after saving (the checksum in "
                        f"metadata_sha256 does not match)")
    for rel, digest in meta["files"].items():
        p = d / rel
        if not p.is_file():
            problems.append(f"{p}: missing (listed in {META_NAME}'s manifest)")
        elif sha256_file(p) != digest:
            problems.append(f"{p}: SHA-256 differs from {META_NAME}'s manifest (the file was changed after "
                            f"saving: corrupted or tampered with)")
    if problems:
        raise ModelLoadError(f"{d}: refusing to load the model:\n  " + "\n  ".join(problems))
    return meta


def _check_paths(d: Path, meta: dict[str, Any]) -> None:
    """Check every path of ``model.json`` (manifest, pipelines, heads) with :func:`confined_path`.

    Nothing that a path names is read here. Raises :class:`ModelLoadError` on the first bad path.
    """
    where, root = str(d / META_NAME), d.resolve()
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelLoadError(f"{where}: no file manifest ('files'); refusing the model")
    for rel, digest in files.items():
        confined_path(root, rel, what="manifest entry", where=where)
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise ModelLoadError(f"{where}: manifest entry {rel!r} has no SHA-256 (got {digest!r})")
    estimators = meta.get("estimators")
    if not isinstance(estimators, list) or not estimators:
        raise ModelLoadError(f"{where}: no estimators listed ('estimators'); refusing the model")
    for entry in estimators:
        if not (isinstance(entry, dict) and isinstance(entry.get("target"), str)):
            raise ModelLoadError(f"{where}: an estimator entry is not a {{target, pipeline, head}} object: "
                                 f"{entry!r}")
        confined_path(root, entry.get("pipeline"), what="pipeline", where=where, listed=files)
        head = entry.get("head")
        if head is not None:
            confined_path(root, head, what="torch head directory", where=where)
            if not any(rel.startswith(f"{head}/") for rel in files):
                raise ModelLoadError(f"{where}: torch head directory {head!r} has no file in the hashed file "
                                     f"manifest ('files'); refusing the model")


def _reader(d: Path, meta: dict[str, Any]) -> Callable[[str], bytes]:
    """``read(rel) -> bytes`` for listed files only: confined, and hashed again on the bytes returned.

    The bytes a component is built from are therefore the bytes whose SHA-256 matches the manifest,
    even if the file changed after :func:`read_meta` verified it.
    """
    root, files, where = d.resolve(), meta["files"], str(d / META_NAME)

    def read(rel: str) -> bytes:
        path = confined_path(root, rel, what="file", where=where, listed=files)
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != files[rel]:
            raise ModelLoadError(f"{d / rel}: SHA-256 differs from {META_NAME}'s manifest (the file changed "
                                 f"while it was being loaded)")
        return data

    return read


def load_model(directory: str | os.PathLike) -> SavedModel:
    """Verify and load a model directory written by :func:`featurekit.deploy.train`.

    Parameters
    ----------
    directory
        The model directory.

    Returns
    -------
    SavedModel
        Metadata and one fitted pipeline per target.

    Raises
    ------
    ModelLoadError
        Missing or changed files, incompatible versions, paths that leave the directory or are not
        listed, disallowed types (see the module docstring).
    """
    d = Path(directory)
    meta = read_meta(d)
    _check_extractors(meta, d)
    _check_feature_set(meta, d)
    _warn_library_versions(meta, d)
    read = _reader(d, meta)
    model = SavedModel(directory=d, meta=meta)
    for entry in meta["estimators"]:
        pipe = load_skops(read(entry["pipeline"]), str(d / entry["pipeline"]))
        if entry.get("head") and entry.get("head_format") == "finetune":
            pipe.steps[-1] = (pipe.steps[-1][0], _read_finetuned(d, entry["head"], read))
        elif entry.get("head"):
            try:
                from featurekit.heads.persistence import read_head
            except ImportError as err:  # pragma: no cover - torch missing
                from featurekit.extras import install_command

                raise ModelLoadError(f"{d / entry['head']}: loading a torch head needs torch "
                                     f"({err}): {install_command('deep')}") from None
            head_dir = entry["head"]
            try:
                head = read_head(lambda name, h=head_dir: read(f"{h}/{name}"), where=str(d / head_dir))
            except ModelLoadError:
                raise
            except Exception as err:
                raise ModelLoadError(f"{d / head_dir}: cannot load the torch head "
                                     f"({type(err).__name__}: {err})") from None
            pipe.steps[-1] = (pipe.steps[-1][0], head)
        if meta["task"]["type"] == "classification":
            got = [int(c) for c in getattr(pipe, "classes_", [])]
            if got != list(range(len(meta["task"]["classes"]))):
                raise ModelLoadError(f"{d / entry['pipeline']}: the classifier's classes {got} do not match "
                                     f"the {len(meta['task']['classes'])} classes of {META_NAME}")
        model.pipelines[entry["target"]] = pipe
    return model


def _read_finetuned(d: Path, head_dir: str, read: Callable[[str], bytes]) -> Any:
    """A fine-tuned encoder from its verified files (state dict + json config; no pickle, no code)."""
    try:
        from featurekit.heads.finetune_io import read_finetuned
    except ImportError as err:  # pragma: no cover - torch / transformers missing
        from featurekit.extras import install_command

        raise ModelLoadError(f"{d / head_dir}: loading a fine-tuned encoder needs torch and transformers "
                             f"({err}): {install_command('ssl')}") from None
    try:
        return read_finetuned(lambda name: read(f"{head_dir}/{name}"), where=str(d / head_dir))
    except ModelLoadError:
        raise
    except Exception as err:
        raise ModelLoadError(f"{d / head_dir}: cannot load the fine-tuned encoder "
                             f"({type(err).__name__}: {err})") from None


def _check_extractors(meta: dict[str, Any], d: Path) -> None:
    from featurekit.extractors import EXTRACTORS
    from featurekit.featureset import WAVEFORM

    for m in meta["feature_set"]["members"]:
        if m["extractor"] == WAVEFORM and m["kind"] == WAVEFORM:  # the conditioned audio: no extractor
            continue
        if m["extractor"] not in EXTRACTORS:
            raise ModelLoadError(f"{d / META_NAME}: extractor {m['extractor']!r} is not available in this "
                                 f"featurekit (known: {', '.join(EXTRACTORS.names())})")
        here = EXTRACTORS.get(m["extractor"]).version
        if str(here) != str(m["version"]):
            raise ModelLoadError(f"{d / META_NAME}: the model was trained on {m['extractor']} features of "
                                 f"extractor version {m['version']}, but this featurekit computes version "
                                 f"{here}; its features would differ: retrain the model")


def _check_feature_set(meta: dict[str, Any], d: Path) -> None:
    """``feature_set``: its name read by the feature-set parser (as a spec's are), its members exactly the
    tables the name means (so the features computed are those the model was trained on)."""
    from featurekit.featureset import (
        FeatureSetError,
        TableKind,
        TableRef,
        parse_feature_set,
        parse_layer_selection,
        resolve_feature_set,
    )

    where, fs = d / META_NAME, meta["feature_set"]
    try:
        expected = list(resolve_feature_set(parse_feature_set(fs["name"])).members)
        listed = [TableRef(str(m["extractor"]), TableKind.parse(str(m["kind"])),
                           None if m.get("layer") is None else parse_layer_selection(str(m["layer"])))
                  for m in fs["members"]]
    except FeatureSetError as err:
        raise ModelLoadError(f"{where}: feature_set: {err}") from None
    if listed != expected:
        raise ModelLoadError(f"{where}: feature_set members [{', '.join(map(str, listed))}] do not match its "
                             f"name {fs['name']!r} ([{', '.join(map(str, expected))}])")


def _warn_library_versions(meta: dict[str, Any], d: Path) -> None:
    from featurekit.extractors.base import library_versions

    saved = meta.get("libraries", {})
    here = library_versions(tuple(saved))
    changed = {k: (v, here[k]) for k, v in saved.items() if k != "featurekit" and here.get(k) != v}
    if changed:
        text = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items()))
        warnings.warn(f"{d}: library versions differ from training ({text}); features or predictions may "
                      f"differ slightly", LibraryVersionWarning, stacklevel=3)


class LibraryVersionWarning(UserWarning):
    """A library that computes features or predictions has another version than at training."""


def to_jsonable(value: Any) -> Any:
    """Numpy scalars/arrays and tuples -> plain JSON types (recursively)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value

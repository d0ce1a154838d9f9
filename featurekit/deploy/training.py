"""``train``: fit one system of a spec on a whole corpus and save it as a model directory."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurekit.deploy.bundle import (
    FORMAT,
    FORMAT_VERSION,
    LIBRARIES,
    featurekit_version,
    load_model,
    to_jsonable,
    write_model_dir,
)
from featurekit.evaluation.pipeline import fit_searched, grid_size, with_speaker_step

#: Progress messages (stage by stage); ``featurekit train`` shows them, -q hides them.
log = logging.getLogger(__name__)

def resolve_system(spec, system: str | None):
    """The spec's feature set and model named by ``"FEATURESET:MODEL"``.

    ``system`` may be omitted when the spec has exactly one feature set and one model.
    """
    from featurekit.evaluation.spec import SpecError
    from featurekit.featureset import FeatureSetError, format_feature_set, parse_system

    names = [fs.name for fs in spec.feature_sets]
    if system is None:
        if len(names) == 1 and len(spec.models) == 1:
            return spec.feature_sets[0], next(iter(spec.models))
        raise SpecError(f"{spec.path or spec.name}: choose a system FEATURESET:MODEL; feature sets: {names}; "
                        f"models: {list(spec.models)}")
    try:
        parsed, model = parse_system(system.strip(), example=f"{names[0]}:{next(iter(spec.models))}")
    except FeatureSetError as err:
        raise SpecError(f"system {system!r}: {err}") from None
    fs_name = format_feature_set(parsed)
    fs = next((f for f in spec.feature_sets if f.name == fs_name), None)
    if fs is None:
        raise SpecError(f"system {system!r}: feature set {fs_name!r} is not in the spec; it has {names}")
    if model not in spec.models:
        raise SpecError(f"system {system!r}: model {model!r} is not in the spec; it has {list(spec.models)}")
    return fs, model


def _corpus_summary(manifest: pd.DataFrame, spec, root) -> dict[str, Any]:
    out: dict[str, Any] = {"corpus": spec.corpus_name, "options": spec.corpus_options,
                           "root": str(root) if root is not None else manifest.attrs.get("root"),
                           "n_utterances": int(len(manifest)),
                           "n_speakers": int(manifest["speaker"].nunique()),
                           "per_speaker": {str(k): int(v) for k, v in
                                           manifest["speaker"].astype(str).value_counts().sort_index().items()}}
    if spec.task_type == "classification":
        col = spec.targets[0]
        out["per_label"] = {str(k): int(v) for k, v in manifest[col].value_counts().sort_index().items()}
        out["per_speaker_label"] = {
            str(s): {str(k): int(v) for k, v in g[col].value_counts().sort_index().items()}
            for s, g in manifest.groupby(manifest["speaker"].astype(str))}
    else:
        out["targets"] = {t: {"mean": float(manifest[t].mean()), "std": float(manifest[t].std(ddof=0)),
                              "min": float(manifest[t].min()), "max": float(manifest[t].max())}
                          for t in spec.targets}
    return out


def norm_is_corpus(spec, normalisation: str | None) -> bool:
    """Whether the deployed model would use ``corpus`` normalisation (fold statistics of several corpora)."""
    return (normalisation or spec.normalisations[0]) == "corpus"


def train(spec, system: str | None = None, *, root: str | os.PathLike | None = None,
          out_dir: str | os.PathLike, store: str | os.PathLike | None = None,
          normalisation: str | None = None, jobs: int | None = None, manifest: pd.DataFrame | None = None,
          overwrite: bool = False, progress: bool = False) -> Path:
    """Fit a spec's system on the whole corpus and save it as a model directory.

    Features come from the feature store (missing ones are extracted first, as ``featurekit
    evaluate`` does). Hyperparameters are chosen on the spec's grid by a speaker-grouped inner
    cross-validation over all speakers (the model's or the spec's ``inner_folds``), then the best
    candidate is refit on every utterance. The directory layout and what ``model.json`` records are
    described in :mod:`featurekit.deploy.bundle`; the saved model is reloaded and checked against the
    in-memory one before this returns.

    Parameters
    ----------
    spec
        A :class:`~featurekit.evaluation.spec.Spec` or the path of a TOML spec.
    system
        ``"FEATURESET:MODEL"``: a feature set and a model of the spec (optional when it has one of each).
    root
        Corpus root (not needed when ``manifest`` is given).
    out_dir
        Model directory to write.
    store
        Feature store (default: ``$FEATUREKIT_STORE`` or ``./store``).
    normalisation
        ``none``, ``global`` or ``speaker`` (default: the spec's first).
    jobs
        Worker processes for extraction and the hyperparameter search (default: all cores).
    manifest
        A corpus manifest to train on instead of the whole corpus at ``root`` (e.g. some speakers).
    overwrite
        Replace an existing model directory.
    progress
        Show extraction progress bars.

    Returns
    -------
    Path
        The model directory.
    """
    from featurekit.audio import AudioOptions
    from featurekit.evaluation.manifests import prepare_manifest
    from featurekit.evaluation.normalisation import NORMALISATIONS, SpeakerNormaliser
    from featurekit.evaluation.runner import FeatureData
    from featurekit.evaluation.spec import FeatureSet, Spec, SpecError, load_spec
    from featurekit.executor import executor_for
    from featurekit.extractors import EXTRACTORS, make_extractor
    from featurekit.extractors.base import library_versions
    from featurekit.store import FeatureStore, feature_columns

    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    fs, model_name = resolve_system(spec, system)
    if spec.corpora or fs.stack or norm_is_corpus(spec, normalisation):
        raise SpecError(f"{fs.name}: multi-corpus specs, stacked systems and 'corpus' normalisation cannot "
                        f"be trained for deployment (yet)")
    if fs.late:
        raise SpecError(f"{fs.name}: late-fusion systems cannot be trained for deployment (yet); train "
                        f"one of its member feature sets")
    norm = normalisation or ("none" if fs.waveforms else spec.normalisations[0])
    if norm not in NORMALISATIONS:
        raise SpecError(f"normalisation {norm!r}: use one of {NORMALISATIONS}")
    ms = spec.model_spec(model_name)
    if fs.waveforms != ms.waveforms:
        raise SpecError(f"{fs.name}:{model_name}: the feature set 'waveform' (the conditioned audio) goes "
                        "with a model that takes raw audio (finetune), and only with one")
    if fs.waveforms and norm != "none":
        raise SpecError(f"normalisation {norm!r}: a fine-tuned encoder takes the audio unnormalised "
                        "(normalisation 'none')")
    if fs.sequences and not ms.sequences:
        raise SpecError(f"{fs.name!r} is LLD sequences, but model {model_name!r} takes vectors")
    if not (fs.sequences or fs.waveforms) and not ms.vectors:
        raise SpecError(f"model {model_name!r} takes sequences, but {fs.name!r} is vectors")
    if "waveform_augmentation" in spec.models[model_name]:
        raise SpecError(f"model {model_name!r} has [augmentation.waveform], which applies to evaluation's "
                        "training folds; training a deployable model with it is not supported yet (drop the "
                        "model from augmentation.models to train without augmentation)")
    jobs = jobs or os.cpu_count() or 1
    if manifest is None:
        if root is None:
            raise ValueError("train: pass the corpus root (root=...) or a manifest")
        from featurekit.corpora import load_corpus

        manifest = load_corpus(spec.corpus_name, root, **spec.corpus_options)
    manifest = prepare_manifest(spec, manifest)
    if store is None:
        from featurekit.defaults import default_store

        store = default_store()
    log.info(f"{fs.name}:{model_name} on {len(manifest)} utterances of {manifest['speaker'].nunique()} "
             f"speakers: reading features from {store} (computing those it lacks)")
    sub = dataclasses.replace(spec, feature_sets=[fs])
    with executor_for(jobs=jobs) as executor:
        data = FeatureData.load(sub, manifest, FeatureStore(store), executor=executor, progress=progress)
    speakers = manifest["speaker"].astype(str).to_numpy()
    groups = manifest[spec.group].astype(str).to_numpy()

    members = []
    if fs.waveforms:  # the audio as [audio] conditions it; predict conditions it the same way
        x = data.waveforms()
        columns = [[]]
    elif fs.sequences:
        x = data.sequences(fs)
        m = fs.members[0]
        columns = [feature_columns(data._table(m))]
    else:
        blocks, columns = [], []
        for m in fs.members:
            xb, names = data.matrix(FeatureSet(fs.name, (m,)))
            blocks.append(xb)
            columns.append(names)
        x = blocks[0] if len(blocks) == 1 else np.hstack(blocks)
    raw_params = spec.raw.get("extractors", {}) if isinstance(spec.raw, dict) else {}
    for m, cols in zip(fs.members, columns):
        if m.table_kind.waveform:
            members.append({"extractor": m.extractor, "kind": m.kind, "layer": None, "params": {},
                            "columns": []})
            continue
        ext = make_extractor(m.extractor, **spec.extractors.get(m.extractor, {}))
        members.append({"extractor": m.extractor, "kind": m.kind, "layer": m.layer,
                        "params": dict(raw_params.get(m.extractor, spec.extractors.get(m.extractor, {}))),
                        "resolved_params": to_jsonable(ext.get_params()),
                        "version": str(EXTRACTORS.get(m.extractor).version),
                        "libraries": library_versions(ext.libraries), "columns": list(cols)})

    norm_meta: dict[str, Any] = {"name": norm}
    normaliser = None
    if norm == "speaker":
        normaliser = SpeakerNormaliser(sequences=fs.sequences).fit(x, speakers=speakers)
        norm_meta.update(
            step="speaker (SpeakerNormaliser, the first step of every saved pipeline)",
            train_time="each training speaker z-scored with their own statistics (as in evaluation)",
            predict_time=(
                "each recording z-scored with the statistics of its speaker's enrolment audio (predict "
                "speaker_reference=FILES, or the files of one speaker pooled, speakers=...); without "
                "them, the training population's statistics (the step's mean_/scale_), with a "
                "PopulationStatisticsWarning. A recording is never normalised against itself alone."))
        x = normaliser.transform(x, speakers=speakers)
    elif norm == "global":
        norm_meta["predict_time"] = "StandardScaler fitted on the training corpus (inside the pipeline)"
    else:
        norm_meta["predict_time"] = "features as computed"

    cfg = spec.models[model_name]
    ev = spec.evaluation
    if spec.task_type == "classification":
        col = spec.targets[0]
        classes = sorted(manifest[col].unique())
        ys = {col: np.searchsorted(classes, manifest[col].to_numpy())}
    else:
        classes = []
        ys = {t: manifest[t].to_numpy(np.float64) for t in spec.targets}
    pipelines, best, searches = {}, {}, {}
    for target, y in ys.items():
        t0 = time.perf_counter()
        n = grid_size(cfg["grid"])
        log.info(f"{target}: searching {n} candidates over {spec.inner_folds(model_name)} speaker-grouped "
                 f"inner folds, then refitting the best on all (jobs={jobs})" if n > 1
                 else f"{target}: fitting on all utterances")
        pipelines[target], best[target], searches[target] = fit_searched(
            ms, x, y, groups, task=spec.task_type, normalisation=norm, balancing=ev["balancing"],
            grid=cfg["grid"], params=dict(cfg["params"]), inner_folds=spec.inner_folds(model_name),
            seed=spec.seed,
            sequences=fs.sequences, jobs=jobs)
        if normaliser is not None:
            pipelines[target] = with_speaker_step(pipelines[target], normaliser)
        log.info(f"{target}: done in {time.perf_counter() - t0:.1f} s")

    from featurekit.deploy.inference import probability_method

    task: dict[str, Any] = {"type": spec.task_type, "targets": list(ys)}
    if spec.task_type == "classification":
        task.update(classes=[str(c) for c in classes], mapping=spec.task.get("mapping"),
                    subset=spec.task.get("subset"),
                    probabilities=probability_method(next(iter(pipelines.values()))))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "featurekit_version": featurekit_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "system": f"{fs.name}:{model_name}",
        "spec": {"name": spec.name, "path": spec.path, "seed": spec.seed},
        "task": task,
        "feature_set": {"name": fs.name, "sequences": fs.sequences,
                        **({"waveform": True} if fs.waveforms else {}),
                        "n_features": int(sum(len(c) for c in columns)), "members": members},
        "audio": AudioOptions(**spec.audio).as_dict(),
        "normalisation": norm_meta,
        "model": {"name": model_name, "params": cfg["params"], "grid": cfg["grid"], "hyperparameters": best,
                  "search": searches, "balancing": ev["balancing"],
                  "group": spec.group, "seed": spec.seed},
        "libraries": library_versions(LIBRARIES),
        "training": _corpus_summary(manifest, spec, root),
    }
    log.info(f"saving {out_dir} and checking that it reloads")
    out = write_model_dir(out_dir, to_jsonable(meta), pipelines, overwrite=overwrite)
    _verify_saved(out, pipelines, x, spec.task_type)
    return out


def _verify_saved(out: Path, pipelines: dict[str, Any], x, task: str) -> None:
    """Reload the saved directory and check it predicts what the in-memory pipelines predict."""
    from featurekit.evaluation.pipeline import model_steps

    loaded = load_model(out)
    n = min(len(x), 8)
    sample = x[:n]  # model input (already speaker-normalised when the pipeline has a speaker step)
    for target, pipe in pipelines.items():
        a, b = model_steps(pipe).predict(sample), model_steps(loaded.pipelines[target]).predict(sample)
        same = np.array_equal(a, b) if task == "classification" else np.allclose(a, b, rtol=1e-5, atol=1e-6)
        if not same:  # pragma: no cover - would be a bug in saving/loading
            raise RuntimeError(f"{out}: the saved model of {target!r} predicts differently after reloading")

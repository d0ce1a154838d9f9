"""The experiment's utterances: the corpus (or corpora) after the task's mapping and subset, and the
protocol's folds over them."""

from __future__ import annotations

import os

import pandas as pd

from featurekit.audit.checks import missing_training_classes
from featurekit.evaluation.errors import DataError
from featurekit.evaluation.protocols import PROTOCOLS, Fold
from featurekit.evaluation.spec import Spec


def load_corpus_for(spec: Spec, root: str | os.PathLike) -> pd.DataFrame:
    """The spec's corpus at ``root`` (with the spec's adapter options)."""
    from featurekit.corpora import load_corpus

    return load_corpus(spec.corpus["name"], root, **spec.corpus.get("options", {}))


def prepare_manifest(spec: Spec, manifest: pd.DataFrame) -> pd.DataFrame:
    """Apply the task's mapping/subset and check target columns; raise DataError naming the problem."""
    task = spec.task
    for col in spec.targets:
        if col not in manifest.columns:
            raise DataError(
                f"task: the corpus manifest has no column {col!r}, which the spec's task needs; columns: "
                f"{list(manifest.columns)} (csv adapter: map one, columns={{{col!r}: '<CSV column>'}})"
            )
    if "speaker" not in manifest.columns:  # inner folds and normalisation are grouped by speaker
        raise DataError(
            "the corpus manifest has no 'speaker' column, which evaluation needs (speaker-grouped "
            "folds); for the csv adapter, map one: columns={'speaker': '<CSV column>'}"
        )
    group = spec.protocol.get("group", "speaker")
    if group not in manifest.columns:
        raise DataError(f"protocol.group: the manifest has no column {group!r}")
    m = manifest.copy()
    if spec.task_type == "classification":
        col = spec.targets[0]
        m[col] = m[col].astype(str)
        if task.get("mapping"):
            m[col] = m[col].replace(task["mapping"])
        if task.get("subset"):
            m = m[m[col].isin(task["subset"])]
            missing = set(task["subset"]) - set(m[col])
            if missing:
                raise DataError(f"task.subset: label(s) {sorted(missing)} do not occur in the corpus")
        counts = m[col].value_counts()
        min_n = int(task.get("min_per_class", 2))
        few = counts[counts < min_n]
        if len(few):
            raise DataError(
                f"task: label(s) with fewer than {min_n} samples: {few.to_dict()} "
                f"(drop them with task.subset or merge with task.mapping)"
            )
    else:
        for col in spec.targets:
            v = pd.to_numeric(m[col], errors="coerce")
            if v.isna().any():
                bad = m.index[v.isna()][:5].tolist()
                raise DataError(f"task: target {col!r} has missing or non-numeric values (e.g. {bad})")
            m[col] = v.astype(float)
    if m.empty:
        raise DataError("task: no utterances left after subset/mapping")
    return m


def make_folds(spec: Spec, manifest: pd.DataFrame) -> list[Fold]:
    p = dict(spec.protocol)
    name = p.pop("name")
    y = manifest[spec.targets[0]].to_numpy() if spec.task_type == "classification" else None
    folds = PROTOCOLS.get(name).folds(manifest, seed=spec.seed, y=y, **p)
    if spec.task_type == "classification":
        lacking = missing_training_classes(folds, manifest[spec.targets[0]].to_numpy())
        if lacking:
            fold, classes = lacking[0]
            raise DataError(
                f"fold {fold}: the training fold lacks class(es) {classes}; the model "
                f"could never predict them (drop them with task.subset)"
            )
    return folds


def cross_corpus_manifest(spec: Spec, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Training and test corpora as one manifest with a ``corpus`` column (cross-corpus protocol).

    The test corpus' labels go through ``protocol.test_corpus.mapping`` and then, like the training
    corpus', through the task's mapping and subset. Speakers are prefixed with their corpus so that
    two corpora's speaker codes never merge (per-speaker normalisation stays within one corpus).
    """
    tc = spec.protocol["test_corpus"]
    a_name, b_name = spec.corpus["name"], tc["name"]
    test = test.copy()
    if tc["mapping"] and spec.task_type == "classification":
        col = spec.targets[0]
        test[col] = test[col].astype(str).replace(tc["mapping"])
    a, b = prepare_manifest(spec, train), prepare_manifest(spec, test)
    if spec.task_type == "classification":
        col = spec.targets[0]
        unknown = sorted(set(b[col]) - set(a[col]))
        if unknown:
            raise DataError(
                f"protocol.test_corpus: {b_name} label(s) {unknown} do not occur in {a_name} "
                f"({sorted(set(a[col]))}); map them with protocol.test_corpus.mapping or drop them "
                f"with task.subset"
            )
    parts = []
    for name, m in ((a_name, a), (b_name, b)):
        m = m.assign(corpus=name)
        m["speaker"] = name + ":" + m["speaker"].astype(str)
        parts.append(m)
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update(train_corpus=a_name, test_corpus=b_name)
    return out


def experiment_manifest(
    spec: Spec,
    root: str | os.PathLike,
    *,
    manifest: pd.DataFrame | None = None,
    test_root: str | os.PathLike | None = None,
    test_manifest: pd.DataFrame | None = None,
    roots: dict[str, str | os.PathLike] | None = None,
    manifests: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The experiment's prepared manifest: the corpus at ``root`` (or ``manifest``) after the task's
    mapping and subset; for a cross-corpus protocol, both corpora stacked (:func:`cross_corpus_manifest`);
    for a multi-corpus spec, its ``[corpora]`` from ``roots`` / ``manifests`` ({NAME: ...}; a root not
    given comes from ``corpora.NAME.root_env``), combined by
    :func:`featurekit.evaluation.multicorpus.multi_corpus_manifest`."""
    if spec.corpora:
        from featurekit.evaluation.multicorpus import load_corpora, multi_corpus_manifest

        return multi_corpus_manifest(spec, manifests or load_corpora(spec, roots))[0]
    if manifest is None:
        manifest = load_corpus_for(spec, root)
    if spec.protocol["name"] != "cross_corpus":
        return prepare_manifest(spec, manifest)
    if test_manifest is None:
        tc = spec.protocol["test_corpus"]
        if test_root is None:
            raise DataError(
                f"protocol.test_corpus: no root for {tc['name']!r}: give --test-root or set the "
                f"variable named by protocol.test_corpus.root_env"
            )
        from featurekit.corpora import load_corpus

        test_manifest = load_corpus(tc["name"], test_root, **tc["options"])
    return cross_corpus_manifest(spec, manifest, test_manifest)

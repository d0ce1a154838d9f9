"""Multi-corpus specs (``[corpora.NAME]``): roots, label mapping onto the common label set, one manifest.

Everything here runs before any feature is extracted or model fit, so that a missing root, a label
no mapping covers or a class a corpus lacks is a clear error naming the corpus, the key and the labels.

The combined manifest keeps each corpus' rows in turn with a ``corpus`` column; utterance ids and
speakers are prefixed with the corpus name (``emodb:03a01Fa``, ``emodb:03``), so two corpora that
use the same ids or speaker codes never merge. The per-corpus manifests keep their own ids (the
feature store is keyed by corpus and id).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from featurekit.evaluation.spec import Spec


class CorpusRootError(ValueError):
    """A corpus of a multi-corpus spec has no root, or its root is not a directory."""


def resolve_roots(spec: Spec, roots: dict[str, str | os.PathLike] | None = None) -> dict[str, Path]:
    """Each corpus' root: ``roots[NAME]`` or the variable ``corpora.NAME.root_env``. Every corpus is
    checked before any is read; one error lists all that are missing."""
    roots = dict(roots or {})
    unknown = sorted(set(roots) - set(spec.corpora))
    if unknown:
        raise CorpusRootError(f"roots given for {unknown}, not among [corpora] {list(spec.corpora)}")
    out, problems = {}, []
    for name, entry in spec.corpora.items():
        root = roots.get(name)
        env = entry.get("root_env")
        if root is None and env:
            root = os.environ.get(env) or None
        if root is None:
            how = f" or set {env}" if env else f" (or set corpora.{name}.root_env)"
            problems.append(f"corpora.{name}: no root: pass --corpus-root {name}=PATH{how}")
        elif not Path(root).is_dir():
            problems.append(f"corpora.{name}: root {str(root)!r} is not a directory")
        else:
            out[name] = Path(root)
    if problems:
        raise CorpusRootError("\n".join(problems))
    return out


def load_corpora(spec: Spec, roots: dict[str, str | os.PathLike] | None = None) -> dict[str, pd.DataFrame]:
    """Every corpus' manifest (the roots are all checked first, see :func:`resolve_roots`)."""
    from featurekit.corpora import load_corpus

    paths = resolve_roots(spec, roots)
    return {name: load_corpus(e["adapter"], paths[name], **e["options"]) for name, e in spec.corpora.items()}


def map_labels(spec: Spec, name: str, manifest: pd.DataFrame) -> pd.DataFrame:
    """Corpus ``name``'s rows with labels mapped onto the common label set (``task.subset``); dropped
    labels' rows removed. A label neither common, mapped nor dropped is an error."""
    from featurekit.evaluation.errors import DataError

    entry = spec.corpora[name]
    col = spec.targets[0]
    if col not in manifest.columns:
        raise DataError(f"corpora.{name}: the manifest has no column {col!r}; "
                        f"columns: {list(manifest.columns)}")
    common = list(spec.task["subset"])
    labels = manifest[col].astype(str)
    known = set(common) | set(entry["mapping"]) | set(entry["drop"])
    loose = sorted(set(labels) - known)
    if loose:
        raise DataError(
            f"corpora.{name}: label(s) {loose} of corpus {name!r} are not in the common label set "
            f"task.subset {common}, not mapped by corpora.{name}.mapping and not dropped by "
            f"corpora.{name}.drop; map them onto a common label or drop them"
        )
    mapped = labels.map(lambda v: entry["mapping"].get(v, v))
    keep = ~labels.isin(entry["drop"])
    out = manifest[keep].copy()
    out[col] = mapped[keep].to_numpy()
    min_n = int(spec.task.get("min_per_class", 2))
    counts = out[col].value_counts()
    thin = {c: int(counts.get(c, 0)) for c in common if counts.get(c, 0) < min_n}
    if thin:
        raise DataError(
            f"corpora.{name}: after corpora.{name}.mapping, class(es) {thin} have fewer than {min_n} "
            f"utterances in corpus {name!r} (label counts: {counts.to_dict()}); every corpus is a "
            f"training corpus of protocol {spec.protocol['name']!r}, so each needs every common class: "
            f"fix the mapping or leave the class out of task.subset"
        )
    return out


def multi_corpus_manifest(
    spec: Spec, manifests: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The combined manifest (ids, speakers prefixed; ``corpus`` column) and the per-corpus manifests
    (own ids), both after label mapping, ``task.subset`` and the task's checks."""
    from featurekit.evaluation.errors import DataError
    from featurekit.evaluation.manifests import prepare_manifest

    missing = [n for n in spec.corpora if n not in manifests]
    if missing:
        raise DataError(f"no manifest for corpora {missing}")
    parts, combined = {}, []
    for name in spec.corpora:
        m = manifests[name]
        if spec.task_type == "classification":
            m = map_labels(spec, name, m)
        try:
            m = prepare_manifest(spec, m).reset_index(drop=True)
        except DataError as err:
            raise DataError(f"corpora.{name}: {err}") from None
        parts[name] = m
        c = m.assign(corpus=name, local_id=m["id"].astype(str))
        c["id"] = name + ":" + c["id"].astype(str)
        c["speaker"] = name + ":" + c["speaker"].astype(str)
        combined.append(c)
    out = pd.concat(combined, ignore_index=True)
    dup = out["id"][out["id"].duplicated()]
    if len(dup):  # only a corpus repeating its own ids gets here (finalize_manifest forbids that)
        raise DataError(f"duplicate utterance id(s) within one corpus: {dup.head(5).tolist()}")
    return out, parts

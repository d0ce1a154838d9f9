"""The design audit of one experiment: its prepared manifest, the protocol's folds, the cells the
spec will run and the audio's content fingerprints, checked before anything is extracted or fit."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from featurekit.audit.core import (
    AuditContext,
    AuditReport,
    CellPlan,
    FoldLike,
    acknowledged_checks,
    run_checks,
)


def content_fingerprints(
    manifest: pd.DataFrame, corpora: Sequence[str], store: Any = None
) -> list[str | None]:
    """Content hashes of the manifest's audio files (``None`` for an unreadable file).

    ``corpora`` names each row's corpus (the store keeps one fingerprint memo per corpus). With a
    :class:`featurekit.store.FeatureStore` the store's memoised fingerprints are used (the very
    hashes its rows are keyed by); without one each file is hashed.
    """
    from featurekit.audio import AudioError, file_fingerprint

    paths = manifest["path"].astype(str).tolist()
    out: list[str | None] = [None] * len(paths)
    for corpus in dict.fromkeys(corpora):
        rows = [i for i, c in enumerate(corpora) if c == corpus]
        if store is not None:
            fps, _ = store.fingerprints(corpus, [paths[i] for i in rows])
        else:
            fps = []
            for i in rows:
                try:
                    fps.append(file_fingerprint(paths[i]))
                except AudioError:
                    fps.append(None)
        for i, fp in zip(rows, fps):
            out[i] = fp
    return out


def audit_experiment(
    spec: Any,
    manifest: pd.DataFrame,
    folds: Sequence[FoldLike],
    cells: Sequence[Any],
    *,
    speaker_independent: bool,
    store: Any = None,
) -> AuditReport:
    """Run every registered check on an experiment.

    Parameters
    ----------
    spec
        The validated :class:`featurekit.evaluation.spec.Spec`; its ``[audit] acknowledge`` list
        turns those checks' errors into warnings.
    manifest, folds
        The prepared manifest and the protocol's folds (as ``featurekit.evaluation.runner`` makes them).
    cells
        The runner's cells (``feature_set``, ``normalisation``).
    speaker_independent
        Whether the protocol claims speaker independence.
    store
        A :class:`featurekit.store.FeatureStore` whose fingerprints to use, or ``None`` (hash the files).
    """
    acknowledge = acknowledged_checks((spec.raw.get("audit") or {}).get("acknowledge"))
    if (spec.protocol["name"] == "cross_corpus" or getattr(spec, "corpora", None)) and "corpus" in manifest:
        corpora = manifest["corpus"].astype(str).tolist()
    else:
        corpora = [spec.corpus["name"]] * len(manifest)
    context = AuditContext(
        manifest=manifest,
        folds=folds,
        task=spec.task_type,
        targets=list(spec.targets),
        group=spec.protocol.get("group", "speaker"),
        speaker_independent=speaker_independent,
        cells=[CellPlan(c.feature_set.name, c.feature_set.sequences, c.normalisation) for c in cells],
        fingerprints=content_fingerprints(manifest, corpora, store),
    )
    return run_checks(context, acknowledge=acknowledge)


def audit_spec(
    spec: Any,
    root: str | os.PathLike,
    *,
    store: str | os.PathLike | None = None,
    test_root: str | os.PathLike | None = None,
    manifest: pd.DataFrame | None = None,
    test_manifest: pd.DataFrame | None = None,
) -> AuditReport:
    """The audit ``featurekit evaluate`` runs first, on its own (``featurekit audit``): nothing is
    extracted or fit. ``store``: a feature store whose fingerprint memo to use (else files are hashed)."""
    from featurekit.evaluation.cells import plan_cells
    from featurekit.evaluation.manifests import experiment_manifest, make_folds
    from featurekit.evaluation.protocols import PROTOCOLS
    from featurekit.store import FeatureStore

    manifest = experiment_manifest(
        spec, root, manifest=manifest, test_root=test_root, test_manifest=test_manifest
    )
    folds = make_folds(spec, manifest)
    return audit_experiment(
        spec,
        manifest,
        folds,
        plan_cells(spec),
        speaker_independent=PROTOCOLS.get(spec.protocol["name"]).speaker_independent,
        store=FeatureStore(store) if store is not None else None,
    )

"""Design audit: confounds and leaks found before they become results.

``featurekit evaluate`` runs the audit after the manifest and the protocol's folds are built and
before any feature is extracted or model fit (``featurekit audit SPEC --root ROOT`` runs it alone).
Each registered check (:data:`CHECKS`) gives findings with a severity: an ``error`` stops the run
unless the spec lists the check in ``[audit] acknowledge``; a ``warning`` is printed, written to
``audit.json`` / ``audit.md`` in the results folder and shown at the top of the report.

Checks (thresholds in :mod:`featurekit.audit.checks`):

- ``speaker_label_confound``: single-label speakers and label entropy within speakers;
- ``speaker_data``: too few utterances per speaker for per-speaker statistics;
- ``duplicate_audio``: identical audio under different ids across folds;
- ``sentence_confound``: label information carried by the sentence / transcript alone;
- ``fold_health``: single-class test folds, training folds lacking classes, imbalance, tiny folds;
- ``group_integrity``: speakers shared by training and test under a speaker-independent protocol,
  sessions split between them.

Add a check with ``@register_check("name", "description")`` on ``func(AuditContext) -> list[Finding]``.
"""

from featurekit.audit import checks  # noqa: F401  (registers the checks)
from featurekit.audit.core import (
    AUDIT_FILE,
    AUDIT_MARKDOWN,
    CHECKS,
    AuditContext,
    AuditError,
    AuditReport,
    CellPlan,
    Finding,
    Severity,
    acknowledged_checks,
    register_check,
    run_checks,
)
from featurekit.audit.experiment import audit_experiment, audit_spec, content_fingerprints

__all__ = [
    "AUDIT_FILE",
    "AUDIT_MARKDOWN",
    "CHECKS",
    "AuditContext",
    "AuditError",
    "AuditReport",
    "CellPlan",
    "Finding",
    "Severity",
    "acknowledged_checks",
    "audit_experiment",
    "audit_spec",
    "content_fingerprints",
    "register_check",
    "run_checks",
]

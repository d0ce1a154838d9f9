"""Speaker-independent evaluation: specs, protocols, models, metrics, the runner."""

from featurekit.evaluation.runner import DataError, evaluate_table, run
from featurekit.evaluation.spec import SpecError, load_spec, validate

__all__ = ["DataError", "SpecError", "evaluate_table", "load_spec", "run", "validate"]

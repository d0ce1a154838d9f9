"""Speaker-independent evaluation: specs, protocols, models, metrics, the runner."""

from featurekit.evaluation.errors import DataError
from featurekit.evaluation.runner import run
from featurekit.evaluation.spec import SpecError, load_spec, validate
from featurekit.evaluation.table import evaluate_table

__all__ = ["DataError", "SpecError", "evaluate_table", "load_spec", "run", "validate"]

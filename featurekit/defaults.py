"""Defaults taken from the environment, shared by the command line, the Python API and deployment."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the feature store used when none is given.
STORE_ENV = "FEATUREKIT_STORE"


def default_store() -> Path:
    """The feature store used when none is given: ``$FEATUREKIT_STORE``, else ``./store``."""
    return Path(os.environ.get(STORE_ENV) or "store")

"""Optional dependencies ("extras"): which packages each one brings, and a clear error when one is missing.

The core install (``pip install featurekit``) is the classical path: openSMILE and librosa features,
the scikit-learn models, evaluation, reports and deployment. The rest are extras (``pyproject.toml``)::

    deep   torch: the torch heads (torch_mlp, lstm, gru, conv1d); captum: their saliency /
           integrated-gradients attribution (``[attribution]``, checked at spec load)
    xgb    xgboost: the xgb classifier and regressor
    paa    pyAudioAnalysis (and what it imports without declaring it): the paa and paa_d extractors
    ssl    torch, transformers, ctranslate2: the hf_encoder and whisper_ct2 extractors
    dask   dask.distributed: extraction and evaluation on a cluster
    augment  audiomentations: waveform augmentation of training folds (``[augmentation.waveform]``)
    all    all of the above; dev = all + test tools

Registries list every extractor and model whether or not its extra is installed; using one whose
extra is missing raises :class:`MissingExtraError` naming the ``pip install`` command (at spec load
and when an extractor or model is created). Availability is checked with
:func:`importlib.util.find_spec`, which finds a module without importing it (cheap).
"""

from __future__ import annotations

import importlib.util
import sys

#: extra -> the top-level modules it provides (what is checked; the distributions are in pyproject.toml).
EXTRAS: dict[str, tuple[str, ...]] = {
    "deep": ("torch",),
    "xgb": ("xgboost",),
    # pyAudioAnalysis imports these at import time without declaring them all
    "paa": ("pyAudioAnalysis", "eyed3", "pydub", "plotly", "hmmlearn", "imblearn"),
    "ssl": ("torch", "transformers", "ctranslate2"),
    "dask": ("dask", "distributed"),
    "augment": ("audiomentations",),
}


class MissingExtraError(ImportError):
    """A feature or model needs an optional dependency that is not installed; the message names the
    ``pip install "featurekit[EXTRA]"`` command."""


def install_command(extra: str) -> str:
    """The command that installs ``extra``."""
    return f'pip install "featurekit[{extra}]"'


def _installed(module: str) -> bool:
    if sys.modules.get(module) is not None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder refusing it, or a module without a spec
        return False


def missing_modules(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """The modules of ``extra`` (or only ``modules`` of it) that cannot be imported."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    return [m for m in (modules or EXTRAS[extra]) if not _installed(m)]


def missing_message(extra: str, what: str, missing: list[str]) -> str:
    """``WHAT needs the optional dependencies X, Y (not installed): pip install "featurekit[EXTRA]"``."""
    return (f"{what} needs the optional {'dependency' if len(missing) == 1 else 'dependencies'} "
            f"{', '.join(missing)} (not installed): {install_command(extra)}")


def require_extra(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` when a module of ``extra`` needed by ``what`` is missing."""
    missing = missing_modules(extra, modules)
    if missing:
        raise MissingExtraError(missing_message(extra, what, missing))


def import_optional(module: str, extra: str, what: str):
    """Import ``module`` of ``extra``; a failure becomes :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{missing_message(extra, what, [module])} ({err})") from err

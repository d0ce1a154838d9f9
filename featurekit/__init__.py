"""featurekit: speech emotion recognition research toolkit.

The public Python API (see README, "Python API")::

    import featurekit

    features = featurekit.Features(["egemaps", "mfcc.mean_std"])
    df = features.process_files(["a.wav", "b.wav"])          # indexed by file
    manifest = featurekit.load_corpus("emodb", "data/emodb")
    results = featurekit.evaluate("pipelines/emodb.toml", root="data/emodb", out="results/emodb")

Importing the package is cheap: the names below are loaded on first use.
"""

from __future__ import annotations

from featurekit._version import __version__ as __version__

_EXPORTS = {
    "Features": "featurekit.api",
    "Errors": "featurekit.api",
    "FeatureExtractionError": "featurekit.api",
    "load_corpus": "featurekit.api",
    "evaluate": "featurekit.api",
    "load_results": "featurekit.api",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'featurekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

"""The extractor contract: a named, parameterised, versioned signal -> features function.

An extractor yields frame-level low-level descriptors (:meth:`Extractor.lld`) and, when the
underlying toolkit has its own utterance-level functionals (openSMILE, pretrained encoders),
those as they are (:meth:`Extractor.native`). HSF functionals of the LLDs live in
:mod:`featurekit.extractors.functionals`. Extractors follow scikit-learn's conventions: every
parameter is a keyword argument of ``__init__`` stored unchanged, no work happens there, and
expensive resources (openSMILE configs, neural networks) are built on first use and cached per
process (:meth:`Extractor.resource`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

import numpy as np

from featurekit.registry import Registry

_RESOURCES: dict[tuple[str, str], Any] = {}


@dataclass
class Frames:
    """Frame-level features of one utterance.

    Attributes
    ----------
    values
        ``(n_frames, n_features)`` float32.
    times
        ``(n_frames,)`` frame centre times in seconds.
    names
        Column names, prefixed by the extractor name.
    """

    values: np.ndarray
    times: np.ndarray
    names: list[str]


@dataclass
class Vector:
    """Utterance-level features: ``values`` is ``(n_features,)``, ``names`` their column names."""

    values: np.ndarray
    names: list[str]


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the distributions ``names`` (read from metadata, nothing imported)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Extractor:
    """Base class of all extractors (see module docstring).

    Class attributes
    ----------------
    name
        Registry name; prefixes every column.
    version
        Bumped whenever the computation changes; part of the cache key.
    libraries
        Distributions whose versions enter the cache key.
    has_native
        Whether :meth:`native` exists (toolkit's own functionals).
    has_lld
        Whether :meth:`lld` exists.
    param_checks
        Parameter name -> a function raising ``ValueError`` for a value of the declared type that is
        still invalid (e.g. a string with its own grammar). Types and ranges are declared by the
        annotations of ``__init__`` (``Annotated[int, Ge(1)]``); :meth:`check_params` checks both.
    extra
        The optional dependency group (:mod:`featurekit.extras`) the extractor needs, None for core.
    requires
        The modules of ``extra`` it imports (default: all of the extra's).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    libraries: ClassVar[tuple[str, ...]] = ("numpy",)
    has_native: ClassVar[bool] = False
    has_lld: ClassVar[bool] = True
    description: ClassVar[str] = ""
    param_checks: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    extra: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ()

    # -- optional dependencies ---------------------------------------------------------------
    @classmethod
    def missing_extra(cls) -> str | None:
        """None when the extractor can run here, else why not and the ``pip install`` command."""
        if cls.extra is None:
            return None
        from featurekit.extras import missing_message, missing_modules

        missing = missing_modules(cls.extra, cls.requires or None)
        return missing_message(cls.extra, f"the {cls.name} extractor", missing) if missing else None

    @classmethod
    def require_extra(cls) -> None:
        """Raise :class:`~featurekit.extras.MissingExtraError` when :meth:`missing_extra` says so."""
        message = cls.missing_extra()
        if message:
            from featurekit.extras import MissingExtraError

            raise MissingExtraError(message)

    # -- scikit-learn style parameters -------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY]

    @classmethod
    def check_params(cls, params: dict[str, Any], *, where: str = "") -> None:
        """Raise :class:`~featurekit.parameters.ParameterError` naming every parameter in ``params`` that
        ``__init__`` does not declare (with the closest declared name) or whose value does not fit its
        declared type, range or :attr:`param_checks`."""
        from featurekit.parameters import ParameterError, check_parameters, declared_parameters

        declared = declared_parameters(cls, keyword_only=True)
        problems = check_parameters(declared, params, where=where or f"extractors.{cls.name}",
                                    checks=cls.param_checks)
        if problems:
            raise ParameterError(problems)

    def get_params(self) -> dict[str, Any]:
        """Parameters as given to ``__init__``."""
        return {k: getattr(self, k) for k in self._param_names()}

    @classmethod
    def key_param_names(cls) -> list[str]:
        """The parameters that enter :meth:`key` (all but ``key_excludes``, those that never change a
        value, e.g. an encoder's batch size)."""
        excluded = set(getattr(cls, "key_excludes", ()))
        return [k for k in cls._param_names() if k not in excluded]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_cache")}

    # -- identity ----------------------------------------------------------------------------
    def key(self) -> dict[str, Any]:
        """Everything that determines the output: name, version, parameters, library versions."""
        return {
            "extractor": self.name,
            "version": self.version,
            "params": self.get_params(),
            "libraries": library_versions(self.libraries),
        }

    def key_hash(self) -> str:
        """Short stable hash of :meth:`key`."""
        blob = json.dumps(self.key(), sort_keys=True, default=str).encode()
        return hashlib.blake2b(blob, digest_size=8).hexdigest()

    def resource(self, label: str, factory: Callable[[], Any]) -> Any:
        """A per-process cached object (e.g. a loaded model) built by ``factory`` on first use."""
        k = (self.key_hash(), label)
        if k not in _RESOURCES:
            _RESOURCES[k] = factory()
        return _RESOURCES[k]

    # -- computation -------------------------------------------------------------------------
    def lld(self, signal: np.ndarray, sr: int) -> Frames:
        """Frame-level descriptors of a float32 mono signal at ``sr`` Hz."""
        raise NotImplementedError(f"extractor {self.name!r} has no frame-level output")

    def native(self, signal: np.ndarray, sr: int) -> Vector:
        """The toolkit's own utterance-level functionals."""
        raise NotImplementedError(f"extractor {self.name!r} has no native functionals")

    def lld_batch(self, signals: list[np.ndarray], sr: int) -> list[Frames]:
        """:meth:`lld` for several signals; extractors that batch (neural encoders) override it."""
        return [self.lld(s, sr) for s in signals]

    def native_batch(self, signals: list[np.ndarray], sr: int) -> list[Vector]:
        """:meth:`native` for several signals; extractors that batch override it."""
        return [self.native(s, sr) for s in signals]

    def lld_names(self) -> list[str]:
        """LLD column names, computed on a short synthetic signal (cheap for most extractors)."""
        return self.lld(_probe_signal(), 16000).names

    def native_names(self) -> list[str]:
        """Native functional column names."""
        return self.native(_probe_signal(), 16000).names


def _probe_signal() -> np.ndarray:
    t = np.arange(16000, dtype=np.float32) / 16000
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(16000)).astype(np.float32)


EXTRACTORS: Registry[type[Extractor]] = Registry("extractor")


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator registering an extractor under ``cls.name``."""
    EXTRACTORS.add(cls.name, cls)
    return cls


def make_extractor(name: str, **params: Any) -> Extractor:
    """Instantiate the extractor registered as ``name`` with ``params`` (checked by
    :meth:`Extractor.check_params`); :class:`~featurekit.extras.MissingExtraError` when its extra is
    not installed."""
    cls = EXTRACTORS.get(name)
    cls.require_extra()
    cls.check_params(params)
    return cls(**params)

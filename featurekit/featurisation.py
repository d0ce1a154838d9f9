"""The one featurisation: an extractor and its table kinds, applied to conditioned signals.

:func:`featurise` is what extraction (:mod:`featurekit.extraction`, rows for the store) and prediction
(:mod:`featurekit.deploy.features`, one window or file) both call, so a model's input at prediction
time is computed by the same code as the store row it was trained on:

* ``native``: the extractor's own functionals (``native_batch``);
* ``lld``: its frame-level low-level descriptors (``lld_batch``);
* an HSF functional name (``mean_std``, ``stats``, ...):
  :func:`~featurekit.extractors.functionals.apply_functional` of those frames (and the signal, for pause
  features).

Every signal's result is checked: an LLD output without frames, or NaN/inf values in any table, is an
:class:`~featurekit.audio.AudioError` naming the file, the table and the columns. A batch that fails is
retried signal by signal, so one bad file fails alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from featurekit.audio import AudioError
from featurekit.extractors.base import Extractor, Frames, Vector
from featurekit.extractors.functionals import apply_functional
from featurekit.featureset import TableKind

#: One table's output for one signal: a vector (``native`` and HSF kinds) or frames (``lld``).
TableOutput = Vector | Frames


def featurise(extractor: Extractor, kinds: Sequence[TableKind | str], signals: list[np.ndarray], sr: int, *,
              where: list[str]) -> list[dict[TableKind, TableOutput] | AudioError]:
    """The tables ``kinds`` of ``extractor`` for each of ``signals`` (already conditioned).

    Parameters
    ----------
    extractor
        An extractor instance.
    kinds
        Table kinds wanted from it (:class:`~featurekit.featureset.TableKind` or their names).
    signals
        Mono float32 signals at ``sr``.
    sr
        Their sample rate.
    where
        What to name in errors for each signal (its file path, or file and window).

    Returns
    -------
    list
        Per signal, ``{kind: Vector | Frames}``, or the :class:`~featurekit.audio.AudioError` that
        signal failed with (the others are unaffected).
    """
    kinds = [TableKind(k) for k in kinds]
    name = extractor.name
    natives = _batched(extractor.native_batch, signals, sr, where) if TableKind.NATIVE in kinds else None
    needs_lld = any(k.needs_lld for k in kinds)
    llds = _batched(extractor.lld_batch, signals, sr, where) if needs_lld else None
    out: list[dict[TableKind, TableOutput] | AudioError] = []
    for i, (signal, path) in enumerate(zip(signals, where)):
        try:
            tables: dict[TableKind, TableOutput] = {}
            frames = None
            if llds is not None:
                frames = _ok(llds[i])
                if len(frames.values) == 0:
                    raise AudioError(path, f"{name} produced no frames")
                check_finite(frames.values, frames.names, path, f"{name}.{TableKind.LLD.value}")
            for kind in kinds:
                if kind is TableKind.NATIVE:
                    v = _ok(natives[i])
                elif kind is TableKind.LLD:
                    v = frames
                else:
                    v = apply_functional(kind.value, frames, signal, sr, name)
                if kind is not TableKind.LLD:
                    check_finite(v.values, v.names, path, f"{name}.{kind.value}")
                tables[kind] = v
            out.append(tables)
        except AudioError as err:
            out.append(err)
        except Exception as err:  # an extractor failing on one file must not stop the batch
            out.append(AudioError(path, f"{name}: {type(err).__name__}: {err}"))
    return out


def _ok(result):
    if isinstance(result, Exception):
        raise result
    return result


def _batched(method, signals: list[np.ndarray], sr: int, paths: list[str]) -> list:
    """Call a batch method; if the batch fails, retry one by one so only the bad file fails."""
    try:
        return method(signals, sr)
    except Exception:
        out = []
        for s, p in zip(signals, paths):
            try:
                out.append(method([s], sr)[0])
            except Exception as err:
                out.append(
                    err if isinstance(err, AudioError) else AudioError(p, f"{type(err).__name__}: {err}")
                )
        return out


def check_finite(values: np.ndarray, names: list[str], path: str, table: str) -> None:
    """Raise an :class:`AudioError` naming ``path``, ``table`` and the columns when ``values`` (a vector
    or ``(frames, columns)``) holds NaN or infinite values."""
    values = np.asarray(values)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    width = values.shape[-1] if values.ndim else 1
    cols = np.flatnonzero(bad.reshape(-1, width).any(axis=0))
    kinds = [k for k, hit in (("NaN", np.isnan(values).any()), ("inf", np.isinf(values).any())) if hit]
    listed = ", ".join(names[j] for j in cols[:5]) + (" ..." if len(cols) > 5 else "")
    raise AudioError(path, f"{table}: non-finite feature values ({'/'.join(kinds)} in {len(cols)} of "
                           f"{width} columns: {listed}); nothing stored for it")

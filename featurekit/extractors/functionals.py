"""High-level statistical functionals (HSFs): frame-level LLDs -> one vector per utterance.

- ``mean_std`` (HSF1): mean and standard deviation of every LLD.
- ``mean_std_silence`` (HSF2): HSF1 plus pause/silence features of the signal. A frame (25 ms
  window, 10 ms hop) is *low-energy* when its RMS is below ``SILENCE_RATIO`` (0.3) times the
  utterance's mean frame RMS; a *pause* is a run of at least ``MIN_PAUSE_FRAMES`` (10, i.e.
  100 ms) low-energy frames. Features: proportion of low-energy frames, pauses per second,
  mean pause duration (s), proportion of time in pauses.
- ``stats``: min, max, mean, std, skewness, kurtosis, 1st/25th/50th/75th/99th percentiles,
  interquartile range, and the slope and intercept of a least-squares line over time.

Statistics ignore NaN frames (openSMILE marks unvoiced F0 as 0, not NaN; it is kept as it is). A
statistic that comes out NaN or infinite (all frames NaN, overflow) is returned as it is, never
replaced: :func:`featurekit.extraction.check_finite` then fails that file with the columns named
(extraction refuses non-finite LLDs before any functional sees them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from featurekit.extractors.base import Frames, Vector
from featurekit.featureset import TableKind
from featurekit.registry import Registry

SILENCE_RATIO = 0.3
MIN_PAUSE_FRAMES = 10
_WIN, _HOP = 0.025, 0.010

Functional = Callable[[Frames, np.ndarray, int, str], Vector]
FUNCTIONALS: Registry[Functional] = Registry("functional")


def _safe(x: np.ndarray) -> np.ndarray:
    # float64, nothing replaced: a non-finite statistic must reach the caller's check, not become 0
    return x.astype(np.float64)


def _named(stats: dict[str, np.ndarray], names: list[str]) -> Vector:
    # all statistics of one LLD sit together: (n_lld, n_stats) flattened row-major
    values = np.stack(list(stats.values()), axis=1).reshape(-1)
    order = [f"{n}_{s}" for n in names for s in stats]
    return Vector(values=values.astype(np.float32), names=order)


@FUNCTIONALS.register(TableKind.MEAN_STD.value)
def mean_std(frames: Frames, signal: np.ndarray, sr: int, prefix: str) -> Vector:
    """HSF1: per-LLD mean and standard deviation over frames."""
    x = frames.values.astype(np.float64)
    return _named({"mean": _safe(np.nanmean(x, axis=0)), "std": _safe(np.nanstd(x, axis=0))}, frames.names)


def silence_features(signal: np.ndarray, sr: int, prefix: str) -> Vector:
    """Pause features of ``signal`` (see module docstring for the definition and threshold)."""
    win, hop = int(_WIN * sr), int(_HOP * sr)
    if len(signal) < win:
        signal = np.pad(signal, (0, win - len(signal)))
    n = 1 + (len(signal) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(signal[idx].astype(np.float64) ** 2, axis=1))
    low = rms < SILENCE_RATIO * rms.mean()
    # run-lengths of low-energy stretches
    edges = np.diff(np.concatenate([[0], low.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs = ends - starts
    pauses = runs[runs >= MIN_PAUSE_FRAMES]
    duration = len(signal) / sr
    values = np.array(
        [
            low.mean(),
            len(pauses) / duration,
            (pauses.mean() * _HOP) if len(pauses) else 0.0,
            pauses.sum() * _HOP / duration,
        ],
        dtype=np.float32,
    )
    names = [
        f"{prefix}_silence_{s}"
        for s in ("low_energy_ratio", "pauses_per_s", "pause_mean_s", "pause_time_ratio")
    ]
    return Vector(values=values, names=names)


@FUNCTIONALS.register(TableKind.MEAN_STD_SILENCE.value)
def mean_std_silence(frames: Frames, signal: np.ndarray, sr: int, prefix: str) -> Vector:
    """HSF2: HSF1 plus the pause/silence features of :func:`silence_features`."""
    a, b = mean_std(frames, signal, sr, prefix), silence_features(signal, sr, prefix)
    return Vector(values=np.concatenate([a.values, b.values]), names=a.names + b.names)


@FUNCTIONALS.register(TableKind.STATS.value)
def stats(frames: Frames, signal: np.ndarray, sr: int, prefix: str) -> Vector:
    """Rich statistics: extremes, moments, percentiles, IQR, linear slope/intercept over time."""
    x = frames.values.astype(np.float64)
    x = np.where(np.isfinite(x), x, np.nan)
    mean = np.nanmean(x, axis=0)
    std = np.nanstd(x, axis=0)
    z = (x - mean) / np.where(std > 0, std, 1.0)
    p = np.nanpercentile(x, [1, 25, 50, 75, 99], axis=0)
    t = frames.times.astype(np.float64)
    tc = t - t.mean()
    denom = (tc**2).sum()
    xc = np.nan_to_num(x - mean)
    slope = (tc[:, None] * xc).sum(axis=0) / denom if denom > 0 else np.zeros(x.shape[1])
    out = {
        "min": np.nanmin(x, axis=0),
        "max": np.nanmax(x, axis=0),
        "mean": mean,
        "std": std,
        "skew": np.nanmean(z**3, axis=0),
        "kurtosis": np.nanmean(z**4, axis=0) - 3.0,
        "p01": p[0],
        "p25": p[1],
        "p50": p[2],
        "p75": p[3],
        "p99": p[4],
        "iqr": p[3] - p[1],
        "slope": slope,
        "intercept": mean - slope * t.mean(),
    }
    return _named({k: _safe(v) for k, v in out.items()}, frames.names)


def apply_functional(name: str, frames: Frames, signal: np.ndarray, sr: int, prefix: str) -> Vector:
    """Apply the registered functional ``name``."""
    return FUNCTIONALS.get(name)(frames, signal, sr, prefix)

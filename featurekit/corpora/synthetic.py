"""A small seeded synthetic corpus of voiced utterances, for the demo and for tests.

This is *synthetic* data: a glottal pulse train (with jitter, shimmer and a pitch contour)
through speaker-specific formant resonators, shaped into syllables. Speakers differ in base
pitch and formant frequencies; emotion classes differ in pitch level and range, energy and
speaking rate, which is what acoustic features are known to capture:

============  ===========  ============  ==========  =======================
class         pitch level  pitch range   energy      syllables per second
============  ===========  ============  ==========  =======================
neutral       x1.00        1 semitone    1.0         4.0
happy         x1.25        5 semitones   1.4         5.0
sad           x0.85        0.5 semitone  0.55        2.5
angry         x1.15        3 semitones   2.0         5.5
============  ===========  ============  ==========  =======================
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from featurekit.corpora.base import (
    CorpusLayoutError,
    absolute_path,
    finalize_manifest,
    register_corpus,
    require_dir,
)

SR = 16000
CLASSES = {
    "neutral": dict(pitch=1.00, range_st=1.0, energy=1.0, rate=4.0),
    "happy": dict(pitch=1.25, range_st=5.0, energy=1.4, rate=5.0),
    "sad": dict(pitch=0.85, range_st=0.5, energy=0.55, rate=2.5),
    "angry": dict(pitch=1.15, range_st=3.0, energy=2.0, rate=5.5),
}
MANIFEST_NAME = "synthetic.csv"


def _resonator(x: np.ndarray, freq: float, bw: float) -> np.ndarray:
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bw / SR)
    theta = 2 * np.pi * freq / SR
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1 - r], a, x)


def synth_utterance(
    *,
    rng: np.random.Generator,
    f0: float,
    formants: tuple[float, ...],
    pitch: float,
    range_st: float,
    energy: float,
    rate: float,
    duration: float,
) -> np.ndarray:
    """One voiced utterance (float32, 16 kHz); see the module docstring for the model."""
    n = int(duration * SR)
    t = np.arange(n) / SR
    contour = range_st * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 2 * np.pi))
    f_inst = f0 * pitch * 2 ** (contour / 12) * (1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(n))
    phase = np.cumsum(f_inst / SR)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
    pulses *= 1 + 0.05 * rng.standard_normal(n)  # shimmer
    source = np.convolve(pulses, np.hanning(24), mode="same")
    voiced = sum(_resonator(source, f, 60 + 0.08 * f) for f in formants)
    # syllables: raised-cosine bursts at the speaking rate, with short pauses between phrases
    syl = np.maximum(0, np.sin(np.pi * rate * t + rng.uniform(0, np.pi))) ** 1.5
    syl *= np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, np.pi)) > -0.8
    y = voiced * syl * energy + 0.003 * rng.standard_normal(n)
    y = y / (np.abs(y).max() + 1e-9) * min(0.9, 0.3 * energy)
    return y.astype(np.float32)


def make_synthetic_corpus(
    directory: str | os.PathLike,
    *,
    n_speakers: int = 6,
    n_per_class: int = 5,
    duration: float = 1.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Write a synthetic corpus (WAV files + ``synthetic.csv``) and return its manifest.

    Parameters
    ----------
    directory
        Where to write ``wav/`` and the manifest CSV.
    n_speakers
        Speakers, alternately "female" (higher pitch and formants) and "male".
    n_per_class
        Utterances per speaker and class.
    duration
        Seconds per utterance (+-20 %, seeded).
    seed
        Seed of everything random.
    """
    import soundfile as sf

    directory = Path(directory)
    (directory / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_speakers):
        female = s % 2 == 0
        f0 = rng.uniform(190, 230) if female else rng.uniform(100, 130)
        scale = 1.15 if female else 1.0
        formants = tuple(scale * f * rng.uniform(0.93, 1.07) for f in (700, 1220, 2600))
        spk = f"s{s:02d}"
        for label, cls in CLASSES.items():
            for k in range(n_per_class):
                uid = f"{spk}_{label}_{k:02d}"
                y = synth_utterance(
                    rng=rng, f0=f0, formants=formants, duration=duration * rng.uniform(0.8, 1.2), **cls
                )
                path = directory / "wav" / f"{uid}.wav"
                sf.write(path, y, SR, subtype="PCM_16")
                rows.append(
                    {
                        "id": uid,
                        "path": f"wav/{uid}.wav",
                        "speaker": spk,
                        "session": spk,
                        "label": label,
                        "gender": "f" if female else "m",
                    }
                )
    pd.DataFrame(rows).to_csv(directory / MANIFEST_NAME, index=False)
    return read_synthetic(directory)


@register_corpus(
    "synthetic", "featurekit's seeded synthetic demo corpus (synthetic.csv + wav/), NOT real speech"
)
def read_synthetic(root: str | os.PathLike) -> pd.DataFrame:
    """Read a corpus written by :func:`make_synthetic_corpus`."""
    root = require_dir(root, "synthetic", MANIFEST_NAME)
    df = pd.read_csv(root / MANIFEST_NAME, dtype=str)
    if "path" not in df:
        raise CorpusLayoutError(f"{root / MANIFEST_NAME}: no 'path' column")
    df["path"] = [absolute_path(root / p) for p in df["path"]]
    return finalize_manifest(df, corpus="synthetic", root=root)

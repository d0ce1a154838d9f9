"""Audio decoding: any file -> float32 mono at a target rate, with errors that name the file.

Decoding uses libsndfile (via ``soundfile``: WAV, FLAC, OGG/Vorbis/Opus and, with
libsndfile >= 1.1, MP3). Resampling uses soxr at its "VHQ" quality (the resampler librosa
uses by default). Multi-channel audio is down-mixed by averaging the channels.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SAMPLE_RATE = 16000
RESAMPLER = "soxr_vhq"
# One analysis frame of the longest-windowed extractor (ComParE uses 60 ms windows); clips
# shorter than this are zero-padded at the end, with a warning.
MIN_DURATION_S = 0.25


class AudioError(ValueError):
    """An audio file could not be turned into a usable signal.

    The message always starts with the file's path.
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ShortAudioWarning(UserWarning):
    """A clip was shorter than one analysis frame and was zero-padded."""


@dataclass(frozen=True)
class AudioOptions:
    """How a file is turned into the signal every extractor sees.

    Attributes
    ----------
    sample_rate
        Target rate in Hz; input at another rate is resampled with soxr (VHQ).
    trim_db
        If set, leading and trailing parts quieter than ``trim_db`` below the peak are cut
        (``librosa.effects.trim``). ``None`` keeps the signal as it is.
    duration
        If set, every signal is cropped (centre) or zero-padded (end) to this many seconds,
        as some published pipelines do. ``None`` keeps the natural length.
    """

    sample_rate: int = DEFAULT_SAMPLE_RATE
    trim_db: float | None = None
    duration: float | None = None

    def as_dict(self) -> dict:
        return {"sample_rate": self.sample_rate, "trim_db": self.trim_db, "duration": self.duration}


def file_fingerprint(path: str | os.PathLike) -> str:
    """Content hash of a file (BLAKE2b, 128 bit, hex). Names the file when it cannot be read."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except IsADirectoryError:
        raise AudioError(path, "is a directory, not an audio file") from None
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    return h.hexdigest()


def _decode(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(path, f"cannot decode audio ({err})") from None
    return data, int(sr)


def resample(signal: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a 1-D float signal with soxr (VHQ)."""
    if orig_sr == target_sr:
        return signal
    import soxr

    return soxr.resample(signal, orig_sr, target_sr, quality="VHQ").astype(np.float32)


def load_audio(
    path: str | os.PathLike,
    *,
    options: AudioOptions | None = None,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Read a file as float32 mono at ``options.sample_rate``.

    Parameters
    ----------
    path
        Audio file.
    options
        Target rate, trimming and fixed length (defaults: 16 kHz, no trim, natural length).
    start, end
        Optional segment in seconds (for corpora whose utterances are segments of a file).

    Returns
    -------
    numpy.ndarray
        1-D float32 signal.

    Raises
    ------
    AudioError
        Missing, empty, undecodable file; no samples; NaN/inf samples; all-zero signal.
    """
    options = options or AudioOptions()
    path = str(path)
    data, sr = _decode(path)
    if start is not None or end is not None:
        a = int(round((start or 0.0) * sr))
        b = len(data) if end is None else int(round(end * sr))
        if a >= len(data) or b <= a:
            raise AudioError(path, f"segment {start}-{end} s lies outside the file ({len(data) / sr:.3f} s)")
        data = data[a:b]
    if data.shape[0] == 0:
        raise AudioError(path, "no audio samples (header only or truncated)")
    if not np.all(np.isfinite(data)):
        raise AudioError(path, "contains NaN or infinite samples")
    signal = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    signal = resample(
        np.ascontiguousarray(signal, dtype=np.float32), orig_sr=sr, target_sr=options.sample_rate
    )
    if not np.any(signal):
        raise AudioError(path, "signal is all zeros (silent file)")
    if options.trim_db is not None:
        import librosa

        signal, _ = librosa.effects.trim(signal, top_db=options.trim_db)
    if options.duration is not None:
        signal = fix_length(signal, n=int(round(options.duration * options.sample_rate)))
    min_len = int(round(MIN_DURATION_S * options.sample_rate))
    if len(signal) < min_len:
        warnings.warn(
            f"{path}: {len(signal) / options.sample_rate:.3f} s is shorter than one analysis "
            f"frame; zero-padded to {MIN_DURATION_S} s",
            ShortAudioWarning,
            stacklevel=2,
        )
        signal = np.pad(signal, (0, min_len - len(signal)))
    return signal.astype(np.float32, copy=False)


def fix_length(signal: np.ndarray, *, n: int) -> np.ndarray:
    """Centre-crop or end-pad (zeros) ``signal`` to exactly ``n`` samples."""
    if len(signal) > n:
        a = (len(signal) - n) // 2
        return signal[a : a + n]
    return np.pad(signal, (0, n - len(signal)))


def audio_info(path: str | os.PathLike) -> tuple[float, int]:
    """(duration in seconds, sample rate) from the header, without decoding."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(path, f"cannot read audio header ({err})") from None
    return info.frames / info.samplerate, int(info.samplerate)


def as_path(path: str | os.PathLike) -> Path:
    return Path(path)

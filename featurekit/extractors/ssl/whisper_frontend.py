"""Whisper's log-mel front end in numpy (no torch), shared by both Whisper backends.

The computation follows OpenAI Whisper (``whisper.audio.log_mel_spectrogram``) and
``transformers.WhisperFeatureExtractor``: 16 kHz audio, 400-point periodic Hann window, hop 160,
centred frames (reflect padding), power spectrogram, Slaney mel filters, the last STFT frame
dropped, ``log10(max(x, 1e-10))``, dynamic range clamped to the maximum minus 8, then
``(x + 4) / 4``. Whisper models are trained on inputs zero-padded to 30 s (480000 samples, 3000
frames); :func:`log_mel` pads to any requested length the same way (zeros appended to the audio
before the spectrogram, so the padded frames are what Whisper saw in training).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_SAMPLES_30S = 30 * SAMPLE_RATE  # 480000 samples -> 3000 frames
ENCODER_HOP = 2 * HOP_LENGTH  # encoder frames are 20 ms (second conv has stride 2)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80) -> np.ndarray:
    """Slaney-style mel filter bank ``(n_mels, 201)`` as Whisper uses (``librosa.filters.mel``)."""
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels).astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    # periodic Hann, as torch.hann_window(400) and Whisper use
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float64)


def _power_spectrogram(signal: np.ndarray) -> np.ndarray:
    """``(201, n_frames)`` power spectrum of centred, reflect-padded frames (the last one kept)."""
    pad = N_FFT // 2
    x = np.asarray(signal, dtype=np.float64)
    if len(x) <= pad:  # reflect padding needs more samples than the pad width
        x = np.pad(x, (0, pad + 1 - len(x)))
    x = np.pad(x, (pad, pad), mode="reflect")
    n_frames = 1 + (len(x) - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP_LENGTH][:n_frames]
    spec = np.fft.rfft(frames * _window(), n=N_FFT, axis=1)
    return (spec.real ** 2 + spec.imag ** 2).T


def n_frames_for(n_samples: int) -> int:
    """Log-mel frames Whisper's front end yields for ``n_samples`` samples (last frame dropped)."""
    return n_samples // HOP_LENGTH


def encoder_frames_for(n_samples: int) -> int:
    """Encoder frames (20 ms each) that cover ``n_samples`` of audio: ``ceil(n / 320)``."""
    return max(1, -(-int(n_samples) // ENCODER_HOP))


def log_mel(signal: np.ndarray, *, n_mels: int = 80, n_samples: int | None = None) -> np.ndarray:
    """Whisper log-mel features of one 16 kHz mono signal.

    Parameters
    ----------
    signal
        1-D float signal at 16 kHz.
    n_mels
        Mel bands (80; 128 for large-v3).
    n_samples
        Zero-pad (or cut) the audio to this many samples first, e.g. :data:`N_SAMPLES_30S` for
        Whisper's 30 s input. ``None`` uses the signal as it is.

    Returns
    -------
    numpy.ndarray
        ``(n_mels, n_samples // 160)`` float32.
    """
    x = np.asarray(signal, dtype=np.float32)
    total = n_frames_for(len(x) if n_samples is None else n_samples)
    if n_samples is not None:
        # Frames past the audio plus one window see only zeros (their power is 0), so the STFT runs
        # on the audio and one window of zeros; the rest are filled with log10(1e-10) = -10.
        padded = min(n_samples, len(x) + 2 * N_FFT)
        x = x[:n_samples] if len(x) >= n_samples else np.pad(x, (0, padded - len(x)))
    power = _power_spectrogram(x)[:, :total]
    log_spec = np.full((n_mels, total), -10.0)
    mel = mel_filters(n_mels).astype(np.float64) @ power
    log_spec[:, :mel.shape[1]] = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def log_mel_batch(signals: list[np.ndarray], *, n_mels: int = 80, n_samples: int) -> np.ndarray:
    """:func:`log_mel` of several signals padded to the same ``n_samples``: ``(batch, n_mels, frames)``."""
    return np.stack([log_mel(s, n_mels=n_mels, n_samples=n_samples) for s in signals])


def parse_pad_to(pad_to: str | float | int | None) -> str | float:
    """``"30s"`` | ``"none"`` | seconds (float in (0, 30]); a clear error otherwise."""
    if pad_to is None:
        return "none"
    if isinstance(pad_to, str):
        text = pad_to.strip().lower()
        if text in ("none", "no", "off", "false"):
            return "none"
        if text in ("30s", "30"):
            return "30s"
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*s?", text)
        if not m:
            raise ValueError(f"pad_to must be '30s', 'none' or a number of seconds, got {pad_to!r}")
        pad_to = float(m.group(1))
    if isinstance(pad_to, bool) or not isinstance(pad_to, (int, float)):
        raise ValueError(f"pad_to must be '30s', 'none' or a number of seconds, got {pad_to!r}")
    if not 0 < float(pad_to) <= 30:
        raise ValueError(f"pad_to={pad_to!r}: a bucket length must lie in (0, 30] seconds")
    return "30s" if float(pad_to) == 30 else float(pad_to)


def padded_samples(n: int, *, pad_to: str | float | int | None, window: int) -> int:
    """Samples an input of ``n`` samples is zero-padded to before the front end.

    ``pad_to`` (see :func:`parse_pad_to`): ``"30s"`` pads to the model's whole ``window`` (480000
    samples for 30 s), ``"none"`` to a whole number of 20 ms encoder frames, a number of seconds
    ``b`` to the next multiple of ``b`` seconds; never beyond ``window``.
    """
    mode = parse_pad_to(pad_to)
    if mode == "30s":
        return window
    unit = ENCODER_HOP
    if mode != "none":
        unit = max(unit, int(round(float(mode) * SAMPLE_RATE / ENCODER_HOP)) * ENCODER_HOP)
    return min(window, -(-max(n, 1) // unit) * unit)

"""librosa extractors: MFCC (``mfcc``) and log-mel (``logmel``).

Frames: 25 ms Hann windows (``win_length`` 400 at 16 kHz) zero-padded to ``n_fft`` 512, 10 ms hop,
centred (frame ``i`` is centred at ``i * hop / sr`` seconds), mel filters from librosa (Slaney).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from annotated_types import Ge, Gt

from featurekit.extractors.base import Extractor, Frames, register_extractor


def _times(n: int, hop: int, sr: int) -> np.ndarray:
    return (np.arange(n) * hop / sr).astype(np.float64)


def _mel_kwargs(ext: Extractor) -> dict:
    """The mel filterbank / STFT parameters both spectral extractors pass to librosa."""
    return {k: getattr(ext, k) for k in ("n_mels", "n_fft", "win_length", "hop_length", "fmin", "fmax")}


@register_extractor
class MFCC(Extractor):
    """Mel-frequency cepstral coefficients (``librosa.feature.mfcc``), optional deltas."""

    name = "mfcc"
    version = "1"
    libraries = ("librosa", "numpy", "scipy")
    description = "librosa MFCC (40 coefficients, 25 ms / 10 ms), optional deltas"

    def __init__(
        self,
        *,
        n_mfcc: Annotated[int, Ge(1)] = 40,
        n_mels: Annotated[int, Ge(1)] = 128,
        n_fft: Annotated[int, Ge(1)] = 512,
        win_length: Annotated[int, Ge(1)] = 400,
        hop_length: Annotated[int, Ge(1)] = 160,
        fmin: Annotated[float, Ge(0)] = 0.0,
        fmax: Annotated[float, Gt(0)] | None = None,
        deltas: bool = False,
    ) -> None:
        self.n_mfcc = n_mfcc
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.fmin = fmin
        self.fmax = fmax
        self.deltas = deltas

    def lld(self, signal: np.ndarray, sr: int) -> Frames:
        import librosa

        m = librosa.feature.mfcc(
            y=signal,
            sr=sr,
            n_mfcc=self.n_mfcc,
            **_mel_kwargs(self),
        )
        names = [f"mfcc_{i:02d}" for i in range(self.n_mfcc)]
        if self.deltas:
            width = min(9, m.shape[1] if m.shape[1] % 2 else m.shape[1] - 1)
            d = librosa.feature.delta(m, width=max(width, 3), mode="nearest")
            m = np.vstack([m, d])
            names += [f"mfcc_d{i:02d}" for i in range(self.n_mfcc)]
        return Frames(
            values=m.T.astype(np.float32), times=_times(m.shape[1], self.hop_length, sr), names=names
        )


@register_extractor
class LogMel(Extractor):
    """Log mel power spectrogram in dB (``librosa.feature.melspectrogram`` + ``power_to_db``).

    ``power_to_db`` uses ``ref=1.0``, ``amin=1e-10`` and no ``top_db`` clipping, so values are
    absolute (comparable across utterances), not relative to each utterance's peak.
    """

    name = "logmel"
    version = "1"
    libraries = ("librosa", "numpy", "scipy")
    description = "librosa log-mel spectrogram (128 bands, dB, 25 ms / 10 ms)"

    def __init__(
        self,
        *,
        n_mels: Annotated[int, Ge(1)] = 128,
        n_fft: Annotated[int, Ge(1)] = 512,
        win_length: Annotated[int, Ge(1)] = 400,
        hop_length: Annotated[int, Ge(1)] = 160,
        fmin: Annotated[float, Ge(0)] = 0.0,
        fmax: Annotated[float, Gt(0)] | None = None,
    ) -> None:
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.fmin = fmin
        self.fmax = fmax

    def lld(self, signal: np.ndarray, sr: int) -> Frames:
        import librosa

        s = librosa.feature.melspectrogram(
            y=signal,
            sr=sr,
            **_mel_kwargs(self),
        )
        db = librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=None)
        names = [f"logmel_{i:03d}" for i in range(self.n_mels)]
        return Frames(
            values=db.T.astype(np.float32), times=_times(db.shape[1], self.hop_length, sr), names=names
        )

"""Sliding windows over recordings of any length, read in blocks (bounded memory).

:func:`iter_windows` decodes a file block by block with ``soundfile`` (never the whole file),
down-mixes to mono by averaging the channels, resamples to the model's rate with a streaming soxr
resampler (VHQ, the quality :func:`featurekit.audio.load_audio` uses; its output equals soxr's
one-shot resampling) and yields windows as soon as their last sample has been read. Only about one
window plus one block of samples is held at any time.

Window placement, in samples at the model's rate (``W`` window, ``H`` hop, ``N`` file length):
windows start at ``0, H, 2H, ...`` while they fit (``kH + W <= N``); if the last of those ends
before ``N``, one more window ``[N - W, N)`` is added, so the windows always cover the whole file
and the last one ends at the file's end (it overlaps its predecessor more than ``H``). A recording
shorter than the window gives a single window spanning the whole file, with a
:class:`ShortRecordingWarning`. ``hop`` must not exceed ``window`` (no gaps).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from featurekit.audio import AudioError

BLOCK_FRAMES = 1 << 16  # frames read per soundfile block (~4 s at 16 kHz)


class ShortRecordingWarning(UserWarning):
    """A recording was shorter than the window and was predicted as one window."""


@dataclass(frozen=True)
class Window:
    """One analysis window: position in seconds and its samples at the model's rate."""

    index: int
    start: float
    end: float
    signal: np.ndarray


def check_window(window: float | None, hop: float | None) -> tuple[float | None, float | None]:
    """Validate ``window``/``hop`` (seconds); ``hop`` defaults to ``window`` (adjacent windows)."""
    if window is None:
        if hop is not None:
            raise ValueError("hop is given without a window; pass a window length too")
        return None, None
    window = float(window)
    hop = window if hop is None else float(hop)
    if not np.isfinite(window) or window <= 0:
        raise ValueError(f"window must be a positive number of seconds, got {window}")
    if not np.isfinite(hop) or hop <= 0:
        raise ValueError(f"hop must be a positive number of seconds, got {hop}")
    if hop > window:
        raise ValueError(f"hop ({hop} s) is longer than the window ({window} s): windows would leave gaps; "
                         f"use hop <= window")
    return window, hop


def open_audio(path: str):
    """A ``soundfile.SoundFile`` for ``path``, or an :class:`AudioError` naming the problem."""
    import soundfile as sf

    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        return sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(path, f"cannot decode audio ({err})") from None


def iter_blocks(path: str | os.PathLike, sample_rate: int, *, block_frames: int = BLOCK_FRAMES
                ) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``path`` at ``sample_rate`` (decoded and resampled incrementally).

    Raises
    ------
    AudioError
        Missing, empty or undecodable file; NaN/inf samples; no samples at all.
    """
    import soundfile as sf

    path = str(path)
    f = open_audio(path)
    n_total = 0
    with f:
        sr_in = int(f.samplerate)
        resampler = None
        if sr_in != sample_rate:
            import soxr

            resampler = soxr.ResampleStream(sr_in, sample_rate, 1, dtype="float32", quality="VHQ")
        try:
            for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                if not np.all(np.isfinite(block)):
                    raise AudioError(path, "contains NaN or infinite samples")
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                n_total += len(mono)
                out = resampler.resample_chunk(np.ascontiguousarray(mono), last=False) if resampler else mono
                if len(out):
                    yield np.asarray(out, dtype=np.float32)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(path, f"cannot decode audio ({err})") from None
        if n_total == 0:
            raise AudioError(path, "no audio samples (header only or truncated)")
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(tail):
                yield np.asarray(tail, dtype=np.float32)


def iter_windows(path: str | os.PathLike, sample_rate: int, window: float, hop: float, *,
                 block_frames: int = BLOCK_FRAMES) -> Iterator[Window]:
    """Windows of ``path`` (see the module docstring for their placement), streamed.

    Parameters
    ----------
    path
        Audio file (anything libsndfile decodes).
    sample_rate
        The model's rate; other rates are resampled.
    window, hop
        Window length and hop in seconds (``hop <= window``).
    block_frames
        Frames decoded per read.

    Yields
    ------
    Window
        In order; ``start``/``end`` in seconds from the file's start.

    Raises
    ------
    AudioError
        The file cannot be decoded (possibly after some windows were yielded).
    """
    window, hop = check_window(window, hop)
    w = max(1, int(round(window * sample_rate)))
    h = max(1, int(round(hop * sample_rate)))
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute index (at sample_rate) of buf[0]
    next_start = 0
    last_end = 0
    k = 0
    for block in iter_blocks(path, sample_rate, block_frames=block_frames):
        buf = np.concatenate([buf, block]) if len(buf) else block
        buf_end = buf_start + len(buf)
        while next_start + w <= buf_end:
            a = next_start - buf_start
            yield Window(k, next_start / sample_rate, (next_start + w) / sample_rate, buf[a:a + w].copy())
            k += 1
            last_end = next_start + w
            next_start += h
        # keep what later windows need: from the next start, and the last w samples for a final window
        keep_from = max(buf_start, min(next_start, buf_end - w))
        buf = buf[keep_from - buf_start:]
        buf_start = keep_from
    n = buf_start + len(buf)
    if k == 0:
        warnings.warn(f"{path}: {n / sample_rate:.3f} s is shorter than the {window:g} s window; predicted "
                      f"as one window spanning the whole recording", ShortRecordingWarning, stacklevel=2)
        yield Window(0, 0.0, n / sample_rate, buf.copy())
    elif last_end < n:
        a = n - w - buf_start
        yield Window(k, (n - w) / sample_rate, n / sample_rate, buf[a:a + w].copy())

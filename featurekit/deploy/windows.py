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

Bounds: a window is at least :data:`MIN_WINDOW_S` (one analysis frame: shorter windows would be
zero-padded to it anyway), a hop at least :data:`MIN_HOP_S` (the extractors' 10 ms frame step), and
a file may not yield more than ``max_windows`` windows (default :data:`DEFAULT_MAX_WINDOWS`), which
is checked from the header before anything is decoded. The header's sample rate is checked as
:func:`featurekit.audio.check_header` does; the stream needs no cap on decoded samples (its memory
does not grow with the file).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from featurekit.audio import MIN_DURATION_S, AudioError, check_peak, open_sound

BLOCK_FRAMES = 1 << 16  # frames read per soundfile block (~4 s at 16 kHz)
#: Shortest window (s): one analysis frame of the longest-windowed extractor (see MIN_DURATION_S).
MIN_WINDOW_S = MIN_DURATION_S
#: Shortest hop (s): the extractors' frame step; finer hops only repeat the same frames.
MIN_HOP_S = 0.01
#: Default cap on windows per file (e.g. 13.9 h at a 1 s hop).
DEFAULT_MAX_WINDOWS = 50_000


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
    if window < MIN_WINDOW_S:
        raise ValueError(f"window ({window:g} s) is shorter than one analysis frame; use at least "
                         f"{MIN_WINDOW_S:g} s")
    if hop < MIN_HOP_S:
        raise ValueError(f"hop ({hop:g} s) is shorter than the extractors' {MIN_HOP_S:g} s frame step; "
                         f"use at least {MIN_HOP_S:g} s")
    if hop > window:
        raise ValueError(f"hop ({hop} s) is longer than the window ({window} s): windows would leave gaps; "
                         f"use hop <= window")
    return window, hop


def open_audio(path: str):
    """A ``soundfile.SoundFile`` for ``path`` (a regular file whose header's sample rate is in bounds),
    or an :class:`AudioError` naming the problem (see :func:`featurekit.audio.open_sound`)."""
    return open_sound(path)


def count_windows(n: int, w: int, h: int) -> int:
    """Windows of ``w`` samples every ``h`` over ``n`` samples (placement in the module docstring)."""
    if n <= w:
        return 1
    k = (n - w) // h + 1
    return k + (1 if (k - 1) * h + w < n else 0)


def iter_blocks(path: str | os.PathLike, sample_rate: int, *, block_frames: int = BLOCK_FRAMES,
                opened=None) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``path`` at ``sample_rate`` (decoded and resampled incrementally).

    ``opened``: the file already opened with :func:`open_audio` (it is closed here).

    Raises
    ------
    AudioError
        Missing, empty or undecodable file, or not a regular file; a sample rate out of bounds;
        NaN/inf samples or samples beyond +-:data:`featurekit.audio.MAX_PEAK`; no samples at all.
    """
    import soundfile as sf

    path = str(path)
    f = open_audio(path) if opened is None else opened
    n_total = 0
    with f:
        sr_in = int(f.samplerate)
        resampler = None
        if sr_in != sample_rate:
            import soxr

            resampler = soxr.ResampleStream(sr_in, sample_rate, 1, dtype="float32", quality="VHQ")
        try:
            for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                check_peak(path, block)
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
                 block_frames: int = BLOCK_FRAMES, max_windows: int = DEFAULT_MAX_WINDOWS
                 ) -> Iterator[Window]:
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
    max_windows
        Refuse (before decoding) a file that would yield more windows than this.

    Yields
    ------
    Window
        In order; ``start``/``end`` in seconds from the file's start.

    Raises
    ------
    AudioError
        The file cannot be decoded (possibly after some windows were yielded), or, before any
        window, its header is out of bounds or it would yield more than ``max_windows`` windows.
    """
    window, hop = check_window(window, hop)
    w = max(1, int(round(window * sample_rate)))
    h = max(1, int(round(hop * sample_rate)))
    path = str(path)
    f = open_audio(path)
    try:
        n_header = -(-int(f.frames) * sample_rate // int(f.samplerate))
        n_windows = count_windows(n_header, w, h)
        if n_windows > max_windows:
            raise AudioError(path, f"{int(f.frames) / f.samplerate:.1f} s in {window:g} s windows every "
                                   f"{hop:g} s would make {n_windows} windows, more than the cap of "
                                   f"{max_windows} per file; refused before decoding (use a longer hop, or "
                                   f"raise max_windows / --max-windows)")
    except BaseException:
        f.close()
        raise
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute index (at sample_rate) of buf[0]
    next_start = 0
    last_end = 0
    k = 0
    for block in iter_blocks(path, sample_rate, block_frames=block_frames, opened=f):
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

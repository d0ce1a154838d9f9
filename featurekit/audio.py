"""Audio decoding: any file -> float32 mono at a target rate, with errors that name the file.

Decoding uses libsndfile (via ``soundfile``: WAV, FLAC, OGG/Vorbis/Opus and, with
libsndfile >= 1.1, MP3). Resampling uses soxr at its "VHQ" quality (the resampler librosa
uses by default). Multi-channel audio is down-mixed by averaging the channels.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SAMPLE_RATE = 16000
RESAMPLER = "soxr_vhq"
# One analysis frame of the longest-windowed extractor (ComParE uses 60 ms windows); clips
# shorter than this are zero-padded at the end, with a warning.
MIN_DURATION_S = 0.25
#: Sample rates a header may declare (Hz); anything else is refused before decoding. 1 kHz is below
#: any speech recording (telephone speech is 8 kHz); 384 kHz is the highest rate of studio converters.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
#: Default cap on decoded samples (see :attr:`AudioOptions.max_samples`): 2**27 float32 samples are
#: 512 MiB, e.g. 2.3 h of 16 kHz mono or 23 min of 48 kHz stereo.
DEFAULT_MAX_SAMPLES = 2**27
#: Largest sample magnitude accepted (digital full scale is 1.0). Integer formats never exceed 1;
#: a float file beyond +-10 (20 dB over full scale) holds numbers that are not audio in any usual
#: scaling (e.g. int16 values stored as floats, or garbage), and the extractors' results on it are
#: meaningless (openSMILE loses F0 from about 100x full scale; librosa's spectra overflow float32).
MAX_PEAK = 10.0


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
    max_samples
        Cap on the samples a file may decode to, checked from its header before anything is
        decoded: both ``frames x channels`` at the file's rate and the length after resampling to
        ``sample_rate`` must stay within it (default :data:`DEFAULT_MAX_SAMPLES`). It decides
        only *whether* a file is decoded, never what its features are, so it is not part of the
        feature store's key (:meth:`as_dict`).
    """

    sample_rate: int = DEFAULT_SAMPLE_RATE
    trim_db: float | None = None
    duration: float | None = None
    max_samples: int = DEFAULT_MAX_SAMPLES

    def __post_init__(self) -> None:
        n = self.max_samples
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"max_samples must be a positive integer, got {self.max_samples!r}")

    def as_dict(self) -> dict:
        """What determines the signal's values (a feature-store key component)."""
        return {"sample_rate": self.sample_rate, "trim_db": self.trim_db, "duration": self.duration}


_FILE_TYPES = (
    (stat.S_ISDIR, "is a directory, not an audio file"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file; refused before reading"),
    (stat.S_ISCHR, "is a character device, not a regular file; refused before reading"),
    (stat.S_ISBLK, "is a block device, not a regular file; refused before reading"),
    (stat.S_ISSOCK, "is a socket, not a regular file; refused before reading"),
)


def _not_regular(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is refused (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    for test, problem in _FILE_TYPES:
        if test(mode):
            return problem
    return "is not a regular file; refused before reading"


def _open_problem(path: str, err: OSError) -> str:
    """The reason, in words, that ``path`` could not be opened (symlinks explained)."""
    if err.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if err.errno == errno.ENOENT:
        if os.path.islink(path):
            return f"dangling symlink (its target {os.readlink(path)!r} does not exist)"
        if os.path.lexists(path):  # a parent directory is a dangling link
            return "file not found (a directory on its path is a dangling symlink)"
        return "file not found"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.ENOTDIR:
        return "file not found (a component of the path is not a directory)"
    return f"cannot open ({err.strerror or err})"


def open_regular(path: str | os.PathLike) -> int:
    """Open ``path`` for reading and return the descriptor, if it is a regular file.

    Symlinks are followed (each file is resolved on its own); the file type is checked on the
    opened descriptor (``fstat``), so nothing can swap in a FIFO or a device between the check
    and the read. The open itself is non-blocking, so a FIFO never hangs the caller.

    Raises
    ------
    AudioError
        Naming ``path`` as given (not a link's target): missing, dangling or looping symlink,
        permission denied, directory, FIFO, device, socket.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise AudioError(path, _open_problem(path, err)) from None
    try:
        problem = _not_regular(os.fstat(fd).st_mode)
        if problem:
            raise AudioError(path, problem)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_fingerprint(path: str | os.PathLike) -> str:
    """Content hash of a file (BLAKE2b, 128 bit, hex). Names the file when it cannot be read."""
    h = hashlib.blake2b(digest_size=16)
    fd = open_regular(path)
    try:
        with os.fdopen(fd, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as err:
        raise AudioError(path, f"cannot read ({err.strerror or err})") from None
    return h.hexdigest()


def check_header(path: str, *, sample_rate: int, frames: int, channels: int,
                 target_rate: int | None = None, max_samples: int | None = None) -> None:
    """Refuse a header whose rate is outside [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`] or
    whose decoded size (``frames x channels``, and ``frames`` resampled to ``target_rate``) exceeds
    ``max_samples``; an :class:`AudioError` naming ``path`` and the numbers otherwise."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(path, f"header declares a sample rate of {sample_rate} Hz, outside the supported "
                               f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; refused before decoding")
    if max_samples is None:
        return
    decoded = frames * channels
    resampled = frames if target_rate is None else -(-frames * target_rate // sample_rate)
    if max(decoded, resampled) > max_samples:
        raise AudioError(
            path, f"header declares {frames} frames x {channels} channel(s) at {sample_rate} Hz "
                  f"({frames / sample_rate:.1f} s; {max(decoded, resampled)} samples decoded"
                  f"{'' if target_rate is None else f' or resampled to {target_rate} Hz'}), above the cap of "
                  f"{max_samples} samples; refused before decoding (raise AudioOptions.max_samples / "
                  f"--max-samples to allow it)")


def open_sound(path: str | os.PathLike, *, target_rate: int | None = None, max_samples: int | None = None):
    """A ``soundfile.SoundFile`` for a regular file whose header passed :func:`check_header`.

    ``max_samples=None`` checks the sample rate only (for block-wise streaming readers).

    Raises
    ------
    AudioError
        Not a regular file (see :func:`open_regular`), empty, undecodable, or a header out of bounds.
    """
    import soundfile as sf

    path = os.fspath(path)
    fd = open_regular(path)
    if os.fstat(fd).st_size == 0:
        os.close(fd)
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        f = sf.SoundFile(fd, closefd=True)  # owns fd from here on (libsndfile closes it on failure too)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        reason = str(err).replace(f"Error opening {fd!r}: ", "")  # soundfile names the descriptor
        raise AudioError(path, f"cannot decode audio ({reason})") from None
    try:
        check_header(path, sample_rate=int(f.samplerate), frames=int(f.frames), channels=int(f.channels),
                     target_rate=target_rate, max_samples=max_samples)
    except BaseException:
        f.close()
        raise
    return f


def check_peak(path: str, data: np.ndarray) -> None:
    """Refuse NaN/inf samples and samples beyond +-:data:`MAX_PEAK` (see there)."""
    if not np.all(np.isfinite(data)):
        raise AudioError(path, "contains NaN or infinite samples")
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if peak > MAX_PEAK:
        raise AudioError(path, f"samples reach {peak:.3g}, beyond +-{MAX_PEAK:g} (digital full scale is "
                               f"1.0): float samples not scaled as audio")


def _decode(path: str, options: AudioOptions) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with open_sound(path, target_rate=options.sample_rate, max_samples=options.max_samples) as f:
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
            raise AudioError(path, f"cannot decode audio ({err})") from None
        return data, int(f.samplerate)


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
        Missing, empty, undecodable or not a regular file (FIFO, device, directory; dangling or
        looping symlink); a header out of bounds (sample rate outside
        :data:`MIN_SAMPLE_RATE`..:data:`MAX_SAMPLE_RATE`, more than ``options.max_samples``
        samples), checked before decoding; no samples; NaN/inf samples or samples beyond
        +-:data:`MAX_PEAK`; all-zero signal.
    """
    options = options or AudioOptions()
    path = str(path)
    data, sr = _decode(path, options)
    if start is not None or end is not None:
        a = int(round((start or 0.0) * sr))
        b = len(data) if end is None else int(round(end * sr))
        if a >= len(data) or b <= a:
            raise AudioError(path, f"segment {start}-{end} s lies outside the file ({len(data) / sr:.3f} s)")
        data = data[a:b]
    if data.shape[0] == 0:
        raise AudioError(path, "no audio samples (header only or truncated)")
    check_peak(path, data)
    signal = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    signal = resample(
        np.ascontiguousarray(signal, dtype=np.float32), orig_sr=sr, target_sr=options.sample_rate
    )
    if not np.any(signal):
        raise AudioError(path, "signal is all zeros (silent file)")
    return condition(signal, options=options, where=path, warn_short=True)


def condition(signal: np.ndarray, *, options: AudioOptions, where: str,
              warn_short: bool = True) -> np.ndarray:
    """Condition a decoded mono signal at ``options.sample_rate`` as every path of featurekit does.

    Silence trimming (``trim_db``), fixed duration (``duration``: centre-crop or end-pad), then zero
    padding of a signal shorter than one analysis frame (``MIN_DURATION_S``; with ``warn_short`` a
    :class:`ShortAudioWarning` naming ``where``). Used by :func:`load_audio` (extraction, evaluation,
    whole-file prediction) and by windowed prediction (:mod:`featurekit.deploy.features`).

    Returns
    -------
    numpy.ndarray
        Contiguous float32 samples.
    """
    if options.trim_db is not None:
        import librosa

        signal, _ = librosa.effects.trim(signal, top_db=options.trim_db)
    if options.duration is not None:
        signal = fix_length(signal, n=int(round(options.duration * options.sample_rate)))
    min_len = int(round(MIN_DURATION_S * options.sample_rate))
    if len(signal) < min_len:
        if warn_short:
            warnings.warn(
                f"{where}: {len(signal) / options.sample_rate:.3f} s is shorter than one analysis "
                f"frame; zero-padded to {MIN_DURATION_S} s",
                ShortAudioWarning,
                stacklevel=3,
            )
        signal = np.pad(signal, (0, min_len - len(signal)))
    return np.ascontiguousarray(signal, dtype=np.float32)


def fix_length(signal: np.ndarray, *, n: int) -> np.ndarray:
    """Centre-crop or end-pad (zeros) ``signal`` to exactly ``n`` samples."""
    if len(signal) > n:
        a = (len(signal) - n) // 2
        return signal[a : a + n]
    return np.pad(signal, (0, n - len(signal)))


def audio_info(path: str | os.PathLike) -> tuple[float, int]:
    """(duration in seconds, sample rate) from the header, without decoding (rate bounds checked)."""
    with open_sound(path) as f:
        return f.frames / f.samplerate, int(f.samplerate)


def as_path(path: str | os.PathLike) -> Path:
    return Path(path)

"""Audio decoding and the bad inputs of the extraction issue: each gets a clear error naming the file,
or a documented deterministic handling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from featurekit.audio import AudioError, AudioOptions, ShortAudioWarning, fix_length, load_audio

SR = 16000


def tone(seconds: float = 0.5, sr: int = SR, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        load_audio(p)


def test_zero_length_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: file is empty"):
        load_audio(p)


def test_non_audio_bytes(tmp_path):
    p = tmp_path / "text.wav"
    p.write_text("this is not audio at all\n" * 20)
    with pytest.raises(AudioError, match=r"text\.wav: cannot decode audio"):
        load_audio(p)


def test_truncated_header(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(), SR)
    p = tmp_path / "trunc.wav"
    p.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioError, match=r"trunc\.wav: "):
        load_audio(p)


def test_all_zero_signal(tmp_path):
    p = tmp_path / "silent.wav"
    sf.write(p, np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match=r"silent\.wav: signal is all zeros"):
        load_audio(p)


def test_short_clip_padded_with_warning(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(p, tone(0.01), SR)  # 10 ms: shorter than one analysis frame
    with pytest.warns(ShortAudioWarning, match=r"short\.wav"):
        y = load_audio(p)
    assert len(y) == int(0.25 * SR)
    assert np.allclose(y[:160], tone(0.01), atol=1e-4) and not y[200:].any()


def test_nan_in_float_wav(tmp_path):
    p = tmp_path / "nan.wav"
    y = tone()
    y[100] = np.nan
    sf.write(p, y, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: contains NaN"):
        load_audio(p)


def test_stereo_is_averaged(tmp_path):
    p = tmp_path / "stereo.wav"
    left, right = tone(freq=220), tone(freq=330)
    sf.write(p, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    y = load_audio(p)
    assert y.ndim == 1 and np.allclose(y, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("sr", [8000, 48000])
def test_other_rates_resampled(tmp_path, sr):
    p = tmp_path / f"rate{sr}.wav"
    sf.write(p, tone(1.0, sr=sr, freq=440), sr, subtype="FLOAT")
    y = load_audio(p)
    assert len(y) == SR
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * SR / len(y) - 440) < 2  # the tone survives resampling


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_flac_and_ogg(tmp_path, fmt):
    p = tmp_path / f"x.{fmt.lower()}"
    sf.write(p, tone(), SR, format=fmt)
    assert abs(len(load_audio(p)) - len(tone())) < 10


def test_fixed_length_and_trim(tmp_path):
    p = tmp_path / "x.wav"
    y = np.concatenate([np.zeros(SR, np.float32), tone(1.0), np.zeros(SR, np.float32)])
    sf.write(p, y, SR, subtype="FLOAT")
    assert len(load_audio(p, options=AudioOptions(duration=2.0))) == 2 * SR
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trimmed = load_audio(p, options=AudioOptions(trim_db=40))
    assert 0.9 * SR < len(trimmed) < 1.2 * SR
    assert np.array_equal(fix_length(np.arange(10.0), n=4), np.arange(3.0, 7.0))

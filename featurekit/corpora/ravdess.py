"""RAVDESS (Livingstone & Russo, 2018): ``Actor_01`` .. ``Actor_24`` folders of coded WAV files.

Every file name has seven two-digit fields, ``MM-VV-EE-II-SS-RR-AA.wav``: modality, vocal channel,
emotion, intensity, statement, repetition and actor (odd actors are male, even ones female).
Only the ``.wav`` files (audio) are read; the video releases (``.mp4``) are ignored.

Accepted layouts: the ``Actor_XX`` folders directly under the root (as the audio-only zips
``Audio_Speech_Actors_01-24.zip`` / ``Audio_Song_Actors_01-24.zip`` unpack), or one level down
(e.g. ``root/Audio_Speech_Actors_01-24/Actor_01``), with the files anywhere inside ``Actor_XX``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from featurekit.corpora.base import (
    CorpusLayoutError,
    absolute_path,
    finalize_manifest,
    register_corpus,
    require_dir,
)

MODALITIES = {"01": "full-AV", "02": "video-only", "03": "audio-only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
            "07": "disgust", "08": "surprised"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
REPETITIONS = {"01": 1, "02": 2}
VOCAL_CHANNEL_OPTIONS = ("speech", "song", "all")
NAME_PATTERN = "MM-VV-EE-II-SS-RR-AA.wav"


def find_actor_dirs(root: Path) -> list[Path]:
    """``Actor_XX`` folders directly under ``root`` or one level below it, sorted."""
    found = [d for pattern in ("Actor_*", "*/Actor_*") for d in root.glob(pattern) if d.is_dir()]
    return sorted(found)


def parse_file_name(path: Path) -> dict:
    """Decode the seven fields of a RAVDESS file name into manifest columns.

    Raises
    ------
    CorpusLayoutError
        When the name does not follow ``MM-VV-EE-II-SS-RR-AA.wav`` or a code is unknown.
    """
    fields = path.stem.split("-")
    if len(fields) != 7 or not all(len(f) == 2 and f.isdigit() for f in fields):
        raise CorpusLayoutError(f"{path}: not a RAVDESS file name ({NAME_PATTERN})")
    modality, channel, emotion, intensity, statement, repetition, actor = fields
    tables = ((modality, MODALITIES, "modality"), (channel, VOCAL_CHANNELS, "vocal channel"),
              (emotion, EMOTIONS, "emotion"), (intensity, INTENSITIES, "intensity"),
              (statement, STATEMENTS, "statement"), (repetition, REPETITIONS, "repetition"))
    for code, table, what in tables:
        if code not in table:
            raise CorpusLayoutError(f"{path}: unknown RAVDESS {what} code {code!r}")
    if not 1 <= int(actor) <= 24:
        raise CorpusLayoutError(f"{path}: RAVDESS actor {actor!r} is outside 01..24")
    return {"id": path.stem, "path": absolute_path(path), "speaker": actor, "session": actor,
            "label": EMOTIONS[emotion], "gender": "m" if int(actor) % 2 else "f",
            "intensity": INTENSITIES[intensity], "statement": statement,
            "repetition": REPETITIONS[repetition], "transcript": STATEMENTS[statement],
            "modality": MODALITIES[modality], "vocal_channel": VOCAL_CHANNELS[channel]}


def collect_rows(actor_dirs: list[Path]) -> list[dict]:
    """Parse every ``.wav`` under ``actor_dirs``; a file found twice is a layout error."""
    rows: dict[str, dict] = {}
    for actor_dir in actor_dirs:
        for wav in sorted(actor_dir.rglob("*.wav")):
            if wav.name.startswith("."):  # macOS resource forks (._03-01-...wav)
                continue
            row = parse_file_name(wav)
            if row["id"] in rows:
                raise CorpusLayoutError(f"{wav}: duplicate of {rows[row['id']]['path']}")
            rows[row["id"]] = row
    return list(rows.values())


@register_corpus("ravdess", "RAVDESS: Actor_XX/MM-VV-EE-II-SS-RR-AA.wav (speech and/or song)")
def read_ravdess(root: str | os.PathLike, *, vocal_channel: str = "speech") -> pd.DataFrame:
    """Read the RAVDESS audio files under ``root``.

    Parameters
    ----------
    root
        Folder holding ``Actor_01`` .. ``Actor_24`` (or folders that hold them).
    vocal_channel
        ``"speech"`` (default), ``"song"`` or ``"all"``.

    Returns
    -------
    pandas.DataFrame
        The manifest; ``speaker`` and ``session`` are the two-digit actor (``"01"``), ``label``
        the emotion name, ``transcript`` the statement text; extras ``intensity``
        (``normal``/``strong``), ``statement`` (``"01"``/``"02"``), ``repetition`` (1/2),
        ``modality`` and ``vocal_channel``.
    """
    if vocal_channel not in VOCAL_CHANNEL_OPTIONS:
        raise ValueError(f"vocal_channel must be one of {', '.join(VOCAL_CHANNEL_OPTIONS)}, "
                         f"not {vocal_channel!r}")
    root = require_dir(root, "ravdess")
    actor_dirs = find_actor_dirs(root)
    if not actor_dirs:
        raise CorpusLayoutError(f"{root}: not a ravdess corpus: no Actor_XX folders (Actor_01 .. Actor_24)")
    rows = collect_rows(actor_dirs)
    if not rows:
        raise CorpusLayoutError(f"{root}: the Actor_XX folders hold no .wav files (video-only release?)")
    if vocal_channel != "all":
        kept = [r for r in rows if r["vocal_channel"] == vocal_channel]
        if not kept:
            raise CorpusLayoutError(f"{root}: none of the {len(rows)} RAVDESS files is {vocal_channel} "
                                    f"(vocal_channel={vocal_channel!r}); try vocal_channel='all'")
        rows = kept
    return finalize_manifest(rows, corpus="ravdess", root=root)

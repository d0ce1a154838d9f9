"""CREMA-D (Cao et al., 2014): ``AudioWAV/ActorID_Sentence_Emotion_Level.wav``.

The GitHub release also has ``VideoDemographics.csv`` at its root (``ActorID,Age,Sex,Race,
Ethnicity``), the only source of the speakers' gender; without it the manifest has no
``gender`` column.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pandas as pd

from featurekit.corpora.base import (
    CorpusLayoutError,
    absolute_path,
    finalize_manifest,
    register_corpus,
    require_dir,
)

EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
SEXES = {"male": "m", "female": "f"}
DEMOGRAPHICS = "VideoDemographics.csv"
AUDIO_DIR = "AudioWAV"
FILE_NAME = re.compile(r"^(\d+)_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def parse_file_name(path: Path) -> dict:
    """Decode ``ActorID_Sentence_Emotion_Level.wav`` into manifest columns.

    Raises
    ------
    CorpusLayoutError
        When the name does not have that form or a code is unknown.
    """
    match = FILE_NAME.match(path.stem)
    if not match:
        raise CorpusLayoutError(f"{path}: not a CREMA-D file name (ActorID_Sentence_Emotion_Level.wav)")
    actor, sentence, emotion, level = match.groups()
    for code, table, what in ((sentence, SENTENCES, "sentence"), (emotion, EMOTIONS, "emotion"),
                              (level, LEVELS, "level")):
        if code not in table:
            raise CorpusLayoutError(f"{path}: unknown CREMA-D {what} code {code!r}")
    return {"id": path.stem, "path": absolute_path(path), "speaker": actor, "session": actor,
            "label": EMOTIONS[emotion], "transcript": SENTENCES[sentence], "sentence": sentence,
            "level": level, "intensity": LEVELS[level]}


def read_demographics(path: str | os.PathLike) -> pd.DataFrame:
    """Parse ``VideoDemographics.csv`` into a frame indexed by actor id (a string).

    Columns ``gender`` (``"f"``/``"m"``) and, when present, ``age``, ``race``, ``ethnicity``.
    """
    demo = pd.read_csv(path, dtype=str, skipinitialspace=True)
    missing = [c for c in ("ActorID", "Sex") if c not in demo.columns]
    if missing:
        raise CorpusLayoutError(f"{path}: missing column(s) {', '.join(missing)} "
                                f"(has {', '.join(map(str, demo.columns))})")
    sex = demo["Sex"].str.strip().str.lower()
    unknown = sorted(set(sex.dropna()) - set(SEXES))
    if unknown or sex.isna().any():
        raise CorpusLayoutError(f"{path}: Sex must be Male or Female, found {unknown or ['(empty)']}")
    out = pd.DataFrame({"gender": sex.map(SEXES).to_numpy()}, index=demo["ActorID"].str.strip().to_numpy())
    if "Age" in demo.columns:
        out["age"] = pd.to_numeric(demo["Age"], errors="coerce").to_numpy()
    for col in ("Race", "Ethnicity"):
        if col in demo.columns:
            out[col.lower()] = demo[col].str.strip().to_numpy()
    return out


def add_demographics(rows: list[dict], demo: pd.DataFrame, source: Path) -> None:
    """Copy each actor's demographics into ``rows`` (in place); warn about unlisted actors."""
    records = demo.to_dict("index")
    unlisted = sorted({r["speaker"] for r in rows} - set(records))
    if unlisted:
        warnings.warn(f"{source}: no demographics for actor(s) {', '.join(unlisted)}; their gender is left "
                      "empty", stacklevel=3)
    empty = dict.fromkeys(demo.columns)
    for row in rows:
        row.update(records.get(row["speaker"], empty))


@register_corpus("cremad", "CREMA-D: AudioWAV/ActorID_Sentence_Emotion_Level.wav (+ VideoDemographics.csv)")
def read_cremad(root: str | os.PathLike) -> pd.DataFrame:
    """Read CREMA-D at ``root`` (holding ``AudioWAV/`` and optionally ``VideoDemographics.csv``).

    Returns
    -------
    pandas.DataFrame
        The manifest; ``speaker`` and ``session`` are the actor id (``"1001"``), ``label`` one of
        anger, disgust, fear, happy, neutral, sad, ``transcript`` the sentence text; extras
        ``sentence`` (code), ``level`` (LO/MD/HI/XX) and ``intensity`` (its name), and from the
        demographics ``gender``, ``age``, ``race``, ``ethnicity``.
    """
    root = require_dir(root, "cremad", AUDIO_DIR)
    rows = [parse_file_name(wav) for wav in sorted((root / AUDIO_DIR).glob("*.wav"))
            if not wav.name.startswith(".")]
    if not rows:
        raise CorpusLayoutError(f"{root / AUDIO_DIR}: no .wav files "
                                "(expected ActorID_Sentence_Emotion_Level.wav)")
    demo_path = root / DEMOGRAPHICS
    if demo_path.exists():
        add_demographics(rows, read_demographics(demo_path), demo_path)
    return finalize_manifest(rows, corpus="cremad", root=root)

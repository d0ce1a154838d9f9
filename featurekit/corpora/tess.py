"""Toronto emotional speech set (TESS; Dupuis & Pichora-Fuller, 2010).

Two actresses, an older (``OAF``) and a younger (``YAF``) one, say "Say the word ___" for 200
target words in 7 emotions. Files are named ``{speaker}_{word}_{emotion}.wav`` (``OAF_back_angry.wav``)
and usually sit in per-speaker-and-emotion folders (``OAF_angry/``, ``YAF_pleasant_surprised/``);
some releases put them all in one folder. The whole tree under the root is searched.

Some copies (the Kaggle one) hold the set twice in nested folders; a file whose name was already
seen is skipped, with a warning, when it has the same size, and is a layout error otherwise.
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

EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
            "ps": "surprise", "pleasant_surprise": "surprise", "pleasant_surprised": "surprise", "sad": "sad"}
SPEAKERS = ("OAF", "YAF")
FILE_NAME = re.compile(r"^(OAF|YAF)_([^_]+)_(.+)$", re.IGNORECASE)


def parse_file_name(path: Path) -> dict:
    """Decode ``{speaker}_{word}_{emotion}.wav`` into manifest columns.

    Raises
    ------
    CorpusLayoutError
        When the name does not have that form or the emotion is unknown.
    """
    match = FILE_NAME.match(path.stem)
    emotion = match.group(3).lower() if match else None
    if emotion not in EMOTIONS:
        raise CorpusLayoutError(f"{path}: not a TESS file name ({{OAF|YAF}}_{{word}}_{{emotion}}.wav with "
                                f"emotion one of {', '.join(EMOTIONS)})")
    speaker, word = match.group(1).upper(), match.group(2).lower()
    return {"id": path.stem, "path": absolute_path(path), "speaker": speaker, "session": speaker,
            "label": EMOTIONS[emotion], "gender": "f", "transcript": f"Say the word {word}", "word": word}


def collect_rows(root: Path) -> list[dict]:
    """Parse every ``.wav`` under ``root``; same-name copies of the same size are skipped."""
    rows: dict[str, dict] = {}
    skipped = []
    for wav in sorted(root.rglob("*.wav")):
        if wav.name.startswith("."):  # macOS resource forks
            continue
        row = parse_file_name(wav)
        first = rows.get(row["id"])
        if first is None:
            rows[row["id"]] = row
        elif Path(first["path"]).stat().st_size == wav.stat().st_size:
            skipped.append(wav)
        else:
            raise CorpusLayoutError(f"{wav}: same name as {first['path']} but different content")
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} duplicate TESS file(s) (same name and size as one "
                      f"already read), e.g. {skipped[0]}", stacklevel=3)
    return list(rows.values())


@register_corpus("tess", "TESS: {OAF|YAF}_{word}_{emotion}.wav, in emotion folders or flat")
def read_tess(root: str | os.PathLike) -> pd.DataFrame:
    """Read TESS from anywhere under ``root``.

    Returns
    -------
    pandas.DataFrame
        The manifest; ``speaker`` and ``session`` are ``OAF``/``YAF``, ``gender`` is ``"f"``,
        ``label`` one of angry, disgust, fear, happy, neutral, surprise (``ps``, pleasant
        surprise), sad; ``transcript`` is "Say the word {word}" and ``word`` an extra.
    """
    root = require_dir(root, "tess")
    rows = collect_rows(root)
    if not rows:
        raise CorpusLayoutError(f"{root}: not a tess corpus: no .wav files found (expected OAF_*/YAF_* "
                                "folders of {speaker}_{word}_{emotion}.wav)")
    return finalize_manifest(rows, corpus="tess", root=root)

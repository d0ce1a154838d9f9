"""Surrey Audio-Visual Expressed Emotion (SAVEE; Haq & Jackson, 2009): four male speakers.

Accepted layouts, tried in this order:

* the original release: ``AudioData/{DC,JE,JK,KL}/a01.wav`` ...;
* the flat Kaggle release: ``ALL/DC_a01.wav`` ...;
* ``root`` being the ``AudioData`` folder itself (``root/DC/a01.wav``) or the ``ALL`` folder
  (``root/DC_a01.wav``).

The file stem's letters give the emotion (``a`` anger, ``d`` disgust, ``f`` fear, ``h`` happiness,
``n`` neutral, ``sa`` sadness, ``su`` surprise), its two digits the sentence number within that
emotion. Ids are ``{speaker}_{code}`` (``DC_a01``) in every layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from featurekit.corpora.base import (
    CorpusLayoutError,
    absolute_path,
    finalize_manifest,
    register_corpus,
    require_dir,
)

SPEAKERS = ("DC", "JE", "JK", "KL")
EMOTIONS = {"a": "anger", "d": "disgust", "f": "fear", "h": "happiness", "n": "neutral", "sa": "sadness",
            "su": "surprise"}
CODE = re.compile(r"^(sa|su|a|d|f|h|n)(\d{2})$")


def make_row(path: Path, speaker: str, code: str) -> dict:
    """One manifest row for speaker ``speaker``'s file ``path`` with emotion code ``code`` (``a01``).

    Raises
    ------
    CorpusLayoutError
        When ``speaker`` or ``code`` is not a SAVEE one.
    """
    match = CODE.match(code)
    if speaker not in SPEAKERS or not match:
        raise CorpusLayoutError(f"{path}: not a SAVEE file (speaker one of {', '.join(SPEAKERS)}, name like "
                                "a01.wav, sa07.wav, su15.wav)")
    return {"id": f"{speaker}_{code}", "path": absolute_path(path), "speaker": speaker, "session": speaker,
            "label": EMOTIONS[match.group(1)], "gender": "m", "sentence": int(match.group(2))}


def nested_rows(folder: Path) -> list[dict]:
    """Rows for ``folder/{speaker}/{code}.wav``."""
    return [make_row(wav, spk, wav.stem) for spk in SPEAKERS for wav in sorted((folder / spk).glob("*.wav"))
            if not wav.name.startswith(".")]


def flat_rows(folder: Path) -> list[dict]:
    """Rows for ``folder/{speaker}_{code}.wav``."""
    rows = []
    for wav in sorted(folder.glob("*.wav")):
        if wav.name.startswith("."):
            continue
        speaker, _, code = wav.stem.partition("_")
        rows.append(make_row(wav, speaker, code))
    return rows


def find_rows(root: Path) -> list[dict]:
    """Rows from the first layout (see module docstring) that ``root`` has."""
    if (root / "AudioData").is_dir():
        return nested_rows(root / "AudioData")
    if (root / "ALL").is_dir():
        return flat_rows(root / "ALL")
    if any((root / spk).is_dir() for spk in SPEAKERS):
        return nested_rows(root)
    if any(root.glob("*.wav")):
        return flat_rows(root)
    raise CorpusLayoutError(f"{root}: not a savee corpus: missing 'AudioData' (AudioData/DC/a01.wav ...) "
                            "and 'ALL' (ALL/DC_a01.wav ...)")


@register_corpus("savee", "SAVEE: AudioData/{DC,JE,JK,KL}/a01.wav or flat ALL/DC_a01.wav")
def read_savee(root: str | os.PathLike) -> pd.DataFrame:
    """Read SAVEE at ``root`` (see the module docstring for the layouts).

    Returns
    -------
    pandas.DataFrame
        The manifest; ``speaker`` and ``session`` are DC/JE/JK/KL, ``gender`` is ``"m"``, ``label``
        one of anger, disgust, fear, happiness, neutral, sadness, surprise; extra ``sentence`` is
        the sentence number within the emotion (1..30 for neutral, 1..15 otherwise).
    """
    root = require_dir(root, "savee")
    rows = find_rows(root)
    if not rows:
        raise CorpusLayoutError(f"{root}: the SAVEE audio folders hold no .wav files")
    return finalize_manifest(rows, corpus="savee", root=root)

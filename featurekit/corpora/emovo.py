"""EMOVO (Costantini et al., LREC 2014): Italian emotional speech, one folder per actor.

Layout: ``SPEAKER/EMO-SPEAKER-SENTENCE.ext``, e.g. ``f1/dis-f1-b1.flac``. Six actors (``f1``-``f3``
female, ``m1``-``m3`` male), fourteen sentences (``b1``-``b3`` short, ``l1``-``l4`` long,
``n1``-``n5`` nonsense, ``d1``-``d2`` questions), seven emotions: 588 utterances, 84 per emotion.
Audio may be FLAC (the 16 kHz mono conversion beside this project) or WAV (the original release);
folders under the root that are not named like an actor (e.g. a ``documents`` folder) are ignored.

Label names are English. Where an emotion is also in Emo-DB the Emo-DB adapter's name is used, so
the two corpora share a label set for cross-corpus work: ``gio`` (*gioia*, joy) is ``"happiness"``
as Emo-DB's ``F`` (*Freude*) is; ``sor`` (*sorpresa*), absent from Emo-DB, is ``"surprise"``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from featurekit.corpora.base import CorpusLayoutError, finalize_manifest, register_corpus, require_dir

EMOTIONS = {
    "dis": "disgust",    # disgusto
    "gio": "happiness",  # gioia (joy): Emo-DB's name for the same emotion (Freude)
    "neu": "neutral",
    "pau": "fear",       # paura
    "rab": "anger",      # rabbia
    "sor": "surprise",   # sorpresa
    "tri": "sadness",    # tristezza
}
SENTENCE_TYPES = {"b": "short", "l": "long", "n": "nonsense", "d": "question"}
AUDIO_SUFFIXES = (".flac", ".wav")
NAME_PATTERN = "EMO-SPEAKER-SENTENCE (e.g. dis-f1-b1.flac)"
SPEAKER_DIR = re.compile(r"[fm]\d+")
FILE_NAME = re.compile(r"(?P<emotion>[a-z]{3})-(?P<speaker>[fm]\d+)-(?P<sentence>(?P<type>[a-z])\d+)")


def parse_file_name(path: Path) -> dict:
    """Decode ``EMO-SPEAKER-SENTENCE`` into manifest columns.

    Parameters
    ----------
    path
        An audio file inside its speaker folder.

    Raises
    ------
    CorpusLayoutError
        When the name does not parse, the emotion or sentence-type code is unknown, or the speaker
        in the name is not the folder's.
    """
    match = FILE_NAME.fullmatch(path.stem)
    if match is None:
        raise CorpusLayoutError(f"{path}: not an EMOVO file name ({NAME_PATTERN})")
    emotion, speaker, sentence, kind = match.group("emotion", "speaker", "sentence", "type")
    if emotion not in EMOTIONS:
        raise CorpusLayoutError(f"{path}: unknown EMOVO emotion code {emotion!r} "
                                f"(expected one of {', '.join(EMOTIONS)})")
    if kind not in SENTENCE_TYPES:
        raise CorpusLayoutError(f"{path}: unknown EMOVO sentence type {kind!r} in {sentence!r} "
                                f"(expected {', '.join(SENTENCE_TYPES)})")
    folder = path.parent.name
    if speaker != folder:
        raise CorpusLayoutError(f"{path}: speaker {speaker!r} in the file name but the file is in "
                                f"speaker folder {folder!r}")
    return {"id": path.stem, "path": str(path.resolve()), "speaker": speaker, "session": speaker,
            "label": EMOTIONS[emotion], "gender": speaker[0], "sentence": sentence,
            "sentence_type": SENTENCE_TYPES[kind], "emotion_code": emotion}


@register_corpus("emovo", "EMOVO (Italian): SPEAKER/EMO-SPEAKER-SENTENCE.flac|wav, e.g. f1/dis-f1-b1.flac")
def read_emovo(root: str | os.PathLike) -> pd.DataFrame:
    """Read EMOVO at ``root`` (holding the actor folders ``f1`` .. ``m3``).

    ``session`` equals ``speaker`` (EMOVO has no sessions). Extra columns: ``sentence`` (``b1`` ..
    ``d2``), ``sentence_type`` (short / long / nonsense / question) and ``emotion_code`` (the
    Italian three-letter code of the file name).
    """
    root = require_dir(root, "emovo")
    speaker_dirs = sorted(d for d in root.iterdir() if d.is_dir() and SPEAKER_DIR.fullmatch(d.name))
    if not speaker_dirs:
        raise CorpusLayoutError(f"{root}: not an EMOVO corpus: no actor folders (f1 .. m3) holding "
                                f"{NAME_PATTERN} files")
    rows: dict[str, dict] = {}
    for speaker_dir in speaker_dirs:
        for audio in sorted(speaker_dir.iterdir()):
            if audio.name.startswith(".") or audio.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            row = parse_file_name(audio)
            if row["id"] in rows:
                raise CorpusLayoutError(f"{audio}: duplicate of {rows[row['id']]['path']}")
            rows[row["id"]] = row
    if not rows:
        raise CorpusLayoutError(f"{root}: no EMOVO audio ({'/'.join(AUDIO_SUFFIXES)}) in the actor "
                                f"folders {', '.join(d.name for d in speaker_dirs)}")
    return finalize_manifest(list(rows.values()), corpus="emovo", root=root)

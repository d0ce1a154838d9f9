"""IEMOCAP (Busso et al., 2008), ``IEMOCAP_full_release`` layout.

``root/SessionN/dialog/EmoEvaluation/<dialog>.txt`` holds one block per turn: a line
``[start - end]<TAB>turn id<TAB>label code<TAB>[V, A, D]`` followed by the individual annotators'
lines (``C-E1: ...``, ``A-F1: ...``), which are ignored. Each turn has its own audio file,
``root/SessionN/sentences/wav/<dialog>/<turn id>.wav``, and, where present, a transcript line
``<turn id> [start-end]: text`` in ``root/SessionN/dialog/transcriptions/<dialog>.txt``.

The consensus label ``xxx`` (the annotators did not agree) is kept as the label ``"xxx"``, and
``oth`` as ``"other"``: which classes to use (commonly neutral, happy + excited, sad, angry) is
the task's decision, not the adapter's.
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

LABELS = {"neu": "neutral", "hap": "happy", "exc": "excited", "sad": "sad", "ang": "angry",
          "fru": "frustrated", "sur": "surprised", "fea": "fearful", "dis": "disgusted", "oth": "other",
          "xxx": "xxx"}
SESSIONS = tuple(f"Session{i}" for i in range(1, 6))
NUMBER = r"(\d+(?:\.\d*)?)"
TURN_LINE = re.compile(rf"^\[{NUMBER}\s*-\s*{NUMBER}\]\s+(\S+)\s+(\S+)\s+"
                       rf"\[{NUMBER},\s*{NUMBER},\s*{NUMBER}\]")
TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
GENDER = re.compile(r"([FM])\d{3}$")


def parse_evaluation(path: str | os.PathLike) -> list[dict]:
    """Parse one ``EmoEvaluation/<dialog>.txt``: one dict per turn with label, V/A/D and times.

    Raises
    ------
    CorpusLayoutError
        When a turn line has an unknown label code or a turn id without a gender letter.
    """
    turns = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            match = TURN_LINE.match(line)
            if not match:  # header, blank and annotator (C-..., A-...) lines
                continue
            start, end, turn, code, val, act, dom = match.groups()
            if code not in LABELS:
                raise CorpusLayoutError(f"{path}:{lineno}: unknown IEMOCAP label code {code!r}")
            gender = GENDER.search(turn)
            if not gender:
                raise CorpusLayoutError(f"{path}:{lineno}: turn id {turn!r} does not end in F/M + 3 digits")
            turns.append({"id": turn, "label": LABELS[code], "gender_letter": gender.group(1),
                          "valence": float(val), "arousal": float(act), "dominance": float(dom),
                          "turn_start": float(start), "turn_end": float(end)})
    return turns


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """Parse ``transcriptions/<dialog>.txt`` into ``{turn id: text}``."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            match = TRANSCRIPT_LINE.match(line.strip())
            if match:
                out[match.group(1)] = match.group(2).strip()
    return out


def find_sessions(root: Path) -> list[Path]:
    """The ``Session1`` .. ``Session5`` folders under ``root``; each must hold ``dialog/EmoEvaluation``."""
    sessions = [root / s for s in SESSIONS if (root / s).is_dir()]
    if not sessions:
        raise CorpusLayoutError(f"{root}: not an iemocap corpus: no Session1 .. Session5 folders "
                                "(expected the IEMOCAP_full_release folder)")
    for session in sessions:
        if not (session / "dialog" / "EmoEvaluation").is_dir():
            raise CorpusLayoutError(f"{session}: missing 'dialog/EmoEvaluation' (IEMOCAP label files)")
    return sessions


def session_rows(session: Path) -> tuple[list[dict], list[Path]]:
    """Rows for one ``SessionN`` folder, and the wav paths of labelled turns that are missing."""
    rows, missing = [], []
    for evaluation in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
        if evaluation.name.startswith("."):  # macOS resource forks
            continue
        dialog = evaluation.stem
        transcript_file = session / "dialog" / "transcriptions" / f"{dialog}.txt"
        transcripts = read_transcripts(transcript_file) if transcript_file.exists() else None
        for turn in parse_evaluation(evaluation):
            wav = session / "sentences" / "wav" / dialog / f"{turn['id']}.wav"
            if not wav.exists():
                missing.append(wav)
                continue
            letter = turn["gender_letter"]
            row = {"id": turn["id"], "path": absolute_path(wav), "speaker": f"{session.name}{letter}",
                   "session": session.name, "label": turn["label"], "gender": letter.lower(),
                   "valence": turn["valence"], "arousal": turn["arousal"], "dominance": turn["dominance"]}
            if transcripts is not None:
                row["transcript"] = transcripts.get(turn["id"])
            row.update(dialog=dialog, improvisation="impro" if "_impro" in dialog else "script",
                       turn_start=turn["turn_start"], turn_end=turn["turn_end"])
            rows.append(row)
    return rows, missing


@register_corpus("iemocap", "IEMOCAP: SessionN/sentences/wav/<dialog>/<turn>.wav + dialog/EmoEvaluation")
def read_iemocap(root: str | os.PathLike) -> pd.DataFrame:
    """Read IEMOCAP at ``root`` (the ``IEMOCAP_full_release`` folder).

    Returns
    -------
    pandas.DataFrame
        The manifest, one row per labelled turn with audio; ``session`` is ``Session1`` ..
        ``Session5``, ``speaker`` the session plus the speaker's gender letter (``Session1M``),
        ``gender`` ``"f"``/``"m"``, ``label`` the consensus category (``"xxx"`` for no
        agreement, see the module docstring), ``valence``/``arousal``/``dominance`` the
        dimensional ratings (1..5) and, where transcriptions exist, ``transcript``. ``start`` and
        ``end`` are not set (every turn has its own file); the turn's times within the dialog
        are the extras ``turn_start``/``turn_end``. Extras ``dialog`` and ``improvisation``
        (``impro``/``script``).

    Warns
    -----
    UserWarning
        When labelled turns have no wav file; they are skipped.
    """
    root = require_dir(root, "iemocap")
    rows, missing = [], []
    for session in find_sessions(root):
        session_found, session_missing = session_rows(session)
        rows += session_found
        missing += session_missing
    if missing:
        warnings.warn(f"{root}: skipped {len(missing)} labelled IEMOCAP turn(s) with no wav file, "
                      f"e.g. {missing[0]}", stacklevel=2)
    if not rows:
        raise CorpusLayoutError(f"{root}: no labelled IEMOCAP turns with audio (EmoEvaluation/*.txt "
                                "and sentences/wav/<dialog>/<turn>.wav)")
    return finalize_manifest(rows, corpus="iemocap", root=root)

"""MSP-Podcast (Lotfian & Busso, 2019): ``Audios/*.wav`` and ``Labels/labels_consensus.csv``.

The consensus file has one row per segment: ``FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID,
Gender, Split_Set``. The class ``X`` (no agreement among the annotators) is kept as the label
``"no_agreement"`` and ``O`` as ``"other"``; which classes to use is the task's decision.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from featurekit.corpora.base import (
    CorpusLayoutError,
    absolute_path,
    finalize_manifest,
    register_corpus,
    require_dir,
)

EMOTIONS = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust",
            "C": "contempt", "N": "neutral", "O": "other", "X": "no_agreement"}
SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")
LABELS_CSV = "Labels/labels_consensus.csv"
AUDIO_DIR = "Audios"
CSV_COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
TEXT_COLUMNS = ("FileName", "EmoClass", "SpkrID", "Gender", "Split_Set")


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``labels_consensus.csv``, checking its columns and class codes.

    Raises
    ------
    CorpusLayoutError
        When a column is missing, a class code is unknown or a rating is not a number.
    """
    labels = pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str), skipinitialspace=True)
    missing = [c for c in CSV_COLUMNS if c not in labels.columns]
    if missing:
        raise CorpusLayoutError(f"{path}: missing column(s) {', '.join(missing)} "
                                f"(has {', '.join(map(str, labels.columns))})")
    for col in TEXT_COLUMNS:
        labels[col] = labels[col].str.strip()
    if labels["FileName"].isna().any():
        lines = (labels.index[labels["FileName"].isna()][:3] + 2).tolist()
        raise CorpusLayoutError(f"{path}: empty FileName on line(s) {lines}")
    labels["SpkrID"] = labels["SpkrID"].fillna("Unknown")
    unknown = sorted(set(labels["EmoClass"].dropna()) - set(EMOTIONS))
    if unknown or labels["EmoClass"].isna().any():
        raise CorpusLayoutError(f"{path}: unknown EmoClass code(s) {unknown or ['(empty)']} "
                                f"(known: {', '.join(EMOTIONS)})")
    for col in ("EmoAct", "EmoVal", "EmoDom"):
        values = pd.to_numeric(labels[col], errors="coerce")
        if values.isna().any():
            bad = labels.loc[values.isna(), "FileName"].iloc[:3].tolist()
            raise CorpusLayoutError(f"{path}: {col} is not a number for {bad}")
        labels[col] = values.astype(float)
    return labels


def select_splits(labels: pd.DataFrame, splits: str | Iterable[str] | None, source: Path) -> pd.DataFrame:
    """Keep the rows whose ``Split_Set`` is in ``splits`` (all when ``None``)."""
    if splits is None:
        return labels
    wanted = [splits] if isinstance(splits, str) else list(splits)
    present = set(labels["Split_Set"].dropna())
    unknown = [s for s in wanted if s not in present]
    if unknown:
        raise ValueError(f"{source}: unknown split(s) {unknown}; this file has "
                         f"{', '.join(sorted(present)) or 'none'}")
    return labels[labels["Split_Set"].isin(wanted)]


def make_rows(labels: pd.DataFrame, audio_dir: Path) -> tuple[list[dict], list[Path]]:
    """Manifest rows for the label rows whose audio exists, and the audio paths that do not."""
    rows, missing = [], []
    for rec in labels.itertuples(index=False):
        wav = audio_dir / rec.FileName
        if not wav.exists():
            missing.append(wav)
            continue
        gender = rec.Gender[:1].lower() if isinstance(rec.Gender, str) and rec.Gender else None
        rows.append({"id": Path(rec.FileName).stem, "path": absolute_path(wav), "speaker": rec.SpkrID,
                     "session": rec.SpkrID, "label": EMOTIONS[rec.EmoClass], "gender": gender,
                     "valence": rec.EmoVal, "arousal": rec.EmoAct, "dominance": rec.EmoDom,
                     "split": rec.Split_Set})
    return rows, missing


@register_corpus("msppodcast", "MSP-Podcast: Audios/*.wav + Labels/labels_consensus.csv")
def read_msppodcast(root: str | os.PathLike, *, splits: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Read MSP-Podcast at ``root``.

    Parameters
    ----------
    root
        Folder holding ``Audios/`` and ``Labels/labels_consensus.csv``.
    splits
        ``None`` (default) for every segment, or the ``Split_Set`` values to keep
        (``Train``, ``Development``, ``Test1``, ``Test2``, ``Test3``).

    Returns
    -------
    pandas.DataFrame
        The manifest; ``speaker`` and ``session`` are ``SpkrID`` as text (``"Unknown"`` kept),
        ``gender`` the lower-cased first letter of ``Gender`` (``"u"`` for Unknown), ``label``
        the class name, ``arousal``/``valence``/``dominance`` from ``EmoAct``/``EmoVal``/``EmoDom``
        and the extra ``split``.

    Warns
    -----
    UserWarning
        When labelled segments have no audio file; they are skipped.
    """
    root = require_dir(root, "msppodcast", AUDIO_DIR, LABELS_CSV)
    labels = select_splits(read_labels(root / LABELS_CSV), splits, root / LABELS_CSV)
    rows, missing = make_rows(labels, root / AUDIO_DIR)
    if missing:
        warnings.warn(f"{root}: skipped {len(missing)} labelled MSP-Podcast segment(s) with no audio file, "
                      f"e.g. {missing[0]}", stacklevel=2)
    if not rows:
        raise CorpusLayoutError(f"{root / AUDIO_DIR}: none of the {len(labels)} labelled segments has audio")
    return finalize_manifest(rows, corpus="msppodcast", root=root)

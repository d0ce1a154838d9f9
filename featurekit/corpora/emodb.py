"""Berlin Emo-DB (Burkhardt et al., 2005), official ``download.zip`` layout."""

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

EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
FEMALE_SPEAKERS = {"08", "09", "13", "14", "16"}


def read_listening_test(path: str | os.PathLike) -> pd.DataFrame:
    """Parse ``erkennung.txt``: recognition and naturalness rates (%) per file.

    The file is ISO-8859-1, tab separated, with decimal commas and non-breaking-space padding.
    It lists every recorded utterance (more than the 535 released ones).
    """
    rows = []
    with open(path, encoding="iso-8859-1") as f:
        header = f.readline()
        if "Satz" not in header:
            raise CorpusLayoutError(f"{path}: unexpected header {header.strip()!r}")
        for lineno, line in enumerate(f, start=2):
            fields = [x.strip().replace("\xa0", "") for x in line.split("\t")]
            if len(fields) < 4 or not fields[1]:
                continue
            try:
                rec, nat = (float(x.replace(",", ".")) for x in fields[2:4])
            except ValueError:
                raise CorpusLayoutError(f"{path}:{lineno}: cannot parse rates {fields[2:4]}") from None
            rows.append({"id": Path(fields[1]).stem, "recognition": rec, "naturalness": nat})
    return pd.DataFrame(rows).drop_duplicates("id").set_index("id")


@register_corpus("emodb", "Berlin Emo-DB: wav/*.wav named SSTTTEV.wav, listening test in erkennung.txt")
def read_emodb(root: str | os.PathLike, *, listening_test: bool = True) -> pd.DataFrame:
    """Read Emo-DB at ``root`` (holding ``wav/`` and ``erkennung.txt``).

    ``session`` equals ``speaker`` (Emo-DB has no sessions). ``recognition`` and
    ``naturalness`` are the listening-test rates in percent.
    """
    root = require_dir(root, "emodb", "wav")
    rows = []
    for wav in sorted((root / "wav").glob("*.wav")):
        stem = wav.stem
        if len(stem) != 7 or stem[5] not in EMOTIONS:
            raise CorpusLayoutError(f"{wav}: not an Emo-DB file name (SSTTTEV.wav)")
        spk = stem[:2]
        rows.append(
            {
                "id": stem,
                "path": absolute_path(wav),
                "speaker": spk,
                "session": spk,
                "label": EMOTIONS[stem[5]],
                "gender": "f" if spk in FEMALE_SPEAKERS else "m",
                "sentence": stem[2:5],
                "version": stem[6],
            }
        )
    df = finalize_manifest(rows, corpus="emodb", root=root)
    erk = root / "erkennung.txt"
    if listening_test:
        if not erk.exists():
            raise CorpusLayoutError(f"{root}: missing erkennung.txt (pass listening_test=False to skip)")
        lt = read_listening_test(erk)
        df = df.join(lt)
        df.attrs.update(corpus="emodb", root=str(root))  # join drops attrs
        if df["recognition"].isna().any():
            missing = df.index[df["recognition"].isna()][:5].tolist()
            raise CorpusLayoutError(f"{erk}: no listening-test rates for {missing}")
    return df

"""The manifest contract shared by every corpus adapter.

A manifest is a :class:`pandas.DataFrame`, one row per utterance, with the columns

``id`` (unique string), ``path`` (absolute audio path), ``speaker``, ``session``, ``label``

and, where the corpus has them, ``gender`` (``"f"``/``"m"``), ``start``/``end`` (seconds, for
segments of a longer file), ``valence``/``arousal``/``dominance`` (floats), ``transcript``, plus
corpus-specific extras. The frame is also indexed by the ids (an unnamed index).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from featurekit.registry import Registry

REQUIRED_COLUMNS = ("id", "path", "speaker", "session", "label")
#: All that feature extraction needs; evaluation checks for the columns its spec uses.
FEATURE_COLUMNS = ("id", "path")
OPTIONAL_COLUMNS = ("gender", "start", "end", "valence", "arousal", "dominance", "transcript")


class CorpusLayoutError(ValueError):
    """The directory given for a corpus does not have that corpus' documented layout."""


@dataclass(frozen=True)
class CorpusAdapter:
    """A registered corpus reader.

    Attributes
    ----------
    name
        Registry name (``emodb``, ``ravdess``, ...).
    description
        One line for ``featurekit corpora``.
    read
        ``read(root, **options) -> manifest``; raises :class:`CorpusLayoutError` when ``root``
        does not look like the corpus.
    """

    name: str
    description: str
    read: Callable[..., pd.DataFrame]


CORPORA: Registry[CorpusAdapter] = Registry("corpus")


def register_corpus(name: str, description: str):
    """Decorator: register ``read(root, **options)`` as the adapter ``name``."""

    def decorator(func: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        CORPORA.add(name, CorpusAdapter(name=name, description=description, read=func))
        return func

    return decorator


def require_dir(root: str | os.PathLike, corpus: str, *children: str) -> Path:
    """Check that ``root`` exists and holds ``children``; a :class:`CorpusLayoutError` otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusLayoutError(f"{root}: not a directory (expected the {corpus} corpus root)")
    for child in children:
        if not (root / child).exists():
            raise CorpusLayoutError(
                f"{root}: not a {corpus} corpus: missing {child!r} (see `featurekit corpora` for layouts)"
            )
    return root


def finalize_manifest(
    rows: list[dict] | pd.DataFrame,
    *,
    corpus: str,
    root: str | os.PathLike,
    required: tuple[str, ...] = REQUIRED_COLUMNS,
) -> pd.DataFrame:
    """Build and validate a manifest from adapter rows; sorts by id and indexes by id.

    ``required``: the columns every row must have (an adapter whose corpus may lack labels or
    speakers, such as ``csv``, passes :data:`FEATURE_COLUMNS`).
    """
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    if df.empty:
        raise CorpusLayoutError(f"{root}: no utterances found for corpus {corpus!r}")
    validate_manifest(df, source=f"{corpus} at {root}", required=required)
    for col in ("id", "path", "speaker", "session", "label"):
        if col in df:
            df[col] = df[col].astype(str)
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    df.index = pd.Index(df["id"].to_numpy())  # unnamed, so "id" stays unambiguous as a column
    df.attrs["corpus"] = corpus
    df.attrs["root"] = str(root)
    return df


def validate_manifest(
    df: pd.DataFrame, *, source: str = "manifest", required: tuple[str, ...] = REQUIRED_COLUMNS
) -> None:
    """Raise ``ValueError`` naming ``source`` when ``required`` columns are missing or ids repeat."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: manifest lacks column(s) {', '.join(missing)}")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise ValueError(f"{source}: duplicate utterance id(s): {', '.join(map(str, dup.iloc[:5]))}")


def load_corpus(name: str, root: str | os.PathLike, /, **options) -> pd.DataFrame:
    """Read corpus ``name`` at ``root`` into a manifest (see module docstring)."""
    return CORPORA.get(name).read(root, **options)


def corpus_summary(manifest: pd.DataFrame) -> dict[str, pd.Series]:
    """Counts per label, speaker and session (those the manifest has)."""
    return {col: manifest[col].value_counts().sort_index()
            for col in ("label", "speaker", "session") if col in manifest.columns}

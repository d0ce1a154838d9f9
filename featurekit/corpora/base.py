"""The manifest contract shared by every corpus adapter.

A manifest is a :class:`pandas.DataFrame`, one row per utterance, with the columns

``id`` (unique string), ``path`` (absolute audio path, as listed: symlinks are not resolved, so
ids, messages and the store name the manifest's path; each file is resolved when it is opened),
``speaker``, ``session``, ``label``

and, where the corpus has them, ``gender`` (``"f"``/``"m"``), ``start``/``end`` (seconds, for
segments of a longer file), ``valence``/``arousal``/``dominance`` (floats), ``transcript``, plus
corpus-specific extras. The frame is also indexed by the ids (an unnamed index).

:func:`finalize_manifest` checks every adapter's rows: ``label``, ``speaker`` and ``session`` are
Unicode-normalised (NFC) and stripped of surrounding whitespace, and values that thereby merge
(``Ärger`` in NFC and NFD, ``angry`` and ``angry ``) are reported with a :class:`ManifestWarning`;
one audio file (or segment) listed under two ids is an error; distinct paths that resolve to one
file (e.g. git-annex links to identical content) get a :class:`ManifestWarning`.
"""

from __future__ import annotations

import os
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from featurekit.registry import Registry

REQUIRED_COLUMNS = ("id", "path", "speaker", "session", "label")
#: All that feature extraction needs; evaluation checks for the columns its spec uses.
FEATURE_COLUMNS = ("id", "path")
OPTIONAL_COLUMNS = ("gender", "start", "end", "valence", "arousal", "dominance", "transcript")
#: Text columns normalised by :func:`finalize_manifest` (NFC, stripped).
NORMALISED_COLUMNS = ("label", "speaker", "session")


class CorpusLayoutError(ValueError):
    """The directory given for a corpus does not have that corpus' documented layout."""


class ManifestWarning(UserWarning):
    """A manifest was read, but something in it deserves a look (merged labels, shared audio)."""


def absolute_path(path: str | os.PathLike) -> str:
    """``path`` made absolute (and ``..`` collapsed) without resolving symlinks: the manifest's path."""
    return os.path.abspath(os.fspath(path))


def normalise_text(value: str) -> str:
    """NFC-normalised and stripped (the form labels, speakers and sessions are compared in)."""
    return unicodedata.normalize("NFC", value).strip()


def normalise_columns(df: pd.DataFrame, *, source: str, columns=NORMALISED_COLUMNS) -> pd.DataFrame:
    """Apply :func:`normalise_text` to ``columns``; warn (:class:`ManifestWarning`) about merged values."""
    for col in columns:
        if col not in df:
            continue
        raw = df[col].astype(str)
        norm = raw.map(normalise_text)
        groups = pd.DataFrame({"raw": raw, "norm": norm}).drop_duplicates().groupby("norm")["raw"]
        merged = {k: sorted(v) for k, v in groups if len(v) > 1}
        if merged:
            listed = "; ".join(f"{' + '.join(map(repr, v))} -> {k!r}" for k, v in list(merged.items())[:5])
            warnings.warn(f"{source}: {col} values that differ only in Unicode form or surrounding "
                          f"whitespace were merged: {listed}", ManifestWarning, stacklevel=3)
        df[col] = norm
    return df


def segment_bounds(df: pd.DataFrame) -> list[tuple[float | None, float | None]]:
    """Each row's ``(start, end)`` in seconds; None where the manifest has no such column or the value
    is missing (NaN): the whole file."""

    def one(x) -> float | None:
        return None if x is None or pd.isna(x) else float(x)

    starts = df["start"].tolist() if "start" in df else [None] * len(df)
    ends = df["end"].tolist() if "end" in df else [None] * len(df)
    return [(one(a), one(b)) for a, b in zip(starts, ends)]


def check_unique_paths(df: pd.DataFrame, *, source: str) -> None:
    """One audio file (or segment, with ``start``/``end``) may not be listed under two ids.

    Raises ``ValueError`` (a :class:`CorpusLayoutError`) naming the path and the ids. Distinct paths
    that resolve to the same file (hard to avoid with git-annex/DataLad, which store identical content
    once) only get a :class:`ManifestWarning`.
    """
    keys = [c for c in ("path", "start", "end") if c in df]
    frame = df[keys].astype(str)
    dup = frame.duplicated(keep=False)
    if dup.any():
        groups = df.loc[dup].groupby(frame.loc[dup].apply(tuple, axis=1), sort=False)["id"]
        listed = "; ".join(f"{k[0]}{'' if len(k) == 1 else f' {k[1:]}'} as ids {', '.join(map(str, v))}"
                           for k, v in list(groups)[:3])
        raise CorpusLayoutError(f"{source}: the same audio listed more than once: {listed} "
                                f"(each file or segment must appear once)")
    real = df["path"].astype(str).map(os.path.realpath)
    shared = real.duplicated(keep=False)  # the listed paths are distinct, so links lead there
    if shared.any() and "start" not in df:
        first = df.loc[shared].groupby(real[shared], sort=False)["id"].apply(list)
        listed = "; ".join(f"{', '.join(map(str, ids))} -> {target}"
                           for target, ids in list(first.items())[:3])
        warnings.warn(f"{source}: different paths resolve to the same audio file ({int(shared.sum())} "
                      f"utterances; identical content in git-annex/DataLad is stored once): {listed}",
                      ManifestWarning, stacklevel=3)


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
    normalise_columns(df, source=f"{corpus} at {root}")
    check_unique_paths(df, source=f"{corpus} at {root}")
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

"""Any corpus described by a CSV file: one row per utterance, with columns mapped onto the manifest.

Example: a CSV with columns ``file, emotion, spk, fold`` is read with
``load_corpus("csv", root, csv="meta.csv", columns={"path": "file", "label": "emotion",
"speaker": "spk"})``; ``fold`` is kept as an extra column. A manifest column that is not mapped
is taken from the CSV column of the same name when there is one.

The file is read strictly, and every problem is reported with the file and its line: text that is
not in the given encoding (UTF-8 by default), a header with an empty or repeated column name, a row
with more or fewer fields than the header, an empty needed cell, a number that is not one. Only an
empty cell is missing: ``NA``, ``None``, ``null`` and the like are text (a speaker may be called
``NA``); in the numeric columns (``start``, ``end``, ``valence``, ``arousal``, ``dominance``) an
empty cell or ``nan``/``na``/``n/a``/``null``/``none`` (any case) is missing.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

import pandas as pd

from featurekit.corpora.base import (
    FEATURE_COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    CorpusLayoutError,
    absolute_path,
    finalize_manifest,
    register_corpus,
    require_dir,
)

TEXT_COLUMNS = ("id", "path", "speaker", "session", "label", "gender", "transcript")
FLOAT_COLUMNS = ("start", "end", "valence", "arousal", "dominance")
NEEDED_COLUMNS = ("path",)  # id and session have defaults; label and speaker: evaluation needs them
GENDERS = {"f": "f", "female": "f", "m": "m", "male": "m"}
#: Cells read as missing in the numeric columns (compared in lower case), besides an empty cell.
NUMERIC_MISSING = ("nan", "na", "n/a", "null", "none")


def resolve_csv(root: Path, csv: str | os.PathLike) -> Path:
    """``csv`` as an existing path: absolute, or relative to ``root``."""
    path = Path(csv)
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise CorpusLayoutError(f"{path}: manifest CSV not found (csv={str(csv)!r}, root {root})")
    return path


def map_columns(header: list[str], columns: dict[str, str] | None, source: Path) -> dict[str, str]:
    """Manifest column -> CSV column, from ``columns`` plus same-named CSV columns.

    Raises
    ------
    CorpusLayoutError
        When a mapped CSV column does not exist, a needed manifest column has no source, or an
        unmapped CSV column would overwrite a manifest column taken from elsewhere.
    """
    mapping = dict(columns or {})
    listing = ", ".join(header)
    for target, col in mapping.items():
        if col not in header:
            raise CorpusLayoutError(
                f"{source}: no column {col!r} (mapped to {target!r}); columns are {listing}"
            )
    for target in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
        if target not in mapping and target in header:
            mapping[target] = target
    lacking = [t for t in NEEDED_COLUMNS if t not in mapping]
    if lacking:
        raise CorpusLayoutError(
            f"{source}: missing column(s) {', '.join(lacking)}; columns are {listing} "
            f"(map them with columns={{{lacking[0]!r}: '<CSV column>'}})"
        )
    used = set(mapping.values())
    for col in header:
        if col not in used and col in mapping:
            raise CorpusLayoutError(
                f"{source}: column {col!r} would overwrite the {col!r} taken from "
                f"{mapping[col]!r}; rename it, e.g. columns={{'csv_{col}': {col!r}}}"
            )
    return mapping


def apply_mapping(table: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """The mapped columns under their manifest names, then the unmapped CSV columns as extras."""
    out = pd.DataFrame({target: table[src] for target, src in mapping.items()}, index=table.index)
    extras = [c for c in table.columns if c not in set(mapping.values())]
    return pd.concat([out, table[extras]], axis=1)


def normalise_gender(value: object) -> object:
    """``female``/``male``/``F``/``M`` (any case) -> ``"f"``/``"m"``; other values unchanged."""
    return GENDERS.get(value.strip().lower(), value) if isinstance(value, str) else value


def check_csv(source: Path, *, encoding: str) -> tuple[str, list[str], list[int]]:
    """Decode and check a CSV with the ``csv`` module: its text, header and each row's first line.

    Raises
    ------
    CorpusLayoutError
        Naming ``source`` and the line: undecodable bytes, empty or repeated header names, rows with
        a wrong number of fields, no rows.
    """
    raw = source.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise CorpusLayoutError(
            f"{source}:{line}: not valid {encoding} (byte {raw[err.start]:#04x} at offset {err.start}); "
            f"save the file as UTF-8, or pass its encoding (e.g. encoding='latin-1')"
        ) from None
    except LookupError:
        raise CorpusLayoutError(f"{source}: unknown encoding {encoding!r}") from None
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    lines: list[int] = []
    start = 1
    try:
        for row in reader:
            if not row:  # a blank line (pandas skips them too)
                start = reader.line_num + 1
                continue
            if header is None:
                header = row
                names = [h.strip() for h in header]
                empty = [i + 1 for i, h in enumerate(names) if not h]
                if empty:
                    raise CorpusLayoutError(f"{source}:{start}: header column(s) {empty} have no name")
                seen = {h for h in names if names.count(h) > 1}
                if seen:
                    raise CorpusLayoutError(f"{source}:{start}: header repeats column(s) {sorted(seen)}")
            elif len(row) != len(header):
                raise CorpusLayoutError(
                    f"{source}:{start}: {len(row)} field(s) where the header has {len(header)} "
                    f"({', '.join(header)})"
                )
            else:
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        raise CorpusLayoutError(f"{source}:{reader.line_num}: malformed CSV ({err})") from None
    if header is None:
        raise CorpusLayoutError(f"{source}: the CSV is empty (no header)")
    if not lines:
        raise CorpusLayoutError(f"{source}: the CSV lists no utterances")
    return text, [h.strip() for h in header], lines


def parse_csv(text: str, header: list[str], lines: list[int], source: Path, *, text_columns: set[str]
              ) -> pd.DataFrame:
    """A checked CSV (:func:`check_csv`) as a DataFrame indexed by each row's line (for messages):
    ``text_columns`` as text, other columns typed by pandas, only empty cells missing."""
    table = pd.read_csv(io.StringIO(text), dtype=dict.fromkeys(text_columns, str), keep_default_na=False,
                        na_values=[""], header=0, names=header)
    if len(table) != len(lines):  # both parsers must agree on the rows
        raise CorpusLayoutError(f"{source}: cannot read as CSV ({len(table)} rows, {len(lines)} expected)")
    table.index = pd.Index(lines)
    return table


def check_filled(df: pd.DataFrame, cols: list[str], source: Path) -> None:
    """Raise naming ``source`` and the CSV line numbers (the index) when a needed column has empty cells."""
    for col in cols:
        empty = df.index[df[col].isna() | (df[col].astype(str).str.strip() == "")]
        if len(empty):
            raise CorpusLayoutError(
                f"{source}: empty {col!r} on line(s) {empty[:5].tolist()}"
                f"{' ...' if len(empty) > 5 else ''}"
            )


def resolve_paths(paths: pd.Series, root: Path, source: Path) -> pd.Series:
    """Absolute audio paths (relative ones are taken against ``root``); symlinks are not resolved.

    Missing files (and dangling or looping symlinks) stay in the manifest with a warning: extraction
    then lists each of them as a failure with its path, and extracts the others (one bad file never
    costs the batch). When no file exists at all, the mapping is surely wrong and this raises.
    """
    resolved = [absolute_path(p if p.is_absolute() else root / p) for p in map(Path, paths)]
    missing = [p for p in resolved if not os.path.exists(p)]
    if missing and len(missing) == len(resolved):
        raise CorpusLayoutError(
            f"{source}: none of the {len(missing)} audio files exists (relative paths are "
            f"taken against {root}), e.g. {', '.join(missing[:3])}"
        )
    if missing:
        warnings.warn(
            f"{source}: {len(missing)} audio file(s) not found (relative paths are taken against "
            f"{root}), e.g. {', '.join(missing[:3])}",
            stacklevel=2,
        )
    return pd.Series(resolved, index=paths.index)


def default_ids(paths: pd.Series, source: Path) -> pd.Series:
    """Ids from the audio file stems; a clear error when two files share a stem."""
    ids = paths.map(lambda p: Path(p).stem)
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        examples = ", ".join(f"{i} ({p})" for i, p in zip(dup.iloc[:4], paths[dup.index[:4]]))
        raise CorpusLayoutError(
            f"{source}: file stems are not unique ids: {examples}; add an id column "
            "(columns={'id': '<CSV column>'})"
        )
    return ids


def to_float(df: pd.DataFrame, col: str, source: Path) -> pd.Series:
    """Column ``col`` as floats (empty and :data:`NUMERIC_MISSING` cells missing); an error naming
    ``source`` and the first bad lines otherwise."""
    cells = df[col]
    missing = cells.isna() | cells.astype(str).str.strip().str.lower().isin(NUMERIC_MISSING)
    values = pd.to_numeric(cells.where(~missing), errors="coerce")
    bad = df.index[values.isna() & ~missing]
    if len(bad):
        raise CorpusLayoutError(f"{source}: {col!r} is not a number on line(s) {bad[:5].tolist()}")
    return values.astype(float)


def build_frame(table: pd.DataFrame, root: Path, source: Path) -> pd.DataFrame:
    """Fill defaults, resolve paths and convert types of a renamed CSV table."""
    check_filled(table, [c for c in ("path", "label", "speaker", "id", "session") if c in table], source)
    table["path"] = resolve_paths(table["path"], root, source)
    if "id" not in table:
        table.insert(0, "id", default_ids(table["path"], source))
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        raise CorpusLayoutError(f"{source}: duplicate id(s) {', '.join(dup.iloc[:5])}")
    if "session" not in table and "speaker" in table:
        table["session"] = table["speaker"]
    if "gender" in table:
        table["gender"] = table["gender"].map(normalise_gender)
    for col in FLOAT_COLUMNS:
        if col in table:
            table[col] = to_float(table, col, source)
    first = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in table]
    return table[first + [c for c in table.columns if c not in first]]


@register_corpus("csv", "any corpus listed in a CSV: read(root, csv=..., columns={manifest: CSV column})")
def read_csv_manifest(
    root: str | os.PathLike,
    *,
    csv: str | os.PathLike,
    columns: dict[str, str] | None = None,
    name: str = "csv",
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read the utterances listed in the CSV file ``csv``.

    Parameters
    ----------
    root
        Corpus folder: relative ``csv`` and audio paths are taken against it.
    csv
        The CSV file, relative to ``root`` or absolute.
    columns
        Manifest column -> CSV column, e.g. ``{"path": "file", "label": "emotion", "speaker":
        "spk"}``. Unmapped manifest columns come from same-named CSV columns; only ``path`` is
        needed (``label`` and ``speaker`` are optional for feature extraction; evaluation says
        when its spec needs them), ``session`` defaults to ``speaker`` and ``id`` to the audio
        file's stem (which must then be unique). Other CSV columns are kept as extras.
    name
        The corpus name recorded in the manifest (``df.attrs["corpus"]``) and used in messages.
    encoding
        The CSV's text encoding (default UTF-8; a byte-order mark is skipped).

    Returns
    -------
    pandas.DataFrame
        The manifest. Text columns are read as text (speaker ``"007"`` stays ``"007"``),
        ``start``/``end``/``valence``/``arousal``/``dominance`` as floats and ``gender`` values
        ``female``/``male`` (any case) become ``"f"``/``"m"``; only empty cells are missing (see the
        module docstring). Labels, speakers and sessions are NFC-normalised and stripped (merges are
        reported, see :func:`featurekit.corpora.base.finalize_manifest`).

    Raises
    ------
    CorpusLayoutError
        Naming the CSV file and line: see the module docstring.
    """
    root = require_dir(root, name)
    source = resolve_csv(root, csv)
    text, header, lines = check_csv(source, encoding=encoding)
    mapping = map_columns(header, columns, source)
    text_columns = {mapping[t] for t in TEXT_COLUMNS if t in mapping}  # as written: "007" stays "007"
    table = apply_mapping(parse_csv(text, header, lines, source, text_columns=text_columns), mapping)
    if table.empty:
        raise CorpusLayoutError(f"{source}: the CSV lists no utterances")
    return finalize_manifest(build_frame(table, root, source), corpus=name, root=root,
                             required=FEATURE_COLUMNS)

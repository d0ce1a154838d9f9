"""Pick encoder layers from stored per-layer features without re-extracting.

Encoder columns are named ``{extractor}_{tag}_L{layer:02d}_{mean|std}_{dim:04d}`` (native) or
``{extractor}_{tag}_L{layer:02d}_{dim:04d}`` (LLD). :func:`select_layers` keeps the columns of
one layer or several, or averages every layer's mean vector.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

LAYER_COLUMN = re.compile(r"^(?P<prefix>.+)_L(?P<layer>\d{2,})(?:_(?P<stat>mean|std))?_(?P<dim>\d{4,})$")
KEY_COLUMNS = ("id", "fingerprint", "frame", "time")


def parse_layer_column(name: str) -> tuple[str, int, str | None, int] | None:
    """``(prefix, layer, stat, dim)`` of an encoder column name, ``None`` for other columns."""
    m = LAYER_COLUMN.match(str(name))
    if not m:
        return None
    return m.group("prefix"), int(m.group("layer")), m.group("stat"), int(m.group("dim"))


def _resolve(layer: int, available: list[int], prefix: str) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be an int, a list of ints or 'mean', got {layer!r}")
    if layer in available:
        return layer
    if layer < 0 and -len(available) <= layer:
        return available[layer]
    raise ValueError(f"layer {layer} is out of range for {prefix}: the columns hold layer(s) "
                     f"{available}; negative values count from the last")


def select_layers(df_columns: pd.DataFrame | Sequence[str], layer: int | str | Sequence[int]
                  ) -> pd.DataFrame | list[str]:
    """Columns of the chosen encoder layer(s), or the element-wise average of all layers' means.

    Parameters
    ----------
    df_columns
        A feature table (DataFrame) or its column names. Non-encoder columns are dropped, except
        ``id``, ``fingerprint``, ``frame`` and ``time`` in a DataFrame. Each encoder (column
        prefix ``{extractor}_{tag}``) present is handled on its own.
    layer
        An int (layer number; negative counts from the last layer present, ``-1`` = last), a list
        of ints, or ``"mean"``: the average over layers of the ``mean`` vectors (native tables) or of
        the frame states (LLD tables holding several layers), in columns
        ``{prefix}_Lmean_mean_{dim:04d}`` (``{prefix}_Lmean_{dim:04d}``). ``"mean"`` needs a DataFrame.

    Returns
    -------
    pandas.DataFrame or list of str
        The selected part of the table, or the selected names when given names.

    Raises
    ------
    ValueError
        No encoder columns, or a layer that is not present.
    """
    is_frame = isinstance(df_columns, pd.DataFrame)
    names = [str(c) for c in (df_columns.columns if is_frame else df_columns)]
    parsed = {n: p for n in names if (p := parse_layer_column(n)) is not None}
    if not parsed:
        raise ValueError("no encoder layer columns ({extractor}_{tag}_L{layer}_...) among the columns "
                         f"(e.g. {names[:3]})")
    prefixes = list(dict.fromkeys(p[0] for p in parsed.values()))
    by_prefix = {pfx: sorted({p[1] for p in parsed.values() if p[0] == pfx}) for pfx in prefixes}

    if isinstance(layer, str):
        if layer != "mean":
            raise ValueError(f"layer must be an int, a list of ints or 'mean', got {layer!r}")
        if not is_frame:
            raise TypeError("layer='mean' averages values: pass the DataFrame, not its column names")
        keep = [c for c in KEY_COLUMNS if c in df_columns.columns]
        parts = [df_columns[keep]]
        for pfx in prefixes:
            cols = [(n, p) for n, p in parsed.items() if p[0] == pfx and p[2] in ("mean", None)]
            dims = sorted({p[3] for _, p in cols})
            stat = "_mean" if any(p[2] == "mean" for _, p in cols) else ""
            avg = {}
            for d in dims:
                group = [n for n, p in cols if p[3] == d]
                values = df_columns[group].astype("float64").mean(axis=1)
                avg[f"{pfx}_Lmean{stat}_{d:04d}"] = values.astype("float32")
            parts.append(pd.DataFrame(avg, index=df_columns.index))
        return pd.concat(parts, axis=1)

    wanted = [layer] if isinstance(layer, int) and not isinstance(layer, bool) else list(layer)
    if not wanted:
        raise ValueError("no layers requested")
    chosen: set[tuple[str, int]] = set()
    for pfx in prefixes:
        for w in wanted:
            chosen.add((pfx, _resolve(w, by_prefix[pfx], pfx)))
    selected = [n for n in names if n in parsed and (parsed[n][0], parsed[n][1]) in chosen]
    if not is_frame:
        return selected
    keep = [c for c in KEY_COLUMNS if c in df_columns.columns]
    return df_columns[keep + selected]


def layer_numbers(df_columns: pd.DataFrame | Sequence[str]) -> dict[str, list[int]]:
    """``{column prefix: layer numbers present}`` of the encoder columns."""
    names = [str(c) for c in (df_columns.columns if isinstance(df_columns, pd.DataFrame) else df_columns)]
    out: dict[str, set[int]] = {}
    for n in names:
        p = parse_layer_column(n)
        if p is not None:
            out.setdefault(p[0], set()).add(p[1])
    return {k: sorted(v) for k, v in out.items()}

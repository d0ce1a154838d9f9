"""``predict``: label new recordings with a saved model, per file or in sliding windows."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurekit.audio import AudioError, AudioOptions
from featurekit.deploy.bundle import SavedModel, load_model
from featurekit.deploy.features import FeatureComputer
from featurekit.deploy.windows import DEFAULT_MAX_WINDOWS, check_window, iter_windows

#: Without a window a file is one analysis unit and is decoded whole; longer files get a warning.
LONG_FILE_S = 120.0


class LongRecordingWarning(UserWarning):
    """A long recording was predicted as one unit (no window): it was decoded whole."""


def probability_method(pipe) -> str:
    """How class probabilities are obtained from a fitted classifier pipeline.

    ``"predict_proba"`` when the final estimator has it (and, for an SVM, was fit with
    ``probability=True``); otherwise ``"softmax(decision_function)"``: the softmax of the one-vs-rest
    decision values (for two classes, of ``[-d, d]``, i.e. ``p[1] = sigmoid(2 d)``). These are scores
    that sum to one and rank like the decision values; they are not calibrated probabilities.
    """
    last = pipe[-1]
    if hasattr(last, "predict_proba") and getattr(last, "probability", True) is not False:
        return "predict_proba"
    return "softmax(decision_function)"


def class_probabilities(pipe, x) -> np.ndarray:
    """``(n, n_classes)`` class probabilities (rows sum to 1), see :func:`probability_method`."""
    if probability_method(pipe) == "predict_proba":
        p = np.asarray(pipe.predict_proba(x), dtype=np.float64)
    else:
        d = np.asarray(pipe.decision_function(x), dtype=np.float64)
        if d.ndim == 1:
            d = np.stack([-d, d], axis=1)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    return p / p.sum(axis=1, keepdims=True)


def _file_inputs(path: str, computer: FeatureComputer, window: float | None, hop: float | None,
                 max_windows: int = DEFAULT_MAX_WINDOWS) -> dict[str, Any]:
    """Worker: decode one file (streamed when windowed) and compute the model input of every window.

    Never raises for a bad file: the error is returned. Warnings are returned as (category, text).
    """
    from featurekit.audio import load_audio
    from featurekit.deploy.windows import open_audio

    out: dict[str, Any] = {"file": path, "spans": [], "x": [], "skipped": [], "error": None, "warnings": [],
                           "duration": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        try:
            sr = computer.audio.sample_rate
            if window is None:
                with open_audio(path) as f:
                    duration = f.frames / f.samplerate
                if duration > LONG_FILE_S:
                    warnings.warn(f"{path}: {duration:.0f} s predicted as one unit and decoded whole; pass a "
                                  f"window (e.g. window=3, hop=1) for long recordings", LongRecordingWarning,
                                  stacklevel=1)
                signal = load_audio(path, options=computer.audio)
                out["x"].append(computer.compute(signal, path))
                out["spans"].append((0.0, duration))
                out["duration"] = duration
            else:
                end = 0.0
                for w in iter_windows(path, sr, window, hop, max_windows=max_windows):
                    end = max(end, w.end)
                    where = f"{path} [{w.start:.3f}-{w.end:.3f} s]"
                    if not np.any(w.signal):
                        out["skipped"].append((w.start, w.end, "silent window (all samples are zero)"))
                        continue
                    try:
                        out["x"].append(computer.compute(computer.condition(w.signal, where), where))
                        out["spans"].append((w.start, w.end))
                    except AudioError as err:
                        out["skipped"].append((w.start, w.end, str(err)))
                out["duration"] = end
                if not out["spans"]:
                    raise AudioError(path, "no usable window (all silent or failed)" +
                                     (f": {out['skipped'][0][2]}" if out["skipped"] else ""))
        except AudioError as err:
            out["error"] = str(err)
        except Exception as err:  # an unexpected failure on one file must not stop the others
            out["error"] = f"{path}: {type(err).__name__}: {err}"
    out["warnings"] = [(w.category, str(w.message)) for w in caught]
    if out["error"]:
        out["x"], out["spans"], out["skipped"] = [], [], []
    return out


def _normalise(model: SavedModel, xs: list[np.ndarray], sequences: bool):
    """Model input of one file's windows, with the model's normalisation at predict time."""
    from featurekit.evaluation.normalisation import speaker_zscore, speaker_zscore_sequences

    if sequences:
        x = np.empty(len(xs), dtype=object)
        for i, s in enumerate(xs):
            x[i] = s
    else:
        x = np.vstack(xs).astype(np.float32)
    norm = model.meta["normalisation"]
    if norm["name"] != "speaker":
        return x
    one = np.zeros(len(xs), dtype=np.int64)  # the file is its own speaker
    if sequences:
        return speaker_zscore_sequences(x, one)
    if len(xs) >= int(norm.get("min_windows", 2)):
        return speaker_zscore(x, one)
    mu = np.asarray(norm["pooled_mean"], dtype=np.float64)
    sd = np.asarray(norm["pooled_std"], dtype=np.float64)
    return ((x.astype(np.float64) - mu) / sd).astype(np.float32)


def _columns(model: SavedModel) -> list[str]:
    if model.task == "classification":
        return ["file", "level", "start", "end", "label", *[f"p[{c}]" for c in model.classes], "error"]
    return ["file", "level", "start", "end", *model.targets, "error"]


def _predict_file(model: SavedModel, item: dict[str, Any], windowed: bool) -> list[dict[str, Any]]:
    path = item["file"]
    if item["error"]:
        return [{"file": path, "level": "file", "start": np.nan, "end": np.nan, "error": item["error"]}]
    x = _normalise(model, item["x"], model.meta["feature_set"]["sequences"])
    if model.task == "classification":
        p = class_probabilities(next(iter(model.pipelines.values())), x)
        names = [f"p[{c}]" for c in model.classes]
        values = p
        labels = [model.classes[i] for i in p.argmax(axis=1)]
    else:
        names = model.targets
        values = np.column_stack([np.asarray(model.pipelines[t].predict(x), dtype=np.float64)
                                  .reshape(len(x), -1)[:, 0] for t in model.targets])
        labels = None
    rows = []
    if windowed:
        wins = [(s, e, i, None) for i, (s, e) in enumerate(item["spans"])]
        wins += [(s, e, None, reason) for s, e, reason in item["skipped"]]
        for s, e, i, reason in sorted(wins, key=lambda t: (t[0], t[1])):
            r: dict[str, Any] = {"file": path, "level": "window", "start": s, "end": e, "error": reason}
            if i is not None:
                r.update(zip(names, values[i].tolist()))
                if labels is not None:
                    r["label"] = labels[i]
            rows.append(r)
    agg = values.mean(axis=0)
    r = {"file": path, "level": "file", "start": 0.0, "end": item["duration"], "error": None}
    r.update(zip(names, agg.tolist()))
    if labels is not None:
        r["label"] = model.classes[int(np.argmax(agg))]
    rows.append(r)
    return rows


def predict(model: str | os.PathLike | SavedModel,
            audio_paths: str | os.PathLike | Iterable[str | os.PathLike], *, window: float | None = None,
            hop: float | None = None, jobs: int = 1, max_windows: int = DEFAULT_MAX_WINDOWS
            ) -> pd.DataFrame:
    """Label recordings with a saved model.

    Without ``window`` every file is one unit (decoded whole, conditioned like the training data) and
    gets one row. With ``window`` (and ``hop``, default ``window``) in seconds every file is read in
    blocks and cut into windows that cover it entirely (see :mod:`featurekit.deploy.windows`): one
    row per window, then one row per file (``level == "file"``) whose probabilities are the mean of
    its windows' probabilities (regression: the mean of the windows' values) and whose label is their
    argmax. A recording shorter than the window is one window (with a
    :class:`~featurekit.deploy.windows.ShortRecordingWarning`). Audio at another rate is resampled to
    the model's (soxr VHQ).

    Per-speaker normalisation: each file is its own speaker, z-scored with the mean and standard
    deviation over its own windows' features; a file with a single window (always the case without a
    window) is z-scored with the training corpus' pooled statistics stored in ``model.json``
    (``normalisation.pooled_mean``/``pooled_std``). For sequence models (LLD frames) the statistics are
    over all frames of the file's windows, so no fallback is needed. With only a few windows the
    file's own statistics are noisy estimates; prefer windows over several seconds of speech.

    Class probabilities are ``predict_proba`` where the model has it, otherwise the softmax of the
    decision function (e.g. SVMs without ``probability=True``); see :func:`probability_method`.

    Parameters
    ----------
    model
        A model directory (verified and loaded with :func:`~featurekit.deploy.bundle.load_model`) or a
        loaded :class:`~featurekit.deploy.bundle.SavedModel`.
    audio_paths
        One path or several.
    window, hop
        Window length and hop in seconds (``hop <= window``, ``window >= 0.25``, ``hop >= 0.01``);
        None: whole files (decoded whole, within the model's ``AudioOptions.max_samples``).
    jobs
        Worker processes across files.
    max_windows
        A file that would yield more windows is refused before decoding (its row carries the error).

    Returns
    -------
    pandas.DataFrame
        Columns ``file, level, start, end, label, p[CLASS]..., error`` (classification) or
        ``file, level, start, end, TARGET..., error`` (regression). A file that cannot be read or
        processed gets one ``level == "file"`` row with its ``error`` (the others are predicted); a
        window that is digitally silent or whose features fail gets a row with an ``error`` and is left
        out of its file's mean.
    """
    window, hop = check_window(window, hop)  # arguments first: a bad window costs no model loading
    if not isinstance(model, SavedModel):
        model = load_model(model)
    if isinstance(audio_paths, (str, os.PathLike)):
        audio_paths = [audio_paths]
    paths = [str(p) for p in audio_paths]
    if not paths:
        raise ValueError("predict: no audio files given")
    computer = FeatureComputer(model.meta["feature_set"], AudioOptions(**model.meta["audio"]))
    if jobs == 1 or len(paths) == 1:
        items = (_file_inputs(p, computer, window, hop, max_windows) for p in paths)
    else:
        from joblib import Parallel, delayed

        items = Parallel(n_jobs=jobs, return_as="generator")(
            delayed(_file_inputs)(p, computer, window, hop, max_windows) for p in paths)
    rows: list[dict[str, Any]] = []
    for item in items:
        for category, text in item["warnings"]:
            warnings.warn(text, category, stacklevel=2)
        rows.extend(_predict_file(model, item, window is not None))
    df = pd.DataFrame(rows, columns=_columns(model))
    df["level"] = df["level"].astype(str)
    for c in ("start", "end"):
        df[c] = df[c].astype(np.float64)
    df["error"] = df["error"].astype(object).where(df["error"].notna(), None)
    return df


def write_predictions(df: pd.DataFrame, out: str | os.PathLike | None) -> None:
    """Write predictions as CSV or JSON (a list of records) by ``out``'s extension (none: CSV to stdout).

    Floats are written with full precision (reading them back gives the same numbers).
    """
    import sys

    if out is None or str(out) == "-":
        df.to_csv(sys.stdout, index=False)
        return
    out = Path(out)
    ext = out.suffix.lower()
    if ext not in (".csv", ".json"):
        raise ValueError(f"{out}: unknown output format {ext or '(no extension)'!r}; use .csv or .json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".csv":
        df.to_csv(out, index=False)
    else:
        import json

        records = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
                   for r in df.astype(object).to_dict(orient="records")]
        out.write_text(json.dumps(records, indent=2) + "\n")  # floats written exactly (repr), NaN -> null

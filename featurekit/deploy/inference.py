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
from featurekit.executor import Executor, executor_for

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


def _stack(xs: list[np.ndarray], sequences: bool):
    """One file's window features as model input rows (an object array of sequences, or a matrix)."""
    if sequences:
        x = np.empty(len(xs), dtype=object)
        for i, s in enumerate(xs):
            x[i] = s
        return x
    return np.vstack(xs).astype(np.float32)


def _normalise(pipe, x, reference):
    """``pipe`` without its speaker step and ``x`` as that remainder's input.

    A speaker-normalised pipeline z-scores ``x`` with the statistics of ``reference`` (the speaker's
    enrolment features) or, when it is None, the training population's (the caller warns once).
    """
    from featurekit.evaluation.normalisation import PopulationStatisticsWarning
    from featurekit.evaluation.pipeline import model_steps, speaker_step

    step = speaker_step(pipe)
    if step is None:
        return pipe, x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PopulationStatisticsWarning)
        return model_steps(pipe), step.transform(x, reference=reference)


def _columns(model: SavedModel) -> list[str]:
    if model.task == "classification":
        return ["file", "level", "start", "end", "label", *[f"p[{c}]" for c in model.classes],
                "normalisation", "error"]
    return ["file", "level", "start", "end", *model.targets, "normalisation", "error"]


def _predict_file(model: SavedModel, item: dict[str, Any], windowed: bool, reference=None,
                  how: str | None = None) -> list[dict[str, Any]]:
    path = item["file"]
    how = how or model.normalisation
    if item["error"]:
        return [{"file": path, "level": "file", "start": np.nan, "end": np.nan, "normalisation": how,
                 "error": item["error"]}]
    fs = model.meta["feature_set"]
    raw = _stack(item["x"], fs["sequences"] or fs.get("waveform", False))  # signals: an object array

    def model_input(pipe):
        return _normalise(pipe, raw, reference)

    if model.task == "classification":
        p = class_probabilities(*model_input(next(iter(model.pipelines.values()))))
        names = [f"p[{c}]" for c in model.classes]
        values = p
        labels = [model.classes[i] for i in p.argmax(axis=1)]
    else:
        names = model.targets
        values = np.column_stack([np.asarray(rest.predict(x), dtype=np.float64).reshape(len(x), -1)[:, 0]
                                  for rest, x in (model_input(model.pipelines[t]) for t in model.targets)])
        labels = None
    rows = []
    if windowed:
        wins = [(s, e, i, None) for i, (s, e) in enumerate(item["spans"])]
        wins += [(s, e, None, reason) for s, e, reason in item["skipped"]]
        for s, e, i, reason in sorted(wins, key=lambda t: (t[0], t[1])):
            r: dict[str, Any] = {"file": path, "level": "window", "start": s, "end": e, "normalisation": how,
                                 "error": reason}
            if i is not None:
                r.update(zip(names, values[i].tolist()))
                if labels is not None:
                    r["label"] = labels[i]
            rows.append(r)
    agg = values.mean(axis=0)
    r = {"file": path, "level": "file", "start": 0.0, "end": item["duration"], "normalisation": how,
         "error": None}
    r.update(zip(names, agg.tolist()))
    if labels is not None:
        r["label"] = model.classes[int(np.argmax(agg))]
    rows.append(r)
    return rows


def predict(model: str | os.PathLike | SavedModel,
            audio_paths: str | os.PathLike | Iterable[str | os.PathLike], *, window: float | None = None,
            hop: float | None = None, jobs: int = 1, max_windows: int = DEFAULT_MAX_WINDOWS,
            speaker_reference: Iterable[str | os.PathLike] | None = None,
            speakers: Iterable[str] | None = None, executor: Executor | None = None) -> pd.DataFrame:
    """Label recordings with a saved model.

    Without ``window`` every file is one unit (decoded whole, conditioned like the training data) and
    gets one row. With ``window`` (and ``hop``, default ``window``) in seconds every file is read in
    blocks and cut into windows that cover it entirely (see :mod:`featurekit.deploy.windows`): one
    row per window, then one row per file (``level == "file"``) whose probabilities are the mean of
    its windows' probabilities (regression: the mean of the windows' values) and whose label is their
    argmax. A recording shorter than the window is one window (with a
    :class:`~featurekit.deploy.windows.ShortRecordingWarning`). Audio at another rate is resampled to
    the model's (soxr VHQ).

    Per-speaker normalisation (a model trained with ``normalisation = "speaker"``) needs the statistics
    of the recording's speaker, from enrolment audio: ``speaker_reference`` (files of the one speaker of
    all ``audio_paths``), or ``speakers`` (a speaker per path: each speaker's input files, whole, are
    pooled as that speaker's enrolment). The enrolment files are featurised whole, like the training
    utterances, and their mean/std normalise every window (or whole file) of that speaker. Without
    either, the training population's mean/std are used, with a
    :class:`~featurekit.evaluation.normalisation.PopulationStatisticsWarning`. A recording is never
    normalised against its own windows alone. The ``normalisation`` column says what each row used
    (``speaker:reference``, ``speaker:speakers``, ``speaker:population``, ``global`` or ``none``).

    The per-file label of a windowed prediction is the argmax of the mean of its windows'
    probabilities (soft voting); it can differ from the whole-file label, whose features are computed
    over the whole recording (functionals of a window are not the mean of a file's), but both use the
    same normalisation statistics.

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
        Worker processes across files (without ``executor``: :func:`~featurekit.executor.executor_for`).
    executor
        Where the files are decoded and featurised (:mod:`featurekit.executor`); not closed here.
    max_windows
        A file that would yield more windows is refused before decoding (its row carries the error).
    speaker_reference
        Enrolment recordings of the speaker of every input (per-speaker normalised models only).
    speakers
        The speaker of each of ``audio_paths`` (per-speaker normalised models only): each speaker's
        files are pooled as their enrolment. Not together with ``speaker_reference``.

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
    if executor is None:
        with executor_for(jobs=jobs if len(paths) > 1 else 1) as owned:
            return predict(model, paths, window=window, hop=hop, max_windows=max_windows,
                           speaker_reference=speaker_reference, speakers=speakers, executor=owned)
    computer = FeatureComputer(model.meta["feature_set"], AudioOptions(**model.meta["audio"]))
    references, how = _references(model, computer, paths, speaker_reference, speakers, executor)
    rows: list[dict[str, Any]] = []
    for item in _inputs(computer, paths, window, hop, max_windows, executor):
        for category, text in item["warnings"]:
            warnings.warn(text, category, stacklevel=2)
        rows.extend(_predict_file(model, item, window is not None, references.get(item["file"]), how))
    df = pd.DataFrame(rows, columns=_columns(model))
    df["level"] = df["level"].astype(str)
    for c in ("start", "end"):
        df[c] = df[c].astype(np.float64)
    df["error"] = df["error"].astype(object).where(df["error"].notna(), None)
    return df


def _inputs(computer: FeatureComputer, paths: list[str], window, hop, max_windows: int, executor: Executor):
    """:func:`_file_inputs` of every path, in the order of ``paths`` (computed on ``executor``)."""
    tasks = ((i, {"path": p, "computer": computer, "window": window, "hop": hop, "max_windows": max_windows})
             for i, p in enumerate(paths))
    done: dict[int, dict[str, Any]] = {}
    following = 0
    for i, item in executor.map(_file_inputs, tasks):
        done[i] = item
        while following in done:  # in order, as soon as the next one is there
            yield done.pop(following)
            following += 1


def _references(model: SavedModel, computer: FeatureComputer, paths: list[str], speaker_reference,
                speakers, executor: Executor) -> tuple[dict[str, Any], str]:
    """Enrolment features per input path (``{path: features}``) and the ``normalisation`` label."""
    from featurekit.evaluation.normalisation import PopulationStatisticsWarning

    if speaker_reference is not None and speakers is not None:
        raise ValueError("predict: give speaker_reference or speakers, not both")
    if model.normalisation != "speaker":
        if speaker_reference is not None or speakers is not None:
            raise ValueError(f"predict: the model uses {model.normalisation!r} normalisation; speaker "
                             f"enrolment (speaker_reference/speakers) applies to per-speaker normalisation")
        return {}, model.normalisation
    from featurekit.evaluation.pipeline import speaker_step

    if any(speaker_step(pipe) is None for pipe in model.pipelines.values()):
        raise ValueError(f"{model.directory}: a per-speaker normalised model without its SpeakerNormaliser "
                         f"step (written by an older featurekit, whose predictions normalised a recording "
                         f"against its own windows); retrain it with `featurekit train`")
    if speaker_reference is None and speakers is None:
        warnings.warn(f"{model.directory}: per-speaker normalised model and no enrolment audio of the "
                      f"speaker (speaker_reference or speakers): the training population's statistics "
                      f"were used, which is less accurate", PopulationStatisticsWarning, stacklevel=3)
        return {}, "speaker:population"
    if speaker_reference is not None:
        refs = [str(p) for p in ([speaker_reference] if isinstance(speaker_reference, (str, os.PathLike))
                                 else speaker_reference)]
        groups = {"": refs}
        of = dict.fromkeys(paths, "")
        how = "speaker:reference"
    else:
        speakers = [str(s) for s in speakers]
        if len(speakers) != len(paths):
            raise ValueError(f"predict: {len(speakers)} speakers for {len(paths)} files")
        of = dict(zip(paths, speakers))
        groups = {}
        for p, s in of.items():
            groups.setdefault(s, []).append(p)
        how = "speaker:speakers"
    sequences = model.meta["feature_set"]["sequences"]
    features: dict[str, Any] = {}
    for group, files in groups.items():
        good = []
        for item in _inputs(computer, list(dict.fromkeys(files)), None, None, DEFAULT_MAX_WINDOWS, executor):
            if item["error"]:
                warnings.warn(f"speaker enrolment: {item['error']} (left out)", UserWarning, stacklevel=3)
            else:
                good.extend(item["x"])
        who = f"speaker {group!r}" if group else "the speaker reference"
        if len(good) < 2:
            raise ValueError(f"predict: {who} has {len(good)} usable enrolment recording(s); per-speaker "
                             f"statistics need at least two")
        features[group] = _stack(good, sequences)
    return {p: features[g] for p, g in of.items()}, how


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

"""The registered design-audit checks and their thresholds.

Every threshold is a module constant, documented here and in the README ("Design audit"):

==============================  =====  ==========================================================
SINGLE_LABEL_ERROR_SHARE        0.5    per-speaker normalisation is an error when more than this
                                       share of speakers carry a single label
SINGLE_LABEL_WARNING_SHARE      0.2    a warning (any normalisation) from this share on
SPEAKER_ETA2_ERROR / _WARNING   0.5 /  regression: the same for the share of a target's variance
                                0.2    between speakers' means (eta squared)
MIN_SPEAKER_UTTERANCES          10     per-speaker statistics from fewer utterances: a warning
MIN_VECTOR_UTTERANCES           2      per-speaker z-scoring of vectors needs a standard deviation:
                                       fewer utterances is an error (the features become 0)
MIN_TEST_FOLD_UTTERANCES        10     a test fold with fewer utterances: a warning
MAX_CLASS_IMBALANCE             10     largest / smallest class count (overall or in a training
                                       fold) above this: a warning
SENTENCE_UAR_MARGIN             0.10   the label predicted from the sentence alone, under the
                                       protocol's folds, beating chance by more: a warning
==============================  =====  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from featurekit.audit.core import AuditContext, Finding, FoldLike, Severity, register_check
from featurekit.audit.statistics import correlation_ratio, cramers_v, entropy_bits, information_share

SINGLE_LABEL_ERROR_SHARE = 0.5
SINGLE_LABEL_WARNING_SHARE = 0.2
SPEAKER_ETA2_ERROR = 0.5
SPEAKER_ETA2_WARNING = 0.2
MIN_SPEAKER_UTTERANCES = 10
MIN_VECTOR_UTTERANCES = 2
MIN_SEQUENCE_UTTERANCES = 1  # LLD sequences: statistics over a speaker's frames
MIN_TEST_FOLD_UTTERANCES = 10
MAX_CLASS_IMBALANCE = 10.0
SENTENCE_COLUMNS = ("sentence", "statement", "transcript", "text", "word")
SENTENCE_UAR_MARGIN = 0.10
SHOW = 5  # examples named in a message
DETAIL_LIMIT = 200  # entries kept in a details list


def _present(codes: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Which of ``n`` codes occur among ``codes[rows]`` (a boolean mask)."""
    return np.bincount(codes[rows], minlength=n) > 0


def _names(items: Sequence, n: int = SHOW) -> str:
    items = list(items)
    head = ", ".join(str(x) for x in items[:n])
    return head + (f" (+{len(items) - n} more)" if len(items) > n else "")


# -- speaker x label ------------------------------------------------------------------------------
@register_check(
    "speaker_label_confound",
    "share of speakers with a single label and the label entropy within speakers; per-speaker "
    "normalisation on a corpus where most speakers have one label is an error",
)
def speaker_label_confound(ctx: AuditContext) -> list[Finding]:
    per_speaker = "speaker" in ctx.normalisations()
    if not ctx.classification:
        return [_speaker_target_share(ctx, t, per_speaker) for t in ctx.targets]
    name = "speaker_label_confound"
    y, spk = ctx.labels, ctx.speakers
    frame = pd.DataFrame({"speaker": spk, "label": y})
    n_labels = frame.groupby("speaker")["label"].nunique()
    single = n_labels[n_labels == 1]
    share = len(single) / len(n_labels)
    k = len(np.unique(y))
    h_max = float(np.log2(k)) if k > 1 else 0.0
    within = frame.groupby("speaker")["label"].agg(lambda v: entropy_bits(v.to_numpy()))
    info = information_share(y, spk)
    only = frame.drop_duplicates("speaker").set_index("speaker")["label"]
    details = {
        "speakers": len(n_labels),
        "single_label_speakers": len(single),
        "single_label_share": share,
        "single_label": {s: only[s] for s in list(single.index)[:DETAIL_LIMIT]},
        "mean_within_speaker_entropy_bits": float(within.mean()),
        "max_entropy_bits": h_max,
        "normalised_within_speaker_entropy": float(within.mean() / h_max) if h_max else 0.0,
        "label_information_share_of_speaker": info,
        "per_speaker_normalisation": per_speaker,
        "error_share": SINGLE_LABEL_ERROR_SHARE,
        "warning_share": SINGLE_LABEL_WARNING_SHARE,
    }
    numbers = (
        f"{len(single)} of {len(n_labels)} speakers ({share:.0%}) carry a single label; label entropy "
        f"within speakers {within.mean():.2f} of {h_max:.2f} bits; speaker identity carries "
        f"{info:.0%} of the label information"
    )
    if per_speaker and share > SINGLE_LABEL_ERROR_SHARE:
        return [
            Finding(
                name,
                Severity.ERROR,
                f"per-speaker normalisation on a speaker-label confounded corpus: {numbers}. "
                "Z-scoring each speaker with their own statistics removes the speaker's mean, "
                "and for a single-label speaker that mean is the label (results fall below "
                "chance); use global normalisation",
                details,
            )
        ]
    if share >= SINGLE_LABEL_WARNING_SHARE:
        extra = (
            " Per-speaker normalisation removes part of the label with each speaker's mean."
            if per_speaker
            else ""
        )
        return [
            Finding(
                name,
                Severity.WARNING,
                f"speaker and label are confounded: {numbers}; a model may recognise who "
                f"speaks rather than the emotion.{extra}",
                details,
            )
        ]
    return [Finding(name, Severity.OK, numbers, details)]


def _speaker_target_share(ctx: AuditContext, target: str, per_speaker: bool) -> Finding:
    """Regression: the share of a target's variance between speakers (eta squared)."""
    values = ctx.manifest[target].to_numpy(float)
    eta2 = correlation_ratio(values, ctx.speakers)
    sd = pd.Series(values).groupby(ctx.speakers).std(ddof=0)
    constant = int((sd == 0).sum())
    details = {
        "target": target,
        "eta_squared": eta2,
        "speakers": len(sd),
        "constant_target_speakers": constant,
        "per_speaker_normalisation": per_speaker,
        "error_eta_squared": SPEAKER_ETA2_ERROR,
        "warning_eta_squared": SPEAKER_ETA2_WARNING,
    }
    numbers = (
        f"{eta2:.0%} of the variance of {target!r} lies between speakers' means; "
        f"{constant} of {len(sd)} speakers have a constant {target!r}"
    )
    name = "speaker_label_confound"
    if per_speaker and eta2 > SPEAKER_ETA2_ERROR:
        return Finding(
            name,
            Severity.ERROR,
            f"per-speaker normalisation on a speaker-target confounded "
            f"corpus: {numbers}; z-scoring each speaker removes that part of the target; use "
            "global normalisation",
            details,
        )
    if eta2 >= SPEAKER_ETA2_WARNING:
        return Finding(name, Severity.WARNING, f"speaker and target are confounded: {numbers}", details)
    return Finding(name, Severity.OK, numbers, details)


# -- data per speaker -----------------------------------------------------------------------------
@register_check(
    "speaker_data",
    "too little data per speaker for per-speaker statistics (fewer utterances than the features "
    "need, or fewer than MIN_SPEAKER_UTTERANCES)",
)
def speaker_data(ctx: AuditContext) -> list[Finding]:
    name = "speaker_data"
    cells = ctx.per_speaker_cells()
    counts = pd.Series(ctx.speakers).value_counts().sort_index()
    details = {
        "min_utterances": int(counts.min()),
        "median_utterances": float(counts.median()),
        "speakers": len(counts),
        "minimum": MIN_SPEAKER_UTTERANCES,
    }
    if not cells:
        return [
            Finding(
                name,
                Severity.OK,
                "no cell uses per-speaker normalisation (speakers hold "
                f"{counts.min()} to {counts.max()} utterances)",
                details,
            )
        ]
    vectors = sorted({c.feature_set for c in cells if not c.sequences})
    need = MIN_VECTOR_UTTERANCES if vectors else MIN_SEQUENCE_UTTERANCES
    too_few = counts[counts < need]
    thin = counts[counts < MIN_SPEAKER_UTTERANCES]
    details.update(
        need=need,
        too_few={s: int(n) for s, n in too_few.items()},
        below_minimum={s: int(n) for s, n in list(thin.items())[:DETAIL_LIMIT]},
        per_speaker_sets=sorted({c.feature_set for c in cells}),
    )
    if len(too_few):
        return [
            Finding(
                name,
                Severity.ERROR,
                f"{len(too_few)} speaker(s) hold fewer than {need} utterances "
                f"({_names(f'{s}: {n}' for s, n in too_few.items())}): per-speaker z-scoring of "
                f"vector features ({_names(vectors, 3)}) has no standard deviation for them and "
                "sets all their features to 0",
                details,
            )
        ]
    if len(thin):
        return [
            Finding(
                name,
                Severity.WARNING,
                f"{len(thin)} of {len(counts)} speakers hold fewer than {MIN_SPEAKER_UTTERANCES} "
                f"utterances ({_names(f'{s}: {n}' for s, n in thin.items())}): their per-speaker "
                "mean and standard deviation come from few utterances and follow what those "
                "utterances say and express",
                details,
            )
        ]
    return [
        Finding(
            name,
            Severity.OK,
            f"every speaker holds at least {MIN_SPEAKER_UTTERANCES} utterances "
            f"for per-speaker statistics (min {counts.min()}, median {counts.median():g})",
            details,
        )
    ]


# -- duplicates -----------------------------------------------------------------------------------
@register_check(
    "duplicate_audio",
    "identical audio under different ids (content fingerprints), listed with both ids and their "
    "folds; training and test of one fold sharing a recording is a leak",
)
def duplicate_audio(ctx: AuditContext) -> list[Finding]:
    name = "duplicate_audio"
    if ctx.fingerprints is None:
        return [Finding(name, Severity.WARNING, "not checked: no content fingerprints were given")]
    m = ctx.manifest
    fps = pd.Series(ctx.fingerprints, dtype=object)
    unreadable = int(fps.isna().sum())
    key = fps.astype(str)
    for col in ("start", "end"):  # segments of one file are different audio
        if col in m:
            key = key + "|" + m[col].astype(str).to_numpy()
    key[fps.isna().to_numpy()] = None
    rows = np.flatnonzero((key.duplicated(keep=False) & key.notna()).to_numpy())  # only copies are grouped
    groups = [
        np.sort(np.asarray(g))
        for g in pd.Series(rows, index=rows).groupby(key.to_numpy()[rows]).groups.values()
    ]
    details: dict = {
        "compared": len(m) - unreadable,
        "unreadable": unreadable,
        "duplicate_groups": len(groups),
    }
    if not groups:
        note = f"; {unreadable} unreadable file(s) not compared" if unreadable else ""
        return [
            Finding(
                name,
                Severity.OK,
                f"no two of {len(m) - unreadable} utterances share identical "
                f"audio (content fingerprints){note}",
                details,
            )
        ]
    ids, spk = ctx.ids, ctx.speakers
    rows = np.concatenate(groups)
    column = np.full(len(m), -1)
    column[rows] = np.arange(len(rows))
    role = np.zeros((len(ctx.folds), len(rows)), dtype=np.int8)  # fold x copy: 1 train, 2 test
    tested_in: dict[int, list[str]] = {int(r): [] for r in rows}
    for j, f in enumerate(ctx.folds):
        r = np.zeros(len(m), dtype=np.int8)
        r[f.train] = 1
        r[f.test] = 2
        role[j] = r[rows]
        for i in rows[role[j] == 2]:
            tested_in[int(i)].append(f.name)
    leaks, listed = [], []
    for g in groups:
        listed.append(
            {
                "ids": ids[g].tolist(),
                "speakers": spk[g].tolist(),
                "test_folds": [tested_in[int(i)] for i in g],
            }
        )
        sub = role[:, column[g]]
        for j in np.flatnonzero((sub == 2).any(axis=1) & (sub == 1).any(axis=1)):
            f, r = ctx.folds[j], sub[j]
            for a in g[r == 2]:
                for b in g[r == 1]:
                    leaks.append(
                        {
                            "fold": f.name,
                            "test_id": ids[a],
                            "test_speaker": spk[a],
                            "train_id": ids[b],
                            "train_speaker": spk[b],
                            "train_id_tested_in": tested_in[int(b)],
                        }
                    )
    details.update(groups=listed[:DETAIL_LIMIT], leaks=leaks[:DETAIL_LIMIT], n_leaks=len(leaks))
    if leaks:
        shown = [
            f"{x['test_id']} (speaker {x['test_speaker']}, tested in {x['fold']}) = {x['train_id']} "
            f"(speaker {x['train_speaker']}, in its training fold; tested in "
            f"{'/'.join(x['train_id_tested_in']) or 'no fold'})"
            for x in leaks
        ]
        return [
            Finding(
                name,
                Severity.ERROR,
                f"identical audio across folds: {len(groups)} group(s) of identical recordings under "
                f"different ids; {len(leaks)} test utterance(s) have a copy in their training fold, a "
                f"leak from training into test: {_names(shown, 3)}",
                details,
            )
        ]
    return [
        Finding(
            name,
            Severity.WARNING,
            f"{len(groups)} group(s) of identical recordings under different ids "
            f"({_names(['='.join(x['ids']) for x in listed], 3)}), always in the same fold (no "
            "leak, but each is counted more than once)",
            details,
        )
    ]


# -- sentence / transcript ------------------------------------------------------------------------
def label_from_column(
    values: np.ndarray, labels: np.ndarray, folds: Sequence[FoldLike]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Predict each test utterance's label from its ``values`` entry (sentence) alone: the label
    with the highest class-balanced frequency of that entry in the training fold (the count divided
    by the class's size: the rule that maximises UAR, as class-weighted models aim to); unseen
    entries get the training fold's most frequent label.

    Returns the pooled true labels, predictions, and the share of test utterances whose entry
    occurs in their training fold.
    """
    classes, y = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    levels, v = np.unique(np.asarray(values).astype(str), return_inverse=True)
    k = len(classes)
    true, pred, seen = [], [], 0
    for f in folds:
        counts = np.bincount(v[f.train] * k + y[f.train], minlength=len(levels) * k).reshape(-1, k)
        sizes = np.bincount(y[f.train], minlength=k)
        fallback = sizes.argmax()  # ties: the first label in sorted order
        rows = counts[v[f.test]]
        hit = rows.sum(axis=1) > 0
        seen += int(hit.sum())
        balanced = rows / np.maximum(sizes, 1)
        pred.append(classes[np.where(hit, balanced.argmax(axis=1), fallback)])
        true.append(classes[y[f.test]])
    n = sum(len(t) for t in true)
    return np.concatenate(true), np.concatenate(pred), seen / n if n else 0.0


@register_check(
    "sentence_confound",
    "share of label information carried by the sentence / transcript alone (Cramér's V, information "
    "share, and a label-from-sentence classifier under the protocol's folds vs chance)",
)
def sentence_confound(ctx: AuditContext) -> list[Finding]:
    from featurekit.evaluation.metrics import uar  # same layer; late import (evaluation imports the audit)

    name = "sentence_confound"
    m = ctx.manifest
    cols = [c for c in SENTENCE_COLUMNS if c in m and m[c].notna().any()]
    if not cols:
        return [
            Finding(
                name,
                Severity.OK,
                "not applicable: the manifest has no sentence or transcript "
                f"column ({', '.join(SENTENCE_COLUMNS)})",
            )
        ]
    if not ctx.classification:
        return [
            Finding(
                name,
                Severity.OK,
                f"not measured: {', '.join(cols)} present, but the check covers classification tasks only",
                {"columns": cols},
            )
        ]
    y = ctx.labels
    out = []
    for col in cols:
        v = m[col].fillna("").astype(str).str.strip().str.lower().to_numpy()
        true, pred, seen = label_from_column(v, y, ctx.folds)
        score = uar(true, pred)
        chance = 1.0 / len(np.unique(true))
        details = {
            "column": col,
            "values": int(len(np.unique(v))),
            "cramers_v": cramers_v(y, v),
            "label_information_share": information_share(y, v),
            "label_from_sentence_uar": score,
            "chance_uar": chance,
            "seen_in_training_share": seen,
            "margin": SENTENCE_UAR_MARGIN,
        }
        numbers = (
            f"{col!r} ({details['values']} values): the label predicted from the {col} alone "
            f"(class-balanced, learnt in the training fold) reaches UAR {score:.2f} under this "
            f"protocol vs chance {chance:.2f}; Cramér's V {details['cramers_v']:.2f}, "
            f"{details['label_information_share']:.0%} of the label information"
        )
        if score > chance + SENTENCE_UAR_MARGIN:
            out.append(
                Finding(
                    name,
                    Severity.WARNING,
                    f"{numbers}: features that carry the words (text, ASR, speech encoders) can "
                    "score from what is said rather than how; report this text-only baseline "
                    "beside them",
                    details,
                )
            )
        else:
            out.append(
                Finding(name, Severity.OK, f"{numbers}: the words do not give the label away", details)
            )
    return out


# -- folds ------------------------------------------------------------------------------------------
def missing_training_classes(folds: Sequence[FoldLike], labels: np.ndarray) -> list[tuple[str, list[str]]]:
    """``(fold name, classes its training part lacks)`` for every fold that lacks any."""
    classes, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    out = []
    for f in folds:
        lacking = ~_present(codes, f.train, len(classes))
        if lacking.any():
            out.append((f.name, classes[lacking].tolist()))
    return out


@register_check(
    "fold_health",
    "test folds holding a single class (UAR = one recall), training folds missing classes, extreme "
    "class imbalance, folds with very few utterances",
)
def fold_health(ctx: AuditContext) -> list[Finding]:
    name = "fold_health"
    folds = list(ctx.folds)
    if not folds:
        return [Finding(name, Severity.WARNING, "not checked: the protocol gave no folds")]
    n_test = {f.name: len(f.test) for f in folds}
    small = {k: v for k, v in n_test.items() if v < MIN_TEST_FOLD_UTTERANCES}
    details: dict = {
        "folds": len(folds),
        "test_sizes": {"min": min(n_test.values()), "max": max(n_test.values())},
        "min_train": min(len(f.train) for f in folds),
    }
    out = []
    if ctx.classification:
        y = ctx.labels
        yc, classes = ctx.codes(ctx.targets[0])
        counts = pd.Series(y).value_counts()
        ratio = float(counts.max() / counts.min())
        train_ratio, worst = 0.0, None
        single = []
        for f in folds:
            c = np.bincount(yc[f.train], minlength=len(classes))
            c = c[c > 0]
            r = float(c.max() / c.min()) if len(c) else 0.0
            if r > train_ratio:
                train_ratio, worst = r, f.name
            present = classes[_present(yc, f.test, len(classes))]
            if len(present) == 1:
                single.append((f.name, str(present[0])))
        lacking = missing_training_classes(folds, y)
        details.update(
            classes={k: int(v) for k, v in counts.items()},
            imbalance_ratio=ratio,
            worst_training_imbalance={"fold": worst, "ratio": train_ratio},
            single_class_test_folds=dict(single[:DETAIL_LIMIT]),
            training_folds_lacking_classes=dict(lacking[:DETAIL_LIMIT]),
            max_imbalance=MAX_CLASS_IMBALANCE,
        )
        if lacking:
            out.append(
                Finding(
                    name,
                    Severity.ERROR,
                    f"{len(lacking)} training fold(s) lack classes ("
                    f"{_names(f'{k}: {v}' for k, v in lacking)}): the model can never predict them",
                    details,
                )
            )
        if single:
            out.append(
                Finding(
                    name,
                    Severity.WARNING,
                    f"{len(single)} of {len(folds)} test folds hold a single class "
                    f"({_names(f'{k}: {v}' for k, v in single)}): the UAR of such a fold equals the "
                    "recall of that one class (its accuracy), so fold means of UAR average recalls "
                    "of different classes; read the pooled UAR",
                    details,
                )
            )
        if max(ratio, train_ratio) > MAX_CLASS_IMBALANCE:
            out.append(
                Finding(
                    name,
                    Severity.WARNING,
                    f"extreme class imbalance: largest / smallest class {ratio:.1f}:1 "
                    f"({counts.idxmax()} {counts.max()}, {counts.idxmin()} {counts.min()}); worst "
                    f"training fold {worst} {train_ratio:.1f}:1",
                    details,
                )
            )
        summary = (
            f"{len(folds)} folds; every training fold holds all {len(counts)} classes, no test fold "
            f"holds a single class, largest / smallest class {ratio:.1f}:1"
        )
    else:
        constant = []
        for f in folds:
            for t in ctx.targets:
                if np.ptp(ctx.manifest[t].to_numpy(float)[f.test]) == 0:
                    constant.append(f"{f.name} ({t})")
        details.update(constant_target_test_folds=constant[:DETAIL_LIMIT])
        if constant:
            out.append(
                Finding(
                    name,
                    Severity.WARNING,
                    f"{len(constant)} test fold(s) hold a constant target ({_names(constant)}): CCC "
                    "and Pearson r are undefined there",
                    details,
                )
            )
        summary = f"{len(folds)} folds; no test fold holds a constant target"
    if small:
        out.append(
            Finding(
                name,
                Severity.WARNING,
                f"{len(small)} test fold(s) hold fewer than {MIN_TEST_FOLD_UTTERANCES} utterances "
                f"({_names(f'{k}: {v}' for k, v in small.items())}): one utterance moves their "
                "metrics by a large step",
                details,
            )
        )
    if not out:
        out.append(
            Finding(
                name,
                Severity.OK,
                f"{summary}; test folds hold {min(n_test.values())}-{max(n_test.values())} utterances",
                details,
            )
        )
    return out


# -- groups -----------------------------------------------------------------------------------------
def _shared_between_train_and_test(
    folds: Sequence[FoldLike], values: np.ndarray
) -> list[tuple[str, list[str]]]:
    """``(fold name, values in both its training and test parts)`` for the folds with any."""
    levels, codes = np.unique(np.asarray(values).astype(str), return_inverse=True)
    out = []
    for f in folds:
        both = _present(codes, f.train, len(levels)) & _present(codes, f.test, len(levels))
        if both.any():
            out.append((f.name, levels[both].tolist()))
    return out


@register_check(
    "group_integrity",
    "speakers in several sessions when sessions are the groups (and sessions split between training "
    "and test when speakers are), so that a grouped protocol is not silently speaker-dependent",
)
def group_integrity(ctx: AuditContext) -> list[Finding]:
    name = "group_integrity"
    m, spk, group = ctx.manifest, ctx.speakers, ctx.group
    groups = m[group].astype(str).to_numpy() if group in m else spk
    span = pd.Series(groups).groupby(spk).unique()
    multi = span[span.map(len) > 1].map(len)
    shared = _shared_between_train_and_test(ctx.folds, spk)
    details: dict = {
        "group": group,
        "speakers_in_several_groups": {s: sorted(span[s])[:20] for s in list(multi.index)[:DETAIL_LIMIT]},
        "folds_sharing_speakers": {k: v[:20] for k, v in shared[:DETAIL_LIMIT]},
    }
    out = []
    if not ctx.speaker_independent:
        return [
            Finding(
                name,
                Severity.OK,
                f"speaker-dependent protocol (labelled so in every output): "
                f"{len(shared)} of {len(ctx.folds)} folds share speakers between training and test",
                details,
            )
        ]
    if shared:
        why = (
            f"; {len(multi)} speaker(s) appear in more than one {group} "
            f"({_names(f'{s}: {n}' for s, n in multi.items())}): group by speaker"
            if group != "speaker" and len(multi)
            else ""
        )
        out.append(
            Finding(
                name,
                Severity.ERROR,
                f"the protocol is labelled speaker-independent, but {len(shared)} of {len(ctx.folds)} "
                f"folds have speakers in both training and test "
                f"({_names(f'{k}: {_names(v, 3)}' for k, v in shared)}){why}",
                details,
            )
        )
    if "session" in m and group != "session":
        sess = m["session"].astype(str)
        if "corpus" in m:  # cross-corpus: two corpora's session codes are different sessions
            sess = m["corpus"].astype(str) + ":" + sess
        sess = sess.to_numpy()
        split = _shared_between_train_and_test(ctx.folds, sess)
        per_session = pd.Series(spk).groupby(sess).nunique()
        details.update(
            sessions_with_several_speakers=int((per_session > 1).sum()),
            folds_sharing_sessions={k: v[:20] for k, v in split[:DETAIL_LIMIT]},
        )
        if split:
            out.append(
                Finding(
                    name,
                    Severity.WARNING,
                    f"{len(split)} of {len(ctx.folds)} folds have sessions in both training and test "
                    f"({_names(f'{k}: {_names(v, 3)}' for k, v in split)}); "
                    f"{int((per_session > 1).sum())} session(s) hold several speakers: the test "
                    "session's recording conditions (room, channel, dialogue partner) are in "
                    f'training. Leave-one-session-out (protocol.group = "session") avoids it',
                    details,
                )
            )
    if not out:
        out.append(
            Finding(
                name,
                Severity.OK,
                f"no speaker is in training and test of one fold "
                f"({len(ctx.folds)} folds grouped by {group}); no session is split across them",
                details,
            )
        )
    return out

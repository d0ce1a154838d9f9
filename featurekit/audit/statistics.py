"""Association measures the audit checks report (scipy and scikit-learn underneath)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def entropy_bits(values: np.ndarray) -> float:
    """Shannon entropy (bits) of the empirical distribution of ``values``."""
    from scipy.stats import entropy

    _, counts = np.unique(values, return_counts=True)
    return float(entropy(counts, base=2)) if len(counts) else 0.0


def information_share(labels: np.ndarray, groups: np.ndarray) -> float:
    """``I(label; group) / H(label)``: the share of the label's entropy that the group explains.

    0 when the groups say nothing about the label, 1 when each group carries a single label. The
    plug-in estimate is biased upwards when groups hold few utterances each (many unique values).
    """
    from sklearn.metrics import mutual_info_score

    h = entropy_bits(labels)
    if h == 0:
        return 0.0
    return float(mutual_info_score(labels, groups) / np.log(2) / h)


def cramers_v(labels: np.ndarray, groups: np.ndarray) -> float:
    """Cramér's V of the label x group contingency table (0: independent, 1: determined)."""
    from scipy.stats.contingency import association

    table = pd.crosstab(pd.Series(groups, name="g"), pd.Series(labels, name="y")).to_numpy()
    if min(table.shape) < 2:
        return 0.0
    return float(association(table, method="cramer"))


def correlation_ratio(values: np.ndarray, groups: np.ndarray) -> float:
    """Eta squared: the share of the variance of ``values`` lying between the groups' means."""
    values = np.asarray(values, dtype=float)
    total = float(((values - values.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    means = pd.Series(values).groupby(np.asarray(groups)).transform("mean").to_numpy()
    return float(((means - values.mean()) ** 2).sum() / total)

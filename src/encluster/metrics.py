"""Scores of a clustering against known labels.

ACC uses the Hungarian assignment of clusters to classes (scipy); NMI and ARI are
scikit-learn's. Purity is reported in both of its common forms: the global one
(sum of each cluster's majority count / N) and the original experiment's mean over
clusters, which weights a tiny pure cluster as much as a big mixed one.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from .errors import DataError

SCORE_NAMES = ("acc", "nmi", "ari", "purity", "mean_cluster_purity")


def contingency(y_true, y_pred):
    """Counts of (cluster, class) pairs: rows are clusters 0..max, columns classes 0..max."""
    y_true, y_pred = _check(y_true, y_pred)
    table = np.zeros((y_pred.max() + 1, y_true.max() + 1), dtype=np.int64)
    np.add.at(table, (y_pred, y_true), 1)
    return table


def hungarian_matching(y_true, y_pred):
    """The one-to-one cluster -> class map that maximises agreement, as a dict."""
    table = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, cols)}


def clustering_accuracy(y_true, y_pred):
    """ACC: the fraction of samples whose cluster maps to their class under the best
    one-to-one matching. With more clusters than classes, the extra clusters count as wrong."""
    table = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def purity(y_true, y_pred):
    """Sum over clusters of the majority class count, divided by the number of samples."""
    table = contingency(y_true, y_pred)
    return float(table.max(axis=1).sum() / table.sum())


def mean_cluster_purity(y_true, y_pred):
    """Mean over non-empty clusters of (majority class count / cluster size)."""
    table = contingency(y_true, y_pred)
    sizes = table.sum(axis=1)
    nonempty = sizes > 0
    return float(np.mean(table.max(axis=1)[nonempty] / sizes[nonempty]))


def score(y_true, y_pred):
    """All scores as a dict of floats, keyed by `SCORE_NAMES`."""
    y_true, y_pred = _check(y_true, y_pred)
    return {
        "acc": clustering_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "purity": purity(y_true, y_pred),
        "mean_cluster_purity": mean_cluster_purity(y_true, y_pred),
    }


def _check(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise DataError(f"labels of shape {y_true.shape} and assignments of shape {y_pred.shape}; need equal 1-D arrays")
    if len(y_true) == 0:
        raise DataError("no labels to score; scoring needs at least one sample")
    if y_true.min() < 0 or y_pred.min() < 0:
        raise DataError("labels and assignments must be non-negative integers")
    return y_true.astype(np.int64), y_pred.astype(np.int64)

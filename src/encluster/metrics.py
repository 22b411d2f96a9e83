"""Scores of a clustering against known labels.

ACC uses the Hungarian assignment of clusters to classes (scipy); NMI and ARI are
scikit-learn's. Purity is reported in both of its common forms: the global one
(sum of each cluster's majority count / N) and the original experiment's mean over
clusters, which weights a tiny pure cluster as much as a big mixed one.
"""

import logging

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from .errors import DataError
from .stages.cluster import kmeans_sampled

log = logging.getLogger(__name__)

SCORE_NAMES = ("acc", "nmi", "ari", "purity", "mean_cluster_purity")
# The raw-pixel baseline, whatever the method: k-means with 10 restarts, fitted on a seeded sample
# of 20,000 rows and polished over all of them. On MNIST-70k (seeds 0-2) that took 13.5-15.0 s for
# ACC 0.536-0.542, against 34-38 s for 0.535-0.542 fitting all 70,000 rows (see docs/benchmarks.md).
BASELINE_N_INIT = 10
BASELINE_FIT_SAMPLES = 20_000
# The silhouettes of the label-free comparison are taken on a seeded sample of at most this many rows.
SEPARATION_SAMPLE = 10_000


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


def score_run(y, labels, n_clusters, baseline_rows=None, *, space=None, random_state=0):
    """A run's scores for metrics.json. Given `baseline_rows` (the scaled input), k-means on them,
    the baseline the encoding is compared with, and `separation`, a comparison of the two that
    needs no labels (also made in `space`, where the encoding's clusters were found, when given).
    With labels, the scores of both, the confusion table and the matching of clusters to classes;
    without, None each."""
    scores = {name: None for name in SCORE_NAMES}
    baseline = None
    if baseline_rows is not None:
        # Every process takes part (k-means over their shards under torchrun).
        baseline, _ = kmeans_sampled(baseline_rows, n_clusters, n_init=BASELINE_N_INIT,
                                     max_fit_samples=BASELINE_FIT_SAMPLES, random_state=random_state)
        scores["separation"] = separation(baseline_rows, labels, baseline, space=space, random_state=random_state)
    if y is None:
        log.info("no labels: scores are skipped")
        return scores
    scores.update(score(y, labels))
    scores["confusion"] = contingency(y, labels).tolist()
    scores["matching"] = {str(c): v for c, v in hungarian_matching(y, labels).items()}
    if baseline is not None:
        scores["pixels"] = score(y, baseline)
    return scores


def separation(rows, labels, baseline, *, space=None, random_state=0, max_samples=SEPARATION_SAMPLE):
    """How well separated the encoding's clusters and the baseline's are: the mean silhouette of
    each on the same seeded sample of rows, measured on the scaled input (the space the baseline
    clusters, ``encoding`` and ``baseline``) and, given `space`, where the encoding's clusters were
    found (``encoding_in_space``, ``baseline_in_space``). No labels are used. Each space favours
    its own method's clusters, so ``raw_at_least_as_good`` needs the raw input's k-means clusters
    to look at least as well separated in both: then the encoding is likely not helping."""
    from sklearn.metrics import silhouette_score

    n = len(rows)
    chosen = np.arange(n) if n <= max_samples else np.sort(
        np.random.default_rng(random_state).choice(n, max_samples, replace=False))

    def silhouettes(points):
        X = np.asarray(points[chosen], dtype=np.float64)
        return [float(silhouette_score(X, a[chosen])) if 1 < len(np.unique(a[chosen])) < len(X) else -1.0
                for a in (labels, baseline)]

    encoding, raw = silhouettes(rows)
    found = {"encoding": round(encoding, 4), "baseline": round(raw, 4), "rows": int(len(chosen))}
    at_least_as_good = raw >= encoding
    if space is not None:
        encoding_there, raw_there = silhouettes(space)
        found.update(encoding_in_space=round(encoding_there, 4), baseline_in_space=round(raw_there, 4))
        at_least_as_good = at_least_as_good and raw_there >= encoding_there
    return {**found, "raw_at_least_as_good": bool(at_least_as_good)}

"""k-means on the encoding (and on raw pixels, the baseline), via scikit-learn."""

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from .errors import DataError
from .validation import check_n_clusters


def kmeans(X, n_clusters, *, n_init=10, random_state=None, what="data"):
    """Cluster `X` with k-means; return ``(labels, centers)``. `what` names `X` in errors.

    scikit-learn already moves an empty cluster's centre onto the point farthest from
    its own centre during Lloyd's iterations; what it only *warns* about is data with
    fewer distinct points than clusters (constant data, duplicates), where some clusters
    must stay empty. We turn that into an error, because the clustering is then not what
    the user asked for.
    """
    X = np.asarray(X)
    check_n_clusters(n_clusters, len(X))
    model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Number of distinct clusters", category=ConvergenceWarning)
        try:
            model.fit(X)
        except ConvergenceWarning:
            distinct = len(np.unique(X, axis=0))
            hint = ("the autoencoder collapsed; check the data is not constant, or train with more epochs or "
                    "another learning rate" if what == "codes" else
                    f"ask for at most {distinct} clusters or check the data is not constant")
            raise DataError(f"the {what} have only {distinct} distinct points, fewer than n_clusters={n_clusters}; "
                            f"{hint}") from None
    return model.labels_.astype(np.int64), model.cluster_centers_.astype(np.float32)


def kmeans_sampled(rows, n_clusters, *, n_init=10, random_state=None, max_fit_samples=100_000, what="data"):
    """k-means for data that may not fit in memory twice over: up to `max_fit_samples`
    rows it is exactly `kmeans`; above, the centres are fitted on a seeded random
    sample of that many rows and every row is then assigned in batches.

    rows : array-like or ScaledRows, indexable by row numbers and slices
    """
    n = len(rows)
    if n <= max_fit_samples:
        return kmeans(rows[0:n], n_clusters, n_init=n_init, random_state=random_state, what=what)
    sample = np.sort(np.random.default_rng(random_state).choice(n, max_fit_samples, replace=False))
    _, centers = kmeans(rows[sample], n_clusters, n_init=n_init, random_state=random_state, what=what)
    return nearest_center(rows, centers), centers


def nearest_center(X, centers, batch_size=16384):
    """Index of the nearest centre for each row of `X`, in batches to bound memory."""
    centers = np.asarray(centers, dtype=np.float64)
    sq_norms = (centers**2).sum(axis=1)
    labels = np.empty(len(X), dtype=np.int64)
    for start in range(0, len(X), batch_size):
        batch = np.asarray(X[start : start + batch_size], dtype=np.float64)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin.
        labels[start : start + batch_size] = np.argmin(sq_norms - 2 * batch @ centers.T, axis=1)
    return labels

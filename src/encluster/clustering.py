"""Clustering the encoding (and the raw pixels, the baseline), via scikit-learn: k-means,
Gaussian mixtures, and choosing the number of clusters when it is unknown."""

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture

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


def gaussian_mixture(X, n_clusters, *, n_init=1, random_state=None):
    """Fit a full-covariance Gaussian mixture to `X`; return ``(labels, mixture)``.

    N2D's choice for the UMAP embedding: its clusters are dense, unequal blobs that a
    mixture fits better than k-means' equal spheres.
    """
    X = np.asarray(X, dtype=np.float64)
    check_n_clusters(n_clusters, len(X))
    mixture = GaussianMixture(n_components=n_clusters, covariance_type="full", n_init=n_init,
                              random_state=random_state, reg_covar=1e-5)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        labels = mixture.fit_predict(X)
    return labels.astype(np.int64), mixture


MIXTURE_ARRAYS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def mixture_to_arrays(mixture):
    """The fitted arrays `mixture.predict` needs, by name (no pickle)."""
    return {name.rstrip("_"): getattr(mixture, name).astype(np.float64) for name in MIXTURE_ARRAYS}


def mixture_from_arrays(arrays):
    """Rebuild a fitted `GaussianMixture` from `mixture_to_arrays`' output; raises KeyError
    or ValueError when an array is missing or of the wrong shape."""
    weights, means = arrays["weights"], arrays["means"]
    k, d = means.shape
    if weights.shape != (k,) or any(arrays[n].shape != (k, d, d) for n in ("covariances", "precisions_cholesky")):
        raise ValueError(f"Gaussian mixture arrays do not fit {k} components of {d} dimensions")
    mixture = GaussianMixture(n_components=k, covariance_type="full")
    for name in MIXTURE_ARRAYS:
        setattr(mixture, name, np.asarray(arrays[name.rstrip("_")], dtype=np.float64))
    mixture.converged_, mixture.n_iter_, mixture.lower_bound_, mixture.n_features_in_ = True, 0, 0.0, d
    return mixture


def choose_n_clusters(X, candidates, *, random_state=None, max_samples=10_000):
    """Pick the number of clusters without labels: fit a Gaussian mixture for each
    candidate and keep the one whose clusters are best separated, by the mean silhouette
    (Rousseeuw 1987: how much closer each point is to its own cluster than to the next).

    The mixture's own BIC is not used: on a UMAP embedding (the space N2D clusters) the
    clusters are tight non-Gaussian shapes that more components always fit better, so
    BIC keeps falling up to the largest candidate. Returns ``(k, silhouettes)``, fitted
    on a seeded sample of at most `max_samples` rows (the silhouette needs all pairs).
    """
    X = np.asarray(X, dtype=np.float64)
    if len(X) > max_samples:
        X = X[np.random.default_rng(random_state).choice(len(X), max_samples, replace=False)]
    candidates = [k for k in candidates if 2 <= k < len(X)]
    if not candidates:
        raise DataError(f"too few samples ({len(X)}) to choose a number of clusters; give n_clusters explicitly")
    silhouettes = {}
    for k in candidates:
        labels, _ = gaussian_mixture(X, k, n_init=1, random_state=random_state)
        silhouettes[k] = float(silhouette_score(X, labels)) if len(np.unique(labels)) > 1 else -1.0
    return max(silhouettes, key=silhouettes.get), silhouettes

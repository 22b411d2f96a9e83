"""Checks on user-supplied arrays, with messages that say what was expected."""

import numpy as np
import scipy.sparse

from .errors import ConfigError, DataError, DataTypeError


def check_samples(X, *, name="X", finite=True):
    """Return `X` as a 2-D numeric array after checking it is usable.

    Rejects non-numeric, empty, wrongly shaped and (unless ``finite=False``, for a caller that
    checks this in its own pass over the data) non-finite input; 3-D and 4-D image stacks must
    be flattened by the caller first (the loaders do this).
    """
    if scipy.sparse.issparse(X):
        raise DataError(f"{name} is a sparse matrix, and sparse input is not supported: the network reads dense rows; "
                        "convert it with X.toarray() (or reduce its width first)")
    X = np.asarray(X)
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataTypeError(f"{name} holds values that are not numbers ({exc}); convert the data to a numeric "
                                "array") from None
    if np.issubdtype(X.dtype, np.complexfloating):
        raise DataError(f"{name} has dtype {X.dtype}: Complex data not supported; give real numbers (e.g. the "
                        "real and imaginary parts as two features)")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise DataError(f"{name} has dtype {X.dtype}; expected real numbers (convert the data to a numeric array)")
    if X.ndim != 2:
        raise DataError(f"{name} has shape {X.shape}; expected 2-D (n_samples, n_features). Reshape your data, e.g. "
                        "X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample")
    if X.shape[0] == 0:
        raise DataError(f"{name} has 0 sample(s) (shape={X.shape}) while a minimum of 1 is required")
    if X.shape[1] == 0:
        raise DataError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required; give at "
                        "least one column")
    if finite and np.issubdtype(X.dtype, np.floating):
        check_finite(sum(non_finite_rows(chunk) for chunk in row_chunks(X)), name)
    return X


def non_finite_rows(block):
    """How many rows of a float `block` hold NaN or an infinity."""
    return int((~np.isfinite(block)).any(axis=1).sum())


def check_finite(bad_rows, name="X"):
    """Refuse data with `bad_rows` rows holding NaN or infinite values."""
    if bad_rows:
        raise DataError(f"{name} contains NaN or infinite values in {bad_rows} samples; remove or impute them first")


def row_chunks(X, rows=16384):
    """Consecutive row blocks of `X`: whole-array checks on a memory-mapped file then
    need memory for one block, not for a temporary as large as the data."""
    for start in range(0, len(X), rows):
        yield X[start : start + rows]


def check_labels(y, n_samples, *, name="y"):
    """Return `y` as a 1-D integer array of length `n_samples` (or None)."""
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{name}: labels have shape {y.shape}; expected 1-D (n_samples,)")
    if len(y) != n_samples:
        raise DataError(f"{name}: {len(y)} labels for {n_samples} samples; the counts must match")
    if np.issubdtype(y.dtype, np.floating) and np.isnan(y).any():
        raise DataError(f"{name}: {int(np.isnan(y).sum())} of {len(y)} labels are NaN; give every sample a label, "
                        "or leave the labels out to cluster without scores")
    if not np.issubdtype(y.dtype, np.integer):
        _, y = np.unique(y, return_inverse=True)
    return y.astype(np.int64)


def check_n_clusters(n_clusters, n_samples):
    """Check the number of clusters against the data (a data-dependent check)."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise ConfigError(f"n_clusters={n_clusters!r}; expected an integer >= 1")
    if n_clusters > n_samples:
        raise DataError(f"n_clusters={n_clusters} is more than the {n_samples} samples; use at most {n_samples} clusters")


def check_members_per_cluster(n_clusters, n_samples):
    """Refuse a request for more clusters than the data can hold groups of (a user's `n_clusters`;
    the algorithms themselves accept up to one sample a cluster)."""
    if n_clusters > most_clusters(n_samples):
        raise DataError(f"n_clusters={n_clusters} leaves {n_samples / n_clusters:.1f} samples a cluster on average, "
                        f"too few to find groups in; use at most {most_clusters(n_samples)} clusters for "
                        f"{n_samples} samples")


def most_clusters(n_samples):
    """The most clusters `n_samples` can be split into: two members each on average (a cluster of one
    sample is no group, and a mixture of as many components as points takes minutes to fit)."""
    return max(2, n_samples // 2)

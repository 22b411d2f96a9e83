"""What each cluster of a table is, in the table's own units: the "decoded centroid" of rows
that are not images.

For every cluster: its size, the decoder's reconstruction of its centre and its members' median,
both mapped back through the model's scaling into the original units, and each feature's
standardised difference between the cluster and the rest (the difference of the means, in units
of the feature's standard deviation over all rows), whose largest magnitudes say what sets the
cluster apart and in which direction.
"""

import csv
import io

import numpy as np

from .validation import row_chunks

# The medians are taken on a seeded sample of at most this many rows (exact below it).
MEDIAN_SAMPLE = 100_000
TOP_FEATURES = 3


def feature_names_for(n_features, names=None):
    """The given column names, or x0, x1, ... when the data had none."""
    return list(names) if names is not None else [f"x{i}" for i in range(n_features)]


def cluster_profiles(X, labels, n_clusters, decoded_centers, names, *, random_state=0):
    """Profiles of every cluster of raw rows `X` (memory-mapped or not: read in blocks).

    decoded_centers : ndarray of shape (n_clusters, n_features)
        The decoder's output for each cluster centre, already in the original units.
    Returns a dict: ``features`` (the names), ``clusters`` (one dict per cluster: ``cluster``,
    ``size``, ``decoded_centroid``, ``median``, ``difference`` as lists over the features, and
    ``top``: the `TOP_FEATURES` largest differences with their direction).
    """
    n, d = X.shape
    sums, squares, counts = np.zeros((n_clusters, d)), np.zeros((n_clusters, d)), np.zeros(n_clusters)
    start = 0
    for block in row_chunks(X):
        block = np.asarray(block, dtype=np.float64)
        part = labels[start : start + len(block)]
        np.add.at(sums, part, block)
        np.add.at(squares, part, block**2)
        counts += np.bincount(part, minlength=n_clusters)
        start += len(block)
    total, total_sq = sums.sum(axis=0), squares.sum(axis=0)
    std = np.sqrt(np.maximum(total_sq / n - (total / n) ** 2, 0))
    sample = np.arange(n) if n <= MEDIAN_SAMPLE else np.sort(
        np.random.default_rng(random_state).choice(n, MEDIAN_SAMPLE, replace=False))
    rows, sample_labels = np.asarray(X[sample], dtype=np.float64), labels[sample]
    clusters = []
    for k in range(n_clusters):
        size, rest = counts[k], n - counts[k]
        inside = sums[k] / size if size else np.full(d, np.nan)
        outside = (total - sums[k]) / rest if rest else np.full(d, np.nan)
        difference = np.where(std > 0, (inside - outside) / np.where(std > 0, std, 1), 0.0)
        members = rows[sample_labels == k]
        median = np.median(members, axis=0) if len(members) else np.full(d, np.nan)
        order = np.argsort(-np.abs(np.nan_to_num(difference)), kind="stable")[:TOP_FEATURES]
        clusters.append({
            "cluster": k, "size": int(size),
            "decoded_centroid": _floats(decoded_centers[k]), "median": _floats(median),
            "difference": _floats(difference),
            "top": [{"feature": names[j], "difference": round(float(difference[j]), 3),
                     "direction": "higher" if difference[j] > 0 else "lower"} for j in order
                    if np.isfinite(difference[j]) and difference[j] != 0],
        })
    return {"features": list(names), "clusters": clusters}


def _floats(values):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def profiles_csv(profiles):
    """The profiles in long form: one row per (cluster, feature), for a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["cluster", "size", "feature", "decoded_centroid", "median", "standardised_difference"])
    for c in profiles["clusters"]:
        for j, name in enumerate(profiles["features"]):
            writer.writerow([c["cluster"], c["size"], name, _cell(c["decoded_centroid"][j]), _cell(c["median"][j]),
                             _cell(c["difference"][j])])
    return buffer.getvalue()


def _cell(value):
    return "" if value is None else f"{value:.6g}"


def describe_top(cluster):
    """One line for the terminal: a cluster's size and the features that set it apart."""
    parts = [f"{t['feature']} {'+' if t['difference'] > 0 else '-'}{abs(t['difference']):.1f} sd" for t in cluster["top"]]
    return f"cluster {cluster['cluster']} ({cluster['size']:,}): " + (", ".join(parts) if parts else "like the rest")

"""Stage 3, *cluster*: k-means or a Gaussian mixture on the codes (or their UMAP embedding),
via scikit-learn, and choosing the number of clusters when it is unknown. k-means here also
clusters the raw pixels, the baseline every run is compared with."""

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture

from ..distributed import current
from ..errors import DataError, ModelError
from ..fitted import attribute
from ..scaling import row_range
from ..params import Either, Interval, Options, Setting, settings_class
from ..validation import check_n_clusters, most_clusters, row_chunks

log = logging.getLogger(__name__)

SETTINGS = (
    Setting("n_clusters", Either((Interval(int, 1), Options(("auto",)))), "number of clusters; auto: the number "
            "from 2 to max_clusters whose mixture clusters have the highest mean silhouette", 10, preset=False,
            flag="--clusters"),
    Setting("n_init", Interval(int, 1), "restarts of k-means or of the Gaussian mixture; the best fit is kept", 1),
    Setting("max_clusters", Interval(int, 2), "the largest number of clusters n_clusters=auto considers", 20),
)
ClusterSettings = settings_class("ClusterSettings", SETTINGS, "How the codes (or their embedding) are clustered.")
ALGORITHMS = ("kmeans", "gmm")


def expected_size(n_samples, settings):
    """About how many samples a cluster holds: the samples per cluster asked for, or with
    n_clusters "auto" per cluster of the most considered (the smallest clusters it may find)."""
    k = settings.n_clusters if settings.n_clusters != "auto" else min(settings.max_clusters, most_clusters(n_samples))
    return n_samples / k


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


def kmeans_sampled(rows, n_clusters, *, n_init=10, random_state=None, max_fit_samples=100_000, what="data",
                   polish_iter=10, group=None):
    """k-means for data that may not fit in memory twice over, alone or across processes.

    Up to `max_fit_samples` rows it is exactly `kmeans`. Above, the centres are fitted
    (k-means++ and `n_init` restarts) on a seeded random sample of that many rows, then
    polished by at most `polish_iter` Lloyd steps over all rows, read in batches.
    Returns ``(labels, centers)`` for all rows.

    rows : array-like or ScaledRows, indexable by row numbers and slices
    group : encluster.distributed.Group, optional
        Under torchrun each process reads only its contiguous shard of `rows`: the sample
        is gathered from every shard's share (drawn with the process's own seed), fitted on
        the main process and shared, and the Lloyd steps sum over the shards (`lloyd`).
    """
    group = group or current()
    n = len(rows)
    start, stop = group.shard(n)
    if n <= max_fit_samples:
        if group.world_size == 1:
            return kmeans(rows[0:n], n_clusters, n_init=n_init, random_state=random_state, what=what)
        everything = group.all_gather_rows(rows[start:stop])
        fitted = group.on_main(lambda: dict(zip(("labels", "centers"), kmeans(
            everything, n_clusters, n_init=n_init, random_state=random_state, what=what))))
        return fitted["labels"], fitted["centers"]
    share = round(max_fit_samples * (stop - start) / n)
    rng = np.random.default_rng(None if random_state is None else group.rank_seed(random_state))
    sample = group.all_gather_rows(rows[np.sort(rng.choice(stop - start, share, replace=False)) + start])
    centers = group.on_main(lambda: {"centers": kmeans(sample, n_clusters, n_init=n_init, random_state=random_state,
                                                       what=what)[1]})["centers"]
    labels, centers, _ = lloyd(row_range(rows, start, stop), centers, reduce=group.all_reduce, max_iter=polish_iter)
    return group.all_gather_rows(labels), centers.astype(np.float32)


def lloyd(rows, centers, *, reduce=lambda tensor: tensor, max_iter=300, tol=1e-4, batch_size=16384):
    """Lloyd's k-means iterations from the given centres, over this process's `rows`.

    Each step sums the rows of each cluster and counts them, `reduce`s the sums and counts
    over processes (nothing alone, ``torch.distributed.all_reduce`` under torchrun), and
    divides: the same code gives every process the same centres, and the labels of its
    own rows. Stops as scikit-learn's ``KMeans(algorithm="lloyd")`` does: when no label
    changed, or when the centres moved (squared, summed) by at most `tol` times the data's
    mean feature variance; then labels are recomputed for the final centres. A cluster
    that loses all its rows keeps its centre.

    rows : array-like or ScaledRows of shape (n_rows, n_features), read in batches
    centers : ndarray of shape (n_clusters, n_features)
    reduce : callable summing a float64 tensor over processes in place and returning it

    Returns ``(labels, centers, inertia)``, inertia summed over all processes.
    """
    centers = np.array(centers, dtype=np.float64)
    k, d = centers.shape
    moments = np.zeros(2 * d + 1)
    for chunk in row_chunks(rows, batch_size):
        chunk = np.asarray(chunk, dtype=np.float64)
        moments += np.concatenate([chunk.sum(axis=0), (chunk**2).sum(axis=0), [len(chunk)]])
    moments = reduce(torch.from_numpy(moments)).numpy()
    mean = moments[:d] / moments[-1]
    tolerance = float(np.mean(moments[d : 2 * d] / moments[-1] - mean**2)) * tol
    labels = None
    for _ in range(max_iter):
        new_labels, sums, counts, _ = _assign(rows, centers, batch_size)
        changed = len(new_labels) if labels is None else int((new_labels != labels).sum())
        totals = reduce(torch.from_numpy(np.concatenate([sums.ravel(), counts, [changed]]))).numpy()
        sums, counts, changed = totals[: k * d].reshape(k, d), totals[k * d : k * d + k], totals[-1]
        new_centers = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centers)
        shift = float(((new_centers - centers) ** 2).sum())
        centers, labels = new_centers, new_labels
        if changed == 0 or shift <= tolerance:
            break
    # The labels of the final centres (unchanged when no label changed in the last step).
    labels, _, _, inertia = _assign(rows, centers, batch_size)
    return labels, centers, reduce(torch.tensor([inertia], dtype=torch.float64)).item()


def _assign(rows, centers, batch_size):
    """Nearest centre of each row, per-cluster sums and counts, and the summed squared distance."""
    k, d = centers.shape
    sq_norms = (centers**2).sum(axis=1)
    labels, sums, counts, inertia = [], np.zeros((k, d)), np.zeros(k), 0.0
    for chunk in row_chunks(rows, batch_size):
        chunk = np.asarray(chunk, dtype=np.float64)
        distances = sq_norms - 2 * chunk @ centers.T
        nearest = distances.argmin(axis=1)
        labels.append(nearest)
        sums += np.eye(k)[nearest].T @ chunk
        counts += np.bincount(nearest, minlength=k)
        inertia += float(distances[np.arange(len(chunk)), nearest].sum() + (chunk**2).sum())
    labels = np.concatenate(labels) if labels else np.empty(0, dtype=np.int64)
    return labels.astype(np.int64), sums, counts, inertia


def nearest_center(X, centers, batch_size=16384):
    """Index of the nearest centre for each row of `X`, in batches to bound memory."""
    return _assign(X, np.asarray(centers, dtype=np.float64), batch_size)[0]


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


@dataclass
class Clusters:
    """What the cluster stage found: the labels, a centre per cluster in code space (so the decoder
    can show it), the mixture when one was fitted, and how k was chosen when it was "auto"."""

    labels: np.ndarray = attribute("labels_", saved=False)
    centers: np.ndarray = attribute("cluster_centers_")
    mixture: GaussianMixture | None = attribute("mixture_", default=None)
    selection: dict | None = attribute("cluster_selection_", default=None)
    n_clusters: int = field(init=False, metadata={"attribute": "n_clusters_"})

    def __post_init__(self):
        self.n_clusters = len(self.centers)

    def to_arrays(self, training_rows=True):
        """The centres and the mixture by name; how k was chosen and k itself for model.json."""
        arrays = {"cluster_centers": np.ascontiguousarray(self.centers)}
        if self.mixture is not None:
            arrays.update({f"mixture.{k}": v for k, v in mixture_to_arrays(self.mixture).items()})
        return arrays, {"cluster_selection": self.selection, "n_clusters": int(self.n_clusters)}

    @classmethod
    def from_arrays(cls, arrays, meta, shape):
        """Rebuild the centres (and the mixture, where the model has an embedding), checked for shape."""
        n_clusters, code_size, where = shape.n_clusters, shape.code_size, shape.where
        centers = arrays.get("cluster_centers")
        if centers is None or tuple(centers.shape) != (n_clusters, code_size):
            raise ModelError(f"{where}: cluster centres missing or not of shape ({n_clusters}, {code_size})")
        mixture = None
        if shape.n_components is not None:
            try:
                mixture = mixture_from_arrays({k: arrays[f"mixture.{k}"] for k in
                                               ("weights", "means", "covariances", "precisions_cholesky")})
                if mixture.means_.shape != (n_clusters, shape.n_components):
                    raise ValueError("the mixture does not match the embedding")
            except (KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"{where}: the Gaussian mixture is missing or inconsistent ({exc}); "
                                 "the model is damaged, re-save it") from None
        return cls(None, np.asarray(centers, dtype=np.float32), mixture, meta["cluster_selection"])


def fit(space, codes, settings, algorithm, *, seed, group):
    """Cluster `space` (the codes or their embedding) with `algorithm`, "kmeans" or "gmm"."""
    selection = None
    k = settings.n_clusters
    if k == "auto":
        selection = _choose(space, settings.max_clusters, seed, group)
        k = selection["chosen"]
    if algorithm == "kmeans":
        labels, centers = kmeans_sampled(codes, k, n_init=settings.n_init, random_state=seed, what="codes", group=group)
        return Clusters(labels, centers, selection=selection)

    fitted_here = {}

    def fit_mixture():
        labels, fitted_here["mixture"] = gaussian_mixture(space, k, n_init=settings.n_init, random_state=seed)
        return {"labels": labels, **mixture_to_arrays(fitted_here["mixture"])}

    fitted = group.on_main(fit_mixture)
    # Rank 0 keeps scikit-learn's own fitted object; the others rebuild it from its arrays.
    mixture = fitted_here.get("mixture") or mixture_from_arrays(fitted)
    labels = fitted["labels"]
    # N2D: a cluster's centre is the mean code of its members, so the decoder can show it;
    # a component no sample chose is shown by the sample it claims most.
    sizes = np.bincount(labels, minlength=k)
    responsibility = mixture.predict_proba(np.asarray(space, dtype=np.float64)) if sizes.min() == 0 else None
    centers = np.stack([codes[labels == c].mean(axis=0) if sizes[c] else codes[responsibility[:, c].argmax()]
                        for c in range(k)]).astype(np.float32)
    return Clusters(labels, centers, mixture, selection)


def _choose(space, max_clusters, seed, group):
    largest = min(max_clusters, most_clusters(len(space)))
    if largest < max_clusters:
        log.info("n_clusters=auto considers 2..%d clusters, not up to max_clusters=%d: at most half the %d samples",
                 largest, max_clusters, len(space))
    candidates = range(2, largest + 1)

    def choose():
        k, silhouettes = choose_n_clusters(space, candidates, random_state=seed)
        return {"chosen": k, "silhouette": {str(c): v for c, v in silhouettes.items()}}

    chosen = group.on_main(choose)
    log.info("n_clusters=auto chose %d clusters (highest silhouette among %d..%d)", chosen["chosen"],
             candidates[0], candidates[-1])
    return {"criterion": "mean silhouette of a Gaussian mixture's clusters (highest wins)", **chosen,
            "chosen": int(chosen["chosen"])}


def most_agreeing(labelings):
    """Of several clusterings of the same samples, the index of the one that agrees best with the
    others (mean adjusted Rand index), and each one's mean agreement.

    A UMAP layout now and then lands two groups in one blob and splits another, whatever the
    mixture does then; different seeds seldom fail alike, so the clustering the others agree with
    most is seldom such a failure. This is the "best of k" consensus of Strehl & Ghosh (2002,
    "Cluster Ensembles", JMLR 3), scored by ARI rather than NMI; it looks at no labels.
    """
    count = len(labelings)
    if count == 1:
        return 0, [1.0]
    pairs = np.eye(count)
    for i in range(count):
        for j in range(i + 1, count):
            pairs[i, j] = pairs[j, i] = adjusted_rand_score(labelings[i], labelings[j])
    agreement = (pairs.sum(axis=1) - 1) / (count - 1)
    return int(agreement.argmax()), [float(a) for a in agreement]


def most_stable(agreements):
    """Of candidate spaces (by name, the first kept on a tie; each one's `fit_most_agreeing` record),
    the one whose UMAP layouts' clusters agree most across seeds (the mean ARI over every pair of
    layouts), and a record of the choice (with one candidate: it, and None). No labels are read."""
    names = list(agreements)
    if len(names) == 1:
        return names[0], None
    means = {name: float(np.mean(found["agreement"])) for name, found in agreements.items()}
    chosen = max(names, key=lambda name: (means[name], -names.index(name)))
    return chosen, {"chosen": chosen, "agreement": {name: round(mean, 4) for name, mean in means.items()},
                    "layouts": {name: [round(a, 4) for a in found["agreement"]] for name, found in agreements.items()}}


def fit_most_agreeing(spaces, codes, settings, algorithm, *, seed, group):
    """Cluster each of `spaces` (UMAP layouts of `codes` from different seeds, or None for the codes
    themselves) and keep the clustering the others agree with most (`most_agreeing`).

    Returns ``(kept, clusters, agreement, labelings)``: the index of the space kept, its `Clusters`,
    where there was more than one space what the vote found (how many, which was kept, each one's
    mean agreement; else None), and every space's labels, which the vote compared.
    """
    found = [fit(codes if space is None else space, codes, settings, algorithm, seed=seed, group=group)
             for space in spaces]
    labelings = [clusters.labels for clusters in found]
    kept, agreement = most_agreeing(labelings)
    if len(spaces) == 1:
        return kept, found[kept], None, labelings
    log.info("UMAP laid out %d times; kept layout %d, whose clusters agree best with the others' (mean ARI %.3f; "
             "the others %s)", len(spaces), kept, agreement[kept],
             ", ".join(f"{a:.3f}" for i, a in enumerate(agreement) if i != kept))
    return kept, found[kept], {"layouts": len(spaces), "kept": kept, "agreement": agreement}, labelings


def predict(centers, mixture, space, codes):
    """The cluster of each new point: its mixture component in `space`, else the nearest centre to its code."""
    if mixture is not None:
        return mixture.predict(np.asarray(space, dtype=np.float64)).astype(np.int64)
    return nearest_center(codes, centers)

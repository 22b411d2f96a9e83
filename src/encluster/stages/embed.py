"""Stage 2, *embed*: UMAP of the codes (or of the raw input), with a `transform` that
survives save and load. Methods n2d, umap and the default embed; kmeans, dec and idec do not.

UMAP (McInnes, Healy & Melville 2018, arXiv:1802.03426) is fitted by umap-learn. A
fitted `umap.UMAP` can only be stored with pickle, which we never load from user files;
but its `transform` needs nothing more than the training points, their embedding and
the curve parameters ``a, b``. So that is what we keep (as plain arrays), and
`transform` follows umap-learn's own algorithm on them: the fuzzy membership of each new
point to its nearest training points, a weighted-average start, then a few epochs of
UMAP's layout optimisation with the training embedding held fixed.

Neighbours are found exactly, by scikit-learn's k-d tree on all cores, both for the fit
(handed to umap-learn as its precomputed k-nearest-neighbour graph) and for `transform`:
on the 70,000 ten-number MNIST codes that took 6.4 s against 29 s for umap-learn's own
approximate search (single-threaded when seeded), for the same clusters; and a loaded
model transforms exactly as the fitted one.
"""

import functools
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, ModelError
from ..fitted import unsaved
from ..params import Either, Interval, Options, Setting, settings_class
from .encode import per_cluster

# n_neighbors auto: half of the samples per cluster, so that a point's neighbourhood stays within its own group
# even where groups are small (10 faces per person: 5 neighbours), and N2D's 20 from 40 samples per cluster up.
# Fewer than 3 neighbours leave UMAP's graph in pieces.
MIN_AUTO_NEIGHBORS, MAX_AUTO_NEIGHBORS = 3, 20
# UMAP's width: one dimension per cluster (N2D) up to this many. Above it the Gaussian mixture's full covariances
# grow with the square of the width while the points per cluster shrink: 40 components in 40 dimensions on 400
# points cost a third of a run, for no better clusters than in 10 (docs/benchmarks.md, small data).
MAX_WIDTH = 10
# space="choose": on data of up to this many samples the scaled input is laid out by UMAP and clustered beside the
# encoding, and the space whose layouts' clusters agree more across seeds is kept (`cluster.most_stable`). Above
# it the encoding is kept without asking: the agreement's reliability was measured on small sets only.
MAX_SAMPLES_TO_CHOOSE_SPACE = 5_000

SETTINGS = (
    Setting("n_neighbors", Either((Interval(int, 2), Options(("auto",)))), "UMAP's neighbourhood: how many "
            f"neighbours shape each point's place; auto: half the expected cluster size (samples / clusters), "
            f"{MIN_AUTO_NEIGHBORS} to {MAX_AUTO_NEIGHBORS}", "auto"),
    Setting("umap_epochs", Either((Interval(int, 1), Options(("auto", "by_size")))),
            "passes of UMAP's layout optimisation; auto: umap-learn's own (200 above 10,000 samples, 500 below); "
            "by_size: 2,000,000 sample-passes per layout, from 100 to 200 (200 up to 10,000 samples, 100 from 20,000)",
            "auto"),
    Setting("space", Options(("encoding", "choose")), "what n2d clusters: the encoding; choose: on up to "
            f"{MAX_SAMPLES_TO_CHOOSE_SPACE:,} samples also the scaled input, whichever one's UMAP layouts agree more "
            "across seeds (on small sets it picked the better one in 15 of 24 fits, docs/benchmarks.md)", "encoding"),
    Setting("umap_layouts", Either((Interval(int, 1), Options(("auto",)))),
            "UMAP layouts from different seeds, each clustered; the clusters that agree best with the others' are "
            "kept; auto: up to 5 where they fit within 100,000 samples laid out in all, else 1", 1),
)
EmbedSettings = settings_class("EmbedSettings", SETTINGS, "How UMAP embeds the codes.")
# Seeded UMAP runs single-threaded: umap-learn trades its parallel layout for repeatability.
# N2D's min_dist: clusters packed tight (no setting).
MIN_DIST = 0.0
# Above this many samples UMAP is fitted on a seeded sample and the rest placed by `transform`.
MAX_UMAP_FIT_SAMPLES = 100_000
TRANSFORM_BATCH = 50_000
# umap_layouts auto: as many layouts as fit within this many samples laid out in all (a 10,000-sample set's five
# cost about 25 s on 2 cores), at most MAX_AUTO_LAYOUTS; fewer than MIN_LAYOUTS cannot outvote a poor one, so then 1.
LAYOUT_BUDGET = 100_000
MAX_AUTO_LAYOUTS = 5
MIN_LAYOUTS = 3
# umap_epochs by_size: as many passes as lay out this many samples in all, within [MIN, MAX]_SIZED_EPOCHS. On the
# default's codes of 10,000 images, 200 passes instead of 100 raised how well seeds' clusters agree (mean ARI,
# no labels read: MNIST 16x16 0.836 -> 0.906, MNIST test 0.923 -> 0.929; digits unchanged, 0.797 -> 0.796;
# studies/results/umap_layouts_200ep.md). From 20,000 samples it is the 100 passes measured on MNIST-70k.
EPOCH_BUDGET = 2_000_000
MIN_SIZED_EPOCHS, MAX_SIZED_EPOCHS = 100, 200
# Layout epochs placing new points (umap-learn's transform: 100 up to 10,000 points, 30 above).
TRANSFORM_EPOCHS = 100
INT32_MIN, INT32_MAX = np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1


@functools.cache
def keep_compiled_kernels():
    """Ask numba to keep umap-learn's uncached kernels on disk (its documented `enable_caching`),
    once per process.

    umap-learn compiles them afresh in every process: about 5 of the 6 s a 178-row table took
    to cluster. Cached, a later run loads them instead; the compiled code, and so every result,
    is the same. Where no cache folder is writable they are compiled in memory as before.
    """
    import umap.layouts
    import umap.umap_
    import umap.utils

    # The layout epoch too (about 0.6 s of each fresh process's first fit), where umap-learn keeps it at module level (0.5.12 does;
    # older versions compile it inside each call, and it cannot be kept). Only its serial form, the one a seeded
    # UMAP runs: the parallel form wraps the same function, and numba's cache tells the two apart by name only.
    serial_epoch = getattr(umap.layouts, "_nb_optimize_layout_euclidean_single_epoch", None)
    for kernel in (umap.umap_.smooth_knn_dist, umap.umap_.compute_membership_strengths, umap.utils.tau_rand_int,
                   serial_epoch):
        try:
            if hasattr(kernel, "enable_caching"):  # a numba dispatcher, as in the umap-learn versions we allow
                kernel.enable_caching()
        except RuntimeError:  # no writable cache location: compile in memory, as umap-learn does
            return


class UmapEmbedding:
    """A fitted UMAP embedding: the training points, where they landed, and how to place new ones.

    n_components : int
        Width of the embedding.
    n_neighbors : int
        Size of the neighbourhood UMAP balances local and global structure over.
    min_dist : float
        How tightly points may pack; 0 suits clustering (N2D, McConville et al. 2020).
    n_epochs : int or None
        Passes of the layout optimisation in the fit; None leaves it to umap-learn (200
        above 10,000 points, 500 below).
    random_state : int
        Seed of the layout (fit) and of the placement of new points (transform).
    """

    def __init__(self, n_components, *, n_neighbors, min_dist, n_epochs, random_state):
        self.n_components = int(n_components)
        self.n_neighbors = int(n_neighbors)
        self.min_dist = float(min_dist)
        self.n_epochs = None if n_epochs is None else int(n_epochs)
        self.random_state = int(random_state)
        self._index = None

    def fit_transform(self, X):
        """Fit UMAP on `X` (float32, shape (n, d)) and return its embedding."""
        import umap  # imported here: numba compiles on first import, which only UMAP users should pay

        keep_compiled_kernels()
        X = np.ascontiguousarray(X, dtype=np.float32)
        n_neighbors = min(self.n_neighbors, len(X) - 1)
        # Each point is its own nearest neighbour in umap-learn's graph, as in its own search.
        dists, indices = self._neighbours(X, n_neighbors).kneighbors(X)
        # init="spectral" needs n_components < n_samples - 1 on tiny sets; random init always works.
        init = "spectral" if self.n_components < len(X) - 2 else "random"
        reducer = umap.UMAP(n_components=self.n_components, n_neighbors=n_neighbors, min_dist=self.min_dist,
                            metric="euclidean", init=init, n_epochs=self.n_epochs, random_state=self.random_state,
                            transform_seed=self.random_state,
                            precomputed_knn=(indices.astype(np.int32), dists.astype(np.float32), None))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            # umap-learn's own transform needs its search index; ours (below) does not.
            warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
            self.embedding_ = np.ascontiguousarray(reducer.fit_transform(X), dtype=np.float32)
        self.fit_data_ = X
        self.neighbours_ = indices  # the graph, kept for this process's self-labelling (never saved)
        self.a_, self.b_ = float(reducer._a), float(reducer._b)
        return self.embedding_

    def _neighbours(self, X, n_neighbors):
        """An exact nearest-neighbour index of the training points, built once per fit or load."""
        from sklearn.neighbors import NearestNeighbors

        self._index = NearestNeighbors(n_neighbors=n_neighbors, n_jobs=-1).fit(X)
        return self._index

    def to_arrays(self):
        """Everything `transform` needs, as named arrays (for safetensors) and settings (for JSON)."""
        arrays = {"fit_data": self.fit_data_, "embedding": self.embedding_}
        settings = {"n_components": self.n_components, "n_neighbors": self.n_neighbors, "min_dist": self.min_dist,
                    "n_epochs": self.n_epochs, "random_state": self.random_state, "a": self.a_, "b": self.b_}
        return arrays, settings

    @classmethod
    def from_arrays(cls, arrays, settings):
        """Rebuild what `to_arrays` described; shapes are checked by the caller."""
        # Models saved before n_epochs was recorded were all fitted with umap-learn's own number.
        est = cls(settings["n_components"], n_neighbors=settings["n_neighbors"], min_dist=settings["min_dist"],
                  n_epochs=settings.get("n_epochs"), random_state=settings["random_state"])
        est.fit_data_ = np.ascontiguousarray(arrays["fit_data"], dtype=np.float32)
        est.embedding_ = np.ascontiguousarray(arrays["embedding"], dtype=np.float32)
        est.a_, est.b_ = float(settings["a"]), float(settings["b"])
        return est

    def transform(self, X, *, epochs=None, layout=None):
        """Place new points `X` in the fitted embedding (training data held fixed), with `TRANSFORM_EPOCHS`
        layout epochs and `place` unless a benchmark compares others (`epochs`; `layout`, called as `place`)."""
        epochs = TRANSFORM_EPOCHS if epochs is None else epochs
        from umap.umap_ import compute_membership_strengths, smooth_knn_dist

        keep_compiled_kernels()

        X = np.ascontiguousarray(X, dtype=np.float32)
        if len(X) == 0:
            return np.empty((0, self.n_components), dtype=np.float32)
        n_fit = len(self.fit_data_)
        k = min(self.n_neighbors, n_fit)
        index = self._index if self._index is not None else self._neighbours(self.fit_data_, k)
        dists, indices = index.kneighbors(X, n_neighbors=k)
        dists = dists.astype(np.float32)
        # As umap-learn's transform: local connectivity 1 - 1 = 0 for points outside the graph.
        sigmas, rhos = smooth_knn_dist(dists, float(k), local_connectivity=0.0)
        rows, cols, vals, _ = compute_membership_strengths(indices.astype(np.int32), dists, sigmas, rhos,
                                                           bipartite=True)
        weights = vals.reshape(len(X), k)
        # Start each point at the membership-weighted mean of its neighbours' positions,
        # or exactly on a training point it duplicates (membership 1).
        total = weights.sum(axis=1, keepdims=True)
        start = np.einsum("nk,nkd->nd", weights / np.where(total > 0, total, 1), self.embedding_[indices])
        duplicate = weights == 1
        has_duplicate = duplicate.any(axis=1)
        start[has_duplicate] = self.embedding_[indices[has_duplicate, duplicate[has_duplicate].argmax(axis=1)]]
        start = np.ascontiguousarray(start, dtype=np.float32)
        # Each row is placed on its own: a fixed number of epochs and edge weights taken as they are
        # (not relative to the batch's largest), so a row's place does not depend on its batch.
        weights = vals.astype(np.float64)
        keep = weights >= 1.0 / epochs
        rng_state = np.random.RandomState(self.random_state).randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)
        return (layout or place)(start, self.embedding_, rows[keep], cols[keep], 1.0 / weights[keep], self.a_, self.b_,
                                 rng_state, epochs=epochs)


@functools.cache
def _layout_epoch():
    """One epoch of umap-learn's layout optimisation, compiled to release the GIL, so that blocks of
    new points can be placed in threads at once."""
    import numba
    from umap.layouts import _optimize_layout_euclidean_single_epoch

    return numba.njit(_optimize_layout_euclidean_single_epoch, fastmath=True, nogil=True)


def place(start, fixed, rows, cols, epochs_per_sample, a, b, rng_state, *, epochs=TRANSFORM_EPOCHS, threads=None):
    """Move the new points `start` towards their training neighbours in `fixed` (edges `rows` ->
    `cols`, sorted by row): umap-learn's `optimize_layout_euclidean` for `TRANSFORM_EPOCHS` epochs,
    with the fixed points held still, its learning rate quartered and 5 negative samples per edge.

    A point moves by its own edges alone, and umap-learn seeds its negative samples from its own
    start, so the points are split into one block per thread (`threads`, default torch's) and
    each block is placed on its own: the same places as one serial call, bit for bit, in a
    fraction of the time (umap-learn's parallel layout would race on shared points instead).
    """
    start = np.array(start, dtype=np.float32)
    threads = threads or torch_threads()
    bounds = np.linspace(0, len(start), min(threads, len(start)) + 1).astype(np.int64)
    edges = np.searchsorted(rows, bounds)

    def place_block(block):
        lo, hi = bounds[block], bounds[block + 1]
        first, last = edges[block], edges[block + 1]
        _layout(start[lo:hi], fixed, rows[first:last] - lo, cols[first:last], epochs_per_sample[first:last], a, b,
                rng_state, epochs)

    if len(bounds) > 2:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(bounds) - 1) as pool:
            list(pool.map(place_block, range(len(bounds) - 1)))
    elif len(start):
        place_block(0)
    return start


def _layout(head, tail, rows, cols, epochs_per_sample, a, b, rng_state, epochs):
    """umap-learn's `optimize_layout_euclidean` loop (without densMAP) on the block `head`, in place."""
    epoch = _layout_epoch()
    negatives = 5  # negative samples per positive one (umap-learn's default)
    per_negative = epochs_per_sample / negatives
    next_negative, next_sample = per_negative.copy(), epochs_per_sample.copy()
    rng = np.full((len(head), len(rng_state)), rng_state, dtype=np.int64) + \
        head[:, 0].astype(np.float64).view(np.int64).reshape(-1, 1)
    unused = np.zeros(1, dtype=np.float32)  # densMAP's arrays
    initial_alpha = 0.25  # umap-learn's transform uses a quarter of the fit's learning rate
    alpha = initial_alpha
    for n in range(epochs):
        epoch(head, tail, rows, cols, len(tail), epochs_per_sample, a, b, rng, 1.0, head.shape[1], False, alpha,
              per_negative, next_negative, next_sample, n, False, unused, unused, 0, 0, 0, 0, unused, unused, 0)
        alpha = initial_alpha * (1.0 - float(n) / float(epochs))


def torch_threads():
    """The threads this process computes with (torch's count, which torchrun sets per process)."""
    import torch

    return torch.get_num_threads()


def check_data(n_samples, method):
    """UMAP's own limit on the data, checked before anything is trained."""
    if n_samples < 3:
        raise DataError(f"method {method!r} embeds the data with UMAP, which needs at least 3 samples (got "
                        f"{n_samples}); use preset 'original' (k-means) for so few")


def layouts_for(n_samples, settings):
    """How many UMAP layouts to fit on `n_samples` codes (the `umap_layouts` setting, "auto" resolved)."""
    if settings.umap_layouts != "auto":
        return settings.umap_layouts
    affordable = min(MAX_AUTO_LAYOUTS, LAYOUT_BUDGET // n_samples)
    return affordable if affordable >= MIN_LAYOUTS else 1


def epochs_for(n_samples, settings):
    """Passes of UMAP's layout over `n_samples` points (`umap_epochs`, resolved); None: umap-learn's own."""
    if settings.umap_epochs == "auto":
        return None
    if settings.umap_epochs == "by_size":
        return min(MAX_SIZED_EPOCHS, max(MIN_SIZED_EPOCHS, EPOCH_BUDGET // n_samples))
    return settings.umap_epochs


def choose_space(settings, method, n_samples, layouts):
    """Whether to compare the encoding with the scaled input (`space` "choose", where n2d runs, on up to
    `MAX_SAMPLES_TO_CHOOSE_SPACE` samples, with more than one UMAP layout to measure agreement on)."""
    return settings.space == "choose" and method == "n2d" and n_samples <= MAX_SAMPLES_TO_CHOOSE_SPACE and layouts > 1


def width_for(n_clusters):
    """UMAP's width: N2D's one dimension per cluster, at most `MAX_WIDTH`."""
    return min(MAX_WIDTH, per_cluster(n_clusters))


def neighbours_for(settings, per_cluster):
    """UMAP's neighbourhood (`n_neighbors`, "auto" resolved) where clusters hold about `per_cluster` samples."""
    if settings.n_neighbors != "auto":
        return settings.n_neighbors
    return int(min(MAX_AUTO_NEIGHBORS, max(MIN_AUTO_NEIGHBORS, round(per_cluster / 2))))


def fit(codes, width, settings, *, n_neighbors, seed, group):
    """UMAP of the codes; return ``(embedding, embedded)``. Above MAX_UMAP_FIT_SAMPLES it is fitted on
    a seeded sample and the rest placed by transform. UMAP does not distribute: rank 0 fits it, and
    each process transforms its shard."""
    fit_all = len(codes) <= MAX_UMAP_FIT_SAMPLES
    embedding = UmapEmbedding(width, n_neighbors=n_neighbors, min_dist=MIN_DIST,
                              n_epochs=epochs_for(min(len(codes), MAX_UMAP_FIT_SAMPLES), settings), random_state=seed)

    def fit_on_main():
        if fit_all:
            embedded = embedding.fit_transform(codes)
            embedding.fit_rows_ = np.arange(len(codes))
        else:
            sample = np.random.default_rng(seed).choice(len(codes), MAX_UMAP_FIT_SAMPLES, replace=False)
            embedding.fit_rows_ = np.sort(sample)
            embedding.fit_transform(codes[embedding.fit_rows_])
        arrays, described = embedding.to_arrays()
        return {**arrays, "settings": described, **({"embedded": embedded} if fit_all else {})}

    fitted = group.on_main(fit_on_main)
    if not group.is_main:
        embedding = UmapEmbedding.from_arrays(fitted, fitted["settings"])
    if fit_all:
        return embedding, fitted["embedded"]
    start, stop = group.shard(len(codes))
    return embedding, group.all_gather_rows(apply(embedding, codes[start:stop]))


def apply(embedding, codes):
    """Where `embedding` places `codes`, in batches."""
    return np.concatenate([embedding.transform(codes[start : start + TRANSFORM_BATCH])
                           for start in range(0, len(codes), TRANSFORM_BATCH)])


@dataclass
class Layout:
    """The embed stage's fitted state: the UMAP embedding kept (None where the method embeds
    nothing), where it put each training sample (not saved), where UMAP was laid out more than
    once, how the layouts agreed (`encluster.stages.cluster.fit_most_agreeing`), and where the
    encoding and the input were both laid out, which was kept and why (`cluster.most_stable`). Not
    saved: every layout's clusters, which the vote compared, and each candidate space's."""

    embedding: UmapEmbedding | None
    layout_agreement: dict | None
    space_choice: dict | None
    embedded: np.ndarray | None = unsaved("embedded_")
    layout_labels: list | None = unsaved("layout_labels_")
    candidate_labels: dict | None = unsaved("candidate_labels_")

    def to_arrays(self, training_rows=True):
        """The embedding's arrays by name and its settings. UMAP places a new point by its nearest
        training points, so these include every training row UMAP was fitted on (the codes; for
        method umap, the scaled input itself); ``training_rows=False`` leaves them out, and the
        loaded model then cannot place new points."""
        meta = {"layout_agreement": self.layout_agreement}
        if self.space_choice is not None:  # absent from models that had no choice, as from those saved before it
            meta["space_choice"] = self.space_choice
        if self.embedding is None:
            return {}, {**meta, "umap": None}
        arrays, described = self.embedding.to_arrays()
        if not training_rows:
            return {}, {**meta, "umap": {**described, "training_rows": False}}
        return {f"umap.{k}": v for k, v in arrays.items()}, {**meta, "umap": described}

    @classmethod
    def from_arrays(cls, arrays, meta, shape):
        """Rebuild the embedding, checked against the code size."""
        # layout_agreement is absent from models saved before it was recorded.
        return cls(_embedding_from_arrays(arrays, meta["umap"], shape), meta.get("layout_agreement"),
                   meta.get("space_choice"))


def _embedding_from_arrays(arrays, described, shape):
    if described is None:
        return None
    if described.get("training_rows", True) is False:
        return WithoutTrainingRows(described)
    try:
        fit_data, embedded = arrays["umap.fit_data"], arrays["umap.embedding"]
        width = int(described["n_components"])
        if fit_data.ndim != 2 or fit_data.shape[1] != shape.code_size or embedded.shape != (len(fit_data), width):
            raise ValueError("UMAP arrays do not match the code size or each other")
        if int(described["n_neighbors"]) < 1 or not all(np.isfinite(float(described[k])) for k in ("a", "b")):
            raise ValueError(f"n_neighbors {described['n_neighbors']!r} is not positive, or a, b not finite")
        return UmapEmbedding.from_arrays({"fit_data": fit_data, "embedding": embedded}, described)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{shape.where}: the UMAP embedding is missing or inconsistent ({exc}); "
                         "the model is damaged, re-save it") from None


class WithoutTrainingRows:
    """The embedding of a model saved without its training rows: its width is known, but it cannot
    place new points, and says so."""

    def __init__(self, described):
        self.n_components = int(described["n_components"])
        self.n_epochs = described.get("n_epochs")

    def transform(self, X):
        raise ModelError("this model was saved without its training rows (save(path, training_rows=False)), "
                         "which UMAP needs to place new points; predict with a copy saved with them, or refit")

    def to_arrays(self):
        raise ModelError("this model was saved without its training rows; it cannot be saved with them again")

"""`EncodingClusterer`: train an autoencoder, cluster its codes, decode the centroids."""

import logging
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin

from .clustering import (choose_n_clusters, gaussian_mixture, kmeans_sampled, mixture_from_arrays,
                         mixture_to_arrays, nearest_center)
from .distributed import current
from .embedding import UmapEmbedding
from .errors import ConfigError, DataError, NotFittedError
from .models import Autoencoder, AutoencoderSpec
from .presets import DEFAULT_PRESET, METHODS, REFINEMENT, get_preset
from .refinement import RefinementConfig, refine_clusters
from .scaling import ScaledRows, Scaler, row_range
from .training import TrainingConfig, apply_in_batches, resolve_precision, train_autoencoder
from .validation import check_n_clusters, check_samples, is_constant, row_chunks

log = logging.getLogger(__name__)

# Parameters that, left as None, take their value from the preset.
PRESET_PARAMS = ("method", "hidden", "code_size", "decoder_hidden", "activation", "code_activation",
                 "output_activation", "init", "epochs", "batch_size", "learning_rate", "loss", "schedule",
                 "corruption", "precision", "n_init", "n_neighbors", "umap_epochs")
# Above this many samples UMAP is fitted on a seeded sample and the rest placed by `transform`.
MAX_UMAP_FIT_SAMPLES = 100_000
# Code (and UMAP) width for methods whose width follows the number of clusters, when that is "auto".
AUTO_CODE_SIZE = 10


class EncodingClusterer(ClusterMixin, BaseEstimator):
    """Cluster data by the encoding a dense autoencoder learns of it.

    The autoencoder compresses each sample into a short code; the codes are clustered;
    the decoder turns each cluster centre back into a sample a person can look at. How
    the codes are clustered is the `method`:

    - ``"kmeans"``: k-means on the codes (the original experiment, preset ``seed``).
    - ``"n2d"``: UMAP of the codes, then a Gaussian mixture (McConville et al. 2020,
      "N2D: (Not Too) Deep Clustering via Clustering the Local Manifold of an
      Autoencoded Embedding", ICPR; see `encluster.embedding`).
    - ``"dec"`` / ``"idec"``: k-means on the codes, then encoder and centres refined
      together (Xie et al. 2016; Guo et al. 2017; see `encluster.refinement`).
    - ``"umap"``: no network at all: UMAP of the scaled input, then a Gaussian mixture,
      the honest baseline a deep method has to beat.

    Parameters
    ----------
    n_clusters : int or "auto", default=10
        Number of clusters; "auto" picks it without labels: the number, from 2 to
        `max_clusters`, whose Gaussian-mixture clusters have the highest mean silhouette
        in the space the method clusters (see `cluster_selection_`).
    preset : str, default="default"
        Method, network and training settings to start from (see `encluster.presets.PRESETS`).
    method : {"kmeans", "n2d", "dec", "idec", "umap"}, optional
        Override the preset's clustering method.
    hidden, decoder_hidden, code_size, activation, code_activation, output_activation, init : optional
        Override the preset's architecture (see `AutoencoderSpec`). A preset whose
        code size is None uses one code dimension per cluster.
    epochs, batch_size, learning_rate, loss, schedule, corruption, precision : optional
        Override the preset's pretraining (see `TrainingConfig`; `corruption` > 0 trains
        a denoising autoencoder; `precision` "auto" trains in bfloat16 where the device
        computes in it natively, see `resolve_precision`).
    n_init : int, optional
        Restarts of k-means (or of the Gaussian mixture); the best fit is kept.
    n_neighbors : int, optional
        UMAP's neighbourhood size (methods n2d and umap).
    umap_epochs : int, optional
        Passes of UMAP's layout optimisation (methods n2d and umap); a preset's None leaves
        it to umap-learn (200 above 10,000 samples, 500 below).
    max_clusters : int, default=20
        Largest number of clusters `n_clusters="auto"` considers.
    device : str, default="cpu"
        Torch device for the network ("cpu", "cuda", "cuda:1", ...).
    random_state : int or None, default=None
        Seed for weights, shuffling, UMAP and the clustering. None draws one, kept in
        `seed_`, so any fit can be repeated.
    verbose : int, default=0
        1 shows a progress bar on a terminal (and logs per epoch otherwise).

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample.
    n_clusters_ : int
        Number of clusters used (chosen, when `n_clusters="auto"`).
    cluster_selection_ : dict or None
        With "auto": the silhouette of each candidate number of clusters and the one chosen.
    cluster_centers_ : ndarray of shape (n_clusters_, code_size)
        Centres in code space (for n2d/umap: the mean code of each cluster's members);
        `decode(cluster_centers_)` shows them as samples.
    autoencoder_ : Autoencoder or None
        The trained network (None for method "umap").
    embedding_ : UmapEmbedding or None
        The UMAP of the codes (methods n2d and umap).
    mixture_ : sklearn.mixture.GaussianMixture or None
        The mixture fitted on the UMAP embedding (methods n2d and umap).
    embedded_ : ndarray of shape (n_samples, n_components) or None
        Where UMAP put each training sample (methods n2d and umap).
    history_ : list of float
        Mean reconstruction loss of each pretraining epoch.
    refinement_history_ : list of float
        DEC/IDEC: fraction of assignments that changed at each target update.
    scaler_ : Scaler
        How raw inputs were mapped into [0, 1]; applied again by `predict`/`transform`.
    n_features_in_ : int
        Width of the training data.
    seed_ : int
        The seed actually used.
    codes_ : ndarray of shape (n_samples, code_size)
        Codes of the training samples.
    timings_ : dict
        Seconds spent in each stage of `fit`.
    world_size_ : int
        How many processes fitted the model together (1, unless run under torchrun).

    Notes
    -----
    Under ``torchrun`` (a started `torch.distributed` process group), every process calls
    `fit` on the same data: training and DEC/IDEC refinement run data-parallel, encoding and
    k-means are split into shards, and the steps that do not distribute (UMAP's fit, the
    Gaussian mixture, choosing k) run on rank 0 and are shared; every process ends with the
    same fitted model. `batch_size` is then the global batch (see `encluster.distributed`).
    """

    def __init__(self, n_clusters=10, *, preset=DEFAULT_PRESET, method=None, hidden=None, code_size=None,
                 activation=None, code_activation=None, output_activation=None, init=None, epochs=None,
                 batch_size=None, learning_rate=None, loss=None, schedule=None, corruption=None, precision=None,
                 decoder_hidden=None, n_init=None, n_neighbors=None, umap_epochs=None, max_clusters=20, device="cpu",
                 random_state=None, verbose=0):
        self.n_clusters = n_clusters
        self.preset = preset
        self.method = method
        self.hidden = hidden
        self.code_size = code_size
        self.activation = activation
        self.code_activation = code_activation
        self.output_activation = output_activation
        self.init = init
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.loss = loss
        self.schedule = schedule
        self.corruption = corruption
        self.precision = precision
        self.decoder_hidden = decoder_hidden
        self.n_init = n_init
        self.n_neighbors = n_neighbors
        self.umap_epochs = umap_epochs
        self.max_clusters = max_clusters
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _resolved(self):
        """The preset with this estimator's explicit settings on top."""
        settings = get_preset(self.preset)
        for name in PRESET_PARAMS:
            if getattr(self, name) is not None:
                settings[name] = getattr(self, name)
        return settings

    def _check_params(self, settings):
        if settings["method"] not in METHODS:
            raise ConfigError(f"method={settings['method']!r}; expected one of {', '.join(METHODS)}")
        counts = [("n_init", settings["n_init"], 1), ("n_neighbors", settings["n_neighbors"], 2),
                  ("max_clusters", self.max_clusters, 2)]
        if settings["umap_epochs"] is not None:  # None: umap-learn's own number
            counts.append(("umap_epochs", settings["umap_epochs"], 1))
        for name, value, least in counts:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ConfigError(f"{name}={value!r}; expected an integer >= {least}")
        if self.n_clusters != "auto" and (isinstance(self.n_clusters, bool) or not isinstance(
                self.n_clusters, (int, np.integer)) or self.n_clusters < 1):
            raise ConfigError(f"n_clusters={self.n_clusters!r}; expected an integer >= 1 or 'auto'")
        if self.random_state is not None and not isinstance(self.random_state, (int, np.integer)):
            raise ConfigError(f"random_state={self.random_state!r}; expected an integer seed or None")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"device={self.device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={self.device!r} but no CUDA GPU is available; use device='cpu'")
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(f"device={self.device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
        return device

    def fit(self, X, y=None, *, checkpoint=None):
        """Train the autoencoder on `X`, then cluster the codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Raw samples; uint8 is divided by 255, float in [0, 1] is kept, anything
            else is min-max scaled per feature (see `Scaler`).
        y : ignored
        checkpoint : encluster.training.Checkpoint, optional
            Keep pretraining state in a file so an interrupted fit can resume exactly.
        """
        # Parameter checks first, then the data-dependent ones (as scikit-learn orders them).
        settings = self._resolved()
        device = self._check_params(settings)
        method = settings["method"]
        training = TrainingConfig(**{k: settings[k] for k in ("epochs", "batch_size", "learning_rate", "loss",
                                                              "schedule", "corruption")},
                                  precision=resolve_precision(settings["precision"], device))
        refinement = RefinementConfig(**REFINEMENT[method]) if method in ("dec", "idec") else None
        X = check_samples(X)
        group = current()
        auto = self.n_clusters == "auto"
        if not auto:
            check_n_clusters(self.n_clusters, len(X))
        # N2D: one code (and UMAP) dimension per cluster.
        per_cluster = AUTO_CODE_SIZE if auto else int(self.n_clusters)
        code_size = settings["code_size"] or per_cluster
        spec = None if method == "umap" else AutoencoderSpec(n_features=X.shape[1], code_size=code_size, **{
            k: settings[k] for k in ("hidden", "decoder_hidden", "activation", "code_activation",
                                     "output_activation", "init")})
        if method in ("n2d", "umap") and len(X) < 3:
            raise DataError(f"method {method!r} embeds the data with UMAP, which needs at least 3 samples (got "
                            f"{len(X)}); use preset 'seed' (k-means) for so few")
        if (auto or self.n_clusters > 1) and len(X) > 1 and is_constant(X):
            raise DataError(f"X is constant: all {len(X)} samples are identical, so there is nothing to cluster; "
                            "check the data")
        self.method_, self.training_, self.refinement_ = method, training, refinement
        self.world_size_ = group.world_size
        self.seed_ = int(self.random_state if self.random_state is not None
                         else np.random.default_rng().integers(2**31 - 1))
        self.scaler_ = Scaler.fit(X)
        data = ScaledRows(X, self.scaler_)
        self.timings_ = {}
        clock = time.perf_counter()
        self.autoencoder_, self.history_ = None, []
        if spec is not None:
            # Build the network from a seeded copy of torch's RNG, leaving the caller's global state alone.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed_)
                self.autoencoder_ = Autoencoder(spec)
            self.history_ = train_autoencoder(self.autoencoder_, data, self.training_,
                                              generator=torch.Generator().manual_seed(self.seed_), device=device,
                                              verbose=self.verbose, checkpoint=checkpoint, group=group)
            self.autoencoder_.to("cpu")
        self.timings_["train"] = time.perf_counter() - clock
        clock = time.perf_counter()
        self.codes_ = self._encode_shards(data, group)
        self.timings_["encode"] = time.perf_counter() - clock
        self.embedding_ = self.mixture_ = self.embedded_ = self.cluster_selection_ = None
        self.refinement_history_ = []
        space = self.codes_
        if method in ("n2d", "umap"):
            clock = time.perf_counter()
            space = self.embedded_ = self._fit_embedding(self.codes_, per_cluster, settings, group)
            self.timings_["embed"] = time.perf_counter() - clock
        clock = time.perf_counter()
        self.n_clusters_ = int(self.n_clusters) if not auto else self._choose_n_clusters(space, len(X), group)
        self._cluster(space, settings, data, device, group)
        self.timings_["cluster"] = time.perf_counter() - clock
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_embedding(self, codes, width, settings, group):
        """UMAP of the codes; above MAX_UMAP_FIT_SAMPLES fitted on a seeded sample, the rest placed by
        transform. UMAP does not distribute: rank 0 fits it, and each process transforms its shard."""
        self.embedding_ = UmapEmbedding(width, n_neighbors=settings["n_neighbors"], n_epochs=settings["umap_epochs"],
                                        random_state=self.seed_)
        fit_all = len(codes) <= MAX_UMAP_FIT_SAMPLES

        def fit():
            if fit_all:
                embedded = self.embedding_.fit_transform(codes)
            else:
                sample = np.random.default_rng(self.seed_).choice(len(codes), MAX_UMAP_FIT_SAMPLES, replace=False)
                self.embedding_.fit_transform(codes[np.sort(sample)])
            arrays, settings = self.embedding_.to_arrays()
            return {**arrays, "settings": settings, **({"embedded": embedded} if fit_all else {})}

        fitted = group.on_main(fit)
        if not group.is_main:
            self.embedding_ = UmapEmbedding.from_arrays(fitted, fitted["settings"])
        if fit_all:
            return fitted["embedded"]
        start, stop = group.shard(len(codes))
        return group.all_gather_rows(self._embed(codes[start:stop]))

    def _embed(self, codes, batch_size=50_000):
        return np.concatenate([self.embedding_.transform(codes[start : start + batch_size])
                               for start in range(0, len(codes), batch_size)])

    def _choose_n_clusters(self, space, n_samples, group):
        candidates = range(2, min(self.max_clusters, n_samples) + 1)

        def choose():
            k, silhouettes = choose_n_clusters(space, candidates, random_state=self.seed_)
            return {"chosen": k, "silhouette": {str(c): v for c, v in silhouettes.items()}}

        chosen = group.on_main(choose)
        self.cluster_selection_ = {"criterion": "mean silhouette of a Gaussian mixture's clusters (highest wins)",
                                   **chosen}
        log.info("n_clusters=auto chose %d clusters (highest silhouette among %d..%d)", chosen["chosen"],
                 candidates[0], candidates[-1])
        return int(chosen["chosen"])

    def _cluster(self, space, settings, data, device, group):
        method, k = self.method_, self.n_clusters_
        if method in ("n2d", "umap"):
            def fit_mixture():
                labels, self.mixture_ = gaussian_mixture(space, k, n_init=settings["n_init"], random_state=self.seed_)
                return {"labels": labels, **mixture_to_arrays(self.mixture_)}

            fitted = group.on_main(fit_mixture)
            if not group.is_main:
                self.mixture_ = mixture_from_arrays(fitted)
            self.labels_ = fitted["labels"]
            # N2D: a cluster's centre is the mean code of its members, so the decoder can show it;
            # a component no sample chose is shown by the sample it claims most.
            sizes = np.bincount(self.labels_, minlength=k)
            responsibility = self.mixture_.predict_proba(np.asarray(space, dtype=np.float64)) if sizes.min() == 0 \
                else None
            self.cluster_centers_ = np.stack([self.codes_[self.labels_ == c].mean(axis=0) if sizes[c]
                                              else self.codes_[responsibility[:, c].argmax()]
                                              for c in range(k)]).astype(np.float32)
            return
        self.labels_, self.cluster_centers_ = kmeans_sampled(self.codes_, k, n_init=settings["n_init"],
                                                             random_state=self.seed_, what="codes", group=group)
        if method in ("dec", "idec"):
            self.labels_, self.cluster_centers_, self.refinement_history_ = refine_clusters(
                self.autoencoder_, data, self.cluster_centers_, self.refinement_, loss=self.training_.loss,
                generator=torch.Generator().manual_seed(self.seed_ + 1), device=device, verbose=self.verbose,
                group=group)
            self.autoencoder_.to("cpu")
            self.codes_ = self._encode_shards(data, group)

    def _check_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this EncodingClusterer is not fitted yet; call fit(X) or load a saved model first")

    def _check_width(self, X):
        X = check_samples(X)
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} features but the model was trained on {self.n_features_in_}; "
                            "give data of the same width (and layout) as the training data")
        return X

    def _encode_shards(self, data, group):
        """Codes of all of `data`: each process encodes its shard, and the shards are gathered in order."""
        return group.all_gather_rows(self._encode_scaled(row_range(data, *group.shard(len(data)))))

    def _encode_scaled(self, data):
        if self.autoencoder_ is None:
            return np.concatenate(list(row_chunks(data)))
        return apply_in_batches(self.autoencoder_.encode, data)

    def transform(self, X):
        """The codes of `X`, shape (n_samples, code_size) (the scaled input for method "umap")."""
        self._check_fitted()
        return self._encode_scaled(ScaledRows(self._check_width(X), self.scaler_))

    def predict(self, X):
        """The cluster of each sample in `X`: the mixture component of its UMAP position
        (n2d, umap), else the nearest centre to its code."""
        codes = self.transform(X)
        if self.mixture_ is not None:
            return self.mixture_.predict(self._embed(codes).astype(np.float64)).astype(np.int64)
        return nearest_center(codes, self.cluster_centers_)

    def fit_predict(self, X, y=None):
        """Fit and return `labels_`."""
        return self.fit(X).labels_

    def decode(self, codes):
        """Decode codes (e.g. `cluster_centers_`) into samples, in the model's [0, 1] scale."""
        self._check_fitted()
        codes = check_samples(codes, name="codes")
        width = self.cluster_centers_.shape[1]
        if codes.shape[1] != width:
            raise DataError(f"codes have width {codes.shape[1]}; this model's code size is {width}")
        if self.autoencoder_ is None:
            return np.clip(codes, 0, 1).astype(np.float32)
        return apply_in_batches(self.autoencoder_.decode, codes.astype(np.float32))

    def save(self, path):
        """Write the fitted model to the folder `path` (model.safetensors + model.json)."""
        from .persistence import save_model

        self._check_fitted()
        save_model(self, path)

    @classmethod
    def load(cls, path):
        """Load a model written by `save`; refuses tampered or incompatible files."""
        from .persistence import load_model

        return load_model(cls, path)

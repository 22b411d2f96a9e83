"""`EncodingClusterer`: train an autoencoder, cluster its codes, decode the centroids."""

import logging
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin

from .clustering import kmeans, nearest_center
from .errors import ConfigError, DataError, NotFittedError
from .models import Autoencoder, AutoencoderSpec
from .presets import DEFAULT_PRESET, get_preset
from .scaling import ScaledRows, Scaler
from .training import TrainingConfig, apply_in_batches, train_autoencoder
from .validation import check_n_clusters, check_samples, is_constant

log = logging.getLogger(__name__)

# Parameters that, left as None, take their value from the preset.
PRESET_PARAMS = ("hidden", "code_size", "decoder_hidden", "activation", "code_activation", "output_activation", "init",
                 "epochs", "batch_size", "learning_rate", "loss", "schedule")


class EncodingClusterer(ClusterMixin, BaseEstimator):
    """Cluster data by k-means on the encoding a dense autoencoder learns of it.

    The autoencoder compresses each sample into a short code; k-means groups the codes;
    the decoder turns each cluster centre back into a sample a person can look at.

    Parameters
    ----------
    n_clusters : int, default=10
        Number of clusters.
    preset : str, default="seed"
        Network and training settings to start from (see `encluster.presets.PRESETS`).
    hidden, decoder_hidden, code_size, activation, code_activation, output_activation, init : optional
        Override the preset's architecture (see `AutoencoderSpec`).
    epochs, batch_size, learning_rate, loss, schedule : optional
        Override the preset's training (see `TrainingConfig`).
    n_init : int, default=10
        k-means restarts; the best (lowest inertia) is kept.
    device : str, default="cpu"
        Torch device for the network ("cpu", "cuda", "cuda:1", ...).
    random_state : int or None, default=None
        Seed for weights, shuffling and k-means. None draws one, kept in `seed_`, so any
        fit can be repeated.
    verbose : int, default=0
        1 shows a progress bar on a terminal (and logs per epoch otherwise).

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample.
    cluster_centers_ : ndarray of shape (n_clusters, code_size)
        Centres in code space; `decode(cluster_centers_)` shows them as samples.
    autoencoder_ : Autoencoder
        The trained network.
    history_ : list of float
        Mean reconstruction loss of each epoch.
    scaler_ : Scaler
        How raw inputs were mapped into [0, 1]; applied again by `predict`/`transform`.
    n_features_in_ : int
        Width of the training data.
    seed_ : int
        The seed actually used.
    codes_ : ndarray of shape (n_samples, code_size)
        Codes of the training samples.
    timings_ : dict
        Seconds spent in training, encoding and clustering during `fit`.
    """

    def __init__(self, n_clusters=10, *, preset=DEFAULT_PRESET, hidden=None, code_size=None, activation=None,
                 code_activation=None, output_activation=None, init=None, epochs=None, batch_size=None,
                 learning_rate=None, loss=None, schedule=None, decoder_hidden=None, n_init=10, device="cpu",
                 random_state=None, verbose=0):
        self.n_clusters = n_clusters
        self.preset = preset
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
        self.decoder_hidden = decoder_hidden
        self.n_init = n_init
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

    def _check_params(self):
        if isinstance(self.n_init, bool) or not isinstance(self.n_init, (int, np.integer)) or self.n_init < 1:
            raise ConfigError(f"n_init={self.n_init!r}; expected an integer >= 1")
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
            Keep training state in a file so an interrupted fit can resume exactly.
        """
        # Parameter checks first, then the data-dependent ones (as scikit-learn orders them).
        device = self._check_params()
        settings = self._resolved()
        training = TrainingConfig(**{k: settings[k] for k in ("epochs", "batch_size", "learning_rate", "loss",
                                                              "schedule")})
        X = check_samples(X)
        check_n_clusters(self.n_clusters, len(X))
        spec = AutoencoderSpec(n_features=X.shape[1], **{k: settings[k] for k in (
            "hidden", "decoder_hidden", "code_size", "activation", "code_activation", "output_activation", "init")})
        if self.n_clusters > 1 and len(X) > 1 and is_constant(X):
            raise DataError(f"X is constant: all {len(X)} samples are identical, so there is nothing to cluster; "
                            "check the data")
        self.training_ = training
        self.seed_ = int(self.random_state if self.random_state is not None
                         else np.random.default_rng().integers(2**31 - 1))
        self.scaler_ = Scaler.fit(X)
        data = ScaledRows(X, self.scaler_)
        # Build the network from a seeded copy of torch's RNG, leaving the caller's global state alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed_)
            self.autoencoder_ = Autoencoder(spec)
        generator = torch.Generator().manual_seed(self.seed_)
        clock = time.perf_counter()
        self.history_ = train_autoencoder(self.autoencoder_, data, self.training_, generator=generator,
                                          device=device, verbose=self.verbose, checkpoint=checkpoint)
        self.autoencoder_.to("cpu")
        self.timings_ = {"train": time.perf_counter() - clock}
        clock = time.perf_counter()
        self.codes_ = self._encode_scaled(data)
        self.timings_["encode"] = time.perf_counter() - clock
        clock = time.perf_counter()
        self.labels_, self.cluster_centers_ = kmeans(self.codes_, self.n_clusters, n_init=self.n_init,
                                                     random_state=self.seed_, what="codes")
        self.timings_["cluster"] = time.perf_counter() - clock
        self.n_features_in_ = X.shape[1]
        return self

    def _check_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this EncodingClusterer is not fitted yet; call fit(X) or load a saved model first")

    def _check_width(self, X):
        X = check_samples(X)
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} features but the model was trained on {self.n_features_in_}; "
                            "give data of the same width (and layout) as the training data")
        return X

    def _encode_scaled(self, data):
        return apply_in_batches(self.autoencoder_.encode, data)

    def transform(self, X):
        """The codes of `X`, shape (n_samples, code_size)."""
        self._check_fitted()
        return self._encode_scaled(ScaledRows(self._check_width(X), self.scaler_))

    def predict(self, X):
        """The cluster of each sample in `X`: the nearest centre to its code."""
        return nearest_center(self.transform(X), self.cluster_centers_)

    def fit_predict(self, X, y=None):
        """Fit and return `labels_`."""
        return self.fit(X).labels_

    def decode(self, codes):
        """Decode codes (e.g. `cluster_centers_`) into samples, in the model's [0, 1] scale."""
        self._check_fitted()
        codes = check_samples(codes, name="codes")
        if codes.shape[1] != self.autoencoder_.spec.code_size:
            raise DataError(f"codes have width {codes.shape[1]}; this model's code size is "
                            f"{self.autoencoder_.spec.code_size}")
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

"""Named bundles of method, network and training settings.

- `seed` is the original experiment's network, unchanged: Dense 784 -> 64 -> 32 -> 3
  (code) -> 32 -> 64 -> n_features, sigmoid on every layer, k-means on the codes. Only
  its training is ours: the schedule was chosen by the reconstruction loss, denoising by
  how well seeds agree (no labels either way): see the README.
- `n2d`, `dec`, `idec` are the published methods on the autoencoder they were published
  with (d-500-500-2000-k, ReLU, linear code and output, squared error): see
  `EncodingClusterer` for the papers.
- `umap` is UMAP on the raw input plus a Gaussian mixture: no network.
- `default` is our recommendation (see the README's benchmark): N2D with a shorter pretraining of
  a LeakyReLU network, in bfloat16 where the hardware has it, and 100 UMAP layout passes
  (umap-learn's own: 200 above 10,000 samples, 500 below).
"""

from .errors import ConfigError

METHODS = ("kmeans", "n2d", "dec", "idec", "umap")

_DEEP_NETWORK = {
    "hidden": (500, 500, 2000),
    "code_size": None,  # one code dimension per cluster
    "decoder_hidden": None,  # the mirror of the encoder
    "activation": "relu",
    "code_activation": "linear",
    "output_activation": "linear",
    "init": "xavier",  # Keras' Glorot-uniform, as the reference implementations
    "epochs": 40,
    "batch_size": 256,
    "learning_rate": 1e-3,
    "loss": "mse",
    "schedule": "constant",
    "corruption": 0.0,
    "precision": "float32",
    "n_neighbors": 20,
    "umap_epochs": None,  # umap-learn's own: 200 above 10,000 samples, 500 below
}

PRESETS = {
    "seed": {
        "method": "kmeans",
        "hidden": (784, 64, 32),
        "code_size": 3,
        "decoder_hidden": (32, 64),
        "activation": "sigmoid",
        "code_activation": "sigmoid",
        "output_activation": "sigmoid",
        "init": "xavier-sigmoid",
        "epochs": 120,
        "batch_size": 64,
        "learning_rate": 2e-3,
        "loss": "bce",
        "schedule": "cosine",
        "corruption": 0.2,
        "precision": "float32",
        "n_init": 10,
        "n_neighbors": 20,
        "umap_epochs": None,
    },
    # N2D (McConville et al. 2020): UMAP n_neighbors 20, min_dist 0, one mixture fit.
    "n2d": {**_DEEP_NETWORK, "method": "n2d", "n_init": 1},
    # DEC (Xie et al. 2016) and IDEC (Guo et al. 2017): k-means with 20 restarts starts the centres.
    "dec": {**_DEEP_NETWORK, "method": "dec", "n_init": 20},
    "idec": {**_DEEP_NETWORK, "method": "idec", "n_init": 20},
    "umap": {**_DEEP_NETWORK, "method": "umap", "n_init": 1},
}
# How DEC and IDEC refine, whichever preset they start from (see `RefinementConfig`): targets
# every 140 batches of 256, stop below 0.1% changed assignments, at most 20 epochs. IDEC's
# paper trains with Adam at 1e-3; DEC's used SGD, for which Adam at 1e-4 stands in here.
REFINEMENT = {"dec": {"gamma": None, "learning_rate": 1e-4}, "idec": {"gamma": 0.1, "learning_rate": 1e-3}}
# Ours: N2D with the pretraining of lowest reconstruction loss among those that keep a whole
# MNIST-70k run within 10 minutes on 2 CPU cores (see the README): 30 epochs at a constant
# learning rate, LeakyReLU units (ClustPy's choice) instead of ReLU.
# Five mixture fits, the most likely kept: a single fit on a UMAP embedding lands now and then
# in a poor optimum that merges two clusters and splits another (see the README).
# Matrix products in bfloat16 where the CPU or GPU has it natively: half the training time, the
# same clusters (MNIST-70k: see the README, Speed); float32 elsewhere.
# UMAP's layout in 100 passes instead of umap-learn's 200 (500 for small data): on MNIST-70k codes
# half the UMAP time for the same clusters (see the README, Speed).
PRESETS["default"] = {**PRESETS["n2d"], "activation": "leaky_relu", "epochs": 30, "n_init": 5, "precision": "auto",
                      "umap_epochs": 100}
DEFAULT_PRESET = "default"


def get_preset(name):
    """A copy of the named preset's settings."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])

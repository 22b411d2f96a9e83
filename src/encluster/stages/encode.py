"""Stage 1, *encode*: a dense autoencoder learns a short code of each sample.

The network is `encluster.models.Autoencoder`, its training loop `encluster.training`;
this module declares their settings and turns a fitted network into arrays and back.
Method ``umap`` has no encoder: its "codes" are the scaled input itself.
"""

import copy
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..models import ACTIVATIONS, INITS, Autoencoder, AutoencoderSpec, parameter_shapes, restored
from ..params import Either, Interval, Options, Setting, Sizes, settings_class
from ..scaling import SCALINGS
from ..training import LOSSES, SCHEDULES, TrainingConfig, apply_in_batches, resolve_precision, train_autoencoder
from ..validation import row_chunks

# Code (and UMAP) width when it is "auto" and the number of clusters is "auto" too.
AUTO_CODE_SIZE = 10
# hidden="auto": N2D's 500-500-2000 shape, each width WIDTH_PER_FEATURE x the input's (within the bounds below),
# so 13 table columns get 104-104-416 instead of 500 units each, and 63 or more features get N2D's network.
WIDTH_PER_FEATURE = 8
WIDTH_BOUNDS = (64, 500)
# steps="auto": at least STEPS_PER_ROOT_SAMPLE x sqrt(n) optimizer steps, where the held-out reconstruction loss
# levels off on sets of 178 to 16,000 samples (studies/results/pretraining_steps.md).
STEPS_PER_ROOT_SAMPLE = 10

SETTINGS = (
    Setting("scaling", Options(SCALINGS), "how raw features are scaled: minmax: onto [0, 1] (uint8 divided by 255, "
            "data in [0, 1] kept); standard: z-score per feature; auto: minmax for images and data in [0, 1], "
            "standard for other tables", "minmax"),
    Setting("hidden", Either((Sizes(), Options(("auto",)))), "encoder layer widths between the input and the code; "
            f"auto: w-w-4w, w = {WIDTH_PER_FEATURE} per input feature within {WIDTH_BOUNDS[0]}..{WIDTH_BOUNDS[1]}",
            (500, 500, 2000)),
    Setting("code_size", Either((Interval(int, 1), Options(("auto",)))),
            "width of the code; auto: one number per cluster (N2D's choice)", "auto"),
    Setting("decoder_hidden", Either((Sizes(), Options(("mirror",)))),
            "decoder layer widths between the code and the output; mirror: the encoder's, reversed", "mirror"),
    Setting("activation", Options(tuple(ACTIVATIONS)), "non-linearity after each hidden layer", "relu"),
    Setting("code_activation", Options(tuple(ACTIVATIONS)), "non-linearity on the code", "linear"),
    Setting("output_activation", Options(tuple(ACTIVATIONS)), "non-linearity on the reconstruction", "linear"),
    Setting("init", Options(INITS), "weight initialisation (xavier: Keras' Glorot-uniform; xavier-sigmoid: "
            "its 4x range for sigmoid units; torch: PyTorch's own)", "xavier"),
    Setting("epochs", Interval(int, 0), "passes of pretraining over the data (more when `steps` needs them)", 40),
    Setting("steps", Either((Interval(int, 0), Options(("auto",)))), "at least this many optimizer steps of "
            "pretraining, in whole passes: a small data set gets more passes than `epochs`; auto: "
            f"{STEPS_PER_ROOT_SAMPLE} x sqrt(samples)", 0),
    Setting("batch_size", Interval(int, 1), "samples per optimizer step (the global batch under torchrun)", 256),
    Setting("learning_rate", Interval(float, 0, closed="neither"), "Adam's step size (the peak, when decayed)", 1e-3),
    Setting("loss", Options(tuple(LOSSES)), "reconstruction loss: binary cross-entropy or squared error", "mse"),
    Setting("schedule", Options(SCHEDULES), "learning rate over training: constant, or cosine decay to 0", "constant"),
    Setting("corruption", Interval(float, 0, 1, closed="left"),
            "denoising: zero this fraction of the inputs in every batch (0: a plain autoencoder)", 0.0),
    Setting("precision", Options(("auto", "float32", "bfloat16")), "what training computes in; auto: bfloat16 "
            "where the CPU (AVX512-BF16, AMX) or GPU has it natively, float32 elsewhere", "float32"),
)
EncodeSettings = settings_class("EncodeSettings", SETTINGS, "The autoencoder's architecture and pretraining.")
NETWORK = ("hidden", "decoder_hidden", "activation", "code_activation", "output_activation", "init")
TRAINING = ("epochs", "batch_size", "learning_rate", "loss", "schedule", "corruption")


def per_cluster(n_clusters):
    """One dimension per cluster (N2D's code and UMAP width); `AUTO_CODE_SIZE` when k is "auto"."""
    return AUTO_CODE_SIZE if n_clusters == "auto" else int(n_clusters)


def code_width(settings, n_clusters):
    """The code's width: as set, or one number per cluster."""
    return per_cluster(n_clusters) if settings.code_size == "auto" else settings.code_size


def hidden_widths(hidden, n_features):
    """The encoder's widths: as set, or for "auto" N2D's shape sized from the input's width."""
    if hidden != "auto":
        return hidden
    width = min(max(WIDTH_PER_FEATURE * n_features, WIDTH_BOUNDS[0]), WIDTH_BOUNDS[1])
    return (width, width, 4 * width)


def network_spec(settings, n_features, code_size):
    """The `AutoencoderSpec` these settings describe for data `n_features` wide."""
    network = {name: getattr(settings, name) for name in NETWORK}
    network["hidden"] = hidden_widths(network["hidden"], n_features)
    if network["decoder_hidden"] == "mirror":
        network["decoder_hidden"] = None
    return AutoencoderSpec(n_features=n_features, code_size=code_size, **network)


# Bytes of training state per weight: the float32 weight, its gradient and Adam's two moments.
TRAINING_BYTES_PER_WEIGHT = 16


def check_fits_in_memory(spec, available=None):
    """Refuse, before allocating anything, a network whose training state alone outgrows this
    machine's memory (`available` bytes; the physical memory by default)."""
    weights = sum(math.prod(shape) for shape in parameter_shapes(spec).values())
    needed = weights * TRAINING_BYTES_PER_WEIGHT
    if available is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > available:
        raise ConfigError(f"the network (hidden={list(spec.hidden)}) has {weights:,} weights, which need "
                          f"{needed / 1e9:,.1f} GB to train, more than this machine's {available / 1e9:,.1f} GB; "
                          "lower hidden (--hidden)")


def pretraining_epochs(settings, n_samples):
    """Passes over `n_samples` rows: `epochs`, or more where that is fewer than `steps` steps.

    Passes alone undertrain small data: 30 passes are 8,200 steps on 70,000 samples but 240 on
    1,797, and one step per pass on a 178-row table.
    """
    if settings.epochs == 0:
        return 0
    steps = STEPS_PER_ROOT_SAMPLE * math.sqrt(n_samples) if settings.steps == "auto" else settings.steps
    return max(settings.epochs, math.ceil(steps / math.ceil(n_samples / settings.batch_size)))


def training_config(settings, device, n_samples):
    """The `TrainingConfig` these settings describe for `n_samples` rows: the step budget turned into
    passes, "auto" precision resolved for `device`."""
    values = {name: getattr(settings, name) for name in TRAINING}
    return TrainingConfig(**{**values, "epochs": pretraining_epochs(settings, n_samples)},
                          precision=resolve_precision(settings.precision, device))


def fit(data, spec, training, *, seed, device, verbose=0, checkpoint=None, group):
    """Build the network from `seed` and pretrain it on `data`; return ``(autoencoder, history)``.

    The weights are drawn from a seeded copy of torch's RNG, leaving the caller's global state alone.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        autoencoder = Autoencoder(spec)
    history = train_autoencoder(autoencoder, data, training, generator=torch.Generator().manual_seed(seed),
                                device=device, verbose=verbose, checkpoint=checkpoint, group=group)
    return autoencoder.to("cpu"), history


def encode(autoencoder, data, *, row_exact=False, device="cpu"):
    """The codes of scaled rows `data`; without a network, the rows themselves.

    A float32 matrix product rounds differently for a batch of one row than for a batch of many
    (the library picks other kernels), so a row's code would depend on its batch in the last bit.
    ``row_exact`` computes in float64 and rounds to float32: the code of a row is then its own,
    whatever it is batched with. The estimator encodes so both in `fit` and in `predict`, so that
    `transform(X_train)` is `codes_` exactly and k-means' `predict(X_train)` is `labels_`. `device`
    is where the network computes (the batches are moved there and the codes back).
    """
    if autoencoder is None:
        return np.concatenate(list(row_chunks(data)))
    encoder = copy.deepcopy(autoencoder.encoder).to(device)
    if not row_exact:
        return apply_in_batches(encoder, data, device=device)
    encoder.double()
    return apply_in_batches(lambda batch: encoder(batch.double()).float(), data, device=device)


def decode(autoencoder, codes):
    """Samples (in the model's scale) for `codes`; without a network the codes are scaled rows already."""
    if autoencoder is None:
        return np.asarray(codes, dtype=np.float32)
    return apply_in_batches(autoencoder.decode, codes.astype(np.float32))


@dataclass
class Network:
    """The encode stage's fitted state: the trained autoencoder (None for method "umap"), its mean
    reconstruction loss per epoch, and how it was trained."""

    autoencoder: Autoencoder | None
    history: list
    training: TrainingConfig

    def to_arrays(self, training_rows=True):
        """The weights by name, and the architecture, losses and training for model.json."""
        weights = {} if self.autoencoder is None else {
            f"autoencoder.{k}": v.detach().cpu().contiguous() for k, v in self.autoencoder.state_dict().items()}
        return weights, {"autoencoder": None if self.autoencoder is None else self.autoencoder.spec.to_dict(),
                         "history": [float(h) for h in self.history], "training": self.training.to_dict()}

    @classmethod
    def from_arrays(cls, arrays, meta, shape):
        """Rebuild the network; shapes are checked before anything is allocated, so a tampered
        description claiming huge layers cannot make us build them."""
        described = meta["autoencoder"]
        network = None if described is None else restored(
            lambda: Autoencoder(AutoencoderSpec(**described)), arrays, "autoencoder.",
            parameter_shapes(AutoencoderSpec(**described)), shape.where)
        return cls(network, [float(h) for h in meta["history"]], TrainingConfig(**meta["training"]))

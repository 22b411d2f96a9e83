"""The autoencoder: a configurable multilayer perceptron in PyTorch."""

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import ConfigError, ModelError

# "leaky_relu" is PyTorch's (slope 0.01 below zero), as ClustPy's autoencoders use it.
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "elu": nn.ELU,
               "linear": nn.Identity}
# Glorot & Bengio (2010) give the uniform range for tanh units; sigmoid units, whose
# slope at 0 is 1/4 of tanh's, need weights 4x larger to pass gradients as well.
INIT_GAINS = {"xavier": 1.0, "xavier-sigmoid": 4.0}
INITS = (*INIT_GAINS, "torch")


@dataclass
class AutoencoderSpec:
    """The architecture, enough to rebuild the network from a saved file.

    n_features : int
        Width of the input (and of the reconstruction).
    hidden : tuple of int
        Encoder layer sizes between input and code.
    decoder_hidden : tuple of int or None
        Decoder layer sizes between code and output; None mirrors `hidden`.
    code_size : int
        Width of the encoding.
    activation : str
        Non-linearity after each hidden layer.
    code_activation : str
        Non-linearity on the code ("linear" keeps it unbounded).
    output_activation : str
        Non-linearity on the reconstruction ("sigmoid" for data in [0, 1]).
    init : {"xavier", "xavier-sigmoid", "torch"}
        Weight initialisation: Glorot-uniform with zero biases (Keras' default, what
        the original experiment used), the same with the 4x range Glorot & Bengio
        recommend for sigmoid units, or PyTorch's default.
    """

    n_features: int
    hidden: tuple
    code_size: int
    decoder_hidden: tuple | None
    activation: str
    code_activation: str
    output_activation: str
    init: str

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.decoder_hidden is None:
            self.decoder_hidden = self.hidden[::-1]
        self.decoder_hidden = tuple(int(h) for h in self.decoder_hidden)
        for name in ("activation", "code_activation", "output_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ConfigError(f"{name}={getattr(self, name)!r}; expected one of {', '.join(ACTIVATIONS)}")
        if self.init not in INITS:
            raise ConfigError(f"init={self.init!r}; expected one of {', '.join(INITS)}")
        if self.code_size < 1 or self.n_features < 1 or any(h < 1 for h in self.hidden + self.decoder_hidden):
            raise ConfigError(f"layer sizes must be >= 1 (n_features={self.n_features}, "
                              f"hidden={self.hidden}, code_size={self.code_size})")

    def to_dict(self):
        return {**asdict(self), "hidden": list(self.hidden), "decoder_hidden": list(self.decoder_hidden)}


def parameter_shapes(spec):
    """The name and shape of every parameter `Autoencoder(spec)` has, computed without
    building it, so a saved file can be checked before any memory is allocated."""
    shapes = {}
    for part, sizes in (("encoder", [spec.n_features, *spec.hidden, spec.code_size]),
                        ("decoder", [spec.code_size, *spec.decoder_hidden, spec.n_features])):
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"{part}.{2 * i}.weight"] = (n_out, n_in)
            shapes[f"{part}.{2 * i}.bias"] = (n_out,)
    return shapes


def _stack(sizes, activation, last_activation=None):
    """Linear layers of `sizes`, `activation` between them, `last_activation` (if any) after the last."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    layers.pop()
    if last_activation is not None:
        layers.append(ACTIVATIONS[last_activation]())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """Encoder ``n_features -> hidden... -> code`` and decoder ``code -> decoder_hidden... -> n_features``.

    The decoder stops before the output activation, which is a module of its own
    (`output_activation`): a loss can then take the decoder's pre-activations, as binary
    cross-entropy behind a sigmoid does (see `encluster.training.reconstruction_loss`).
    """

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.encoder = _stack([spec.n_features, *spec.hidden, spec.code_size], spec.activation, spec.code_activation)
        self.decoder = _stack([spec.code_size, *spec.decoder_hidden, spec.n_features], spec.activation)
        self.output_activation = ACTIVATIONS[spec.output_activation]()
        if spec.init in INIT_GAINS:
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight, gain=INIT_GAINS[spec.init])
                    nn.init.zeros_(module.bias)

    def forward(self, x, activate=True):
        """The reconstruction of `x`; with ``activate=False``, before the output activation."""
        return self.decode(self.encoder(x), activate)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z, activate=True):
        return self.output_activation(self.decoder(z)) if activate else self.decoder(z)


@dataclass
class ClassifierSpec:
    """The self-labelling classifier's architecture, enough to rebuild it from a saved file.

    n_features : int
        Width of a (flattened, scaled) sample.
    n_classes : int
        Number of clusters it tells apart.
    width : int
        Channels of the first convolution (twice as many in the second) for images; units of
        each hidden layer for rows.
    image_shape : tuple of int or None
        ``(height, width)`` or ``(height, width, channels)`` of an image sample (a CNN); None for
        rows that are not images (an MLP).
    """

    n_features: int
    n_classes: int
    width: int
    image_shape: tuple | None

    def __post_init__(self):
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
            if len(self.image_shape) not in (2, 3) or math.prod(self.image_shape) != self.n_features:
                raise ConfigError(f"image_shape={self.image_shape} does not hold {self.n_features} features; give "
                                  "(height, width) or (height, width, channels) whose product is the row's width")
        if min(self.n_features, self.n_classes, self.width) < 1:
            raise ConfigError(f"classifier sizes must be >= 1 (n_features={self.n_features}, "
                              f"n_classes={self.n_classes}, width={self.width})")

    @property
    def kind(self):
        return "cnn" if self.image_shape is not None else "mlp"

    def to_dict(self):
        return {**asdict(self), "image_shape": None if self.image_shape is None else list(self.image_shape)}


# The CNN's feature map, a quarter of the image's side after two poolings, is averaged down to at most this many
# cells a side (7: a 28-pixel image's map as it is), so a large image does not get a huge dense layer. Averaged
# down to 4 instead, the classifier fitted held-out sure members of MNIST less well (docs/design.md).
MAX_POOLED_SIDE = 7
CLASSIFIER_HIDDEN = 128


class Classifier(nn.Module):
    """Tells clusters apart from the samples themselves: for images a small CNN (two 5x5
    convolutions with max-pooling, LeNet's shape; shift-invariant where the autoencoder's dense
    layers are not), for other rows a two-layer MLP. Takes flattened scaled rows and returns
    logits, one per cluster."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        w, k = spec.width, spec.n_classes
        if spec.image_shape is None:
            self.features = nn.Sequential(nn.Linear(spec.n_features, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU())
            self.head = nn.Linear(w, k)
            return
        channels = spec.image_shape[2] if len(spec.image_shape) == 3 else 1
        pooled = [min(math.ceil(side / 4), MAX_POOLED_SIDE) for side in spec.image_shape[:2]]
        self.features = nn.Sequential(
            nn.Conv2d(channels, w, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(w, 2 * w, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(pooled), nn.Flatten(),
            nn.Linear(2 * w * pooled[0] * pooled[1], CLASSIFIER_HIDDEN), nn.ReLU())
        self.head = nn.Linear(CLASSIFIER_HIDDEN, k)

    def as_images(self, rows):
        """Flattened rows as a batch of (channels, height, width) images (channels last on disk)."""
        shape = self.spec.image_shape
        images = rows.reshape(len(rows), shape[0], shape[1], shape[2] if len(shape) == 3 else 1)
        return images.permute(0, 3, 1, 2)

    def forward(self, rows):
        inputs = rows if self.spec.image_shape is None else self.as_images(rows)
        return self.head(self.features(inputs))


def classifier_shapes(spec):
    """The name and shape of every parameter `Classifier(spec)` has, built on the meta device,
    so a saved file is checked before any memory is allocated."""
    import torch

    with torch.device("meta"):
        return {name: tuple(p.shape) for name, p in Classifier(spec).state_dict().items()}


def restored(build, tensors, prefix, expected, where):
    """The network `build()` makes, with the weights named ``prefix + name`` in `tensors`: their names
    and shapes are checked against `expected` first, so a tampered file cannot make us allocate."""
    state = {k[len(prefix):]: torch.as_tensor(v) for k, v in tensors.items() if k.startswith(prefix)}
    if set(state) != set(expected) or any(tuple(state[k].shape) != expected[k] for k in expected):
        raise ModelError(f"{where}: {prefix.rstrip('.')} weight names or shapes do not match its description in "
                         "model.json")
    network = build()
    network.load_state_dict(state)
    return network.eval()

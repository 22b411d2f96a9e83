"""The autoencoder: a configurable multilayer perceptron in PyTorch."""

from dataclasses import asdict, dataclass

from torch import nn

from .errors import ConfigError

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
    decoder_hidden: tuple | None = None
    activation: str = "sigmoid"
    code_activation: str = "sigmoid"
    output_activation: str = "sigmoid"
    init: str = "xavier"

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

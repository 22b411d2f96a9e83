"""Named bundles of network and training settings.

`seed` is the original experiment's network, unchanged: Dense 784 -> 64 -> 32 -> 3
(code) -> 32 -> 64 -> n_features, sigmoid on every layer. Only its training schedule is
ours; it was chosen by the reconstruction loss alone (no labels): see the README.
"""

from .errors import ConfigError

PRESETS = {
    "seed": {
        "hidden": (784, 64, 32),
        "code_size": 3,
        "decoder_hidden": (32, 64),
        "activation": "sigmoid",
        "code_activation": "sigmoid",
        "output_activation": "sigmoid",
        "init": "xavier-sigmoid",
        "epochs": 60,
        "batch_size": 64,
        "learning_rate": 2e-3,
        "loss": "bce",
        "schedule": "cosine",
    },
}
DEFAULT_PRESET = "seed"


def get_preset(name):
    """A copy of the named preset's settings."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])

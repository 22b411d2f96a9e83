"""Named bundles of settings, one TOML file each in this folder: plain data, read with `tomllib`.

A preset names only the settings it changes; every other setting takes the default declared
beside it in its stage, which is N2D's published network (`encluster.stages.get_preset` checks a
preset against those declarations). The files:

- ``original.toml``: the original experiment (k-means on a 3-number code); ``seed`` is its former name.
- ``n2d.toml``, ``dec.toml``, ``idec.toml``: the published methods on the network they were published with.
- ``umap.toml``: UMAP on the raw input plus a Gaussian mixture, no network.
- ``default.toml``: our recommendation, N2D with a shorter LeakyReLU pretraining (see each file's comments).
"""

import tomllib
from pathlib import Path

from ..errors import ConfigError

FOLDER = Path(__file__).parent
DEFAULT_PRESET = "default"
# Former names, still accepted.
ALIASES = {"seed": "original"}
PRESET_NAMES = tuple(sorted(path.stem for path in FOLDER.glob("*.toml"))) + tuple(ALIASES)


def read_preset(name):
    """The settings the named preset file sets, unchecked."""
    name = ALIASES.get(name, name)
    if name not in PRESET_NAMES:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return tomllib.loads((FOLDER / f"{name}.toml").read_text(encoding="utf-8"))

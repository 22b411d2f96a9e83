"""The pipeline as five stages, each a module that owns its settings and its fitted state:

1. `encode` — a dense autoencoder turns each sample into a short code (none for ``umap``);
2. `embed` — UMAP of the codes (n2d, umap and the default), or nothing;
3. `cluster` — k-means or a Gaussian mixture, with ``n_clusters="auto"``;
4. `refine` — DEC or IDEC, or nothing;
5. `selflabel` — a classifier trained on the clusters' surest members relabels every sample, or nothing.

A method is a choice of the first four stages (`METHODS`); the fifth follows any of them. Every setting of every stage is declared once
(`encluster.params.Setting`); `GROUPS` lists them all, with the pipeline's own, in the order
the estimator, the presets, ``config.json`` and the command line show them.
"""

from dataclasses import dataclass

from .. import confidence, presets
from ..errors import ConfigError
from ..params import Either, Interval, Nothing, Options, Pattern, Setting
from ..presets import PRESET_NAMES, DEFAULT_PRESET
from . import cluster, embed, encode, refine, selflabel


@dataclass(frozen=True)
class Pipeline:
    """Which stages a method runs: an encoder or not, UMAP or not, the clustering algorithm, the refinement."""

    encoder: bool
    embedding: bool
    clustering: str  # one of cluster.ALGORITHMS
    refinement: str | None = None  # one of refine.REFINEMENTS

    def __post_init__(self):
        if self.clustering not in cluster.ALGORITHMS or self.refinement not in (None, *refine.REFINEMENTS):
            raise ValueError(f"no such stage: clustering {self.clustering!r}, refinement {self.refinement!r}")


METHODS = {
    "kmeans": Pipeline(encoder=True, embedding=False, clustering="kmeans"),  # the original experiment
    "n2d": Pipeline(encoder=True, embedding=True, clustering="gmm"),  # McConville et al. 2020
    "dec": Pipeline(encoder=True, embedding=False, clustering="kmeans", refinement="dec"),  # Xie et al. 2016
    "idec": Pipeline(encoder=True, embedding=False, clustering="kmeans", refinement="idec"),  # Guo et al. 2017
    "umap": Pipeline(encoder=False, embedding=True, clustering="gmm"),  # no network: the honest baseline
}

# method="auto": below this many features a table is clustered without a network (method umap). Across three
# seeds, the network's clusters of 4- to 30-column tables agreed with each other far less than UMAP's of the
# scaled columns themselves (benchmarks/results/tables.md); no labels went into the choice.
MIN_FEATURES_TO_ENCODE = 64


def resolve_method(method, n_features):
    """The method to run: as set, or for "auto" n2d on data of `MIN_FEATURES_TO_ENCODE` or more
    features (images among them) and umap on narrower tables."""
    if method != "auto":
        return method
    return "n2d" if n_features >= MIN_FEATURES_TO_ENCODE else "umap"


PIPELINE = (
    Setting("preset", Options(PRESET_NAMES), "where every setting left unset comes from (see encluster/presets/)",
            DEFAULT_PRESET, preset=False),
    Setting("method", Options((*METHODS, "auto")), "which stages run: kmeans (the original experiment), n2d (UMAP + "
            "mixture), dec, idec (refined k-means), umap (no network); auto: n2d from "
            f"{MIN_FEATURES_TO_ENCODE} features up, umap for narrower tables", "n2d"),
)
RUNTIME = (
    Setting("device", Pattern(r"cpu|cuda(:[0-9]+)?", "a torch device: cpu, cuda or cuda:N", "DEVICE"),
            "where the network trains", "cpu", preset=False),
    Setting("random_state", Either((Interval(int, 0, 2**32 - 1), Nothing("a fresh seed, kept in seed_"))),
            "seed of the weights, the shuffling, UMAP and the clustering: the same seed gives the same labels",
            None, preset=False, flag="--seed", cli_default=0),
    Setting("verbose", Interval(int, 0), "1 shows a progress bar on a terminal (log lines otherwise)", 0,
            preset=False, flag=""),
)
GROUPS = (("pipeline", PIPELINE), ("encode: the autoencoder", encode.SETTINGS), ("embed: UMAP", embed.SETTINGS),
          ("cluster", cluster.SETTINGS), ("refine: DEC and IDEC", refine.SETTINGS),
          ("selflabel: a classifier on the surest members", selflabel.SETTINGS),
          ("confidence: how sure each assignment is", confidence.SETTINGS), ("runtime", RUNTIME))
SETTINGS = tuple(setting for _, group in GROUPS for setting in group)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def get_preset(name):
    """Every preset-decided setting's value under the named preset (`encluster.presets`), checked
    against its declaration: the preset's own values over the declared defaults."""
    given = presets.read_preset(name)
    declared = {s.name: s for s in SETTINGS if s.preset}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(f"preset {name!r} sets unknown settings {unknown}; known ones are {sorted(declared)}")
    return {key: setting.check(given.get(key, setting.default)) for key, setting in declared.items()}

"""Stage 5, *selflabel*: a classifier trained on the clusters' surest members relabels every sample.

The clustering stages find the groups from an autoencoder's code; the code of a dense network is
not invariant to a digit drawn two pixels to the left, so some members land in the wrong group.
A classifier that sees the samples themselves, trained with label-preserving augmentation (for
images: shifts, small rotations, scaling; no flips, which change digits), learns what the groups
have in common and corrects such members. It learns from the members the clustering is surest of:
those whose nearest neighbours in code space all share their cluster, read from the neighbour
graph UMAP built already (so choosing them costs nothing). The posterior of the mixture says
nothing here: it is above 0.99 for almost every sample, right or wrong.

Self-labelling in this sense follows SCAN (Van Gansbeke et al. 2020, "SCAN: Learning to Classify
Images without Labels", ECCV), whose last step trains on confident members with strong
augmentation; DEC-DA (Guo et al. 2018) and DynAE (Mrabah et al. 2020) augment an autoencoder
instead. The classifier is sized from the data: a small CNN for images of any size and colour, an
MLP with feature noise for other rows. Its budget is a number of optimizer steps, whatever the
number of samples. Label smoothing keeps it from learning the few wrong sure members by heart. It
cannot undo a merged cluster, and where many of the surest members are wrong it learns their
mistakes; it does not make a good clustering worse (docs/benchmarks.md).
"""

import copy
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors
from torch import nn

from ..errors import ConfigError, ModelError
from ..fitted import attribute, unsaved
from ..models import Classifier, ClassifierSpec, classifier_shapes, restored
from ..params import Either, Interval, Options, Setting, settings_class
from ..scaling import row_range
from ..training import (BatchReader, StepLoop, StepTask, adam, apply_in_batches, epoch_order,
                        learning_rate_at)
from .embed import MAX_UMAP_FIT_SAMPLES
from .encode import hidden_widths

log = logging.getLogger(__name__)

# selflabel auto: on for images whose clusters hold this many samples or more (samples / clusters): the fewest
# measured. Taught for 300 passes it raised the seeds' agreement (no labels) on four of five sets of 10 to 30 per
# cluster and on those of 100 and 180; taught for 100 it had lost clusters at 10 per cluster
# (studies/results/selflabel_per_cluster.md).
MIN_PER_CLUSTER = 10

# selflabel_passes auto: passes x expected samples per cluster = VISITS_PER_CLUSTER, between FEW_PASSES and
# MANY_PASSES: 300 up to 30 samples per cluster, 100 from 90 up. Over seven small image sets 300 passes
# gave the highest mean seeds' agreement (0.702, against 0.683 for 100, 0.697 for 1,000, 0.685 for none); 100 emptied
# clusters at 10 per cluster and agreed less at 30, but from 100 per cluster up 100 passes agreed as much as 300 (mean
# 0.796 against 0.794 over 1,000 and 2,000 MNIST digits and the 1,797 digits) in half the time. Between 30 and 90
# per cluster the count is interpolated, not measured. Sets of 6,000 / 100 * 128 = 7,680 sure members or more keep
# their 6,000 steps (studies/results/selflabel_per_cluster.md).
VISITS_PER_CLUSTER = 9_000
FEW_PASSES, MANY_PASSES = 100, 300
SETTINGS = (
    Setting("selflabel", Options(("off", "on", "auto")), "relabel every sample with a classifier trained on the "
            "clusters' surest members (a CNN for images, an MLP for other rows); auto: on for images of at least "
            f"{MIN_PER_CLUSTER} samples per cluster", "off"),
    Setting("selflabel_neighbors", Either((Interval(int, 1), Options(("auto",)))), "selflabel: a member is sure "
            "when this many of its nearest neighbours in code space share its cluster; auto: half of UMAP's "
            "n_neighbors (10 of 20)", "auto"),
    Setting("selflabel_steps", Interval(int, 1), "selflabel: optimizer steps (batches of 128) of the classifier, "
            "whatever the number of samples", 6000),
    Setting("selflabel_passes", Either((Interval(int, 1), Options(("auto",)))), "selflabel: at most this many "
            "passes over the sure members, so a small set takes fewer than selflabel_steps; auto: "
            f"{VISITS_PER_CLUSTER:,} / samples per cluster, from {FEW_PASSES} to {MANY_PASSES}", "auto"),
    Setting("selflabel_width", Interval(int, 1), "selflabel: channels of the CNN's first convolution (twice as many "
            "in the second); units of the MLP's layers for rows: the autoencoder's first width", 16),
    Setting("selflabel_smoothing", Interval(float, 0, 1, closed="left"), "selflabel: label smoothing of the "
            "classifier's targets, since some sure members' clusters are wrong; 0 turns it off", 0.1),
    Setting("augment_shift", Interval(float, 0, 0.5, closed="left"), "selflabel, images: random shifts up to this "
            "fraction of the side (0.09: 2.5 pixels of 28); 0 turns them off", 0.09),
    Setting("augment_rotation", Interval(float, 0, 180), "selflabel, images: random rotations up to this many "
            "degrees; 0 turns them off", 10.0),
    Setting("augment_scale", Interval(float, 0, 1, closed="left"), "selflabel, images: random zoom in or out by up "
            "to this fraction; 0 turns it off", 0.1),
    Setting("feature_noise", Interval(float, 0), "selflabel, rows: Gaussian noise of this many standard deviations "
            "added to each feature; 0 turns it off", 0.1),
)
SelfLabelSettings = settings_class("SelfLabelSettings", SETTINGS, "How the classifier relabels the clusters.")
# Batches of 128: 6,000 of them come within 0.0026 of the held-out agreement of 6,000 batches of 256 (above it on
# digits) in half the time; 12,000 of 64 did no better (studies/results/selflabel_budget.md).
BATCH_SIZE = 128
LEARNING_RATE = 1e-3  # Adam's, decayed to 0 along a cosine over the steps
# A cluster with fewer sure members than this (or than half its members) is topped up with its members of highest
# neighbour agreement, so every cluster is taught (a cluster the classifier never saw would vanish); a cluster of
# 10 keeps its surest 5 rather than all 10.
MIN_MEMBERS = 20
CHECKPOINT_EVERY = 500  # steps between checkpoints (besides the one a stop writes)
LOSS_EVERY = 100  # steps per entry of the loss history


@dataclass
class SelfLabelConfig:
    """How the classifier is trained (built from `SelfLabelSettings` by `config`).

    neighbors : int
        A member is sure when this many of its nearest neighbours share its cluster.
    steps : int
        Optimizer steps, in batches of `BATCH_SIZE` sure members.
    passes : int
        At most this many passes over the sure members (fewer steps on small sets).
    width : int
        The classifier's width (see `encluster.models.ClassifierSpec`).
    image_shape : tuple or None
        The samples' image shape (a CNN), or None (an MLP).
    shift, rotation, scale : float
        Images: largest random shift (fraction of the side), rotation (degrees), zoom (fraction).
    noise : float
        Rows: standard deviations of Gaussian noise added to each feature.
    smoothing : float
        Label smoothing of the targets (Szegedy et al. 2016): each sure member's target is
        ``1 - smoothing`` on its cluster plus `smoothing` spread evenly over all clusters; it keeps
        the classifier from learning the few wrong sure members by heart (Lukasik et al. 2020).
    precision : {"float32", "bfloat16"}
        What training computes in (as the autoencoder's).
    """

    neighbors: int
    steps: int
    passes: int
    width: int
    smoothing: float
    image_shape: tuple | None
    shift: float
    rotation: float
    scale: float
    noise: float
    precision: str

    def augmentation(self):
        """The augmentations in use, by name, with their sizes (recorded with the run)."""
        if self.image_shape is None:
            return {"feature_noise": self.noise} if self.noise else {}
        return {name: value for name, value in (("shift", self.shift), ("rotation", self.rotation),
                                                ("scale", self.scale)) if value}


def passes_for(passes, per_cluster):
    """The most passes over the sure members (`selflabel_passes`, "auto" resolved) where clusters hold
    about `per_cluster` samples: small clusters need many passes to be learnt at all, large ones give
    each pass more to learn from."""
    if passes != "auto":
        return passes
    return int(min(MANY_PASSES, max(FEW_PASSES, round(VISITS_PER_CLUSTER / per_cluster))))


def config(settings, image_shape, n_features, precision, umap_neighbors, per_cluster):
    """The classifier's configuration, or None where self-labelling is off ("auto": on for images of
    at least `MIN_PER_CLUSTER` samples per cluster, `per_cluster` the expected size); `umap_neighbors`:
    UMAP's neighbourhood, which "auto" sure members take half of."""
    if settings.selflabel == "off" or (settings.selflabel == "auto" and (
            image_shape is None or per_cluster < MIN_PER_CLUSTER)):
        return None
    width = settings.selflabel_width if image_shape is not None else hidden_widths("auto", n_features)[0]
    neighbors = settings.selflabel_neighbors
    return SelfLabelConfig(neighbors=max(1, umap_neighbors // 2) if neighbors == "auto" else neighbors,
                           steps=settings.selflabel_steps, passes=passes_for(settings.selflabel_passes, per_cluster),
                           width=width, smoothing=settings.selflabel_smoothing,
                           image_shape=None if image_shape is None else tuple(image_shape),
                           shift=settings.augment_shift, rotation=settings.augment_rotation,
                           scale=settings.augment_scale, noise=settings.feature_noise, precision=precision)


def steps_for(steps, n_members, passes):
    """The optimizer steps to take: `steps`, or fewer where they would pass over the `n_members` sure
    members more than `passes` times."""
    return max(1, min(steps, math.ceil(passes * n_members / BATCH_SIZE)))


def neighbour_agreement(neighbours, labels, rows):
    """For each of `rows`, the fraction of its nearest neighbours (`neighbours`: indices into `rows`,
    nearest first, the row itself first) that share its label."""
    own = labels[rows]
    others = labels[rows[neighbours[:, 1:]]]
    return (others == own[:, None]).mean(axis=1)


def sure_members(neighbours, labels, rows, n_clusters, n_neighbors):
    """The rows the clustering is surest of: every one of their `n_neighbors` nearest neighbours shares
    their cluster. A cluster with fewer than `MIN_MEMBERS` such rows gets its rows of highest agreement.

    neighbours : ndarray of shape (len(rows), >= n_neighbors + 1)
        Neighbour graph of `rows` (e.g. UMAP's), as indices into `rows`, each row's own first.
    rows : ndarray of int
        Which samples the graph covers (all of them, or the sample UMAP was fitted on).
    """
    if neighbours.shape[1] < 2:
        return rows  # a graph of one point per row says nothing: trust them all
    agreement = neighbour_agreement(neighbours[:, : n_neighbors + 1], labels, rows)
    chosen = agreement == 1
    own = labels[rows]
    for cluster in range(n_clusters):
        members = np.flatnonzero(own == cluster)
        wanted = min(MIN_MEMBERS, math.ceil(len(members) / 2))
        if chosen[members].sum() < wanted:
            best = members[np.argsort(-agreement[members], kind="stable")[:wanted]]
            chosen[best] = True
    return rows[chosen]


def neighbour_graph(embedding, codes, n_neighbors, seed):
    """Each row's nearest neighbours in code space, itself first: UMAP's own graph (`embedding`'s)
    where it has enough neighbours, else an exact search of the `codes` (of at most
    `embed.MAX_UMAP_FIT_SAMPLES` of them, a seeded sample). Returns ``(graph, rows)``: indices into
    `rows`, and which samples the graph covers."""
    graph = getattr(embedding, "neighbours_", None)
    if graph is not None and graph.shape[1] > min(n_neighbors, len(graph) - 1):
        return graph, embedding.fit_rows_
    n = len(codes)
    rows = np.arange(n) if n <= MAX_UMAP_FIT_SAMPLES else np.sort(
        np.random.default_rng(seed).choice(n, MAX_UMAP_FIT_SAMPLES, replace=False))
    chosen = codes[rows]
    graph = NearestNeighbors(n_neighbors=min(n_neighbors + 1, len(rows)), n_jobs=-1).fit(chosen) \
        .kneighbors(chosen, return_distance=False)
    return graph, rows


def sure_members_of(embedding, codes, labels, n_clusters, n_neighbors, seed):
    """`sure_members` of a fitted clustering, from its `neighbour_graph`."""
    graph, rows = neighbour_graph(embedding, codes, n_neighbors, seed)
    return sure_members(graph, labels, rows, n_clusters, n_neighbors)


def random_affine(count, config, generator):
    """`count` random affine maps (rotation, zoom, shift), as `torch.nn.functional.affine_grid` takes them."""
    draw = lambda bound: (2 * torch.rand(count, generator=generator) - 1) * bound  # noqa: E731
    angle, zoom = torch.deg2rad(draw(config.rotation)), 1 + draw(config.scale)
    # affine_grid maps output to input coordinates on [-1, 1]: a shift of f of the side is 2f there.
    shift_x, shift_y = 2 * draw(config.shift), 2 * draw(config.shift)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)


def augmented(classifier, batch, window, config, generator, group, feature_std):
    """The classifier's input for `batch`: images moved by random affine maps, or rows with Gaussian
    noise. The random draws are made for the whole global batch from the shared generator and split
    like the rows, so processes together augment exactly as one process would, and a resumed run
    draws the same."""
    if config.image_shape is None:
        if not config.noise:
            return batch
        noise = torch.randn((len(window), batch.shape[1]), generator=generator)
        return batch + group.batch_share(noise).to(batch.device) * (config.noise * feature_std)
    if not (config.shift or config.rotation or config.scale):
        return batch
    theta = group.batch_share(random_affine(len(window), config, generator)).to(batch.device)
    images = classifier.as_images(batch)
    grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    moved = nn.functional.grid_sample(images, grid, padding_mode="border", align_corners=False)
    return moved.permute(0, 2, 3, 1).reshape(batch.shape)


def fit(data, members, targets, n_classes, config, *, seed, device, verbose=0, checkpoint=None, group,
        batch_size=BATCH_SIZE, network=Classifier, optimizer=adam):
    """Train the classifier on the sure `members` (row numbers of `data`) and their cluster `targets`;
    return ``(classifier, loss history)``.

    `batch_size`, `network` (built from a `ClassifierSpec`) and `optimizer` (given the parameters and
    the learning rate) are the default's unless a study tries others.

    The weights and the batches come from `seed` (+ 2, apart from pretraining's and DEC's). With a
    `checkpoint`, the state is kept every `CHECKPOINT_EVERY` steps and when `checkpoint.stop` is set
    (then `TrainingInterrupted` is raised); with ``checkpoint.resume`` training continues from it and
    ends with exactly the weights an uninterrupted run has.
    """
    spec = ClassifierSpec(n_features=data.shape[1], n_classes=n_classes, width=config.width,
                          image_shape=config.image_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)
        classifier = network(spec)
    members = np.asarray(members)
    batch_size = min(batch_size, group.padded(len(members)))
    group.check_batch(batch_size, what="the self-labelling batch (fewer sure members than processes)")
    task = _Teaching(classifier, data, members, targets, config, batch_size, seed, device, group, optimizer)
    StepLoop(task, "self-labelling", checkpoint=checkpoint, group=group, device=device, verbose=verbose,
             stage="selflabel", unit="step", fix="turn self-labelling off (--selflabel off)").run()
    return classifier.to("cpu").eval(), task.state["history"]


class _Teaching(StepTask):
    """The classifier's training as a `StepLoop` task: batches of sure members, a new order whenever
    they run out, the loss history one mean per `LOSS_EVERY` steps, a checkpoint every
    `CHECKPOINT_EVERY` steps (and on a stop)."""

    def __init__(self, classifier, data, members, targets, config, batch_size, seed, device, group, optimizer):
        self.device = torch.device(device)
        self.classifier = self.module = classifier.to(self.device).train()
        self.network = group.data_parallel(classifier)
        self.optimizer = optimizer(classifier.parameters(), LEARNING_RATE)
        self.generator = torch.Generator().manual_seed(seed + 2)
        self.schedule = _Schedule(config.steps)
        self.config, self.batch_size, self.group = config, batch_size, group
        self.total_steps = config.steps
        self.padded = group.padded(len(members))
        self.n_members = len(members)
        self.feature_std = _feature_std(data, members) if config.image_shape is None else None
        self.rows_of = BatchReader(data, self.device)
        self.members_at = self.rows_of.place(torch.as_tensor(members))
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.int64).to(self.device)
        self.order = None  # state["order"] where batches are indexed
        self.state = {"step": 0, "order": None, "start": 0, "total": 0.0, "history": []}

    def start(self):
        state = self.state
        if state["order"] is None or state["start"] >= self.padded:
            state.update(order=epoch_order(self.n_members, self.generator, self.group), start=0)
            self.order = None
        if self.order is None:
            self.order = self.rows_of.place(state["order"])
        return True

    def step(self):
        state, config = self.state, self.config
        window = state["order"][state["start"] : state["start"] + self.batch_size]
        rows = self.group.batch_share(self.order[state["start"] : state["start"] + self.batch_size])
        batch = self.rows_of(self.members_at[rows])
        inputs = augmented(self.classifier, batch, window, config, self.generator, self.group, self.feature_std)
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = learning_rate_at(state["step"], config.steps, self.schedule)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=config.precision == "bfloat16"):
            logits = self.network(inputs)
        loss = nn.functional.cross_entropy(logits.float(), self.targets[rows.to(self.device)],
                                           label_smoothing=config.smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        state["start"] += len(window)
        return loss.detach(), 1

    def at_boundary(self):
        return self.state["step"] % LOSS_EVERY == 0 or self.state["step"] == self.total_steps

    def record(self):
        state = self.state
        count = (state["step"] - 1) % LOSS_EVERY + 1
        state["history"].append(state["total"] / count)
        state["total"] = 0.0
        return state["step"], self.total_steps, state["history"][-1]

    def checkpoint_due(self, boundary):
        return self.state["step"] % CHECKPOINT_EVERY == 0


@dataclass
class _Schedule:
    """`learning_rate_at`'s view of the classifier's schedule: cosine decay from `LEARNING_RATE`."""

    steps: int
    learning_rate: float = LEARNING_RATE
    schedule: str = "cosine"


def _feature_std(data, members):
    """Each feature's standard deviation over (up to 10,000 of) the sure members, the unit of the noise."""
    sample = np.sort(members[np.linspace(0, len(members) - 1, min(len(members), 10_000)).astype(np.int64)])
    std = torch.as_tensor(np.asarray(data[sample], dtype=np.float32)).std(dim=0, correction=0)
    return torch.where(std > 0, std, torch.ones_like(std))


def classify(classifier, data, device="cpu"):
    """The classifier's cluster for each scaled row of `data` (float32, in fixed batches, so a
    row's answer does not depend on what else is classified), computed on `device`."""
    return apply_in_batches(classifier.to(device), data, device=device).argmax(axis=1).astype(np.int64)


def logits(classifier, data, device="cpu", *, row_exact=True):
    """The classifier's score of each cluster for each scaled row of `data` (`encluster.confidence`).
    ``row_exact`` computes in float64, so that a row's scores are its own whatever it is batched with
    (`predict_proba`); without it in float32, as `classify` does, several times faster (the training
    samples' confidence, all of MNIST-70k's)."""
    if not row_exact:
        return apply_in_batches(classifier.to(device), data, device=device).astype(np.float64)
    network = copy.deepcopy(classifier).to(device).double().eval()
    return apply_in_batches(lambda batch: network(batch.double()), data, device=device).astype(np.float64)


def classify_shards(classifier, data, group, device="cpu"):
    """`classify` of all of `data`: each process its shard, gathered in order."""
    return group.all_gather_rows(classify(classifier, row_range(data, *group.shard(len(data))), device))


def moves(before, after, n_clusters):
    """How many samples the classifier moved, and between which clusters (largest flows first)."""
    flows = np.zeros((n_clusters, n_clusters), dtype=np.int64)
    np.add.at(flows, (before, after), 1)
    np.fill_diagonal(flows, 0)
    order = np.argsort(-flows, axis=None, kind="stable")
    pairs = [[int(i // n_clusters), int(i % n_clusters), int(flows.flat[i])] for i in order if flows.flat[i] > 0]
    return int(flows.sum()), pairs


@dataclass
class Relabelling:
    """The self-labelling stage's fitted state: the classifier (None where the stage did not run),
    what it did (`summary`), and the clusters it started from (not saved)."""

    classifier: Classifier | None
    summary: dict | None = attribute("selflabel_")
    clustered_labels: np.ndarray | None = unsaved("clustered_labels_")

    def to_arrays(self, training_rows=True):
        """The classifier's weights by name, and its architecture and summary for model.json."""
        if self.classifier is None:
            return {}, {"classifier": None, "selflabel": self.summary}
        return ({f"classifier.{k}": v.detach().cpu().contiguous() for k, v in self.classifier.state_dict().items()},
                {"classifier": self.classifier.spec.to_dict(), "selflabel": self.summary})

    @classmethod
    def from_arrays(cls, arrays, meta, shape):
        """Rebuild the classifier, checked against the model and its weights before anything is
        allocated. Models saved before self-labelling have none, and predict as they always did."""
        described = meta.get("classifier")
        if described is None:
            return cls(None, meta.get("selflabel"))
        try:
            spec = ClassifierSpec(**described)
        except (TypeError, ConfigError) as exc:
            raise ModelError(f"{shape.where}: the classifier's description is invalid ({exc})") from None
        if spec.n_features != shape.n_features or spec.n_classes != shape.n_clusters:
            raise ModelError(f"{shape.where}: the classifier takes {spec.n_features} features into {spec.n_classes} "
                             f"clusters, the model has {shape.n_features} and {shape.n_clusters}; the model is "
                             "damaged, re-save it")
        return cls(restored(lambda: Classifier(spec), arrays, "classifier.", classifier_shapes(spec), shape.where),
                   meta.get("selflabel"))


def summary(config, members, n_rows, history, moved, pairs):
    """What the stage did, for model.json, metrics.json and the report."""
    return {"classifier": "cnn" if config.image_shape is not None else "mlp", "steps": config.steps,
            "passes": config.passes,
            "smoothing": config.smoothing, "augmentation": config.augmentation(), "sure_members": int(len(members)),
            "sure_share": round(len(members) / max(n_rows, 1), 4), "moved": moved, "moves": pairs[:20],
            "loss": [round(float(h), 5) for h in history]}

"""Stage 4, *refine*: DEC and IDEC refine a pretrained encoder and its cluster centres together.

DEC (Xie, Girshick & Farhadi 2016, "Unsupervised Deep Embedding for Clustering
Analysis", ICML) soft-assigns each code to the centres with a Student-t kernel, sharpens
those assignments into a target distribution, and trains encoder and centres to match
it (KL divergence). IDEC (Guo, Gao, Liu & Yin 2017, "Improved Deep Embedded Clustering
with Local Structure Preservation", IJCAI) keeps the decoder and adds the
reconstruction loss, weighted so the clustering loss counts ``gamma`` (0.1) times, so
the codes cannot drift away from what describes the data.

As in both papers, the target is recomputed from the soft assignments of the *whole*
data set every `update_interval` batches (a per-batch target would chase its own
tail), and refinement stops once fewer than `tol` of the hard assignments change
between two updates.
"""

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..distributed import current
from ..fitted import attribute
from ..params import Interval, Setting, settings_class
from ..scaling import row_range
from ..training import StepLoop, StepTask, adam, apply_in_batches, epoch_order, reconstruction_loss

log = logging.getLogger(__name__)


SETTINGS = (
    Setting("refine_epochs", Interval(int, 0), "DEC/IDEC: most passes over the data (they usually stop earlier, "
            "by refine_tol)", 20),
    Setting("refine_batch_size", Interval(int, 1), "DEC/IDEC: samples per optimizer step", 256),
    Setting("refine_learning_rate", Interval(float, 0, closed="neither"),
            "DEC/IDEC: Adam's step size (IDEC's paper: 1e-3; for DEC's SGD, Adam at 1e-4 stands in)", 1e-4),
    Setting("update_interval", Interval(int, 1), "DEC/IDEC: batches between recomputations of the target "
            "distribution (at most one epoch)", 140),
    Setting("refine_tol", Interval(float, 0, 1, closed="left"), "DEC/IDEC: stop when fewer than this fraction "
            "of the assignments changed since the last update", 0.001),
    Setting("gamma", Interval(float, 0, closed="neither"), "IDEC: weight of the clustering loss beside the "
            "reconstruction loss", 0.1),
)
RefineSettings = settings_class("RefineSettings", SETTINGS, "How DEC and IDEC refine the clusters.")
REFINEMENTS = ("dec", "idec")


# The Student-t kernel's degrees of freedom: 1 in both papers, and no setting.
ALPHA = 1.0


@dataclass
class RefinementConfig:
    """How the refinement loop runs (built from `RefineSettings` by `config`).

    gamma : float or None
        Weight of the clustering loss beside the reconstruction loss (IDEC: 0.1); None
        drops the reconstruction loss and the decoder (DEC).
    epochs : int
        Most passes over the data; refinement usually stops earlier, by `tol`.
    batch_size, learning_rate : int, float
        Adam's batches and step size.
    update_interval : int
        Batches between recomputations of the target distribution (at most one epoch).
    tol : float
        Stop when fewer than this fraction of the assignments changed since the last update.
    alpha : float
        Degrees of freedom of the Student-t kernel (1 in both papers).
    """

    gamma: float | None
    epochs: int
    batch_size: int
    learning_rate: float
    update_interval: int
    tol: float
    alpha: float

    def to_dict(self):
        return asdict(self)


@dataclass
class Refinement:
    """The refine stage's fitted state: the share of assignments that changed at each target update
    (empty where the method does not refine)."""

    history: list = attribute("refinement_history_")

    def to_arrays(self, training_rows=True):
        return {}, {"refinement_history": [float(h) for h in self.history]}

    @classmethod
    def from_arrays(cls, arrays, meta, shape):
        return cls([float(h) for h in meta["refinement_history"]])


def config(settings, refinement):
    """The loop's configuration for `refinement` ("dec" or "idec")."""
    return RefinementConfig(gamma=settings.gamma if refinement == "idec" else None, epochs=settings.refine_epochs,
                            batch_size=settings.refine_batch_size, learning_rate=settings.refine_learning_rate,
                            update_interval=settings.update_interval, tol=settings.refine_tol, alpha=ALPHA)


def fit(autoencoder, data, centers, config, *, loss, seed, device, verbose=0, checkpoint=None, group):
    """Refine `autoencoder` and `centers` together; return ``(labels, centers, history)``.
    Shuffles with its own generator (seed + 1), apart from pretraining's. With a `checkpoint`, the
    state is kept at every epoch's end and on a stop, and ``checkpoint.resume`` continues from it."""
    fitted = refine_clusters(autoencoder, data, centers, config, loss=loss,
                             generator=torch.Generator().manual_seed(seed + 1), device=device, verbose=verbose,
                             checkpoint=checkpoint, group=group)
    autoencoder.to("cpu")
    return fitted


def soft_assignments(codes, centers, alpha=1.0):
    """Student-t similarity of each code to each centre, normalised per code (DEC eq. 1)."""
    squared = torch.cdist(codes, centers).pow(2)
    q = (1 + squared / alpha).pow(-(alpha + 1) / 2)
    return q / q.sum(dim=1, keepdim=True)


def target_distribution(q, frequency=None):
    """Sharpen soft assignments, normalised by cluster frequency (DEC eq. 3).

    frequency : tensor of shape (n_clusters,), optional
        The soft cluster frequencies of the *whole* data set, when `q` holds only some of
        its rows (one process's shard); default ``q.sum(dim=0)``.
    """
    weight = q.pow(2) / (q.sum(dim=0) if frequency is None else frequency)
    return weight / weight.sum(dim=1, keepdim=True)


class _Refined(nn.Module):
    """What DEC/IDEC train, as one module, so that under torchrun DistributedDataParallel
    averages the gradients of the encoder, the centres and (IDEC) the decoder."""

    def __init__(self, model, centers, alpha, with_decoder):
        super().__init__()
        self.encoder = model.encoder
        self.decoder = model.decoder if with_decoder else None  # pre-activations, for `reconstruction_loss`
        self.centers = nn.Parameter(centers)
        self.alpha = alpha

    def forward(self, batch):
        codes = self.encoder(batch)
        reconstruction = self.decoder(codes) if self.decoder is not None else None
        return soft_assignments(codes, self.centers, self.alpha), reconstruction


def refine_clusters(model, data, centers, config, *, loss="mse", generator, device="cpu", verbose=0, checkpoint=None,
                    group=None):
    """Train `model`'s encoder (and decoder, for IDEC) with the centres; return
    ``(labels, centers, history)``, `history` holding the fraction of changed
    assignments at each target update.

    model : Autoencoder, pretrained
    data : ScaledRows or ndarray, rows in [0, 1]
    centers : ndarray of shape (n_clusters, code_size), e.g. k-means on the codes
    checkpoint : encluster.training.Checkpoint, optional
        Keep the state (as ``checkpoint.refine.pt``) so an interrupted refinement resumes exactly.
    group : encluster.distributed.Group, optional
        Under torchrun, batches are split over the processes as in pretraining, and the
        target is computed shard by shard with the cluster frequencies summed over all.
    """
    group = group or current()
    group.check_batch(config.batch_size, what="refinement batch_size")
    task = _Refining(model, data, centers, config, loss, generator, device, group)
    StepLoop(task, "refining clusters", checkpoint=checkpoint, group=group, device=device, verbose=verbose,
             stage="refine", fix="lower refine_learning_rate (--refine-learning-rate)").run()
    model.eval()
    state = task.state
    if state["converged"] is not None:
        log.info("refinement converged: %.4f%% of assignments changed", 100 * state["history"][-1])
        labels = state["converged"].numpy()
    else:
        _, labels = _global_target(model, data, task.refined.centers, config.alpha, device, group)
    return labels, task.refined.centers.detach().cpu().numpy(), state["history"]


class _Refining(StepTask):
    """DEC/IDEC as a `StepLoop` task: epochs of shuffled batches against a target distribution that is
    recomputed every `update_interval` batches, until fewer than `tol` of the assignments change."""

    def __init__(self, model, data, centers, config, loss, generator, device, group):
        self.model, self.data, self.config, self.generator, self.group = model, data, config, generator, group
        self.device = torch.device(device)
        model.to(device).train()
        start = torch.as_tensor(centers, dtype=torch.float32, device=device).clone()
        self.refined = self.module = _Refined(model, start, config.alpha, with_decoder=config.gamma is not None)
        self.network = group.data_parallel(self.refined)
        self.optimizer = adam(self.refined.parameters(), config.learning_rate)
        self.reconstruction = reconstruction_loss(loss, model.output_activation)
        self.padded = group.padded(len(data))
        batches_per_epoch = math.ceil(self.padded / config.batch_size)
        self.total_steps = batches_per_epoch * config.epochs
        # On a small data set, update at least once an epoch.
        self.interval = min(config.update_interval, batches_per_epoch)
        # labels: the assignments at the last update (a tensor, as checkpoints keep them); converged: the
        # assignments at the update that found fewer than `tol` changed.
        self.state = {"epoch": 0, "start": 0, "step": 0, "order": None, "total": 0.0, "target": None,
                      "labels": None, "converged": None, "history": []}

    def start(self):
        """A new epoch's order when one begins, and the target recomputed when an update is due; False
        once the assignments have (nearly) stopped changing."""
        state = self.state
        if state["order"] is None:
            state.update(order=epoch_order(len(self.data), self.generator, self.group), start=0)
        if state["step"] % self.interval == 0:
            target, labels = _global_target(self.model, self.data, self.refined.centers, self.config.alpha,
                                            self.device, self.group)
            if state["labels"] is not None:
                state["history"].append(float((labels != state["labels"].numpy()).mean()))
                if state["history"][-1] < self.config.tol:
                    state["converged"] = torch.from_numpy(labels)
                    return False
            state.update(target=target, labels=torch.from_numpy(labels))
        return True

    def step(self):
        state, config = self.state, self.config
        rows = self.group.batch_share(state["order"][state["start"] : state["start"] + config.batch_size])
        batch = torch.as_tensor(self.data[rows.numpy()], dtype=torch.float32).to(self.device)
        q, decoded = self.network(batch)
        loss = nn.functional.kl_div(q.log(), state["target"][rows].to(self.device), reduction="batchmean")
        if decoded is not None:
            loss = self.reconstruction(decoded, batch) + config.gamma * loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        state["start"] += config.batch_size
        return loss.detach(), len(batch)

    def at_boundary(self):
        return self.state["start"] >= self.padded

    def record(self):
        state = self.state
        loss = state["total"] * self.group.world_size / self.padded  # this process's mean over the epoch
        state.update(epoch=state["epoch"] + 1, order=None, total=0.0)
        return state["epoch"], self.config.epochs, loss

    def checkpoint_due(self, boundary):
        return boundary


def _global_target(model, data, centers, alpha, device, group):
    """The target distribution over the whole data set, and the current hard labels:
    each process encodes its shard, the soft cluster frequencies are summed over all
    processes, and the shards' targets and labels are gathered."""
    model.eval()
    codes = torch.as_tensor(apply_in_batches(model.encode, row_range(data, *group.shard(len(data))), device=device))
    with torch.no_grad():
        q = soft_assignments(codes, centers.detach().cpu(), alpha)
        target = target_distribution(q, group.all_reduce(q.sum(dim=0)) if group.world_size > 1 else None)
    model.train()
    return (torch.from_numpy(group.all_gather_rows(target.numpy())),
            group.all_gather_rows(q.argmax(dim=1).numpy().astype(np.int64)))

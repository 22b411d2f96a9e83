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
from ..params import Interval, Setting, settings_class
from ..progress import progress
from ..scaling import row_range
from ..training import adam, apply_in_batches, epoch_order, reconstruction_loss

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


def config(settings, refinement):
    """The loop's configuration for `refinement` ("dec" or "idec")."""
    return RefinementConfig(gamma=settings.gamma if refinement == "idec" else None, epochs=settings.refine_epochs,
                            batch_size=settings.refine_batch_size, learning_rate=settings.refine_learning_rate,
                            update_interval=settings.update_interval, tol=settings.refine_tol, alpha=ALPHA)


def fit(autoencoder, data, centers, config, *, loss, seed, device, verbose=0, group):
    """Refine `autoencoder` and `centers` together; return ``(labels, centers, history)``.
    Shuffles with its own generator (seed + 1), apart from pretraining's."""
    fitted = refine_clusters(autoencoder, data, centers, config, loss=loss,
                             generator=torch.Generator().manual_seed(seed + 1), device=device, verbose=verbose,
                             group=group)
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


def refine_clusters(model, data, centers, config, *, loss="mse", generator, device="cpu", verbose=0, group=None):
    """Train `model`'s encoder (and decoder, for IDEC) with the centres; return
    ``(labels, centers, history)``, `history` holding the fraction of changed
    assignments at each target update.

    model : Autoencoder, pretrained
    data : ScaledRows or ndarray, rows in [0, 1]
    centers : ndarray of shape (n_clusters, code_size), e.g. k-means on the codes
    group : encluster.distributed.Group, optional
        Under torchrun, batches are split over the processes as in pretraining, and the
        target is computed shard by shard with the cluster frequencies summed over all.
    """
    group = group or current()
    group.check_batch(config.batch_size, what="refinement batch_size")
    model.to(device).train()
    refined = _Refined(model, torch.as_tensor(centers, dtype=torch.float32, device=device).clone(), config.alpha,
                       with_decoder=config.gamma is not None)
    network = group.data_parallel(refined)
    optimizer = adam(refined.parameters(), config.learning_rate)
    reconstruction = reconstruction_loss(loss, model.output_activation)
    n = len(data)
    padded = group.padded(n)
    batches_per_epoch = math.ceil(padded / config.batch_size)
    # On a small data set, update at least once an epoch.
    interval = min(config.update_interval, batches_per_epoch)
    labels, history, step = None, [], 0
    with progress("refining clusters", batches_per_epoch * config.epochs, verbose if group.is_main else 0) as bar:
        for epoch in range(config.epochs):
            order = epoch_order(n, generator, group)
            for start in range(0, padded, config.batch_size):
                if step % interval == 0:
                    target, new_labels = _global_target(model, data, refined.centers, config.alpha, device, group)
                    if labels is not None:
                        history.append(float((new_labels != labels).mean()))
                        if history[-1] < config.tol:
                            log.info("refinement converged: %.4f%% of assignments changed", 100 * history[-1])
                            model.eval()
                            return new_labels, refined.centers.detach().cpu().numpy(), history
                    labels = new_labels
                rows = group.batch_share(order[start : start + config.batch_size])
                batch = torch.as_tensor(data[rows.numpy()], dtype=torch.float32).to(device)
                q, decoded = network(batch)
                loss_value = nn.functional.kl_div(q.log(), target[rows].to(device), reduction="batchmean")
                if decoded is not None:
                    loss_value = reconstruction(decoded, batch) + config.gamma * loss_value
                optimizer.zero_grad(set_to_none=True)
                loss_value.backward()
                optimizer.step()
                step += 1
                bar.advance(1)
            bar.epoch_done(epoch + 1, config.epochs, loss=float(loss_value.detach()))
    model.eval()
    _, labels = _global_target(model, data, refined.centers, config.alpha, device, group)
    return labels, refined.centers.detach().cpu().numpy(), history


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

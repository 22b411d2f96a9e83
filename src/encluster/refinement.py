"""DEC and IDEC: refine a pretrained encoder and its cluster centres together.

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

from .errors import ConfigError
from .progress import progress
from .training import LOSSES, apply_in_batches

log = logging.getLogger(__name__)


@dataclass
class RefinementConfig:
    """How DEC/IDEC refine the clusters.

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

    gamma: float | None = 0.1
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-4
    update_interval: int = 140
    tol: float = 0.001
    alpha: float = 1.0

    def __post_init__(self):
        if self.epochs < 0 or self.batch_size < 1 or self.update_interval < 1 or not self.learning_rate > 0:
            raise ConfigError(f"refinement needs epochs >= 0, batch_size >= 1, update_interval >= 1 and a positive "
                              f"learning rate (got {self.epochs}, {self.batch_size}, {self.update_interval}, "
                              f"{self.learning_rate})")
        if not (0 <= self.tol < 1 and self.alpha > 0 and (self.gamma is None or self.gamma > 0)):
            raise ConfigError(f"refinement needs 0 <= tol < 1, alpha > 0 and gamma > 0 or None "
                              f"(got {self.tol}, {self.alpha}, {self.gamma})")

    def to_dict(self):
        return asdict(self)


def soft_assignments(codes, centers, alpha=1.0):
    """Student-t similarity of each code to each centre, normalised per code (DEC eq. 1)."""
    squared = torch.cdist(codes, centers).pow(2)
    q = (1 + squared / alpha).pow(-(alpha + 1) / 2)
    return q / q.sum(dim=1, keepdim=True)


def target_distribution(q):
    """Sharpen soft assignments, normalised by cluster frequency (DEC eq. 3)."""
    weight = q.pow(2) / q.sum(dim=0)
    return weight / weight.sum(dim=1, keepdim=True)


def refine_clusters(model, data, centers, config, *, loss="mse", generator, device="cpu", verbose=0):
    """Train `model`'s encoder (and decoder, for IDEC) with the centres; return
    ``(labels, centers, history)``, `history` holding the fraction of changed
    assignments at each target update.

    model : Autoencoder, pretrained
    data : ScaledRows or ndarray, rows in [0, 1]
    centers : ndarray of shape (n_clusters, code_size), e.g. k-means on the codes
    """
    model.to(device).train()
    centers = nn.Parameter(torch.as_tensor(centers, dtype=torch.float32, device=device).clone())
    parameters = [*model.encoder.parameters(), centers]
    if config.gamma is not None:
        parameters += list(model.decoder.parameters())
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    reconstruction = LOSSES[loss]()
    n = len(data)
    batches_per_epoch = math.ceil(n / config.batch_size)
    # On a small data set, update at least once an epoch.
    interval = min(config.update_interval, batches_per_epoch)
    labels, history, step = None, [], 0
    with progress("refining clusters", batches_per_epoch * config.epochs, verbose) as bar:
        for epoch in range(config.epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, config.batch_size):
                if step % interval == 0:
                    target, new_labels = _global_target(model, data, centers, config.alpha, device)
                    if labels is not None:
                        history.append(float((new_labels != labels).mean()))
                        if history[-1] < config.tol:
                            log.info("refinement converged: %.4f%% of assignments changed", 100 * history[-1])
                            model.eval()
                            return new_labels, centers.detach().cpu().numpy(), history
                    labels = new_labels
                rows = order[start : start + config.batch_size]
                batch = torch.as_tensor(data[rows.numpy()], dtype=torch.float32).to(device)
                codes = model.encoder(batch)
                q = soft_assignments(codes, centers, config.alpha)
                loss_value = nn.functional.kl_div(q.log(), target[rows].to(device), reduction="batchmean")
                if config.gamma is not None:
                    loss_value = reconstruction(model.decoder(codes), batch) + config.gamma * loss_value
                optimizer.zero_grad(set_to_none=True)
                loss_value.backward()
                optimizer.step()
                step += 1
                bar.advance(1)
            bar.epoch_done(epoch + 1, config.epochs, loss=float(loss_value.detach()))
    model.eval()
    _, labels = _global_target(model, data, centers, config.alpha, device)
    return labels, centers.detach().cpu().numpy(), history


def _global_target(model, data, centers, alpha, device):
    """The target distribution over the whole data set, and the current hard labels."""
    model.eval()
    codes = torch.as_tensor(apply_in_batches(model.encode, data, device=device))
    with torch.no_grad():
        q = soft_assignments(codes, centers.detach().cpu(), alpha)
    model.train()
    return target_distribution(q), q.argmax(dim=1).numpy().astype(np.int64)

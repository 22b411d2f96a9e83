"""Training the autoencoder, and encoding/decoding with it.

Batches are sliced straight from one in-memory tensor (no per-sample Dataset /
DataLoader overhead), shuffled by a local `torch.Generator` so runs are repeatable
without touching global random state.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .progress import progress

LOSSES = {"bce": nn.BCELoss, "mse": nn.MSELoss}
SCHEDULES = ("constant", "cosine")


@dataclass
class TrainingConfig:
    """How the autoencoder is trained.

    epochs : int
        Passes over the data.
    batch_size : int
        Samples per gradient step.
    learning_rate : float
        Adam's step size (the peak, when a schedule decays it).
    loss : {"bce", "mse"}
        Reconstruction loss: binary cross-entropy (data in [0, 1]) or squared error.
    schedule : {"constant", "cosine"}
        Learning rate over training: fixed, or cosine decay to zero at the last step.
    """

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    loss: str = "bce"
    schedule: str = "constant"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r}; expected one of {', '.join(LOSSES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if self.epochs < 0 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ConfigError(f"epochs={self.epochs}, batch_size={self.batch_size}, learning_rate="
                              f"{self.learning_rate}: need epochs >= 0, batch_size >= 1, learning_rate > 0")

    def to_dict(self):
        return asdict(self)


def learning_rate_at(step, total_steps, config):
    """The learning rate for a step: a pure function, so a resumed run matches exactly."""
    if config.schedule == "constant" or total_steps == 0:
        return config.learning_rate
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * step / total_steps))


def train_autoencoder(model, X, config, *, generator, device="cpu", verbose=0):
    """Fit `model` to reconstruct `X`; return the mean loss of each epoch.

    Parameters
    ----------
    model : Autoencoder
    X : ndarray of shape (n_samples, n_features), float32 in [0, 1]
    config : TrainingConfig
    generator : torch.Generator
        Source of the shuffling order.
    """
    data = torch.as_tensor(X, dtype=torch.float32)
    n = len(data)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = LOSSES[config.loss]()
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    history = []
    step = 0
    with progress("training", total_steps, verbose) as bar:
        for epoch in range(config.epochs):
            order = torch.randperm(n, generator=generator)
            total = torch.zeros((), dtype=torch.float64)
            for start in range(0, n, config.batch_size):
                batch = data[order[start : start + config.batch_size]].to(device, non_blocking=True)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(step, total_steps, config)
                loss = loss_fn(model(batch), batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                total += loss.detach().double().cpu() * len(batch)
                # Reading the running loss syncs an accelerator: do it only now and then.
                fields = {"loss": float(total) / (start + len(batch))} if step % 10 == 0 else {}
                bar.advance(1, **fields)
            history.append(float(total) / n)
            bar.epoch_done(epoch + 1, config.epochs, loss=history[-1])
    model.eval()
    return history


@torch.inference_mode()
def apply_in_batches(fn, X, *, batch_size=4096, device="cpu"):
    """Run `fn` (e.g. ``model.encode``) over `X` in batches and return a numpy array."""
    out = []
    for start in range(0, len(X), batch_size):
        batch = torch.as_tensor(np.asarray(X[start : start + batch_size]), dtype=torch.float32).to(device)
        out.append(fn(batch).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)

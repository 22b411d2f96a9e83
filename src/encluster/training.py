"""Training the autoencoder, and encoding/decoding with it.

Batches are sliced straight from the rows (no per-sample Dataset / DataLoader overhead),
shuffled by a local `torch.Generator` so runs are repeatable without touching global
random state. On a GPU the scaled data is copied there once when it fits, and the loop
reads the loss back (which waits for the GPU) only every `SYNC_EVERY` steps.
"""

import logging
import math
import signal
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import atomic_write
from .distributed import current
from .errors import ConfigError, ModelError, TrainingDiverged
from .progress import progress

LOSSES = {"bce": nn.BCELoss, "mse": nn.MSELoss}
# Steps between reads of the summed loss from the device, and between the checks for a stop request
# (an all-reduce across processes): each read waits for the device's queued work, so a GPU is left to run
# ahead between them. Stops fall on these steps only, so a resumed run continues from the same sums.
SYNC_EVERY = 50
# The share of a GPU's free memory the scaled training data may take to be kept there whole.
RESIDENT_SHARE = 0.25
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("float32", "bfloat16")

log = logging.getLogger(__name__)


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
    corruption : float
        Fraction of input values set to zero, drawn afresh for every batch, while the
        loss still compares with the clean batch: a denoising autoencoder (Vincent et
        al. 2008; DEC pretrains with 0.2). 0 trains a plain autoencoder.
    precision : {"float32", "bfloat16"}
        What the network's matrix products compute in. "bfloat16" runs the forward and
        backward passes under `torch.autocast`, while the weights, Adam's state and the
        loss stay float32 (mixed precision, Micikevicius et al. 2018): on a CPU with
        bfloat16 instructions (AVX512-BF16 or AMX) or a recent GPU, a step of the
        default network takes about half the time. See `resolve_precision` for "auto".
    """

    epochs: int
    batch_size: int
    learning_rate: float
    loss: str
    schedule: str
    corruption: float
    precision: str

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r}; expected one of {', '.join(LOSSES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}; expected auto or one of {', '.join(PRECISIONS)}")
        if self.epochs < 0 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ConfigError(f"epochs={self.epochs}, batch_size={self.batch_size}, learning_rate="
                              f"{self.learning_rate}: need epochs >= 0, batch_size >= 1, learning_rate > 0")
        if isinstance(self.corruption, bool) or not isinstance(self.corruption, (int, float)) \
                or not 0 <= self.corruption < 1:
            raise ConfigError(f"corruption={self.corruption!r}; expected a fraction of inputs to zero, 0 <= corruption < 1")

    def to_dict(self):
        return asdict(self)


def resolve_precision(precision, device):
    """The precision to train in: "auto" becomes "bfloat16" where `device` computes in
    bfloat16 natively (a CPU with AVX512-BF16 or AMX, a GPU that supports it), where it
    halves the step time, and "float32" elsewhere, where emulated bfloat16 would be
    slower; any other value is returned as it is."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = any(getattr(torch.cpu, probe, lambda: False)()
                     for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return "bfloat16" if native else "float32"


def learning_rate_at(step, total_steps, config):
    """The learning rate for a step: a pure function, so a resumed run matches exactly."""
    if config.schedule == "constant" or total_steps == 0:
        return config.learning_rate
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * step / total_steps))


class TrainingInterrupted(Exception):
    """Training stopped on request (Ctrl-C); its state is in the checkpoint."""


@dataclass
class Checkpoint:
    """Where training state is kept so an interrupted fit can resume exactly.

    path : Path
        The checkpoint file, rewritten atomically at every epoch's end and on a stop.
    resume : bool
        Start from the file's state instead of from scratch.
    stop : threading.Event
        Set it (e.g. from a SIGINT handler) to stop after the current batch.
    """

    path: Path
    resume: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    active: bool = False  # True while the training loop runs (and can stop cleanly)

    def stage_path(self, stage=None):
        """The file of `stage`'s state (None: pretraining's, `path` itself), e.g. checkpoint.selflabel.pt."""
        return self.path if stage is None else self.path.with_name(f"{self.path.stem}.{stage}{self.path.suffix}")

    def save(self, state, stage=None):
        atomic_write(self.stage_path(stage), lambda tmp: torch.save(state, tmp))

    def load(self, stage=None):
        # weights_only: our own file, still never unpickled as arbitrary objects. Onto the CPU: a run
        # trained on a GPU can resume on a machine without one (the loop moves the state to its device).
        path = self.stage_path(stage)
        try:
            return torch.load(path, weights_only=True, map_location="cpu")
        except FileNotFoundError:
            return None
        except Exception as exc:  # torch raises a variety of errors for damaged files
            raise ModelError(f"{path}: unreadable checkpoint ({type(exc).__name__}); "
                             "start over without --resume") from None

    def remove(self, stages=("selflabel",)):
        """Delete the checkpoint files of pretraining and of `stages`, once the run is complete."""
        for stage in (None, *stages):
            self.stage_path(stage).unlink(missing_ok=True)


@contextmanager
def stop_on_sigint(checkpoint):
    """During training, Ctrl-C asks for a clean stop with a checkpoint; elsewhere (and
    a second Ctrl-C) it interrupts at once. Only the main thread can catch signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if checkpoint.active and not checkpoint.stop.is_set():
            checkpoint.stop.set()
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def epoch_order(n, generator, group):
    """One epoch's order of the `n` samples, the same in every process (same generator),
    padded by wrapping around to a multiple of the number of processes, as torch's
    `DistributedSampler` pads. Each global batch is a window of this order, and process
    r takes every world_size-th row of it from the r-th, the sampler's interleaving: so
    the processes together see exactly the batch one process would, and alone nothing
    changes. (`DistributedSampler` itself reseeds from seed + epoch, which would change
    every single-process result; the run's own generator advancing once per epoch is
    what its ``set_epoch`` stands for.)"""
    order = torch.randperm(n, generator=generator)
    length = group.padded(n)
    return order.repeat(math.ceil(length / n))[:length] if length > n else order


def train_autoencoder(model, X, config, *, generator, device="cpu", verbose=0, checkpoint=None, group=None):
    """Fit `model` to reconstruct `X`; return the mean loss of each epoch.

    Parameters
    ----------
    model : Autoencoder
    X : ScaledRows or ndarray of shape (n_samples, n_features), float32 in [0, 1]
        Read one batch of rows at a time (a memory-mapped file is never loaded whole).
    config : TrainingConfig
    generator : torch.Generator
        Source of the shuffling order.
    checkpoint : Checkpoint, optional
        Save state at each epoch's end and when `checkpoint.stop` is set (then raise
        `TrainingInterrupted`); with ``checkpoint.resume``, continue from the saved state.
        A resumed fit ends with exactly the weights an uninterrupted one would have (CPU).
        Only the main process writes it.
    group : encluster.distributed.Group, optional
        The processes training together (default: the running torchrun job, or this
        process alone). Each takes ``batch_size / world_size`` rows of every batch and
        DistributedDataParallel averages their gradients, so `batch_size` is the global
        batch and the result matches one process (up to float rounding).
    """
    group = group or current()
    group.check_batch(config.batch_size)
    run = _TrainingRun(model, X, config, generator, device, checkpoint, group)
    if checkpoint is not None and checkpoint.resume:
        run.restore(checkpoint.load())
    if checkpoint is not None:
        checkpoint.active = True
    try:
        run.loop(verbose)
    finally:
        if checkpoint is not None:
            checkpoint.active = False
    model.eval()
    return run.state["history"]


def adam(parameters, learning_rate):
    """Adam with PyTorch's fused kernel: one pass over the parameters per step instead
    of one per operation. The same update; a step of the default network at batch 256
    took 43.6 ms instead of 52.1 on the 2-core development machine (README, Speed)."""
    return torch.optim.Adam(parameters, lr=learning_rate, fused=True)


def reconstruction_loss(kind, output_activation):
    """The loss `kind` as a function of the decoder's pre-activations and the target.

    Binary cross-entropy behind a sigmoid is taken on the logits
    (`binary_cross_entropy_with_logits`): the same loss, exact where the sigmoid
    saturates (BCE on probabilities clamps the logarithm at -100), and several times
    faster than a sigmoid followed by BCE. Any other pair applies the activation first.
    """
    if kind == "bce" and isinstance(output_activation, nn.Sigmoid):
        return nn.functional.binary_cross_entropy_with_logits
    loss = LOSSES[kind]()
    return lambda pre_activation, target: loss(output_activation(pre_activation), target)


def batch_loss(network, inputs, target, loss_fn, precision, device_type="cpu"):
    """The reconstruction loss of one batch (`loss_fn` from `reconstruction_loss`): in
    "bfloat16" the network runs under `torch.autocast`, the loss is still taken in float32."""
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        pre_activation = network(inputs, activate=False)
    return loss_fn(pre_activation.float(), target)


class _TrainingRun:
    """The loop's state in one place, so it can be saved and restored mid-epoch."""

    def __init__(self, model, data, config, generator, device, checkpoint, group):
        self.model = model.to(device).train()
        self.data, self.config, self.generator, self.checkpoint = data, config, generator, checkpoint
        self.device = torch.device(device)
        self.group = group
        self.network = group.data_parallel(self.model)
        self.optimizer = adam(model.parameters(), config.learning_rate)
        self.loss_fn = reconstruction_loss(config.loss, model.output_activation)
        self.padded = group.padded(len(data))
        self.total_steps = math.ceil(self.padded / config.batch_size) * config.epochs
        # Epoch, batch offset within it, that epoch's sample order and its loss so far (this process's share
        # of it while the epoch runs; the sum over all processes in a checkpoint).
        self.state = {"epoch": 0, "start": 0, "step": 0, "order": None, "total": 0.0, "history": []}

    def snapshot(self):
        return {**self.state, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "world_size": self.group.world_size}

    def restore(self, saved):
        if saved is None:
            return
        # The saved epoch order is split for that many processes; another number would not continue it exactly.
        if saved.get("world_size", 1) != self.group.world_size:
            raise ConfigError(f"the checkpoint was written by {saved.get('world_size', 1)} process(es), this run has "
                              f"{self.group.world_size}; resume with the same number of processes")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.generator.set_state(saved["generator"])
        self.state = {k: saved[k] for k in self.state}
        self.state["history"] = list(self.state["history"])
        if not self.group.is_main:
            self.state["total"] = 0.0  # the checkpoint holds the sum over processes; count it once
        log.info("resuming training at epoch %d, sample %d", self.state["epoch"] + 1, self.state["start"])

    def corrupted(self, window, batch):
        """The network's input for `batch`: the batch itself, or, when denoising, a copy with
        a fresh random fraction of its values zeroed. The mask is drawn for the whole global
        batch from the shared generator and split like the rows, so processes together
        corrupt exactly as one process would, and a resumed run draws the same masks."""
        if not self.config.corruption:
            return batch
        keep = torch.rand((len(window), batch.shape[1]), generator=self.generator) >= self.config.corruption
        return batch * self.group.batch_share(keep).to(batch.device)

    def step(self, inputs, batch):
        """One optimizer step; return the batch's loss, left on the device."""
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = learning_rate_at(self.state["step"], self.total_steps, self.config)
        loss = batch_loss(self.network, inputs, batch, self.loss_fn, self.config.precision, self.device.type)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def summed_loss(self):
        """The epoch's loss so far, summed over all processes."""
        return self.group.all_reduce(torch.tensor(self.state["total"], dtype=torch.float64)).item()

    def save(self):
        if self.group.is_main:
            self.checkpoint.save(self.snapshot())

    def loop(self, verbose):
        state, size, group = self.state, self.config.batch_size, self.group
        rows_of = BatchReader(self.data, self.device, next(self.model.parameters()).dtype)
        running = LossSum(self.device)
        with progress("training", self.total_steps, verbose if group.is_main else 0) as bar:
            bar.advance(state["step"])
            while state["epoch"] < self.config.epochs:
                if state["order"] is None:
                    state.update(order=epoch_order(len(self.data), self.generator, group), start=0,
                                 total=0.0)
                order = rows_of.place(state["order"])
                while state["start"] < self.padded:
                    window = state["order"][state["start"] : state["start"] + size]
                    batch = rows_of(group.batch_share(order[state["start"] : state["start"] + size]))
                    running.add(self.step(self.corrupted(window, batch), batch), len(batch))
                    state["step"] += 1
                    state["start"] += len(window)
                    bar.advance(1)
                    if state["step"] % SYNC_EVERY and state["start"] < self.padded:
                        continue
                    state["total"] += running.read()
                    bar.advance(0, loss=state["total"] * group.world_size / state["start"])  # this process's mean
                    if self.checkpoint is not None and group.any(self.checkpoint.stop.is_set()):
                        state["total"] = self.summed_loss()
                        self.save()
                        group.barrier()  # the checkpoint is complete before any process may resume from it
                        raise TrainingInterrupted(f"stopped in epoch {state['epoch'] + 1}; "
                                                  f"checkpoint in {self.checkpoint.path}")
                state["history"].append(self.summed_loss() / self.padded)
                state.update(epoch=state["epoch"] + 1, order=None, total=0.0)
                bar.epoch_done(state["epoch"], self.config.epochs, loss=state["history"][-1])
                if self.checkpoint is not None:
                    self.save()


class LossSum:
    """Losses summed where they were computed; `read` brings the sum to the host (waiting for the
    device) and starts again. Summed in float64 so that the order of reads does not matter. A sum
    that is no longer finite stops the training with `TrainingDiverged`, whose message says what
    `fix` (the setting to lower) says."""

    def __init__(self, device, fix="lower learning_rate (--learning-rate)"):
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.fix = fix

    def add(self, loss, weight=1):
        self.total += loss.double() * weight

    def read(self):
        value = float(self.total)
        if not math.isfinite(value):
            raise TrainingDiverged(f"the training diverged: its loss became {value}; {self.fix}")
        self.total.zero_()
        return value


def resident_bytes(device):
    """How many bytes of scaled training data may be kept on `device` whole: a share of a GPU's
    free memory; none on the CPU, where the rows are read from the (possibly memory-mapped) data
    batch by batch, and a copy would only double the memory."""
    device = torch.device(device)
    if device.type != "cuda":
        return 0
    free, _ = torch.cuda.mem_get_info(device)
    return int(free * RESIDENT_SHARE)


class BatchReader:
    """Batches of rows of `data` on `device`: indexed from one copy of all rows there when it fits
    (`resident_bytes`), so a step moves nothing between host and device but its row numbers; else
    read from `data` and copied, through pinned memory on a GPU so the copy overlaps the computation.
    Both give the same values: the copy is made of the same scaled rows."""

    CHUNK = 16384

    def __init__(self, data, device, dtype=torch.float32):
        self.data, self.device, self.dtype = data, torch.device(device), dtype
        self.resident = None
        if len(data) * data.shape[1] * torch.finfo(dtype).bits // 8 <= resident_bytes(self.device):
            self.resident = torch.cat([torch.as_tensor(np.asarray(data[start : start + self.CHUNK]), dtype=dtype)
                                       .to(self.device) for start in range(0, len(data), self.CHUNK)])

    def place(self, rows):
        """Row numbers (a tensor) moved to where the batches are indexed with them: once per epoch,
        not once per step."""
        return rows.to(self.device) if self.resident is not None else rows

    def __call__(self, rows):
        """The rows numbered `rows` (a tensor from `place`) as one batch on the device."""
        if self.resident is not None:
            return self.resident[rows]
        batch = torch.as_tensor(self.data[rows.numpy()], dtype=self.dtype)
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device)


@torch.inference_mode()
def apply_in_batches(fn, X, *, batch_size=4096, device="cpu"):
    """Run `fn` (e.g. ``model.encode``) over `X` in batches and return a numpy array."""
    out = []
    for start in range(0, len(X), batch_size):
        batch = torch.as_tensor(np.asarray(X[start : start + batch_size]), dtype=torch.float32).to(device)
        out.append(fn(batch).cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)

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
import time
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
# A task's due checkpoints are kept at most once per this many seconds of training, and always at the first and at
# the end: on a few hundred images an epoch takes milliseconds, and writing the state (tens of MB) after each one
# doubled the pretraining's time. A killed run loses at most this much training; a stop (Ctrl-C) always saves.
CHECKPOINT_SECONDS = 5.0
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
        The checkpoint file, rewritten atomically at an epoch's end (the first, the last, and
        others at most every `CHECKPOINT_SECONDS`) and on a stop.
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

    def remove(self):
        """Delete the checkpoint files of every stage, once the run is complete."""
        self.path.unlink(missing_ok=True)
        for path in self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"):
            path.unlink(missing_ok=True)


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
        Save state at an epoch's end (see `Checkpoint`) and when `checkpoint.stop` is set (then raise
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
    task = _Pretraining(model, X, config, generator, device, group)
    StepLoop(task, "training", checkpoint=checkpoint, group=group, device=device, verbose=verbose).run()
    model.eval()
    return task.state["history"]


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


class StepLoop:
    """The one training loop every network trains through (nanoGPT's ``train.py`` is the model): the
    autoencoder's pretraining, DEC/IDEC refinement and the self-labelling classifier.

    A stage gives it a *task*: one optimizer step at a time, the task's state and its budget. The
    loop owns the rest, the same way for every network: the progress bar, reading the loss (every
    `SYNC_EVERY` steps and at each of the task's boundaries, so the device is not waited for at
    every step), the stop check across processes (Ctrl-C on any one stops all at the same step),
    checkpoints, resuming from one, and telling Ctrl-C that training can stop cleanly.

    The task provides:

    - ``state``: a dict with at least ``step`` (the loop counts it) and ``total`` (the loss read so far);
    - ``total_steps``; ``start()``: before each step, False when the task is done early (DEC converged);
    - ``step()``: one optimizer step, returning the loss (left on the device) and its weight;
    - ``at_boundary()``: whether the step just taken ends a unit the task records (an epoch, a window
      of steps); ``record()`` then records it and returns ``(done, units, loss)`` for the progress bar;
    - ``running_loss()``: the loss to show between boundaries, or None;
    - ``checkpoint_due(boundary)``: whether a checkpoint is due now (the loop keeps the first, the last and
      others `CHECKPOINT_SECONDS` apart);
    - ``snapshot()`` / ``restore(saved)``: the state to keep and to continue from; ``before_save()``,
      called on every process before a checkpoint is written (a collective may happen there).
    """

    def __init__(self, task, name, *, checkpoint, group, device, verbose=0, stage=None, unit="epoch",
                 fix="lower learning_rate (--learning-rate)"):
        self.task, self.name, self.checkpoint, self.group, self.stage = task, name, checkpoint, group, stage
        self.device, self.verbose, self.unit, self.fix = torch.device(device), verbose, unit, fix

    def run(self):
        task, checkpoint, group = self.task, self.checkpoint, self.group
        if checkpoint is not None and checkpoint.resume:
            saved = checkpoint.load(stage=self.stage)
            if saved is not None:
                task.restore(saved)
                log.info("resuming %s at step %d", self.name, task.state["step"])
        state = task.state  # the restored one, where there was a checkpoint
        if checkpoint is not None:
            checkpoint.active = True
        running = LossSum(self.device, fix=self.fix)
        saved_at = None  # when this run last kept a checkpoint
        try:
            with progress(self.name, task.total_steps, self.verbose if group.is_main else 0, unit=self.unit) as bar:
                bar.advance(state["step"])
                while state["step"] < task.total_steps and task.start():
                    running.add(*task.step())
                    state["step"] += 1
                    bar.advance(1)
                    boundary = task.at_boundary()
                    if state["step"] % SYNC_EVERY and not boundary:
                        continue
                    state["total"] += running.read()
                    shown = task.running_loss()
                    if shown is not None:
                        bar.advance(0, loss=shown)
                    if boundary:
                        done, units, loss = task.record()
                        bar.epoch_done(done, units, loss=loss)
                    if checkpoint is None:
                        continue
                    if group.any(checkpoint.stop.is_set()):
                        self._save()
                        group.barrier()  # the checkpoint is complete before any process may resume from it
                        raise TrainingInterrupted(f"stopped {self.name} at step {state['step']}; checkpoint in "
                                                  f"{checkpoint.stage_path(self.stage)}")
                    if task.checkpoint_due(boundary) and self._save_due(saved_at, state["step"] == task.total_steps):
                        self._save()
                        saved_at = time.monotonic()
        finally:
            if checkpoint is not None:
                checkpoint.active = False

    def _save_due(self, saved_at, finished):
        """Whether a due checkpoint is kept: the first and the last always, the others `CHECKPOINT_SECONDS`
        apart (decided together, since keeping one may involve every process)."""
        if saved_at is None or finished:
            return True
        return self.group.any(time.monotonic() - saved_at >= CHECKPOINT_SECONDS)

    def _save(self):
        self.task.before_save()
        if self.group.is_main:
            self.checkpoint.save({**self.task.snapshot(), "world_size": self.group.world_size}, stage=self.stage)


def check_world_size(saved, group):
    """A checkpoint's epoch order is split for the processes that wrote it; another number would not
    continue it exactly."""
    if saved.get("world_size", 1) != group.world_size:
        raise ConfigError(f"the checkpoint was written by {saved.get('world_size', 1)} process(es), this run has "
                          f"{group.world_size}; resume with the same number of processes")


class StepTask:
    """What every `StepLoop` task keeps in a checkpoint and restores from one: its `module`'s weights,
    its `optimizer`, its `generator` and its `state`. A task sets those (and `group`) and adds the
    steps; `before_save` and `running_loss` do nothing unless it says otherwise."""

    def snapshot(self):
        return {**self.state, "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def restore(self, saved):
        check_world_size(saved, self.group)
        self.module.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.generator.set_state(saved["generator"])
        self.state = {k: saved[k] for k in self.state}
        self.state["history"] = list(self.state["history"])

    def before_save(self):
        pass

    def running_loss(self):
        return None


class _Pretraining(StepTask):
    """The autoencoder's pretraining as a `StepLoop` task: epochs of shuffled batches, the loss
    history one mean per epoch, a checkpoint due at each epoch's end (and mid-epoch on a stop)."""

    def __init__(self, model, data, config, generator, device, group):
        self.model = self.module = model.to(device).train()
        self.data, self.config, self.generator = data, config, generator
        self.device = torch.device(device)
        self.group = group
        self.network = group.data_parallel(self.model)
        self.optimizer = adam(model.parameters(), config.learning_rate)
        self.loss_fn = reconstruction_loss(config.loss, model.output_activation)
        self.padded = group.padded(len(data))
        self.total_steps = math.ceil(self.padded / config.batch_size) * config.epochs
        self.rows_of = BatchReader(data, self.device, next(model.parameters()).dtype)
        self.order = None  # the epoch's order where the rows are
        # Epoch, batch offset within it, that epoch's sample order and its loss so far (this process's share
        # of it while the epoch runs; the sum over all processes in a checkpoint).
        self.state = {"epoch": 0, "start": 0, "step": 0, "order": None, "total": 0.0, "history": []}

    def restore(self, saved):
        super().restore(saved)
        if not self.group.is_main:
            self.state["total"] = 0.0  # the checkpoint holds the sum over processes; count it once

    def before_save(self):
        self.state["total"] = self.summed_loss()

    def corrupted(self, window, batch):
        """The network's input for `batch`: the batch itself, or, when denoising, a copy with
        a fresh random fraction of its values zeroed. The mask is drawn for the whole global
        batch from the shared generator and split like the rows, so processes together
        corrupt exactly as one process would, and a resumed run draws the same masks."""
        if not self.config.corruption:
            return batch
        keep = torch.rand((len(window), batch.shape[1]), generator=self.generator) >= self.config.corruption
        return batch * self.group.batch_share(keep).to(batch.device)

    def start(self):
        state = self.state
        if state["order"] is None:
            state.update(order=epoch_order(len(self.data), self.generator, self.group), start=0, total=0.0)
            self.order = None
        if self.order is None:
            self.order = self.rows_of.place(state["order"])
        return True

    def step(self):
        """One optimizer step; return the batch's loss, left on the device, and its row count."""
        state, size = self.state, self.config.batch_size
        window = state["order"][state["start"] : state["start"] + size]
        batch = self.rows_of(self.group.batch_share(self.order[state["start"] : state["start"] + size]))
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = learning_rate_at(state["step"], self.total_steps, self.config)
        loss = batch_loss(self.network, self.corrupted(window, batch), batch, self.loss_fn, self.config.precision,
                          self.device.type)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        state["start"] += len(window)
        return loss.detach(), len(batch)

    def at_boundary(self):
        return self.state["start"] >= self.padded

    def running_loss(self):
        return self.state["total"] * self.group.world_size / self.state["start"]  # this process's mean

    def record(self):
        state = self.state
        state["history"].append(self.summed_loss() / self.padded)
        state.update(epoch=state["epoch"] + 1, order=None, total=0.0)
        return state["epoch"], self.config.epochs, state["history"][-1]

    def checkpoint_due(self, boundary):
        return boundary

    def summed_loss(self):
        """The epoch's loss so far, summed over all processes."""
        return self.group.all_reduce(torch.tensor(self.state["total"], dtype=torch.float64)).item()


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

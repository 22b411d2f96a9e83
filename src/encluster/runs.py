"""One whole experiment as a function: load, train, encode, cluster, score, plot, save.

Everything is written into a hidden sibling folder first and moved into place at the
end, so an interrupted or killed run never leaves a run directory that looks complete;
the sibling keeps the config and a training checkpoint, so the run can be resumed.
"""

import dataclasses
import json
import logging
import os
import resource
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from . import __version__, plots
from .clustering import kmeans_sampled
from .data import load_dataset
from .distributed import current
from .errors import ConfigError, RunDirError
from .estimator import EncodingClusterer
from .metrics import contingency, hungarian_matching, score
from .persistence import atomic_write_json
from .presets import DEFAULT_PRESET, REFINEMENT, get_preset
from .refinement import RefinementConfig
from .report import write_report
from .scaling import ScaledRows
from .training import Checkpoint, TrainingInterrupted

log = logging.getLogger(__name__)
# The raw-pixel baseline, whatever the method: k-means with 10 restarts, fitted on a seeded sample
# of 20,000 rows and polished over all of them. On MNIST-70k (seeds 0-2) that took 13.5-15.0 s for
# ACC 0.536-0.542, against 34-38 s for 0.535-0.542 fitting all 70,000 rows (see the README, Speed).
BASELINE_N_INIT = 10
BASELINE_FIT_SAMPLES = 20_000


@dataclass
class RunConfig:
    """Everything that determines a run; saved as config.json so it can be rerun exactly."""

    dataset: str = "mnist"
    split: str = "all"
    data_dir: str | None = None
    label_column: str | None = None
    max_samples: int | None = None
    preset: str = DEFAULT_PRESET
    n_clusters: int | str = 10  # or "auto"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    loss: str | None = None
    schedule: str | None = None
    corruption: float | None = None
    precision: str | None = None  # None: the preset's
    n_init: int | None = None  # None: the preset's
    seed: int = 0
    device: str = "cpu"
    baseline: bool = True
    plots: bool = True
    report: bool = True

    @classmethod
    def from_json(cls, path):
        """Read a config.json written by an earlier run."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        fields = {f.name for f in dataclasses.fields(cls)}
        settings = raw.get("run", raw) if isinstance(raw, dict) else None
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: expected a JSON object of run settings")
        unknown = sorted(set(settings) - fields)
        if unknown:
            raise ConfigError(f"{path}: unknown settings {unknown}; known ones are {sorted(fields)}")
        return cls(**settings)

    def load_data(self):
        """The run's data, unscaled (the model learns and saves its own scaling)."""
        return load_dataset(self.dataset, split=self.split, data_dir=self.data_dir, label_column=self.label_column,
                            scale=False, max_samples=self.max_samples, random_state=self.seed)

    def default_run_dir(self):
        name = Path(self.dataset).stem if Path(self.dataset).suffix or os.sep in self.dataset else self.dataset
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{name}-{self.preset}-{stamp}"


def peak_memory_mb():
    """Peak resident memory of this process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024**2


class StagedDir:
    """A run directory built in a hidden sibling (``.NAME.partial``) and renamed into
    place on `commit`. An interrupted run's sibling stays, so it can be resumed."""

    def __init__(self, target, *, force=False, resume=False):
        self.target = Path(target)
        self.path = self.staging_path(self.target)
        self.created = []  # folders this run creates above the run directory, removed again if it fails
        if resume:
            if self.target.exists():
                raise RunDirError(f"{self.target} is complete already; there is nothing to resume")
            if not (self.path / "config.json").is_file():
                raise RunDirError(f"no interrupted run of {self.target} to resume (looked for {self.path}); "
                                  "start it again without --resume")
            return
        if self.target.exists() and not force:
            raise RunDirError(f"{self.target} exists already; choose another --out or pass --force to replace it")
        if self.path.exists():
            if not force:
                raise RunDirError(f"an interrupted run of {self.target} is in {self.path}; continue it with "
                                  f"--resume {self.target} or pass --force to start over")
            shutil.rmtree(self.path)
        self.created = [p for p in self.target.parents if not p.exists()][::-1]
        try:
            self.path.mkdir(parents=True)
        except OSError as exc:
            raise RunDirError(f"cannot write to {self.target.parent} ({exc.strerror}); choose a writable --out") from None

    @staticmethod
    def staging_path(target):
        """Where the run directory `target` is built before it is complete."""
        target = Path(target)
        return target.with_name(f".{target.name}.partial")

    def commit(self):
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.replaced")
            os.replace(self.target, old)
        os.replace(self.path, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self):
        shutil.rmtree(self.path, ignore_errors=True)
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: something else lives there now


@contextmanager
def _stop_on_sigint(checkpoint):
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


def run_experiment(config, out_dir=None, *, force=False, verbose=0):
    """Run the whole job described by `config`; return ``(metrics, run_dir)``.

    On Ctrl-C the run stops after the current batch, keeps a checkpoint and raises
    `TrainingInterrupted`; `resume_experiment` continues it. Under torchrun every process
    calls this and takes part in the fit; only rank 0 creates and writes the run
    directory (the others return ``(metrics, None)``).
    """
    group = current()
    _check_batches(config, group)  # before anything is written, so a refused launch leaves nothing behind
    run_dir = Path(out_dir) if out_dir is not None else config.default_run_dir()
    staged = StagedDir(run_dir, force=force) if group.is_main else None
    if staged is not None:
        _write_config(staged, config)
    return _execute(config, staged, run_dir, resume=False, verbose=verbose)


def _write_config(staged, config):
    atomic_write_json(staged.path / "config.json", {"encluster_version": __version__, "run": dataclasses.asdict(config)})


def _check_batches(config, group):
    preset = get_preset(config.preset)
    group.check_batch(config.batch_size or preset["batch_size"])
    if preset["method"] in REFINEMENT:
        group.check_batch(RefinementConfig().batch_size, what="refinement batch_size")


def resume_experiment(run_dir, *, device=None, verbose=0):
    """Continue a run that was interrupted (Ctrl-C, a crash, a kill) from its checkpoint.

    The result is identical to an uninterrupted run with the same config (on CPU). Under
    torchrun, every process reads the config and checkpoint rank 0 wrote (a folder they
    all see) and the number of processes must be the same as before. `device` continues
    on another device than the run started on (a GPU run on a machine without one): the
    same training, rounded as that device rounds; the finished run's config records it.
    """
    run_dir = Path(run_dir)
    staged = StagedDir(run_dir, resume=True) if current().is_main else None
    config = RunConfig.from_json(StagedDir.staging_path(run_dir) / "config.json")
    if device is not None:
        config = dataclasses.replace(config, device=device)
        if staged is not None:
            _write_config(staged, config)
    elif config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{run_dir} was training on {config.device!r} and this machine has no CUDA GPU; "
                          f"continue it on the CPU with --resume {run_dir} --device cpu")
    return _execute(config, staged, run_dir, resume=True, verbose=verbose)


def _execute(config, staged, run_dir, *, resume, verbose):
    started = time.perf_counter()
    checkpoint = Checkpoint(StagedDir.staging_path(run_dir) / "checkpoint.pt", resume=resume)
    if staged is None:  # not rank 0: take part in the computation, write nothing
        with _stop_on_sigint(checkpoint):
            metrics, _, _ = _run(config, None, checkpoint, verbose)
        return metrics, None
    try:
        with _stop_on_sigint(checkpoint):
            metrics, dataset, est = _run(config, staged.path, checkpoint, verbose)
        metrics["total_seconds"] = round(time.perf_counter() - started, 2)
        metrics["peak_memory_mb"] = round(peak_memory_mb(), 1)
        atomic_write_json(staged.path / "metrics.json", metrics)
        if config.report:
            _write_run_report(staged.path, config, metrics, dataset, est)
        checkpoint.path.unlink(missing_ok=True)
        staged.commit()
    except (TrainingInterrupted, KeyboardInterrupt):
        raise  # keep the staged folder and its checkpoint for --resume
    except BaseException:
        staged.discard()
        raise
    log.info("results in %s", staged.target)
    return metrics, staged.target


def _run(config, out, checkpoint, verbose):
    timings = {}
    t = time.perf_counter()
    dataset = config.load_data()
    timings["load"] = time.perf_counter() - t
    log.info("loaded %s: %d samples x %d features", dataset.name, *dataset.X.shape)

    est = EncodingClusterer(config.n_clusters, preset=config.preset, epochs=config.epochs,
                            batch_size=config.batch_size, learning_rate=config.learning_rate, loss=config.loss,
                            schedule=config.schedule, corruption=config.corruption, precision=config.precision,
                            n_init=config.n_init,
                            device=config.device, random_state=config.seed, verbose=verbose)
    t = time.perf_counter()
    est.fit(dataset.X, checkpoint=checkpoint)
    timings["fit"] = time.perf_counter() - t
    timings.update(est.timings_)
    codes, labels = est.codes_, est.labels_

    metrics = {
        "encluster_version": __version__,
        "dataset": dataset.name,
        "split": config.split,
        "n_samples": int(dataset.n_samples),
        "n_features": int(dataset.X.shape[1]),
        "image_shape": list(dataset.image_shape) if dataset.image_shape is not None else None,
        "n_clusters": int(est.n_clusters_),
        "cluster_selection": est.cluster_selection_,
        "preset": config.preset,
        "method": est.method_,
        "seed": int(config.seed),
        "world_size": int(est.world_size_),
        "precision": est.training_.precision,
        "final_loss": est.history_[-1] if est.history_ else None,
        "cluster_sizes": np.bincount(labels, minlength=est.n_clusters_).tolist(),
    }
    metrics.update({name: None for name in ("acc", "nmi", "ari", "purity", "mean_cluster_purity")})
    if dataset.y is not None:
        t = time.perf_counter()
        metrics.update(score(dataset.y, labels))
        metrics["confusion"] = contingency(dataset.y, labels).tolist()
        metrics["matching"] = {str(k): v for k, v in hungarian_matching(dataset.y, labels).items()}
        if config.baseline:
            # Every process takes part (k-means over their shards under torchrun).
            pixel_labels, _ = kmeans_sampled(ScaledRows(dataset.X, est.scaler_), est.n_clusters_,
                                             n_init=BASELINE_N_INIT, max_fit_samples=BASELINE_FIT_SAMPLES,
                                             random_state=config.seed)
            metrics["pixels"] = score(dataset.y, pixel_labels)
        timings["score"] = time.perf_counter() - t
    else:
        log.info("no labels: scores are skipped")

    if out is None:  # not rank 0: nothing to save
        return metrics, dataset, est
    t = time.perf_counter()
    np.save(out / "codes.npy", codes)
    np.save(out / "assignments.npy", labels)
    est.save(out)
    timings["save"] = time.perf_counter() - t
    if config.plots:
        t = time.perf_counter()
        _plot(est, dataset, metrics, out)
        timings["plot"] = time.perf_counter() - t

    metrics["train_seconds"] = round(timings["train"], 2)
    metrics["timings"] = {k: round(v, 2) for k, v in timings.items()}
    metrics["history"] = est.history_
    return metrics, dataset, est


def _write_run_report(out, config, metrics, dataset, est):
    images = ScaledRows(dataset.X, est.scaler_) if dataset.image_shape is not None else None
    return write_report(out / "report.html", metrics=metrics, config=dataclasses.asdict(config), codes=est.codes_,
                 labels=est.labels_, centers=est.cluster_centers_, history=est.history_,
                 loss_name=est.training_.loss, y=dataset.y, class_names=dataset.class_names, images=images,
                 centroid_images=est.decode(est.cluster_centers_) if images is not None else None,
                 image_shape=dataset.image_shape)


def report_run(run_dir):
    """Write (or rewrite) RUN_DIR/report.html from a finished run, reloading its data."""
    run_dir = Path(run_dir)
    for name in ("metrics.json", "config.json", "codes.npy", "assignments.npy"):
        if not (run_dir / name).is_file():
            raise RunDirError(f"{run_dir}: {name} is missing; give a finished run directory")
    config = RunConfig.from_json(run_dir / "config.json")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    est = EncodingClusterer.load(run_dir)
    dataset = config.load_data()
    est.codes_ = np.load(run_dir / "codes.npy", allow_pickle=False)
    est.labels_ = np.load(run_dir / "assignments.npy", allow_pickle=False)
    if len(est.codes_) != dataset.n_samples:
        raise RunDirError(f"{run_dir}: the data set now has {dataset.n_samples} samples but the run had "
                          f"{len(est.codes_)}; the data changed since the run")
    return _write_run_report(run_dir, config, metrics, dataset, est)


def _plot(est, dataset, metrics, out):
    codes, labels = est.codes_, est.labels_
    color, color_by = (dataset.y, "true label") if dataset.y is not None else (labels, "cluster")
    names = dataset.class_names if dataset.y is not None else None
    # N2D and UMAP cluster the UMAP embedding, not the codes: show where they cluster.
    points, centers, what = ((est.embedded_, est.mixture_.means_, "UMAP embedding") if est.embedded_ is not None
                             else (codes, est.cluster_centers_, "codes"))
    plots.code_scatter(points, centers, color, names, out / "codes_3d.png",
                       title=f"{dataset.name}: {metrics['preset']} preset, seed {metrics['seed']}", color_by=color_by,
                       what=what)
    if est.history_:
        plots.loss_curve(est.history_, out / "loss.png", loss_name=est.training_.loss)
    if dataset.y is not None:
        plots.confusion_heatmap(np.asarray(metrics["confusion"]), {int(k): v for k, v in metrics["matching"].items()},
                                dataset.class_names, out / "confusion.png")
    if dataset.image_shape is None:
        log.info("samples are not images: the decoded-centroid grid is skipped")
        return
    images = est.decode(est.cluster_centers_)
    sizes = metrics["cluster_sizes"]
    captions = [f"cluster {i}\nn={sizes[i]:,}" for i in range(len(images))]
    if dataset.y is not None:
        majority = np.asarray(metrics["confusion"]).argmax(axis=1)
        names = dataset.class_names or [str(c) for c in range(majority.max() + 1)]
        captions = [f"{c}\nmostly {names[majority[i]]}" for i, c in enumerate(captions)]
    plots.centroid_grid(images, dataset.image_shape, out / "centroids.png", captions=captions)

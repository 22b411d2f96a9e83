"""One whole experiment as a function: load, train, encode, cluster, score, plot, save.

Everything is written into a run directory that becomes visible only when complete
(`encluster.rundir`); it keeps the config and a training checkpoint meanwhile, so an
interrupted run can be resumed.
"""

import dataclasses
import functools
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from . import __version__, plots
from .atomic import atomic_write_bytes, atomic_write_json
from .data import load_dataset
from .distributed import current
from .errors import ConfigError, RunDirError
from .estimator import EncodingClusterer
from .memory import measured, peak_memory_mb
from .metrics import score, score_run
from .params import run_default
from .profiles import cluster_profiles, feature_names_for, profiles_csv
from .provenance import differences, environment
from .report import write_report
from .rundir import StagedDir
from .scaling import ScaledRows
from .stages import SETTINGS
from .training import Checkpoint, TrainingInterrupted, resolve_precision, stop_on_sigint

log = logging.getLogger(__name__)
# What a run does besides the estimator's settings: which data, and what it writes.
RUN_FIELDS = [("dataset", str, "mnist"), ("split", str, "all"), ("data_dir", str | None, None),
              ("label_column", str | None, None), ("max_samples", int | None, None)]
OUTPUT_FIELDS = [("baseline", bool, True), ("plots", bool, True), ("report", bool, True)]
# The estimator's settings, one field each (None: the preset's); the seed is fixed (0) unless given.
MODEL_SETTINGS = tuple(s for s in SETTINGS if s.name != "verbose")
# Names config.json files written before the settings were declared used.
FORMER_NAMES = {"seed": "random_state"}


class _RunConfigMethods:
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
        settings = {FORMER_NAMES.get(k, k): v for k, v in settings.items()}
        unknown = sorted(set(settings) - fields)
        if unknown:
            raise ConfigError(f"{path}: unknown settings {unknown}; known ones are {sorted(fields)}")
        return cls(**settings)

    def estimator(self, verbose=0, *, images=False):
        """The `EncodingClusterer` this run fits. For `images`, "auto" scaling keeps pixels on [0, 1]
        whatever their type (they share one scale already, and the report shows them so)."""
        est = EncodingClusterer(**{s.name: getattr(self, s.name) for s in MODEL_SETTINGS}, verbose=verbose)
        if images and est.resolved_params()["scaling"] == "auto":
            est.set_params(scaling="minmax")
        return est

    def load_data(self):
        """The run's data, unscaled (the model learns and saves its own scaling)."""
        return load_dataset(self.dataset, split=self.split, data_dir=self.data_dir, label_column=self.label_column,
                            scale=False, max_samples=self.max_samples, random_state=self.random_state)

    def default_run_dir(self):
        name = Path(self.dataset).stem if Path(self.dataset).suffix or os.sep in self.dataset else self.dataset
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{name}-{self.preset}-{stamp}"


RunConfig = dataclasses.make_dataclass(
    "RunConfig", RUN_FIELDS + [(s.name, object, run_default(s)) for s in MODEL_SETTINGS] + OUTPUT_FIELDS,
    bases=(_RunConfigMethods,))
RunConfig.__module__ = __name__
RunConfig.__doc__ = """Everything that determines a run: the data, every estimator setting (None: the
preset's) and what is written; saved as config.json so it can be rerun exactly."""


def run_experiment(config, out_dir=None, *, force=False, verbose=0):
    """Run the whole job described by `config`; return ``(metrics, run_dir)``.

    On Ctrl-C the run stops after the current batch, keeps a checkpoint and raises
    `TrainingInterrupted`; `resume_experiment` continues it. Under torchrun every process
    calls this and takes part in the fit; only rank 0 creates and writes the run
    directory (the others return ``(metrics, None)``).
    """
    group = current()
    _check_batches(config, group)  # before anything is written, so a refused launch leaves nothing behind
    config = _with_resolved_precision(config)
    run_dir = Path(out_dir) if out_dir is not None else config.default_run_dir()
    staged = StagedDir(run_dir, force=force) if group.is_main else None
    if staged is not None:
        _write_config(staged, config)
    return _execute(config, staged, run_dir, resume=False, verbose=verbose)


def _write_config(staged, config):
    atomic_write_json(staged.path / "config.json", {"encluster_version": __version__,
                                                    "environment": environment(config.precision),
                                                    "run": dataclasses.asdict(config)})


def _with_resolved_precision(config):
    """`config` with precision "auto" (or the preset's) replaced by what this machine computes in,
    so that ``--config`` reruns it in the same precision wherever it runs."""
    settings = config.estimator().resolved_params()
    device = torch.device(settings["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        return config  # the fit names the problem
    return dataclasses.replace(config, precision=resolve_precision(settings["precision"], device))


def warn_if_environment_differs(path):
    """Say in one line when the run recorded in the config.json at `path` ran with other library
    versions, threads, precision or CPU than this process has: its labels may then differ."""
    try:
        recorded = json.loads(Path(path).read_text(encoding="utf-8")).get("environment")
    except (OSError, ValueError, AttributeError):
        return  # RunConfig.from_json names the problem
    if not recorded:
        return
    found = differences(recorded, environment(recorded.get("precision")))
    if found:
        log.warning("rerunning a run made elsewhere: %s; the labels may differ (docs/reproducibility.md)",
                    ", ".join(found))


def _check_batches(config, group):
    settings = config.estimator().resolved_params()
    group.check_batch(settings["batch_size"])
    if settings["method"] in ("dec", "idec"):
        group.check_batch(settings["refine_batch_size"], what="refine_batch_size")


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
        with stop_on_sigint(checkpoint):
            metrics, *_ = _run(config, None, checkpoint, verbose)
        return metrics, None
    try:
        with stop_on_sigint(checkpoint):
            metrics, dataset, est, profiles = _run(config, staged.path, checkpoint, verbose)
        metrics["total_seconds"] = round(time.perf_counter() - started, 2)
        metrics["peak_memory_mb"] = round(peak_memory_mb(), 1)
        if config.report:
            _guarded("report.html", metrics, staged.target,
                     lambda: _write_run_report(staged.path, config, metrics, dataset, est, profiles))
        atomic_write_json(staged.path / "metrics.json", metrics)
        checkpoint.remove()
        staged.commit()
    except (TrainingInterrupted, KeyboardInterrupt):
        raise  # keep the staged folder and its checkpoint for --resume
    except BaseException:
        staged.discard()
        raise
    log.info("results in %s", staged.target)
    return metrics, staged.target


def _run(config, out, checkpoint, verbose):
    timings, peaks = {}, {}
    measure = functools.partial(measured, seconds=timings, peaks=peaks)
    with measure("load"):
        dataset = config.load_data()
    log.info("loaded %s: %d samples x %d features", dataset.name, *dataset.X.shape)

    est = config.estimator(verbose, images=dataset.image_shape is not None)
    with measure("fit"):
        est.fit(dataset.X, image_shape=dataset.image_shape, feature_names=dataset.feature_names, checkpoint=checkpoint)
    timings.update(est.timings_)
    peaks.update(est.peak_memory_mb_)
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
        "layout_agreement": est.layout_agreement_,
        "preset": config.preset,
        "method": est.method_,
        "seed": int(config.random_state),
        "world_size": int(est.world_size_),
        "precision": est.training_.precision,
        "environment": environment(est.training_.precision),
        "final_loss": est.history_[-1] if est.history_ else None,
        "cluster_sizes": np.bincount(labels, minlength=est.n_clusters_).tolist(),
    }
    with measure("score"):
        space = est.embedded_ if est.embedded_ is not None else codes
        metrics.update(score_run(dataset.y, labels, est.n_clusters_, ScaledRows(dataset.X, est.scaler_) if config.baseline else None,
                                 space=space, random_state=config.random_state))
        if est.selflabel_ is not None:
            metrics["selflabel"] = {**est.selflabel_, "before": None if dataset.y is None
                                    else score(dataset.y, est.clustered_labels_)}
        marked = est._marked(labels, est.confidence_)
        metrics["confidence"] = {"source": est.confidence_source_, "temperature": est.confidence_temperature_,
                                 "neighbour_agreement": est.neighbour_agreement_, **est.confidence_summary_}
        if est.unsure_threshold_ is not None and dataset.y is not None:
            sure = marked != -1
            metrics["confidence"]["scores_of_the_sure"] = score(dataset.y[sure], labels[sure])
        if est.space_choice_ is not None:
            metrics["space_choice"] = {**est.space_choice_, "scores": None if dataset.y is None else {
                space: score(dataset.y, labels) for space, labels in est.candidate_labels_.items()}}

    if out is None:  # not rank 0: nothing to save
        return metrics, dataset, est, None
    with measure("save"):
        np.save(out / "codes.npy", codes)
        np.save(out / "assignments.npy", marked)  # -1 for the unsure, where --unsure asked for them
        np.save(out / "confidence.npy", est.confidence_.astype(np.float32))
        if est.embedded_ is not None:
            np.save(out / "embedded.npy", est.embedded_)  # where the clusters were found, for the report
        est.save(out)
        profiles = table_profiles(dataset, est, config.random_state)
        if profiles is not None:
            atomic_write_bytes(out / "profiles.csv", profiles_csv(profiles).encode("utf-8"))
            metrics["profiles"] = [{k: c[k] for k in ("cluster", "size", "top")} for c in profiles["clusters"]]
        # The model, the assignments and the scores are on disk before any figure is drawn.
        atomic_write_json(out / "metrics.json", metrics)
    if config.plots:
        with measure("plot"):
            _guarded("the figures", metrics, out, lambda: plots.plot_run(est, dataset, metrics, out))

    metrics["train_seconds"] = round(timings["train"], 2)
    metrics["timings"] = {k: round(v, 2) for k, v in timings.items()}
    metrics["peak_memory_by_stage_mb"] = peaks
    metrics["history"] = est.history_
    return metrics, dataset, est, profiles


def _guarded(what, metrics, run_dir, draw):
    """Draw the figures or the report; where that fails, say so in one line and in metrics.json,
    and go on: a figure must never cost the model and scores already computed."""
    try:
        draw()
    except Exception as exc:  # any failure of matplotlib, plotly or our drawing code, not Ctrl-C
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        log.warning("warning: %s could not be drawn (%s); the model and scores are saved; retry the report with "
                    "'encluster report %s'", what, reason, run_dir)
        metrics.setdefault("drawing_failed", {})[what] = reason


def table_profiles(dataset, est, seed):
    """For rows that are not images, what each cluster is in the data's own units (`encluster.profiles`)."""
    if dataset.image_shape is not None:
        return None
    names = feature_names_for(dataset.X.shape[1], dataset.feature_names)
    decoded = est.scaler_.inverse_transform(est.decode(est.cluster_centers_))
    return cluster_profiles(dataset.X, est.labels_, est.n_clusters_, decoded, names, random_state=seed)


def _write_run_report(out, config, metrics, dataset, est, profiles):
    images = ScaledRows(dataset.X, est.scaler_) if dataset.image_shape is not None else None
    # Methods that cluster a UMAP embedding are shown where they cluster: its first three dimensions.
    space = (est.embedded_, est.mixture_.means_) if getattr(est, "embedded_", None) is not None else None
    return write_report(out / "report.html", metrics=metrics, config=dataclasses.asdict(config), codes=est.codes_,
                        labels=est.labels_, centers=est.cluster_centers_, history=est.history_,
                        loss_name=est.training_.loss, y=dataset.y, class_names=dataset.class_names, images=images,
                        centroid_images=est.decode(est.cluster_centers_) if images is not None else None,
                        image_shape=dataset.image_shape, profiles=profiles,
                        rows=dataset.X if images is None else None, space=space,
                        confidence=getattr(est, "confidence_", None))


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
    sure = run_dir / "confidence.npy"  # absent from runs made before confidences
    est.confidence_ = np.load(sure, allow_pickle=False) if sure.is_file() else None
    unsure = est.labels_ == -1
    if unsure.any():  # marked -1 by --unsure: the report shows each in its likeliest cluster
        est.labels_[unsure] = est.predict_proba(dataset.X[unsure], feature_names=dataset.feature_names).argmax(axis=1)
    embedded = run_dir / "embedded.npy"
    est.embedded_ = np.load(embedded, allow_pickle=False) if embedded.is_file() and est.mixture_ is not None else None
    if len(est.codes_) != dataset.n_samples:
        raise RunDirError(f"{run_dir}: the data set now has {dataset.n_samples} samples but the run had "
                          f"{len(est.codes_)}; the data changed since the run")
    return _write_run_report(run_dir, config, metrics, dataset, est, table_profiles(dataset, est, config.random_state))

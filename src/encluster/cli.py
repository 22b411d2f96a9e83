"""The `encluster` command: a thin layer that parses arguments and calls the library."""

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import DataError, EnclusterError, RunDirError
from .memory import bound_heap_growth
from .params import Interval, argument_type, add_flags
from .presets import DEFAULT_PRESET
from .stages import GROUPS, get_preset
from .training import TrainingInterrupted

log = logging.getLogger("encluster")

EPILOG = """examples:
  encluster run                                 # our default method on all 70,000 MNIST digits
  encluster run --preset original               # the original experiment: k-means on a 3-number code
  encluster run --dataset digits --n-neighbors 10 --hidden 256,256,1024   # any setting, by its flag
  encluster run --dataset fashion-mnist --seed 1
  encluster run --dataset my_data.csv --label-column species --clusters 3
  encluster predict --model runs/mnist-default-20261127-120000 new.npy --out labels.npy
  encluster datasets                            # where the built-in data sets are found
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line naming the problem and where to look, instead of the usage dump.
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser():
    parser = _Parser(prog="encluster", description="Find the groups in unlabeled data by clustering the encoding "
                     "an autoencoder learns of it.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"encluster {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="train, encode, cluster, score, plot and save (the whole job)",
                         description="Train an autoencoder, cluster its codes by the preset's method (UMAP + Gaussian "
                         "mixture for default and n2d, k-means for original), decode the centroids, score against "
                         "labels when known, and save everything in a run directory.")
    src = run.add_argument_group("data")
    # Defaults None here (the RunConfig's own apply), so a flag given beside --config is told from one left out.
    src.add_argument("--dataset", metavar="NAME|PATH",
                     help="mnist (default, bundled), fashion-mnist, digits, or a .npy/.npz/.csv/.parquet file or an "
                     "image folder")
    src.add_argument("--split", choices=("all", "train", "test"),
                     help="MNIST/Fashion-MNIST part: all 70k (default), train 60k or test 10k")
    src.add_argument("--data-dir", metavar="DIR", help="folder to look in first for Fashion-MNIST's files")
    src.add_argument("--label-column", metavar="NAME", help="CSV column holding labels (not used for training)")
    src.add_argument("--max-samples", type=argument_type(Interval(int, 1), "max_samples"), metavar="N",
                     help="use a random subset of N samples (chosen with --seed)")
    job = run.add_argument_group("run")
    job.add_argument("--config", metavar="FILE", help="rerun exactly the run described by a run's config.json; "
                     "a setting's flag given beside it overrides the file's value")
    job.add_argument("--resume", metavar="RUN_DIR", help="continue a run that was interrupted (Ctrl-C, crash, "
                     "kill) from its last checkpoint; the result equals an uninterrupted run; with --device, "
                     "where to continue (e.g. a GPU run on a machine without one)")
    job.add_argument("--no-baseline", dest="baseline", action="store_false", default=None,
                     help="skip k-means on the raw pixels (the baseline the encoding is compared with)")
    job.add_argument("--no-plots", dest="plots", action="store_false", default=None, help="skip the PNG figures")
    job.add_argument("--no-report", dest="report", action="store_false", default=None, help="skip report.html")
    # One group per pipeline stage, one flag per declared setting.
    default_preset = get_preset(DEFAULT_PRESET)
    for title, settings in GROUPS:
        add_flags(run.add_argument_group(title), settings, default_preset)
    out = run.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="run directory (default runs/<dataset>-<preset>-<time>)")
    out.add_argument("--force", action="store_true", help="replace --out if it exists")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")

    pred = sub.add_parser("predict", help="assign new samples to the clusters of a saved model",
                          description="Assign each sample of DATA to a cluster of the model saved in a run directory.")
    pred.add_argument("data", metavar="DATA", help="a .npy, .npz, .csv or .parquet file or an image folder, like the training data")
    pred.add_argument("--model", required=True, metavar="RUN_DIR", help="a run directory (or a folder written by save())")
    pred.add_argument("--label-column", metavar="NAME",
                      help="table column to leave out of the samples (default: the run's label column, when DATA has "
                      "it)")
    pred.add_argument("--out", required=True, metavar="FILE", help="where to write the cluster ids (.npy or .csv)")
    pred.add_argument("--force", action="store_true", help="replace --out if it exists")

    rep = sub.add_parser("report", help="write RUN_DIR/report.html, an interactive self-contained page",
                         description="Write RUN_DIR/report.html: scores, an interactive 3-D view of the codes, "
                         "decoded centroids, per-cluster galleries, confusion matrix, loss curve, config. "
                         "The page works offline and can be shared as one file.")
    rep.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")

    cmp = sub.add_parser("compare", help="compare several runs: a terminal table and one HTML page",
                         description="Compare finished runs side by side: scores on the encoding and the raw "
                         "pixels, times, memory and loss curves.")
    cmp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    cmp.add_argument("--out", default="compare.html", metavar="FILE", help="the HTML page (default compare.html)")
    cmp.add_argument("--force", action="store_true", help="replace --out if it exists")

    sub.add_parser("datasets", help="list the built-in data sets and where each is found",
                   description="List the built-in data sets and where each is (or would be) found.")
    return parser


def _cmd_run(args):
    from .distributed import launched
    from .runs import resume_experiment, run_experiment

    verbose = 0 if args.quiet else 1
    if args.resume:
        out = args.resume
    else:
        config = _run_config(args)
        out = args.out if args.out is not None else config.default_run_dir()
    # Under torchrun every process runs this; rank 0 alone logs, prints and writes.
    with launched() as group:
        if not group.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        try:
            if args.resume:
                metrics, run_dir = resume_experiment(out, device=args.device, verbose=verbose)
            else:
                metrics, run_dir = run_experiment(config, out, force=args.force, verbose=verbose)
        except (TrainingInterrupted, KeyboardInterrupt) as exc:
            if group.is_main:
                launcher = "torchrun ... -m encluster" if group.world_size > 1 else "encluster"
                where = f" ({str(exc).split(';')[0]})" if str(exc) else ""
                print(f"interrupted{where}; continue with: {launcher} run --resume {out}", file=sys.stderr)
            return 130
    if run_dir is not None:
        from .summary import print_run_summary

        print_run_summary(metrics, run_dir)
    return 0


def _run_config(args):
    import dataclasses

    from .runs import RunConfig, warn_if_environment_differs

    # A flag not given is None: the config's own default (the preset's, for a preset's setting) stays.
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    given = {name: value for name, value in given.items() if value is not None}
    if not args.config:
        return RunConfig(**given)
    warn_if_environment_differs(args.config)
    config = RunConfig.from_json(args.config)
    changed = {name: value for name, value in given.items() if getattr(config, name) != value}
    if changed:
        log.info("rerunning %s with %s", args.config, ", ".join(f"{name}={value!r} (was {getattr(config, name)!r})"
                                                                 for name, value in changed.items()))
    return dataclasses.replace(config, **changed)


def _cmd_predict(args):
    from .formats import load_file
    from .estimator import EncodingClusterer
    from .atomic import atomic_write_bytes

    out = Path(args.out)
    if out.suffix.lower() not in (".npy", ".csv"):
        raise RunDirError(f"--out {out}: unsupported file type; use a .npy or .csv file name")
    if out.exists() and not args.force:
        raise RunDirError(f"{out} exists already; choose another --out or pass --force to replace it")
    if not out.parent.is_dir():
        raise RunDirError(f"{out.parent}: no such folder; create it or choose another --out")
    model = EncodingClusterer.load(args.model)
    label_column = args.label_column or _training_label_column(Path(args.model), Path(args.data))
    dataset = load_file(args.data, label_column=label_column)
    X, named = _as_fitted(model, dataset)
    labels = model.predict(X, **named)
    confidences = model.predict_proba(X, **named).max(axis=1) if model.confidence_temperature_ is not None else None
    if out.suffix.lower() == ".csv":
        rows = [f"{label},{c:.6f}" for label, c in zip(labels.tolist(), confidences)] if confidences is not None \
            else list(map(str, labels.tolist()))
        data = (("cluster,confidence\n" if confidences is not None else "cluster\n") + "\n".join(rows) + "\n").encode()
    else:
        import io

        buffer = io.BytesIO()
        np.save(buffer, labels)
        data = buffer.getvalue()
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise RunDirError(f"cannot write {out} ({exc.strerror}); choose a writable --out") from None
    unsure = int((labels == -1).sum())
    print(f"assigned {len(labels):,} samples to {model.cluster_centers_.shape[0]} clusters"
          + (f", {unsure:,} marked unsure (-1)" if model.unsure_threshold_ is not None else "") + f"; written to {out}")
    return 0


def _as_fitted(model, dataset):
    """The samples and keyword arguments that `predict` takes them with: a table by its column names,
    images in their shape (so that another shape is refused)."""
    if dataset.image_shape is not None:
        return dataset.X.reshape(len(dataset.X), *dataset.image_shape), {}
    fitted = getattr(model, "feature_names_in_", None)
    names = dataset.feature_names
    if names is None and fitted is not None:
        if dataset.X.shape[1] != len(fitted):
            raise DataError(f"{dataset.name}: {dataset.X.shape[1]} columns and no header, but the model was fitted "
                            f"on {len(fitted)} named columns; give a table with the training data's columns")
        print(f"the data has no column names; its columns are taken as the training data's, in order: "
              f"{', '.join(map(str, fitted[:10]))}{', ...' if len(fitted) > 10 else ''}")
        names = list(fitted)
    return dataset.X, {"feature_names": names} if fitted is not None else {}


def _training_label_column(run_dir, data):
    """The label column the run was trained with, when DATA is a table (CSV, Parquet) that has it too.

    So a table laid out like the training file, labels and all, is assigned as it is.
    """
    from .runs import RunConfig

    if data.suffix.lower() not in (".csv", ".parquet") or not (run_dir / "config.json").is_file():
        return None
    name = RunConfig.from_json(run_dir / "config.json").label_column
    if name is None:
        return None
    from .formats import column_names

    if name not in column_names(data):
        return None
    print(f"leaving out column {name!r}, the label column the model was trained with")
    return name


def _cmd_report(args):
    from .runs import report_run

    path = report_run(args.run_dir)
    print(f"report written to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_compare(args):
    from .atomic import atomic_write_bytes
    from .report import render_comparison
    from .summary import print_comparison, read_runs

    out = Path(args.out)
    if out.exists() and not args.force:
        raise RunDirError(f"{out} exists already; choose another --out or pass --force to replace it")
    runs = read_runs(args.run_dirs)
    print_comparison(runs)
    try:
        atomic_write_bytes(out, render_comparison(runs).encode("utf-8"))
    except OSError as exc:
        raise RunDirError(f"cannot write {out} ({exc.strerror}); choose a writable --out") from None
    print(f"comparison written to {out}")
    return 0


def _cmd_datasets(args):
    from .data import describe_builtin
    from .summary import print_datasets

    print_datasets(describe_builtin())
    return 0


def _rank_label():
    """Under torchrun every process reports its own errors: name the ones that are not rank 0."""
    rank = os.environ.get("RANK", "0")
    return f" (rank {rank})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 and rank != "0" else ""


def main(argv=None):
    bound_heap_growth()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    commands = {"run": _cmd_run, "predict": _cmd_predict, "report": _cmd_report, "compare": _cmd_compare,
                "datasets": _cmd_datasets}
    try:
        return commands[args.command](args)
    except EnclusterError as exc:
        print(f"error{_rank_label()}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; try --max-samples or a smaller --batch-size", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # torch's allocator says "can't allocate memory" with a RuntimeError
        if "allocate" not in str(exc):
            raise
        print("error: out of memory; try --max-samples, a smaller --batch-size or a smaller --hidden", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a vanished folder...: the system's own words, on one line
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}; check the path and free space", file=sys.stderr)
        return 1

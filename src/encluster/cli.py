"""The `encluster` command: a thin layer that parses arguments and calls the library."""

import argparse
import csv
import ctypes
import logging
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import EnclusterError, RunDirError
from .metrics import SCORE_NAMES
from .presets import DEFAULT_PRESET, PRESETS
from .training import TrainingInterrupted

log = logging.getLogger("encluster")

EPILOG = """examples:
  encluster run                                 # our default method on all 70,000 MNIST digits
  encluster run --preset seed                   # the original experiment: k-means on a 3-number code
  encluster run --dataset fashion-mnist --seed 1
  encluster run --dataset my_data.csv --label-column species --clusters 3
  encluster predict --model runs/mnist-default-20261127-120000 new.npy --out labels.npy
  encluster datasets                            # where the built-in data sets are found
"""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _clusters(text):
    if text == "auto":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; give a number of clusters or 'auto'") from None


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _positive_float(text):
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def _fraction(text):
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction in [0, 1)")
    return value


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
                         "mixture for default and n2d, k-means for seed), decode the centroids, score against "
                         "labels when known, and save everything in a run directory.")
    src = run.add_argument_group("data")
    src.add_argument("--dataset", default="mnist", metavar="NAME|PATH",
                     help="mnist (default, bundled), fashion-mnist, digits, or a .npy/.npz/.csv file or image folder")
    src.add_argument("--split", choices=("all", "train", "test"), default="all",
                     help="MNIST/Fashion-MNIST part: all 70k (default), train 60k or test 10k")
    src.add_argument("--data-dir", metavar="DIR", help="folder to look in first for Fashion-MNIST's files")
    src.add_argument("--label-column", metavar="NAME", help="CSV column holding labels (not used for training)")
    src.add_argument("--max-samples", type=_positive_int, metavar="N",
                     help="use a random subset of N samples (chosen with --seed)")
    model = run.add_argument_group("model")
    model.add_argument("--config", metavar="FILE", help="rerun exactly the run described by a run's config.json "
                       "(other model and data options are ignored)")
    model.add_argument("--resume", metavar="RUN_DIR", help="continue a run that was interrupted (Ctrl-C, crash, "
                       "kill) from its last checkpoint; the result equals an uninterrupted run")
    model.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                       help=f"method, network and training: {DEFAULT_PRESET} (our best), seed (the original experiment: "
                            "k-means on a 3-number code), n2d, dec, idec (the published methods), umap (no network: "
                            f"UMAP of the raw input + Gaussian mixture). Default {DEFAULT_PRESET}")
    model.add_argument("--clusters", type=_clusters, default=10, metavar="K",
                       help="number of clusters, or 'auto' to choose it without labels (default 10)")
    model.add_argument("--epochs", type=_positive_int, metavar="N", help="training epochs (default: the preset's)")
    model.add_argument("--batch-size", type=_positive_int, metavar="N", help="samples per step (default: the preset's)")
    model.add_argument("--learning-rate", type=_positive_float, metavar="LR", help="Adam learning rate (default: the preset's)")
    model.add_argument("--loss", choices=("bce", "mse"), help="reconstruction loss (default: the preset's)")
    model.add_argument("--corruption", type=_fraction, metavar="P",
                       help="train a denoising autoencoder: zero this fraction of the inputs in every batch, 0 <= P < 1 "
                            "(default: the preset's: 0.2 for seed, 0 for the others)")
    model.add_argument("--precision", choices=("auto", "float32", "bfloat16"),
                       help="what training computes in: bfloat16 halves a step's time where the CPU (AVX512-BF16, AMX) "
                            "or GPU has it natively; auto picks it there (default: the preset's: auto for default, "
                            "float32 for the others)")
    model.add_argument("--n-init", type=_positive_int, metavar="N",
                       help="restarts of k-means or of the Gaussian mixture (default: the preset's)")
    model.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same result (default 0)")
    model.add_argument("--device", help="cpu (default), cuda or cuda:N; with --resume, where to continue (default: "
                                        "where the run started), e.g. a GPU run on a machine without one")
    model.add_argument("--no-baseline", dest="baseline", action="store_false",
                       help="skip k-means on the raw pixels (the baseline the encoding is compared with)")
    model.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG figures")
    model.add_argument("--no-report", dest="report", action="store_false", help="skip report.html")
    out = run.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="run directory (default runs/<dataset>-<preset>-<time>)")
    out.add_argument("--force", action="store_true", help="replace --out if it exists")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")

    pred = sub.add_parser("predict", help="assign new samples to the clusters of a saved model",
                          description="Assign each sample of DATA to a cluster of the model saved in a run directory.")
    pred.add_argument("data", metavar="DATA", help="a .npy, .npz or .csv file or an image folder, as wide as the training data")
    pred.add_argument("--model", required=True, metavar="RUN_DIR", help="a run directory (or a folder written by save())")
    pred.add_argument("--label-column", metavar="NAME",
                      help="CSV column to leave out of the samples (default: the run's label column, when DATA has it)")
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
        except (TrainingInterrupted, KeyboardInterrupt):
            if group.is_main:
                launcher = "torchrun ... -m encluster" if group.world_size > 1 else "encluster"
                print(f"interrupted; continue with: {launcher} run --resume {out}", file=sys.stderr)
            return 130
    if run_dir is not None:
        _print_summary(metrics, run_dir)
    return 0


def _run_config(args):
    from .runs import RunConfig

    if args.config:
        return RunConfig.from_json(args.config)
    return RunConfig(dataset=args.dataset, split=args.split, data_dir=args.data_dir, label_column=args.label_column,
                     max_samples=args.max_samples, preset=args.preset, n_clusters=args.clusters, epochs=args.epochs,
                     batch_size=args.batch_size, learning_rate=args.learning_rate, loss=args.loss,
                     corruption=args.corruption, precision=args.precision, n_init=args.n_init, seed=args.seed,
                     device=args.device or "cpu", baseline=args.baseline, plots=args.plots, report=args.report)


def _print_summary(metrics, run_dir):
    from rich.console import Console
    from rich.table import Table

    from .report import baseline_name

    console = Console()
    title = (f"{metrics['dataset']}: {metrics['n_samples']:,} samples, {metrics['n_clusters']} clusters, "
             f"preset {metrics['preset']}, seed {metrics['seed']}")
    if metrics["acc"] is None:
        console.print(f"{title}\nno labels, so no scores; cluster sizes: {metrics['cluster_sizes']}")
    else:
        table = Table(title=title)
        table.add_column("score")
        table.add_column("encoding", justify="right")
        pixels = metrics.get("pixels")
        if pixels:
            table.add_column(baseline_name(metrics), justify="right")
        for name in SCORE_NAMES:
            row = [name, f"{metrics[name]:.4f}"] + ([f"{pixels[name]:.4f}"] if pixels else [])
            table.add_row(*row)
        console.print(table)
    selection = metrics.get("cluster_selection")
    if selection:
        console.print(f"--clusters auto chose {selection['chosen']}: the {selection['criterion']}")
    console.print(f"trained in {metrics['train_seconds']:.1f} s, total {metrics['total_seconds']:.1f} s, "
                  f"peak memory {metrics['peak_memory_mb']:.0f} MB")
    console.print(f"results in {run_dir}")


def _cmd_predict(args):
    from .data import load_file
    from .estimator import EncodingClusterer
    from .persistence import atomic_write_bytes

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
    labels = model.predict(dataset.X)
    if out.suffix.lower() == ".csv":
        data = ("cluster\n" + "\n".join(map(str, labels.tolist())) + "\n").encode()
    else:
        import io

        buffer = io.BytesIO()
        np.save(buffer, labels)
        data = buffer.getvalue()
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise RunDirError(f"cannot write {out} ({exc.strerror}); choose a writable --out") from None
    print(f"assigned {len(labels):,} samples to {model.cluster_centers_.shape[0]} clusters; written to {out}")
    return 0


def _training_label_column(run_dir, data):
    """The label column the run was trained with, when DATA is a CSV whose header has it too.

    So a CSV laid out like the training file, labels and all, is assigned as it is.
    """
    from .runs import RunConfig

    if data.suffix.lower() != ".csv" or not (run_dir / "config.json").is_file():
        return None
    name = RunConfig.from_json(run_dir / "config.json").label_column
    if name is None:
        return None
    try:
        with open(data, newline="", encoding="utf-8") as fh:
            header = [c.strip() for c in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None  # load_file names the problem
    if name not in header:
        return None
    print(f"leaving out column {name!r}, the label column the model was trained with")
    return name


def _cmd_report(args):
    from .runs import report_run

    path = report_run(args.run_dir)
    print(f"report written to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _cmd_compare(args):
    import json

    from rich.console import Console
    from rich.table import Table

    from .persistence import atomic_write_bytes
    from .report import render_comparison

    out = Path(args.out)
    if out.exists() and not args.force:
        raise RunDirError(f"{out} exists already; choose another --out or pass --force to replace it")
    runs = []
    for run_dir in map(Path, args.run_dirs):
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RunDirError(f"{run_dir}: no readable metrics.json; give finished run directories") from None
        runs.append((run_dir.name, metrics))
    table = Table(title=f"{len(runs)} runs")
    for col in ("run", "data set", "preset", "seed", *SCORE_NAMES, "pixels acc", "train s"):
        table.add_column(col, justify="left" if col in ("run", "data set", "preset") else "right")
    for name, m in runs:
        scores = [f"{m[s]:.4f}" if m.get(s) is not None else "-" for s in SCORE_NAMES]
        pixels = f"{m['pixels']['acc']:.4f}" if m.get("pixels") else "-"
        table.add_row(name, str(m["dataset"]), str(m["preset"]), str(m["seed"]), *scores, pixels,
                      f"{m.get('train_seconds', 0):.1f}")
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped output: do not squeeze the table into 80 columns
    console.print(table)
    try:
        atomic_write_bytes(out, render_comparison(runs).encode("utf-8"))
    except OSError as exc:
        raise RunDirError(f"cannot write {out} ({exc.strerror}); choose a writable --out") from None
    print(f"comparison written to {out}")
    return 0


def _cmd_datasets(args):
    from rich.console import Console
    from rich.table import Table

    from .data import describe_builtin

    table = Table(title="built-in data sets")
    for col in ("name", "what", "where", "credit"):
        table.add_column(col)
    for row in describe_builtin():
        table.add_row(*row)
    Console().print(table)
    print("Your own data: a .npy file (array X), .npz (arrays X and optional y), .csv (numeric; "
          "--label-column NAME) or a folder of images (one sub-folder per class, optional).")
    return 0


def _bound_heap_growth():
    """Serve allocations of 8 MiB and more (encoding batches) straight from the OS on glibc.

    glibc raises its mmap threshold after the first large free, so later 12 MB batch
    buffers come from a heap that, fragmented by training's many small allocations, is not
    given back: encoding 1M samples then grew the heap by ~2.5 GB. A fixed threshold keeps
    the 1M-sample run near 1.3 GB. Done for the CLI process only; library users can set
    MALLOC_MMAP_THRESHOLD_=8388608 MALLOC_TRIM_THRESHOLD_=16777216 themselves.
    """
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 8 << 20)  # M_MMAP_THRESHOLD
            # A fixed threshold also freezes the trim threshold at 128 KiB, which would hand
            # the heap's top back to the OS after every training step; keep it as glibc would.
            libc.mallopt(-1, 16 << 20)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            pass  # not glibc: nothing to tune


def _rank_label():
    """Under torchrun every process reports its own errors: name the ones that are not rank 0."""
    rank = os.environ.get("RANK", "0")
    return f" (rank {rank})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 and rank != "0" else ""


def main(argv=None):
    _bound_heap_growth()
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
    except OSError as exc:  # a full disk, a vanished folder...: the system's own words, on one line
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}; check the path and free space", file=sys.stderr)
        return 1

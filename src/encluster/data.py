"""Data sets: the built-in ones (MNIST, Fashion-MNIST, scikit-learn's digits), where each is
found, and `load_dataset`, which also reads the user's own files (see `encluster.formats`)."""

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import Dataset
from .download import cache_dir, download_set
from .errors import DataError
from .formats import load_file
from .idx import read_idx
from .scaling import Scaler

log = logging.getLogger(__name__)

SPLITS = ("all", "train", "test")


@dataclass(frozen=True)
class IdxDataSet:
    """A data set distributed as four IDX files, with pinned checksums of their content."""

    name: str
    files: dict  # role -> (file name, md5, sha256, size in bytes) of the uncompressed content
    mirrors: tuple
    class_names: tuple
    credit: str


# Both IDX sets ship the same four file names.
IDX_FILE_NAMES = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
                  "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}


def _idx_files(name):
    """role -> (file name, md5, sha256, size) of its uncompressed content, pinned in datasets/checksums.json."""
    pinned = json.loads((Path(__file__).parent / "datasets" / "checksums.json").read_text())[name]
    return {role: (IDX_FILE_NAMES[role], p["md5"], p["sha256"], p["bytes"]) for role, p in pinned.items()}


MNIST = IdxDataSet(
    name="mnist",
    files=_idx_files("mnist"),
    mirrors=(),
    class_names=tuple(str(d) for d in range(10)),
    credit="Yann LeCun, Corinna Cortes, Christopher J. C. Burges; CC BY-SA 3.0 (bundled)",
)

FASHION_MNIST = IdxDataSet(
    name="fashion-mnist",
    files=_idx_files("fashion-mnist"),
    # https first: the plain-http mirror is only tried when it fails (the sha256 guards both).
    mirrors=(
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    credit="Han Xiao, Kashif Rasul, Roland Vollgraf (Zalando Research); MIT licence",
)

BUNDLED_DIR = Path(__file__).parent / "datasets"
# Where system packages put data sets (Debian: dataset-fashion-mnist).
SYSTEM_DATA_DIRS = [Path("/usr/share/datasets")]
BUILTIN = ("mnist", "fashion-mnist", "digits")


def load_dataset(name_or_path, *, split="all", data_dir=None, label_column=None, scale=True,
                 max_samples=None, random_state=0):
    """Load a built-in data set by name, or the user's own file or image folder.

    Parameters
    ----------
    name_or_path : str or path
        "mnist", "fashion-mnist", "digits", or a path to a .npy, .npz or .csv file or a
        folder of images (one sub-folder per class, optionally).
    split : {"all", "train", "test"}, default="all"
        For MNIST and Fashion-MNIST: the 60,000 training images, the 10,000 test images,
        or all 70,000 (training first, in the original order).
    data_dir : path, optional
        Where to look for Fashion-MNIST first (before ``ENCLUSTER_DATA``, the cache and
        the system data directory).
    label_column : str, optional
        For CSV files: the column holding labels (kept out of the samples).
    scale : bool, default=True
        Scale samples into float32 [0, 1] (see `Scaler`); False keeps the raw values so
        a model can learn and save the scaling itself.
    max_samples : int, optional
        Keep a random subset of this many samples (in their original order).
    random_state : int, default=0
        Seed for choosing that subset.
    """
    if split not in SPLITS:
        raise DataError(f"split={split!r}; expected one of {', '.join(SPLITS)}")
    key = str(name_or_path).lower()
    if key == "mnist":
        dataset = _load_idx_set(MNIST, split, [BUNDLED_DIR / "mnist"])
    elif key == "fashion-mnist":
        dataset = _load_idx_set(FASHION_MNIST, split, search_dirs(FASHION_MNIST.name, data_dir), download=True)
    elif key == "digits":
        dataset = _load_digits()
    elif not Path(name_or_path).exists():
        raise DataError(f"{name_or_path}: no such file or folder; give a built-in name ({', '.join(BUILTIN)}) "
                        "or the path to a .npy, .npz, .csv or .parquet file or an image folder")
    else:
        dataset = load_file(name_or_path, label_column=label_column)
    if max_samples is not None:
        dataset = _subset(dataset, max_samples, random_state)
    if scale:
        dataset.X = Scaler.fit(dataset.X).transform(dataset.X)
    return dataset


def search_dirs(name, data_dir=None):
    """Folders searched for a built-in data set, in order of precedence."""
    roots = [Path(data_dir)] if data_dir else []
    if os.environ.get("ENCLUSTER_DATA"):
        roots.append(Path(os.environ["ENCLUSTER_DATA"]))
    dirs = []
    for root in roots:
        dirs += [root / name, root]
    dirs.append(cache_dir() / name)
    dirs += [d / name for d in SYSTEM_DATA_DIRS]
    return dirs


def locate(spec, dirs):
    """The first folder in `dirs` holding all of the set's files, or None."""
    names = [f[0] for f in spec.files.values()]
    for d in dirs:
        if all((d / n).is_file() for n in names):
            return d
    return None


def _load_idx_set(spec, split, dirs, download=False):
    folder = locate(spec, dirs)
    if folder is None:
        if not download:
            raise DataError(f"{spec.name}: files missing from {dirs[0]}; reinstall encluster")
        folder = download_set(spec.name, spec.files, spec.mirrors)
    parts = {"train": ["train"], "test": ["test"], "all": ["train", "test"]}[split]
    images, labels = [], []
    for part in parts:
        img_file, img_md5, *_ = spec.files[f"{part}_images"]
        lab_file, lab_md5, *_ = spec.files[f"{part}_labels"]
        img = read_idx(folder / img_file, md5=img_md5)
        lab = read_idx(folder / lab_file, md5=lab_md5)
        if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
            raise DataError(f"{folder}: {img_file} has shape {img.shape} but {lab_file} has {lab.shape}; replace them")
        images.append(img)
        labels.append(lab)
    X = np.concatenate(images)
    return Dataset(spec.name, X.reshape(len(X), -1), np.concatenate(labels).astype(np.int64),
                   X.shape[1:], list(spec.class_names))


def _load_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # The images hold 0..16 gray levels: store as such and let the scaler map them.
    return Dataset("digits", bunch.data.astype(np.float32), bunch.target.astype(np.int64), (8, 8),
                   [str(d) for d in bunch.target_names])


def _subset(dataset, max_samples, random_state):
    if max_samples < 1:
        raise DataError(f"max_samples={max_samples}; expected a positive number of samples")
    if max_samples >= dataset.n_samples:
        return dataset
    rng = np.random.default_rng(random_state)
    keep = np.sort(rng.choice(dataset.n_samples, size=max_samples, replace=False))
    y = None if dataset.y is None else dataset.y[keep]
    return Dataset(dataset.name, dataset.X[keep], y, dataset.image_shape, dataset.class_names, dataset.feature_names)


def describe_builtin(data_dir=None):
    """For `encluster datasets`: each built-in set, where it is found or would be put."""
    rows = []
    mnist_dir = locate(MNIST, [BUNDLED_DIR / "mnist"])
    rows.append(("mnist", "70,000 28x28 digits", str(mnist_dir or "missing from the package"), MNIST.credit))
    fashion_dirs = search_dirs(FASHION_MNIST.name, data_dir)
    found = locate(FASHION_MNIST, fashion_dirs)
    where = str(found) if found else f"not found; downloaded into {cache_dir() / FASHION_MNIST.name} on first use"
    rows.append(("fashion-mnist", "70,000 28x28 clothing images", where, FASHION_MNIST.credit))
    rows.append(("digits", "1,797 8x8 digits", "bundled with scikit-learn", "UCI ML hand-written digits (scikit-learn)"))
    return rows

"""Data sets: the built-in ones (MNIST, Fashion-MNIST, scikit-learn's digits) and the
user's own files (.npy, .npz, .csv, a folder of images), all through `load_dataset`."""

import csv
import logging
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .download import cache_dir, fetch, mirrors_for
from .errors import DataError, OfflineError
from .idx import read_idx
from .scaling import Scaler
from .validation import check_labels, check_samples

log = logging.getLogger(__name__)

SPLITS = ("all", "train", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_CSV_BYTES = 4 * 1024**3


@dataclass
class Dataset:
    """Samples, their labels when known, and how to show a sample as an image.

    X : ndarray of shape (n_samples, n_features)
        float32 in [0, 1] when loaded with ``scale=True``, the raw values otherwise.
    y : ndarray of shape (n_samples,) or None
        Integer labels, when the source has them.
    image_shape : tuple or None
        ``(height, width)`` or ``(height, width, 3)`` when samples are images.
    class_names : list of str or None
        Name of each label value, when known.
    """

    name: str
    X: np.ndarray
    y: np.ndarray | None = None
    image_shape: tuple | None = None
    class_names: list | None = None

    @property
    def n_samples(self):
        return self.X.shape[0]


@dataclass(frozen=True)
class IdxDataSet:
    """A data set distributed as four IDX files, with pinned checksums of their content."""

    name: str
    files: dict  # role -> (file name, md5, sha256) of the uncompressed content
    mirrors: tuple
    class_names: tuple
    credit: str


MNIST = IdxDataSet(
    name="mnist",
    files={
        "train_images": ("train-images-idx3-ubyte.gz", "6bbc9ace898e44ae57da46a324031adb",
                         "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "a25bea736e30d166cdddb491f175f624",
                         "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "2646ac647ad5339dbf082846283269ea",
                        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "27ae3e4e09519cfbb04c329615203637",
                        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    mirrors=(),
    class_names=tuple(str(d) for d in range(10)),
    credit="Yann LeCun, Corinna Cortes, Christopher J. C. Burges; CC BY-SA 3.0 (bundled)",
)

FASHION_MNIST = IdxDataSet(
    name="fashion-mnist",
    files={
        "train_images": ("train-images-idx3-ubyte.gz", "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                         "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "9018921c3c673c538a1fc5bad174d6f9",
                         "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "8181f5470baa50b63fa0f6fddb340f0a",
                        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "15d484375f8d13e6eb1aabb0c3f46965",
                        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
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
        folder = _download(spec, dirs)
    parts = {"train": ["train"], "test": ["test"], "all": ["train", "test"]}[split]
    images, labels = [], []
    for part in parts:
        img_file, img_md5, _ = spec.files[f"{part}_images"]
        lab_file, lab_md5, _ = spec.files[f"{part}_labels"]
        img = read_idx(folder / img_file, md5=img_md5)
        lab = read_idx(folder / lab_file, md5=lab_md5)
        if img.ndim != 3 or lab.ndim != 1 or len(img) != len(lab):
            raise DataError(f"{folder}: {img_file} has shape {img.shape} but {lab_file} has {lab.shape}; replace them")
        images.append(img)
        labels.append(lab)
    X = np.concatenate(images)
    return Dataset(spec.name, X.reshape(len(X), -1), np.concatenate(labels).astype(np.int64),
                   X.shape[1:], list(spec.class_names))


def _download(spec, dirs):
    target = cache_dir() / spec.name
    names = [f[0] for f in spec.files.values()]
    try:
        for name, _, sha256 in spec.files.values():
            if not (target / name).is_file():
                fetch(name, sha256, mirrors_for(spec.mirrors), target)
    except OfflineError as exc:
        raise OfflineError(
            f"{spec.name} is not on disk and cannot be downloaded ({exc}); put {', '.join(names)} "
            f"into {target} or a folder given by --data-dir or ENCLUSTER_DATA"
        ) from None
    return target


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
    return Dataset(dataset.name, dataset.X[keep], y, dataset.image_shape, dataset.class_names)


def load_file(path, *, label_column=None):
    """Read the user's own data, unscaled: .npy, .npz, .csv or a folder of images."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; give a built-in name ({', '.join(BUILTIN)}) "
                        "or the path to a .npy, .npz, .csv file or an image folder")
    if path.is_dir():
        return _load_image_folder(path)
    suffix = path.suffix.lower()
    readers = {".npy": _load_npy, ".npz": _load_npz, ".csv": lambda p: _load_csv(p, label_column)}
    if suffix not in readers:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use .npy, .npz, .csv or an image folder")
    if label_column is not None and suffix != ".csv":
        raise DataError(f"{path}: --label-column only applies to CSV files; store labels as y in an .npz")
    try:
        return readers[suffix](path)
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None


def _as_image_stack(path, X, y, name=None):
    """Flatten 3-D/4-D arrays of images and remember their shape."""
    X = np.asarray(X)
    name = name or path.stem
    if X.ndim == 2:
        return Dataset(name, check_samples(X, name=str(path)), check_labels(y, len(X), name=str(path)))
    if X.ndim == 3 or (X.ndim == 4 and X.shape[-1] in (1, 3)):
        shape = X.shape[1:3] if X.ndim == 3 or X.shape[-1] == 1 else X.shape[1:]
        flat = check_samples(X.reshape(len(X), -1), name=str(path))
        return Dataset(name, flat, check_labels(y, len(X), name=str(path)), tuple(shape))
    raise DataError(f"{path}: array of shape {X.shape}; expected (n, features), (n, h, w) or (n, h, w, 1|3)")


def _check_npy_header(fp, available, source):
    """Check that an .npy header is sane and matches the bytes that follow it, before
    anything is allocated: a header claiming 10^12 rows must not be believed."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        if version not in readers:
            raise DataError(f"{source}: .npy format version {version} is not supported; re-save it with numpy.save")
        shape, _, dtype = readers[version](fp)
    except DataError:
        raise
    except Exception as exc:  # numpy raises ValueError, SyntaxError, EOFError... for damaged headers
        raise DataError(f"{source}: not a valid .npy array ({type(exc).__name__}); re-save it with numpy.save") from None
    if dtype.hasobject:
        raise DataError(f"{source}: holds Python objects, which cannot be loaded without pickle; save plain numeric arrays")
    expected = dtype.itemsize * math.prod(shape)
    actual = available - fp.tell()
    if actual != expected:
        raise DataError(f"{source}: header declares shape {shape} of {dtype} ({expected} bytes) but {actual} bytes "
                        "follow; the file is truncated or corrupted")


def _load_npy(path):
    with open(path, "rb") as fp:
        _check_npy_header(fp, path.stat().st_size, path)
    try:
        # Memory-mapped: a file larger than memory is read batch by batch, never whole.
        X = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:
        raise DataError(f"{path}: cannot be read as .npy ({type(exc).__name__}); re-save it with numpy.save") from None
    return _as_image_stack(path, X, None)


def _load_npz(path):
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            names = [n[:-4] for n in members if n.endswith(".npy")]
            if "X" not in names:
                raise DataError(f"{path}: has arrays {names}; expected one named X (and optionally y)")
            arrays = {}
            for name in ("X", "y"):
                if name in names:
                    info = members[f"{name}.npy"]
                    with archive.open(info) as fp:
                        _check_npy_header(fp, info.file_size, f"{path}:{name}")
                    with archive.open(info) as fp:
                        arrays[name] = np.lib.format.read_array(fp, allow_pickle=False)
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, EOFError... from a damaged archive
        raise DataError(f"{path}: corrupted .npz archive ({type(exc).__name__}); re-save it with numpy.savez") from None
    return _as_image_stack(path, arrays["X"], arrays.get("y"))


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _load_csv(path, label_column):
    if path.stat().st_size > MAX_CSV_BYTES:
        raise DataError(f"{path}: larger than {MAX_CSV_BYTES} bytes; convert it to .npy for data this big")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [row for row in csv.reader(fh) if row]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save it as a UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path}: empty CSV; it needs at least one row of numbers")
    header = None
    if label_column is not None or not all(_is_number(c) for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise DataError(f"{path}: has a header but no data rows")
    width = len(header) if header else len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            line = i + 1 + (header is not None)
            raise DataError(f"{path}: line {line} has {len(row)} fields, expected {width}; fix the ragged row")
    label_index = None
    if label_column is not None:
        if label_column not in header:
            raise DataError(f"{path}: no column named {label_column!r}; columns are {header}")
        label_index = header.index(label_column)
    feature_idx = [j for j in range(width) if j != label_index]
    X = np.empty((len(rows), len(feature_idx)), dtype=np.float64)
    for i, row in enumerate(rows):
        for k, j in enumerate(feature_idx):
            try:
                X[i, k] = float(row[j])
            except ValueError:
                col = header[j] if header else f"#{j + 1}"
                line = i + 1 + (header is not None)
                raise DataError(f"{path}: line {line}, column {col}: {row[j]!r} is not a number; "
                                "CSV features must be numeric (name a label column with --label-column)") from None
    y, names = None, None
    if label_index is not None:
        raw = [row[label_index].strip() for row in rows]
        names, y = np.unique(raw, return_inverse=True)
        names = [str(n) for n in names]
    return Dataset(path.stem, check_samples(X, name=str(path)), check_labels(y, len(X), name=str(path)),
                   class_names=names)


def _load_image_folder(path):
    from PIL import Image

    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        stray = [p.name for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        if stray:
            raise DataError(f"{path}: has class sub-folders and loose files ({stray[0]}, ...); move the files into a sub-folder")
        groups = [(i, sorted(p for p in d.iterdir() if not p.name.startswith("."))) for i, d in enumerate(subdirs)]
        names = [d.name for d in subdirs]
    else:
        groups = [(None, sorted(p for p in path.iterdir() if not p.name.startswith(".")))]
        names = None
    images, labels = [], []
    for label, files in groups:
        for f in files:
            if f.is_dir() or f.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{f}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))}); remove it from the folder")
            try:
                with Image.open(f) as im:
                    im.load()
                    images.append(im.copy())
            except Exception as exc:  # Pillow raises many types for damaged or hostile files
                raise DataError(f"{f}: not a readable image ({type(exc).__name__}); remove or replace it") from None
            labels.append(label)
    if not images:
        raise DataError(f"{path}: no images found; put image files (or class sub-folders of them) in it")
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise DataError(f"{path}: images have different sizes {sorted(sizes)[:3]}; resize them all to one size")
    color = any(im.mode not in ("L", "1", "I;16", "I", "F", "LA") for im in images)
    mode = "RGB" if color else "L"
    stack = np.stack([np.asarray(im.convert(mode), dtype=np.uint8) for im in images])
    y = np.asarray(labels, dtype=np.int64) if names else None
    dataset = _as_image_stack(path, stack, y, name=path.name)
    dataset.class_names = names
    return dataset


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

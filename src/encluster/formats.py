"""Reading the user's own data: .npy (memory-mapped), .npz, .csv and folders of images.

Nothing here unpickles: arrays are read with ``allow_pickle=False`` after their headers were
checked against the bytes that follow, and images through Pillow.
"""

import csv
import math
import re
import zipfile
from pathlib import Path

import numpy as np

from .dataset import Dataset
from .errors import DataError
from .validation import check_labels, check_samples

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_CSV_BYTES = 4 * 1024**3
DECIMAL_COMMA = re.compile(r"[-+]?[0-9]*,[0-9]+(?:[eE][-+]?[0-9]+)?")


def load_file(path, *, label_column=None):
    """Read the user's own data, unscaled: .npy, .npz, .csv or a folder of images."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; give the path to a .npy, .npz, .csv or .parquet file or an "
                        "image folder")
    if path.is_dir():
        return _load_image_folder(path)
    suffix = path.suffix.lower()
    readers = {".npy": _load_npy, ".npz": _load_npz, ".csv": lambda p: _load_csv(p, label_column),
               ".parquet": lambda p: _load_parquet(p, label_column)}
    if suffix not in readers:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use .npy, .npz, .csv, .parquet or an image folder")
    if label_column is not None and suffix not in (".csv", ".parquet"):
        raise DataError(f"{path}: --label-column only applies to CSV and Parquet files; store labels as y in an .npz")
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


def column_names(path):
    """A table's column names: a CSV's stripped first line, a Parquet file's schema; empty when
    they cannot be read (`load_file` then names the problem)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        with open(path, newline="", encoding="utf-8") as fh:
            return [c.strip() for c in next(csv.reader(fh, delimiter=_delimiter(path)), [])]
    except Exception:  # unreadable, not UTF-8, no pyarrow, a damaged file ...: load_file names it
        return []


# Separators a CSV may use, in the order they are preferred when several split every line alike: a
# comma also stands inside numbers written with a decimal comma, so it comes last.
DELIMITERS = ("\t", ";", "|", ",")
SNIFF_BYTES = 1 << 16


def _delimiter(path):
    """The separator of the CSV at `path`: the first of `DELIMITERS` that splits each of its first
    lines into the same number (two or more) of fields; a comma when none does (one column)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        sample = fh.read(SNIFF_BYTES)
    lines = [line for line in sample.splitlines()[:51] if line.strip()]
    if len(sample) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last may be cut short
    for delimiter in DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        if len(counts) == 1 and counts.pop() > 1:
            return delimiter
    return ","


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _load_csv(path, label_column):
    """A CSV through pyarrow's multithreaded reader (several times faster than a Python loop over
    cells); a first row of numbers is data, anything else a header."""
    import pyarrow
    import pyarrow.csv

    if path.stat().st_size > MAX_CSV_BYTES:
        raise DataError(f"{path}: larger than {MAX_CSV_BYTES} bytes; convert it to .npy or .parquet for data this big")
    delimiter = _delimiter(path)
    first = _first_record(path, delimiter)
    if first is None:
        raise DataError(f"{path}: empty CSV; it needs at least one row of numbers")
    cells = first[:-1] if len(first) > 1 and not first[-1].strip() else first  # a trailing separator ends no value
    header = label_column is not None or not all(_is_number(c) for c in cells)
    try:
        table = pyarrow.csv.read_csv(
            path, read_options=pyarrow.csv.ReadOptions(autogenerate_column_names=not header),
            # A line break inside a value needs quotes; allowing for it halves the parser's speed.
            parse_options=pyarrow.csv.ParseOptions(delimiter=delimiter, newlines_in_values=_has_quotes(path)),
            # Only an empty cell is missing; "nan" stays NaN so that the finite-values check names it.
            convert_options=pyarrow.csv.ConvertOptions(null_values=[""], strings_can_be_null=True))
    except pyarrow.ArrowInvalid as exc:
        raise DataError(_csv_problem(path, exc, delimiter)) from None
    if table.num_rows == 0:
        raise DataError(f"{path}: has a header but no data rows")
    last = table.column(table.num_columns - 1)
    if table.num_columns > 1 and last.null_count == table.num_rows and (not header or not first[-1].strip()):
        table = table.drop_columns([table.column_names[-1]])  # every line ended with a separator
    names = [" ".join(n.split()) for n in table.column_names] if header else None
    return _table_dataset(path, table, names, label_column, lambda i: f"line {i + 1 + header}")


def _has_quotes(path):
    """True when the file holds a double quote anywhere (read in blocks: a fast byte search)."""
    with open(path, "rb") as fh:
        return any(b'"' in block for block in iter(lambda: fh.read(1 << 24), b""))


def _first_record(path, delimiter):
    """The CSV's first non-empty record, read with Python's csv module (quotes and all), or None."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return next((row for row in csv.reader(fh, delimiter=delimiter) if row), None)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save it as a UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None


def _csv_problem(path, exc, delimiter):
    """One line saying where a CSV pyarrow could not parse goes wrong: the first ragged row when
    there is one (records counted as the csv module counts them, blank lines skipped)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = (row for row in csv.reader(fh, delimiter=delimiter) if row)
            width = len(next(rows))
            for line, row in enumerate(rows, start=2):
                if len(row) != width:
                    return f"{path}: line {line} has {len(row)} fields, expected {width}; fix the ragged row"
    except (UnicodeDecodeError, csv.Error):
        pass
    return f"{path}: malformed CSV ({' '.join(str(exc).split())[:200]})"


def _load_parquet(path, label_column):
    """A Parquet table through pyarrow: every column but the label one a feature."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError ... for damaged files
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}); re-save it") from None
    # A data frame's index (e.g. `__index_level_0__` after filtering rows) is the frame's row names, not a feature;
    # pandas' schema metadata lists it (a plain range index is kept there as a description, not as a column).
    index = [c for c in (table.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
    table = table.drop_columns([c for c in index if c in table.column_names and c != label_column])
    return _table_dataset(path, table, table.column_names, label_column, lambda i: f"row {i + 1}")


def _table_dataset(path, table, names, label_column, where):
    """A `Dataset` from a pyarrow table: the label column (if named) as labels, every other column
    a numeric feature. `names` are the column names (None: a CSV without a header); `where(i)`
    says where row i is, for messages."""
    repeated = sorted({n for n in names or () if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: column names {repeated} stand more than once; give every column its own name")
    if label_column is not None and label_column not in names:
        raise DataError(f"{path}: no column named {label_column!r}; columns are {names}")
    label_index = None if label_column is None else names.index(label_column)
    features = [j for j in range(table.num_columns) if j != label_index]
    columns = [_numeric_column(path, table.column(j), names[j] if names else f"#{j + 1}", where) for j in features]
    X = np.column_stack(columns) if columns else np.empty((table.num_rows, 0))
    y, classes = None, None
    if label_index is not None:
        labels = table.column(label_index)
        if labels.null_count:
            i = next(i for i, v in enumerate(labels.is_null().to_pylist()) if v)
            raise DataError(f"{path}: {where(i)}: the label is missing ({labels.null_count} rows have none); give "
                            "every row a label, or leave out --label-column to cluster without scores")
        y, classes = _label_codes(labels)
    return Dataset(path.stem, check_samples(X, name=str(path)), check_labels(y, len(X), name=str(path)),
                   class_names=classes, feature_names=[names[j] for j in features] if names else None)


def _label_codes(column):
    """Each row's class index and the class names, sorted, the names stripped of spaces."""
    import pyarrow
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(pc.cast(column, pyarrow.string()))
    encoded = text.combine_chunks().dictionary_encode()
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    order = np.argsort(names.astype(str), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)], [str(n) for n in names[order]]


def _numeric_column(path, column, name, where):
    """A column as float64, or a one-line error naming the column and the first bad cell."""
    import pyarrow
    import pyarrow.compute as pc
    import pyarrow.types as t

    if t.is_binary(column.type):
        raise DataError(f"{path}: column {name} is not UTF-8 text; save the file as UTF-8")
    if t.is_string(column.type) or t.is_large_string(column.type):
        try:  # numbers with spaces around them, or a column pyarrow took for text because of one cell
            column = pc.cast(pc.utf8_trim_whitespace(column), pyarrow.float64())
        except pyarrow.ArrowInvalid:
            values = column.to_pylist()
            i = next(i for i, v in enumerate(values) if v is not None and not _is_number(v))
            if DECIMAL_COMMA.fullmatch(values[i].strip()):
                raise DataError(f"{path}: {where(i)}, column {name}: {values[i]!r} is written with a decimal comma; "
                                "save the file with decimal points (e.g. 0.12)") from None
            raise DataError(f"{path}: {where(i)}, column {name}: {values[i]!r} is not a number; features must be "
                            "numeric (name a label column with --label-column, or drop the column)") from None
    elif not (t.is_integer(column.type) or t.is_floating(column.type) or t.is_boolean(column.type)
              or t.is_decimal(column.type) or t.is_null(column.type)):
        raise DataError(f"{path}: column {name} holds {column.type}, not numbers; features must be numeric "
                        "(name a label column with --label-column, or drop the column)")
    if column.null_count:
        i = next(i for i, v in enumerate(column.is_null().to_pylist()) if v)
        raise DataError(f"{path}: {where(i)}, column {name}: the value is missing ({column.null_count} missing in "
                        "this column); impute or drop missing values first")
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


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
    color = any(im.mode not in ("L", "1", "I;16", "I;16B", "I;16L", "I", "F", "LA") for im in images)
    deep = not color and any(im.mode not in ("L", "1", "LA") for im in images)
    if deep:  # 16-bit, 32-bit or float grayscale: as they are (converting to "L" clips them at 255)
        # An 8-bit image among them is stretched onto the 16-bit range (255 * 257 = 65535).
        stack = np.stack([np.asarray(im.convert("I")) * 257 if im.mode in ("L", "1", "LA") else np.asarray(im)
                          for im in images])
        stack = stack.astype(np.uint16 if stack.min() >= 0 and stack.max() <= 65535 and stack.dtype.kind in "iu"
                             else np.float64)
    else:
        stack = np.stack([np.asarray(im.convert("RGB" if color else "L"), dtype=np.uint8) for im in images])
    y = np.asarray(labels, dtype=np.int64) if names else None
    dataset = _as_image_stack(path, stack, y, name=path.name)
    dataset.class_names = names
    return dataset

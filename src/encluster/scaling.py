"""Mapping raw samples onto the scale the autoencoder learns in. The scaler is saved with the
model so that `predict` scales new data exactly as training did.

Images (and any data whose values are bounded) go onto [0, 1], the range a sigmoid output and
binary cross-entropy expect. Table columns in unrelated units are standardised instead: a
min-max map lets one outlier squeeze a whole column into a sliver of [0, 1], while a z-score
gives every column the same spread whatever its range (what k-means, UMAP and a squared-error
network all assume).
"""

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .validation import check_finite, check_samples, non_finite_rows, row_chunks

MODES = ("uint8", "identity", "minmax", "standard")
SCALINGS = ("minmax", "standard", "auto")


@dataclass
class Summary:
    """What one pass over the training data found: whether it is usable and constant, and the
    statistics a scaling needs. Fitting asks all its questions of this, so a memory-mapped file
    is read once instead of once per question (six times for a float file).

    constant : bool
        Every row equals the first.
    bounded : bool
        Already on an image's scale: uint8, or floats within [0, 1].
    low, high : ndarray of shape (n_features,) or None
        Each column's minimum and maximum (None for uint8, which needs no statistics).
    count : int
    total, squares : ndarray of shape (n_features,) or None
        Each column's sum and sum of squares, in float64.
    """

    constant: bool
    bounded: bool
    count: int
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    total: np.ndarray | None = None
    squares: np.ndarray | None = None


def summarise(X, *, name="X"):
    """Check `X` (a 2-D numeric array, see `check_samples`) for non-finite values and gather its
    `Summary`, in one pass over row blocks."""
    statistics = X.dtype != np.uint8
    floating = np.issubdtype(X.dtype, np.floating)
    first, constant, bad = np.asarray(X[0]), True, 0
    low = high = total = squares = None
    for chunk in row_chunks(X):
        chunk = np.asarray(chunk)
        if floating:
            bad += non_finite_rows(chunk)
        constant = constant and bool((chunk == first).all())
        if not statistics:
            if not constant:
                break  # uint8 needs nothing else: the rest of the file need not be read
            continue
        if bad:
            continue  # only the count of bad rows is still wanted
        wide = chunk.astype(np.float64)
        if low is None:
            low, high, total, squares = wide.min(axis=0), wide.max(axis=0), wide.sum(axis=0), (wide**2).sum(axis=0)
        else:
            low, high = np.minimum(low, wide.min(axis=0)), np.maximum(high, wide.max(axis=0))
            total, squares = total + wide.sum(axis=0), squares + (wide**2).sum(axis=0)
    check_finite(bad, name)
    bounded = not statistics or (floating and bool(low.min() >= 0 and high.max() <= 1))
    return Summary(constant, bounded, len(X), low, high, total, squares)


@dataclass
class Scaler:
    """How raw data is mapped onto the network's scale.

    mode : {"uint8", "identity", "minmax", "standard"}
        "uint8" divides by 255; "identity" keeps float data already in [0, 1]; "minmax" maps
        each feature's training minimum..maximum onto 0..1; "standard" subtracts each
        feature's training mean and divides by its standard deviation.
    offset, span : ndarray of shape (n_features,) or None
        Per feature, what is subtracted and what it is divided by ("minmax": the minimum and
        the range; "standard": the mean and the standard deviation). A constant feature's
        span is 1, so it maps to 0 instead of dividing by 0.
    """

    mode: str
    offset: np.ndarray | None = None
    span: np.ndarray | None = None

    @classmethod
    def fit(cls, X, scaling="minmax", summary=None):
        """Choose the mapping from the training data.

        scaling : {"minmax", "standard", "auto"}
            "minmax": uint8 and [0, 1] data as they are, anything else per feature onto
            [0, 1]; "standard": a z-score per feature; "auto": "minmax" for bounded data
            (uint8 or within [0, 1], as images are), "standard" for the rest (tables).
        summary : Summary, optional
            `summarise(X)`, when the caller has it already; else it is gathered here.
        """
        if scaling not in SCALINGS:
            raise ConfigError(f"scaling={scaling!r}; expected one of {', '.join(SCALINGS)}")
        if summary is None:
            X = check_samples(X, finite=False)
            summary = summarise(X)
        bounded = scaling != "standard" and summary.bounded
        if scaling == "standard" or (scaling == "auto" and not bounded):
            mean, std = _moments(X, summary)
            # A spread within float rounding of the mean is a constant column, not a scale to divide by.
            return cls("standard", mean, np.where(std > 1e-12 * np.abs(mean), std, 1.0))
        if bounded:
            return cls("uint8" if X.dtype == np.uint8 else "identity")
        return cls("minmax", summary.low, np.where(summary.high > summary.low, summary.high - summary.low, 1.0))

    def transform(self, X):
        """Scale `X` into float32; "minmax" clips values outside the training range to [0, 1]."""
        return self._scale(check_samples(X))

    def _scale(self, X):
        if self.mode == "uint8":
            return X.astype(np.float32) / np.float32(255)
        if self.mode == "identity":
            return np.clip(X, 0, 1).astype(np.float32, copy=False)
        scaled = (X - self.offset) / self.span
        return (np.clip(scaled, 0, 1) if self.mode == "minmax" else scaled).astype(np.float32)

    def inverse_transform(self, Z):
        """Map scaled values (e.g. decoded centroids) back into the raw data's units."""
        Z = np.asarray(Z, dtype=np.float64)
        if self.mode == "uint8":
            return Z * 255
        if self.mode == "identity":
            return Z
        return self.offset + Z * self.span


def _moments(X, summary):
    """Each column's mean and standard deviation, from the summary's float64 sums."""
    mean = summary.total / summary.count
    # The two-sums variance loses digits when the mean dwarfs the spread; a second pass
    # around the mean is exact enough and reads the data once more only in that case.
    variance = summary.squares / summary.count - mean**2
    if np.any(variance < 1e-6 * np.maximum(mean**2, 1e-300)):
        variance = sum(((np.asarray(c, dtype=np.float64) - mean) ** 2).sum(axis=0)
                       for c in row_chunks(X)) / summary.count
    return mean, np.sqrt(np.maximum(variance, 0))


class ScaledRows:
    """Rows of raw data, scaled on access: training and encoding read batches from it, so
    data memory-mapped from disk is never copied whole into memory (and an in-memory
    array goes through exactly the same arithmetic, so both give identical results)."""

    def __init__(self, X, scaler):
        self.X, self.scaler = X, scaler

    def __len__(self):
        return len(self.X)

    @property
    def shape(self):
        return self.X.shape

    def __getitem__(self, rows):
        return self.scaler._scale(np.asarray(self.X[rows]))


def row_range(rows, start, stop):
    """Rows ``start:stop`` of an array or `ScaledRows`, as a view: nothing is read yet."""
    if isinstance(rows, ScaledRows):
        return ScaledRows(rows.X[start:stop], rows.scaler)
    return rows[start:stop]

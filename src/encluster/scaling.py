"""Mapping raw samples into [0, 1], the range the autoencoder's sigmoid output and
binary cross-entropy expect. The scaler is saved with the model so that `predict`
scales new data exactly as training did."""

from dataclasses import dataclass

import numpy as np

from .validation import check_samples

MODES = ("uint8", "identity", "minmax")


@dataclass
class Scaler:
    """How raw data is mapped into [0, 1].

    mode : {"uint8", "identity", "minmax"}
        "uint8" divides by 255; "identity" keeps float data already in [0, 1];
        "minmax" maps each feature's training minimum..maximum onto 0..1.
    data_min, data_max : ndarray of shape (n_features,) or None
        The per-feature range seen in training, for "minmax" only.
    """

    mode: str
    data_min: np.ndarray | None = None
    data_max: np.ndarray | None = None

    @classmethod
    def fit(cls, X):
        """Choose the mapping from the training data."""
        X = check_samples(X)
        if X.dtype == np.uint8:
            return cls("uint8")
        if np.issubdtype(X.dtype, np.floating) and X.min() >= 0 and X.max() <= 1:
            return cls("identity")
        return cls("minmax", X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64))

    def transform(self, X):
        """Scale `X` into float32; values outside the training range are clipped to [0, 1]."""
        return self._scale(check_samples(X))

    def _scale(self, X):
        if self.mode == "uint8":
            return X.astype(np.float32) / np.float32(255)
        if self.mode == "identity":
            return np.clip(X, 0, 1).astype(np.float32, copy=False)
        span = self.data_max - self.data_min
        # A constant feature carries no information: map it to 0 instead of dividing by 0.
        span = np.where(span > 0, span, 1.0)
        return np.clip((X - self.data_min) / span, 0, 1).astype(np.float32)

    def inverse_transform(self, Z):
        """Map scaled values (e.g. decoded centroids) back into the raw data's units."""
        Z = np.asarray(Z, dtype=np.float64)
        if self.mode == "uint8":
            return Z * 255
        if self.mode == "identity":
            return Z
        return self.data_min + Z * (self.data_max - self.data_min)


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

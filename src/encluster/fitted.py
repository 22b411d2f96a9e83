"""Fitted state: what each stage leaves on the estimator, as small dataclasses that save and load
themselves, so that `encluster.persistence` only iterates over them.

A part's fields are estimator attributes: field ``history`` is ``history_``, unless the field's
metadata names another attribute. A field marked not saved (the training samples' labels, where
UMAP put them) lives only in the fitting process, and loading leaves it alone.

Every part has ``to_arrays(training_rows)``, giving the named arrays it puts into
``model.safetensors`` and its entries of ``model.json`` (``training_rows=False``: the file may not
hold training rows), and ``from_arrays(arrays, meta, shape)``, rebuilding it from the two, checked
against the model's `Shape`.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelError
from .scaling import Scaler


def attribute(name, *, saved=True, default=dataclasses.MISSING):
    """A field stored as the estimator attribute `name` (a part's field of another name than its
    attribute's); `saved=False` for state that is not written to a model file."""
    return dataclasses.field(default=default, metadata={"attribute": name, "saved": saved})


def unsaved(name, default=None):
    """A field kept on the estimator after fit but not written to a model file."""
    return attribute(name, saved=False, default=default)


def _attribute(field):
    return field.metadata.get("attribute", f"{field.name}_")


def keep(est, part, *, loaded=False):
    """Set `part`'s fields as `est`'s attributes (from a loaded file: only the saved ones)."""
    for field in dataclasses.fields(part):
        if not (loaded and not field.metadata.get("saved", True)):
            setattr(est, _attribute(field), getattr(part, field.name))


def gather(est, kind):
    """The part of type `kind` that `est`'s attributes hold."""
    return kind(**{f.name: getattr(est, _attribute(f), None) for f in dataclasses.fields(kind) if f.init})


@dataclass(frozen=True)
class Shape:
    """What loading a part is checked against: the model's width, clusters, code and embedding
    widths, and the weights file (named in every error)."""

    n_features: int
    n_clusters: int
    code_size: int
    n_components: int | None
    where: Path


@dataclass
class Inputs:
    """What the estimator learnt about its input: the width, the image shape, the column names,
    how raw values are scaled, and the seed it ran with."""

    n_features_in: int
    image_shape: tuple | None
    feature_names_in: np.ndarray | None
    scaler: Scaler
    seed: int

    def to_arrays(self, training_rows=True):
        arrays = {} if self.scaler.offset is None else {"scaler.offset": self.scaler.offset,
                                                        "scaler.span": self.scaler.span}
        names = None if self.feature_names_in is None else [str(n) for n in self.feature_names_in]
        return arrays, {"n_features_in": int(self.n_features_in), "seed": int(self.seed), "scaler": self.scaler.mode,
                        "image_shape": None if self.image_shape is None else list(self.image_shape),
                        "feature_names_in": names}

    @classmethod
    def from_arrays(cls, arrays, meta, shape):
        n_features = shape.n_features
        image_shape = meta.get("image_shape")
        if image_shape is not None and (not isinstance(image_shape, list) or int(np.prod(image_shape)) != n_features):
            raise ModelError(f"{shape.where.parent / 'model.json'}: image_shape {image_shape!r} does not hold "
                             f"{n_features} features")
        names = meta.get("feature_names_in")  # absent from models saved before data frames were taken
        if names is not None and (not isinstance(names, list) or len(names) != n_features
                                  or not all(isinstance(n, str) for n in names)):
            raise ModelError(f"{shape.where.parent / 'model.json'}: feature_names_in does not name the {n_features} "
                             "features")
        return cls(n_features, None if image_shape is None else tuple(int(s) for s in image_shape),
                   None if names is None else np.asarray(names, dtype=object),
                   _scaler(meta["scaler"], arrays, n_features, shape.where), int(meta["seed"]))


def _scaler(mode, arrays, n_features, where):
    """The saved `Scaler`; earlier models kept a min-max scaler's minimum and maximum instead."""
    if mode in ("uint8", "identity"):
        return Scaler(mode)
    offset, span = arrays.get("scaler.offset"), arrays.get("scaler.span")
    if offset is None and mode == "minmax" and "scaler.data_min" in arrays and "scaler.data_max" in arrays:
        offset, high = arrays["scaler.data_min"], arrays["scaler.data_max"]
        span = np.where(high > offset, high - offset, 1.0) if high.shape == offset.shape else high
    if offset is None or span is None or offset.shape != (n_features,) or span.shape != (n_features,) \
            or not np.all(span > 0):
        raise ModelError(f"{where}: the {mode} scaler's offset and span are missing, not of {n_features} "
                         "features, or not positive")
    return Scaler(mode, offset.astype(np.float64), span.astype(np.float64))

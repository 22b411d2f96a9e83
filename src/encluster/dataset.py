"""`Dataset`: samples, their labels and how to show them, as every loader returns them (its own
module, so that the built-in sets' loaders and the readers of the user's files share it without
importing each other)."""

from dataclasses import dataclass

import numpy as np


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
    feature_names : list of str or None
        Name of each feature (a table's column names), when known.
    """

    name: str
    X: np.ndarray
    y: np.ndarray | None = None
    image_shape: tuple | None = None
    class_names: list | None = None
    feature_names: list | None = None

    @property
    def n_samples(self):
        return self.X.shape[0]

import numpy as np
import pytest

from encluster import load_dataset


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits, scaled into [0, 1]: small, real, labelled."""
    return load_dataset("digits")


@pytest.fixture
def blobs():
    """Three well-separated Gaussian blobs in 20 dimensions, values in [0, 1]."""
    rng = np.random.default_rng(0)
    centers = rng.uniform(0.1, 0.9, size=(3, 20))
    y = np.repeat(np.arange(3), 60)
    X = np.clip(centers[y] + rng.normal(0, 0.02, size=(180, 20)), 0, 1).astype(np.float32)
    return X, y

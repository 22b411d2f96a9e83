import numpy as np
import pytest
import torch

from encluster import load_dataset


def pytest_generate_tests(metafunc):
    """A test that takes `device` runs on every device present: the CPU, and CUDA where there is a GPU
    (CI has none; the CUDA cases were run on a GPU machine, see the README)."""
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))


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

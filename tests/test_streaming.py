"""Data memory-mapped from disk goes through the same batched path as in-memory data,
so both give identical results (and a large file is never copied whole)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from encluster import EncodingClusterer, load_dataset

SMALL = dict(preset="original", hidden=(32,), code_size=3, activation="relu", code_activation="linear", init="xavier", epochs=3,
             batch_size=50, n_init=2, random_state=0)


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory):
    d = load_dataset("mnist", split="test", max_samples=1200, scale=False)
    folder = tmp_path_factory.mktemp("data")
    np.save(folder / "images.npy", d.X.reshape(-1, 28, 28))
    np.savez(folder / "images.npz", X=d.X.reshape(-1, 28, 28))
    return folder, d.X


def test_npy_is_memory_mapped_not_loaded(mnist_files):
    folder, X = mnist_files
    d = load_dataset(folder / "images.npy", scale=False)
    assert not d.X.flags.writeable and not d.X.flags.owndata  # a read-only view of the file
    assert np.array_equal(d.X, X) and d.image_shape == (28, 28)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_memory_mapped_fit_equals_in_memory(tmp_path, mnist_files, dtype):
    _, X = mnist_files
    X = X.astype(dtype) if dtype == np.uint8 else X.astype(dtype) * 3 - 1  # floats take the min-max path
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    a = EncodingClusterer(10, **SMALL).fit(mapped)
    b = EncodingClusterer(10, **SMALL).fit(np.array(X))
    assert a.history_ == b.history_
    assert np.array_equal(a.codes_, b.codes_) and np.array_equal(a.labels_, b.labels_)
    assert np.array_equal(a.predict(mapped[:100]), b.predict(X[:100]))


def test_cli_on_npy_equals_cli_on_npz(mnist_files, tmp_path):
    folder, _ = mnist_files
    results = []
    for name in ("images.npy", "images.npz"):
        out = tmp_path / name
        result = subprocess.run([sys.executable, "-m", "encluster", "run", "--dataset", str(folder / name),
                                 "--epochs", "2", "--steps", "0", "--n-init", "2", "--selflabel-steps", "100",
                                 "--no-plots", "--no-report", "--out", str(out), "-q"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        results.append((np.load(out / "assignments.npy"), json.loads((out / "metrics.json").read_text())["history"]))
    assert np.array_equal(results[0][0], results[1][0]) and results[0][1] == results[1][1]


def test_sampled_kmeans_equals_kmeans_below_the_threshold_and_assigns_in_batches_above(blobs):
    from sklearn.metrics import v_measure_score

    from encluster.stages.cluster import kmeans, kmeans_sampled, nearest_center

    X, y = blobs
    full = kmeans(X, 3, n_init=3, random_state=0)
    same = kmeans_sampled(X, 3, n_init=3, random_state=0, max_fit_samples=len(X))
    assert np.array_equal(full[0], same[0]) and np.allclose(full[1], same[1])
    labels, centers = kmeans_sampled(X, 3, n_init=3, random_state=0, max_fit_samples=30)
    assert v_measure_score(y, labels) == pytest.approx(1.0)  # well-separated blobs: found from 30 samples
    assert np.array_equal(labels, nearest_center(X, centers, batch_size=7))

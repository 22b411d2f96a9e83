"""Fuzzing every reader of untrusted bytes: each input either loads or raises the
project's own error — never another exception, a hang or a huge allocation."""

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from encluster import EncodingClusterer
from encluster.formats import load_file
from encluster.errors import DataError, ModelError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
mutations = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)


def mutate(data, edits):
    data = bytearray(data)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data)


def loads_or_data_error(path):
    """Load `path`: return the data set, or None when it was rejected with our one-line DataError.
    Any other exception propagates and fails the test."""
    try:
        dataset = load_file(path)
    except DataError as exc:
        assert "\n" not in str(exc)
        return None
    assert dataset.X.ndim == 2 and len(dataset.X) > 0 and np.isfinite(dataset.X).all()
    return dataset


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


VALID_NPY = _npy_bytes(np.arange(60, dtype=np.float32).reshape(6, 10) / 60)
VALID_NPZ = _npz_bytes(X=np.arange(60, dtype=np.uint8).reshape(6, 10), y=np.arange(6) % 2)


@pytest.mark.parametrize("name, valid", [("x.npy", VALID_NPY), ("x.npz", VALID_NPZ)], ids=["npy", "npz"])
@FUZZ
@given(edits=mutations)
def test_mutated_numpy_files(tmp_path, name, valid, edits):
    path = tmp_path / name
    path.write_bytes(mutate(valid, edits))
    dataset = loads_or_data_error(path)
    # Whatever loads is whole: six samples of ten features, labels (if any) one per sample.
    assert dataset is None or (dataset.X.shape == (6, 10) if name.endswith(".npy") else
                               len(dataset.X) == len(dataset.y if dataset.y is not None else dataset.X))


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([".npy", ".npz", ".csv"]))
def test_random_bytes(tmp_path, data, suffix):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(data)
    dataset = loads_or_data_error(path)
    assert dataset is None or dataset.X.shape[0] >= 1


@FUZZ
@given(st.text(alphabet=st.sampled_from("0123456789.,-e\n \"ainfx;"), max_size=200))
def test_csv_like_text(tmp_path, text):
    path = tmp_path / "x.csv"
    path.write_text(text)
    dataset = loads_or_data_error(path)
    if dataset is not None:
        assert np.isfinite(dataset.X).all()


def test_npy_header_claiming_a_trillion_rows_allocates_nothing(tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**12, 784)})
    (tmp_path / "huge.npy").write_bytes(buffer.getvalue() + b"\0" * 64)
    with pytest.raises(DataError, match="truncated or corrupted"):
        load_file(tmp_path / "huge.npy")
    # Same inside an .npz archive.
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        archive.writestr("X.npy", buffer.getvalue() + b"\0" * 64)
    with pytest.raises(DataError, match="truncated or corrupted"):
        load_file(tmp_path / "huge.npz")


def _png_bytes(seed):
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, size=(6, 5), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@FUZZ
@given(mutations, st.sampled_from([".png", ".jpg", ".bmp", ".gif"]))
def test_mutated_image_in_folder(tmp_path_factory, edits, suffix):
    folder = tmp_path_factory.mktemp("imgs")
    (folder / "good.png").write_bytes(_png_bytes(0))
    (folder / f"bad{suffix}").write_bytes(mutate(_png_bytes(1), edits))
    dataset = loads_or_data_error(folder)
    assert dataset is None or dataset.X.shape == (2, 30)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    X = np.random.default_rng(0).uniform(size=(40, 6)).astype(np.float32)
    est = EncodingClusterer(3, preset="original", hidden=(4,), code_size=2, epochs=1, n_init=1, random_state=0).fit(X)
    folder = tmp_path_factory.mktemp("model")
    est.save(folder)
    return (folder / "model.json").read_text(), (folder / "model.safetensors").read_bytes(), X


def _write_model(folder, meta_text, weights):
    folder.mkdir(exist_ok=True)
    (folder / "model.json").write_text(meta_text)
    (folder / "model.safetensors").write_bytes(weights)


def loads_or_model_error(folder, X):
    """Load the model: return True if it loaded and predicts, False if refused with our
    one-line ModelError. Any other exception propagates and fails the test."""
    try:
        model = EncodingClusterer.load(folder)
    except ModelError as exc:
        assert "\n" not in str(exc)
        return False
    assert model.predict(X).shape == (len(X),)
    return True


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                         max_size=3), max_leaves=6)


@FUZZ
@given(st.sampled_from(["autoencoder", "params", "training", "scaler", "n_features_in", "n_clusters", "seed",
                        "history", "format_version"]), st.data())
def test_tampered_model_json(tmp_path_factory, saved_model, key, data):
    meta_text, weights, X = saved_model
    meta = json.loads(meta_text)
    if isinstance(meta[key], dict) and data.draw(st.booleans()):
        inner = data.draw(st.sampled_from(sorted(meta[key])))
        meta[key][inner] = data.draw(json_values)
    else:
        meta[key] = data.draw(json_values)
    folder = tmp_path_factory.mktemp("m")
    _write_model(folder, json.dumps(meta), weights)
    # model.json is signed by the copy inside the weights file: any real change is refused, and
    # drawing the value it already had changes nothing.
    changed = json.dumps(meta, sort_keys=True) != json.dumps(json.loads(meta_text), sort_keys=True)
    assert loads_or_model_error(folder, X) is (not changed)


@FUZZ
@given(mutations)
def test_mutated_weights_with_matching_checksum(tmp_path_factory, saved_model, edits):
    """Even a tampered file whose checksum was updated too must not get past the parser."""
    meta_text, weights, X = saved_model
    bad = mutate(weights, edits)
    meta = json.loads(meta_text)
    meta["weights_sha256"] = hashlib.sha256(bad).hexdigest()
    folder = tmp_path_factory.mktemp("m")
    _write_model(folder, json.dumps(meta), bad)
    loaded = loads_or_model_error(folder, X)  # anything but our ModelError propagates and fails
    # Edits past safetensors' header only change weight values: a model that was re-signed on
    # purpose, which must load and predict (its header, shapes and description are intact).
    data_start = 8 + int.from_bytes(weights[:8], "little")
    if all(position % len(weights) >= data_start for position, _ in edits):
        assert loaded is True


@FUZZ
@given(st.binary(max_size=200))
def test_random_model_json_bytes(tmp_path_factory, saved_model, data):
    _, weights, X = saved_model
    folder = tmp_path_factory.mktemp("m")
    folder.mkdir(exist_ok=True)
    (folder / "model.json").write_bytes(data)
    (folder / "model.safetensors").write_bytes(weights)
    assert loads_or_model_error(folder, X) is False  # random bytes are never a valid description


def test_a_header_cell_with_a_line_break_still_gives_a_one_line_error(tmp_path):
    """Found by hypothesis: a quoted header cell holding a newline made the message two lines."""
    (tmp_path / "x.csv").write_text('"a\nb",c\n;,1\n')
    with pytest.raises(DataError, match=r"line 2, column a b: ';' is not a number") as info:
        load_file(tmp_path / "x.csv")
    assert "\n" not in str(info.value)

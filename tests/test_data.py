import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from encluster import load_dataset
from encluster.errors import DataError
from encluster.scaling import Scaler


def test_mnist_all_is_train_then_test_in_original_order():
    full = load_dataset("mnist", scale=False)
    assert full.X.shape == (70000, 784) and full.X.dtype == np.uint8
    assert full.image_shape == (28, 28)
    assert full.y[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels
    assert full.y[60000:60003].tolist() == [7, 2, 1]  # and the first test labels
    test = load_dataset("mnist", split="test", scale=False)
    assert np.array_equal(test.X, full.X[60000:])
    scaled = load_dataset("mnist", split="train")
    assert scaled.X.dtype == np.float32 and scaled.X.shape[0] == 60000
    assert scaled.X.min() == 0.0 and scaled.X.max() == 1.0
    assert np.allclose(scaled.X[:100] * 255, full.X[:100])


def test_mnist_counts_per_digit():
    y = load_dataset("mnist", split="test", scale=False).y
    # Published class counts of the 10k test set.
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_digits():
    d = load_dataset("digits")
    assert d.X.shape == (1797, 64) and d.image_shape == (8, 8)
    assert d.X.min() >= 0 and d.X.max() <= 1


def test_unknown_split():
    with pytest.raises(DataError, match="split"):
        load_dataset("mnist", split="validation")


def test_max_samples_is_a_seeded_ordered_subset(digits):
    a = load_dataset("digits", max_samples=100, random_state=3)
    b = load_dataset("digits", max_samples=100, random_state=3)
    assert a.X.shape == (100, 64) and np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)


def test_npy_tabular_and_images(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 5))
    np.save(tmp_path / "t.npy", X)
    d = load_dataset(tmp_path / "t.npy")
    assert d.X.shape == (20, 5) and d.y is None and d.image_shape is None
    assert d.X.min() == 0 and d.X.max() == 1
    imgs = rng.integers(0, 256, size=(7, 6, 5), dtype=np.uint8)
    np.save(tmp_path / "i.npy", imgs)
    d = load_dataset(tmp_path / "i.npy", scale=False)
    assert d.X.shape == (7, 30) and d.image_shape == (6, 5) and np.array_equal(d.X, imgs.reshape(7, -1))
    rgb = rng.integers(0, 256, size=(4, 3, 2, 3), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", rgb)
    assert load_dataset(tmp_path / "rgb.npy").image_shape == (3, 2, 3)


def test_npz_with_and_without_labels(tmp_path):
    X = np.random.default_rng(0).uniform(size=(10, 4)).astype(np.float32)
    np.savez(tmp_path / "a.npz", X=X, y=np.arange(10) % 2)
    d = load_dataset(tmp_path / "a.npz")
    assert np.array_equal(d.X, X) and d.y.tolist() == [0, 1] * 5
    np.savez(tmp_path / "b.npz", data=X)
    with pytest.raises(DataError, match="named X"):
        load_dataset(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", X=X, y=np.arange(3))
    with pytest.raises(DataError, match="3 labels for 10 samples"):
        load_dataset(tmp_path / "c.npz")


def test_object_arrays_need_pickle_and_are_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickle"):
        load_dataset(tmp_path / "o.npy")


@pytest.mark.parametrize("text, X, y, classes", [
    ("a,b,species\n1,2,setosa\n3,4,virginica\n5,6,setosa\n", [[1, 2], [3, 4], [5, 6]], [0, 1, 0],
     ["setosa", "virginica"]),
    # Numbers with spaces or quotes around them are numbers; names and labels lose their spaces.
    ('a, b ,species\n 1 ,"2.5",x\n3,4, y\n', [[1, 2.5], [3, 4]], [0, 1], ["x", "y"]),
])
def test_csv_with_header_and_label_column(tmp_path, text, X, y, classes):
    path = tmp_path / "table.csv"
    path.write_text(text)
    d = load_dataset(path, label_column="species", scale=False)
    assert d.X.tolist() == X and d.y.tolist() == y and d.class_names == classes and d.feature_names == ["a", "b"]


def test_csv_without_header(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("1,2\n3,4\n")
    assert load_dataset(path, scale=False).X.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("text, fragment", [
    ("a,b\n1,2\n3\n", "line 3 has 1 fields"),
    ("a,b\n1,2\n3,x\n", "line 3, column b: 'x' is not a number"),
    ("", "empty CSV"),
    ("a,b\n", "no data rows"),
    ("1,2\n3,nan\n", "NaN"),
    ("a,b\n1,2\n4,\n", "line 3, column b: the value is missing"),
])
def test_bad_csv(tmp_path, text, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=fragment):
        load_dataset(path)


def test_csv_unknown_label_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="no column named 'c'"):
        load_dataset(path, label_column="c")


def _write_images(folder, size, mode="L", count=3, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode).save(folder / f"{i}.png")


def test_image_folder_with_classes(tmp_path):
    _write_images(tmp_path / "cats", (5, 4))
    _write_images(tmp_path / "dogs", (5, 4), count=2)
    d = load_dataset(tmp_path, scale=False)
    assert d.X.shape == (5, 20) and d.image_shape == (4, 5)
    assert d.y.tolist() == [0, 0, 0, 1, 1] and d.class_names == ["cats", "dogs"]
    assert d.X.dtype == np.uint8


def test_image_folder_flat_rgb(tmp_path):
    _write_images(tmp_path, (3, 3), mode="RGB")
    d = load_dataset(tmp_path)
    assert d.X.shape == (3, 27) and d.image_shape == (3, 3, 3) and d.y is None


def test_image_folder_mixed_sizes(tmp_path):
    _write_images(tmp_path / "a", (5, 4))
    _write_images(tmp_path / "b", (6, 4))
    with pytest.raises(DataError, match="different sizes"):
        load_dataset(tmp_path)


def test_image_folder_with_non_image_file(tmp_path):
    _write_images(tmp_path, (5, 4))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not an image file"):
        load_dataset(tmp_path)


def test_image_file_that_is_not_an_image(tmp_path):
    _write_images(tmp_path, (5, 4))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable image"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("name, fragment", [("missing.npy", "no such file"), ("data.txt", "unsupported file type")])
def test_bad_paths(tmp_path, name, fragment):
    if name.endswith(".txt"):
        (tmp_path / name).write_text("1 2 3")
    with pytest.raises(DataError, match=fragment):
        load_dataset(tmp_path / name)


def test_nan_and_empty_inputs(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[0.1, np.nan], [0.2, 0.3]]))
    with pytest.raises(DataError, match="NaN or infinite values in 1 samples"):
        load_dataset(tmp_path / "nan.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 4)))
    with pytest.raises(DataError, match=r"0 sample\(s\)"):
        load_dataset(tmp_path / "empty.npy")


def test_scaler_modes_and_reuse():
    u8 = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    s = Scaler.fit(u8)
    assert s.mode == "uint8" and np.allclose(s.transform(u8), u8 / 255)
    unit = np.array([[0.0, 0.5], [1.0, 0.25]])
    assert Scaler.fit(unit).mode == "identity"
    raw = np.array([[-1.0, 10.0, 3.0], [1.0, 20.0, 3.0]])
    s = Scaler.fit(raw)
    assert s.mode == "minmax"
    assert s.transform(raw).tolist() == [[0, 0, 0], [1, 1, 0]]  # constant column -> 0
    # New data is scaled with the *training* range, clipped into [0, 1].
    assert s.transform(np.array([[0.0, 15.0, 9.0]])).tolist() == [[0.5, 0.5, 1.0]]
    assert np.allclose(s.inverse_transform(s.transform(raw))[:, :2], raw[:, :2])


def test_a_csv_that_is_not_utf8_says_so(tmp_path):
    for text in (b"a,b\n1,2\n\xff,1\n", b"a,\xff\n1,2\n"):
        (tmp_path / "latin.csv").write_bytes(text)
        with pytest.raises(DataError, match="UTF-8"):
            load_dataset(tmp_path / "latin.csv")


def test_a_csv_and_its_parquet_copy_load_the_same(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 4)), columns=["w", "x", "y", "z"]).assign(kind=rng.choice(["p", "q"], 50))
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    a, b = (load_dataset(tmp_path / f"t.{s}", label_column="kind", scale=False) for s in ("csv", "parquet"))
    assert np.allclose(a.X, b.X) and a.y.tolist() == b.y.tolist() and a.feature_names == b.feature_names


def test_standard_scaling_and_auto():
    raw = np.array([[-1.0, 10.0, 3.0], [1.0, 30.0, 3.0]])
    s = Scaler.fit(raw, "standard")
    assert s.mode == "standard" and s.transform(raw).tolist() == [[-1, -1, 0], [1, 1, 0]]  # constant column -> 0
    assert s.transform(np.array([[3.0, 50.0, 3.0]])).tolist() == [[3, 3, 0]]  # not clipped
    assert Scaler.fit(raw, "auto").mode == "standard"
    assert Scaler.fit(np.array([[0, 200]], dtype=np.uint8), "auto").mode == "uint8"
    assert Scaler.fit(np.array([[0.0, 0.5], [1.0, 0.2]]), "auto").mode == "identity"


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 30), st.integers(1, 5)),
              elements=st.floats(-1e6, 1e6, allow_nan=False)), st.sampled_from(["minmax", "standard"]))
def test_scaling_round_trips_and_standardises(X, scaling):
    scaler = Scaler.fit(X, scaling)
    Z = scaler.transform(X)
    assert np.allclose(scaler.inverse_transform(Z), X, rtol=1e-5, atol=1e-6 * (1 + np.abs(X).max()))
    varies = X.std(axis=0) > 1e-6 * (1 + np.abs(X).max(axis=0))
    if scaling == "standard":
        assert np.allclose(Z.mean(axis=0), 0, atol=1e-4)
        assert np.allclose(Z.std(axis=0)[varies], 1, atol=1e-3)
    else:
        assert Z.min() >= 0 and Z.max() <= 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40000), st.integers(1, 4), st.sampled_from([np.uint8, np.int32, np.float32, np.float64]),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_one_pass_summary_matches_each_question_asked_of_the_whole_array(n, width, dtype, constant, seed):
    """The summary is gathered block by block (16,384 rows each); the answers must be those of
    the whole array, across block boundaries: constant or not, bounded or not, min, max, sums."""
    from encluster.scaling import summarise

    rng = np.random.default_rng(seed)
    scale = 1 if dtype in (np.float32, np.float64) and rng.random() < 0.5 else 255
    X = (rng.random((n, width)) * scale).astype(dtype)
    if constant:
        X[:] = X[0]
    elif n > 1:
        X[rng.integers(1, n)] = X[0] + 1  # one row somewhere may be the only one that differs
    found = summarise(X)
    assert found.constant == bool((X == X[0]).all())
    assert found.count == n
    floating = np.issubdtype(dtype, np.floating)
    assert found.bounded == (dtype == np.uint8 or (floating and X.min() >= 0 and X.max() <= 1))
    if dtype == np.uint8:
        assert found.low is None  # uint8 is scaled by 255: nothing to gather
    else:
        wide = X.astype(np.float64)
        np.testing.assert_array_equal(found.low, wide.min(axis=0))
        np.testing.assert_array_equal(found.high, wide.max(axis=0))
        np.testing.assert_allclose(found.total, wide.sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(found.squares, (wide**2).sum(axis=0), rtol=1e-12)
        for scaling in ("minmax", "standard", "auto"):
            given_summary, own = Scaler.fit(X, scaling, found), Scaler.fit(X, scaling)
            assert given_summary.mode == own.mode
            np.testing.assert_array_equal(given_summary.offset, own.offset)


def test_the_summary_counts_the_rows_with_nan_or_infinity_in_every_block():
    from encluster.scaling import summarise

    X = np.zeros((40000, 3), dtype=np.float32)
    X[[5, 20000, 39999], [0, 1, 2]] = [np.nan, np.inf, -np.inf]
    X[20000, 0] = np.nan  # two bad values in one row count once
    with pytest.raises(DataError, match="data.npy contains NaN or infinite values in 3 samples"):
        summarise(X, name="data.npy")


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 10))))
def test_uint8_pixels_scale_onto_the_unit_interval_and_back(X):
    scaler = Scaler.fit(X)
    assert scaler.mode == "uint8"
    scaled = scaler.transform(X)
    assert np.array_equal(scaled, X.astype(np.float32) / np.float32(255))
    np.testing.assert_allclose(scaler.inverse_transform(scaled), X, rtol=0, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 10)), elements=st.floats(0, 1, width=32)))
def test_data_already_on_the_unit_interval_is_kept_as_it_is_and_inverted_as_it_is(X):
    scaler = Scaler.fit(X)
    assert scaler.mode == "identity"
    assert np.array_equal(scaler.transform(X), X)
    assert np.array_equal(scaler.inverse_transform(X), X.astype(np.float64))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_label_column_names_every_rows_own_class_whatever_order_the_classes_come_in(tmp_path, suffix):
    """Four classes, first seen as c, a, d, b: each row's class name is its own label."""
    from encluster.formats import load_file

    labels = ["c", "a", "d", "b", "a", "c", "b", "d", "d", "a"]
    X = np.arange(20, dtype=float).reshape(10, 2)
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        path.write_text("x,kind,y\n" + "".join(f"{a},{k},{b}\n" for (a, b), k in zip(X, labels)))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"x": X[:, 0], "kind": labels, "y": X[:, 1]}), path)
    data = load_file(path, label_column="kind")
    assert [data.class_names[i] for i in data.y] == labels
    assert data.class_names == ["a", "b", "c", "d"] and np.array_equal(data.X, X)

"""Tables: data frames and Parquet in, and what each cluster is, in the table's own units, out."""

import json
import subprocess
import sys

import numpy as np
import pytest

import pandas as pd  # noqa: E402  (the tests extra installs it)

from encluster import EncodingClusterer  # noqa: E402
from encluster.errors import DataError  # noqa: E402
from encluster.profiles import cluster_profiles, profiles_csv  # noqa: E402

SMALL = dict(preset="original", hidden=(16,), code_size=2, epochs=3, n_init=2, random_state=0)


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 0.5, size=(40, 4)) for c in (0, 4, 8)])
    return pd.DataFrame(X, columns=["height", "weight", "age", "income"])


@pytest.fixture(scope="module")
def fitted(frame):
    return EncodingClusterer(3, **SMALL).fit(frame)


def test_a_data_frame_keeps_its_column_names_and_predicts_by_them(fitted, frame):
    assert list(fitted.feature_names_in_) == ["height", "weight", "age", "income"]
    assert np.array_equal(fitted.predict(frame), fitted.labels_)
    # Columns in another order are taken by name.
    assert np.array_equal(fitted.predict(frame[["weight", "income", "age", "height"]]), fitted.labels_)
    with pytest.raises(DataError, match=r"missing \['income'\]; unexpected \['salary'\]"):
        fitted.predict(frame.rename(columns={"income": "salary"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        assert np.array_equal(fitted.predict(frame.to_numpy()), fitted.labels_)


def test_a_text_column_is_named_in_the_error(frame):
    bad = frame.assign(city=["paris", "rome", "oslo"] * 40)
    with pytest.raises(DataError, match=r"column 'city' holds (object|str), not numbers"):
        EncodingClusterer(3, **SMALL).fit(bad)


def test_names_survive_save_and_load(fitted, frame, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = EncodingClusterer.load(tmp_path / "m")
    assert list(loaded.feature_names_in_) == list(fitted.feature_names_in_)
    assert np.array_equal(loaded.predict(frame), fitted.predict(frame))
    assert np.array_equal(loaded.predict(frame[frame.columns[::-1]]), fitted.labels_)
    with pytest.raises(DataError, match=r"missing \['income'\]; give the training data's columns"):
        loaded.predict(frame.drop(columns="income"))


def test_profiles_worked_by_hand():
    """Two clusters of two rows: means 1 and 5 of a feature whose standard deviation over all four
    rows is 2, so the standardised differences are -2 and +2; the second feature is constant."""
    X = np.array([[0.0, 7.0], [2.0, 7.0], [4.0, 7.0], [6.0, 7.0]])
    profiles = cluster_profiles(X, np.array([0, 0, 1, 1]), 2, np.array([[1.5, 7.0], [4.5, 7.0]]), ["a", "b"])
    first, second = profiles["clusters"]
    assert first["size"] == 2 and first["median"] == [1.0, 7.0] and second["median"] == [5.0, 7.0]
    std = np.sqrt(np.mean((X[:, 0] - 3) ** 2))  # sqrt(5)
    assert first["difference"] == pytest.approx([(1 - 5) / std, 0.0]) and second["difference"][0] == pytest.approx(4 / std)
    assert first["decoded_centroid"] == [1.5, 7.0]
    assert first["top"] == [{"feature": "a", "difference": round(-4 / std, 3), "direction": "lower"}]
    rows = profiles_csv(profiles).splitlines()
    assert rows[0] == "cluster,size,feature,decoded_centroid,median,standardised_difference"
    assert rows[1].startswith("0,2,a,1.5,1,") and len(rows) == 1 + 2 * 2


def test_profiles_give_the_median_where_clusters_are_skewed_and_the_difference_of_means():
    """Skewed clusters, where median and mean differ: 0, 0, 0, 10 (median 0, mean 2.5) and
    20, 20, 21, 50 (median 20.5, mean 27.75)."""
    X = np.array([[0.0], [0.0], [0.0], [10.0], [20.0], [20.0], [21.0], [50.0]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    first, second = cluster_profiles(X, labels, 2, np.array([[1.0], [25.0]]), ["f"])["clusters"]
    assert first["median"] == [0.0] and second["median"] == [20.5]
    std = X[:, 0].std()
    assert first["difference"] == pytest.approx([(2.5 - 27.75) / std])
    assert second["difference"] == pytest.approx([(27.75 - 2.5) / std])


def _encluster(*args):
    return subprocess.run([sys.executable, "-m", "encluster", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_a_parquet_table_runs_profiles_and_predicts(frame, tmp_path):
    # Each group is high in a column of its own (income, age, height) and usual in the others; weight is noise.
    rng = np.random.default_rng(1)
    own = np.repeat(np.eye(3) * 10, 40, axis=0) + rng.normal(0, 0.5, (120, 3))
    frame = pd.DataFrame({"height": own[:, 2], "weight": rng.normal(0, 1, 120), "age": own[:, 1],
                          "income": own[:, 0]})
    table = frame.assign(kind=["small"] * 40 + ["medium"] * 40 + ["large"] * 40)
    table.to_parquet(tmp_path / "people.parquet")
    run = tmp_path / "run"
    result = _encluster("run", "--dataset", tmp_path / "people.parquet", "--label-column", "kind", "--clusters", "3",
                        "--epochs", "20", "--no-plots", "--no-report", "--out", run, "-q")
    assert result.returncode == 0, result.stderr
    assert "what sets each cluster apart" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_features"] == 4 and len(metrics["profiles"]) == 3
    # Each cluster is set apart most by its own column, upwards, and its members' median there is 10.
    tops = {c["cluster"]: c["top"][0] for c in metrics["profiles"]}
    assert sorted(t["feature"] for t in tops.values()) == ["age", "height", "income"]
    assert all(t["direction"] == "higher" for t in tops.values())
    profiles = pd.read_csv(run / "profiles.csv")
    assert set(profiles["feature"]) == {"height", "weight", "age", "income"} and len(profiles) == 12
    for cluster, top in tops.items():
        medians = profiles[profiles["cluster"] == cluster].set_index("feature")["median"]
        assert abs(medians[top["feature"]] - 10) < 0.5  # in the table's own units
        assert all(abs(medians[f]) < 0.5 for f in ("height", "age", "income") if f != top["feature"])
    out = tmp_path / "labels.npy"
    assert _encluster("predict", "--model", run, tmp_path / "people.parquet", "--out", out).returncode == 0
    assert np.array_equal(np.load(out), np.load(run / "assignments.npy"))


def test_the_separation_check_prefers_the_clustering_that_follows_the_blobs():
    """Three tight blobs: labels that follow them are far better separated than random ones, and the
    check says which side has them, without looking at any truth."""
    from encluster.metrics import separation
    from encluster.summary import separation_note

    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 50)
    X = np.clip(rng.uniform(0.2, 0.8, size=(3, 5))[truth] + rng.normal(0, 0.02, size=(150, 5)), 0, 1)
    noise = rng.permutation(truth)
    raw_better = separation(X, noise, truth)
    assert raw_better["raw_at_least_as_good"] and raw_better["baseline"] > 0.8 > raw_better["encoding"]
    assert not separation(X, truth, noise)["raw_at_least_as_good"]
    note = separation_note({"separation": raw_better, "image_shape": None})
    assert note.startswith("note: k-means on the raw features gives clusters at least as well separated")
    assert "\n" not in note
    # Given the space the encoding clustered in, raw k-means must win there too: a space in which the
    # "encoding"'s clusters are the tight ones overrules the input's verdict.
    own_space = rng.uniform(-0.01, 0.01, size=(150, 2)) + np.eye(3)[noise][:, :2] * 5
    both = separation(X, noise, truth, space=own_space)
    assert both["encoding_in_space"] > both["baseline_in_space"] and not both["raw_at_least_as_good"]
    assert separation(X, noise, truth, space=X)["raw_at_least_as_good"]
    assert "where the encoding's clusters were found" in separation_note({"separation": both, "image_shape": None})


def test_auto_runs_narrow_tables_without_a_network_and_wide_data_with_one():
    from encluster.stages import MIN_FEATURES_TO_ENCODE, resolve_method

    assert resolve_method("auto", MIN_FEATURES_TO_ENCODE - 1) == "umap"
    assert resolve_method("auto", MIN_FEATURES_TO_ENCODE) == resolve_method("auto", 784) == "n2d"
    assert resolve_method("kmeans", 4) == "kmeans"
    rng = np.random.default_rng(1)
    narrow = EncodingClusterer(2, random_state=0).fit(rng.normal(size=(60, 5)))
    assert narrow.method_ == "umap" and narrow.autoencoder_ is None
    wide = EncodingClusterer(2, random_state=0, epochs=1, steps=1).fit(rng.normal(size=(60, MIN_FEATURES_TO_ENCODE)))
    assert wide.method_ == "n2d" and wide.autoencoder_ is not None


def test_a_standardised_model_round_trips_and_scales_new_rows_as_training_did(frame, tmp_path):
    fitted = EncodingClusterer(3, method="n2d", scaling="standard", hidden="auto", epochs=2, random_state=0).fit(frame)
    assert fitted.scaler_.mode == "standard" and fitted.autoencoder_.spec.hidden == (64, 64, 256)
    assert np.allclose(fitted.scaler_.transform(frame.to_numpy()).mean(axis=0), 0, atol=1e-5)
    fitted.save(tmp_path / "m")
    loaded = EncodingClusterer.load(tmp_path / "m")
    assert loaded.scaler_.mode == "standard" and np.array_equal(loaded.scaler_.span, fitted.scaler_.span)
    assert np.array_equal(loaded.predict(frame), fitted.labels_)
    shifted = frame + 100.0  # far outside the training range: standardised, not clipped
    assert np.allclose(loaded.transform(shifted[:1]), fitted.transform(shifted[:1]))


def test_cross_entropy_refuses_values_outside_the_unit_interval(frame):
    from encluster.errors import ConfigError

    with pytest.raises(ConfigError, match="scaling='standard' gives values outside"):
        EncodingClusterer(3, preset="original", scaling="standard", epochs=1).fit(frame)
    assert EncodingClusterer(3, **{**SMALL, "scaling": "auto"}).fit(frame).scaler_.mode == "minmax"
